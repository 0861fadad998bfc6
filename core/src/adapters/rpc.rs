//! A JSON-RPC 2.0 client over HTTP that speaks batches. Built once per endpoint and shared:
//! one connection pool, one TLS config. Batches are what let the sender broadcast hundreds
//! of transactions and the tracker read hundreds of blocks per round trip.

use crate::ports::{ChainError, TransportKind};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct RpcClient {
    http: reqwest::Client,
    url: reqwest::Url,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").field("endpoint", &self.endpoint_label()).finish()
    }
}

/// One element's answer in a batch.
pub type RpcResult = Result<Value, ChainError>;

/// Largest batch sent in one HTTP request; bigger ones are split.
const MAX_BATCH: usize = 500;

impl RpcClient {
    pub fn new(url: &str, timeout: Duration) -> Result<RpcClient, ChainError> {
        // The URL itself is never repeated: provider URLs carry API keys.
        let url = reqwest::Url::parse(url).map_err(|e| ChainError::Malformed(format!("an RPC URL is not a valid URL ({e}); not shown")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| ChainError::Transport(TransportKind::Other, e.to_string()))?;
        Ok(RpcClient { http, url, next_id: AtomicU64::new(1) })
    }

    /// Where this client sends; never contains credentials in our configs, but print only
    /// scheme, host and port anyway since provider URLs often embed API keys.
    pub fn endpoint_label(&self) -> String {
        label(&self.url)
    }

    pub async fn call(&self, method: &str, params: Value) -> RpcResult {
        let mut out = self.batch(vec![(method.to_owned(), params)]).await?;
        out.pop().unwrap_or_else(|| Err(ChainError::Malformed("empty batch answer".into())))
    }

    /// Sends calls as JSON-RPC batches and returns one result per call, in order.
    /// A transport failure fails the whole call; per-element errors are per element.
    pub async fn batch(&self, calls: Vec<(String, Value)>) -> Result<Vec<RpcResult>, ChainError> {
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(MAX_BATCH) {
            out.extend(self.batch_once(chunk).await?);
        }
        Ok(out)
    }

    async fn batch_once(&self, calls: &[(String, Value)]) -> Result<Vec<RpcResult>, ChainError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.next_id.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": first + i as u64, "method": m, "params": p}))
            .collect();
        let resp = self
            .http
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| ChainError::Transport(kind_of(&e), format!("{}: {}", self.endpoint_label(), without_url(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            let kind = if status.as_u16() == 429 {
                TransportKind::RateLimited
            } else if status.is_server_error() {
                TransportKind::ServerError
            } else {
                TransportKind::Other
            };
            return Err(ChainError::Transport(kind, format!("{}: HTTP {status}", self.endpoint_label())));
        }
        let answers: Value =
            resp.json().await.map_err(|e| ChainError::Transport(kind_of(&e), format!("{}: {}", self.endpoint_label(), without_url(&e))))?;
        let answers = match answers {
            Value::Array(a) => a,
            // Some nodes answer a batch with a single error object (e.g. batch too large).
            Value::Object(o) => {
                return Err(rpc_error(&Value::Object(o)).unwrap_or_else(|| ChainError::Malformed("non-batch answer".into())));
            }
            _ => return Err(ChainError::Malformed("batch answer is not an array".into())),
        };
        let mut slots: Vec<Option<RpcResult>> = (0..calls.len()).map(|_| None).collect();
        for a in answers {
            let Some(id) = a.get("id").and_then(Value::as_u64) else { continue };
            let Some(idx) = id.checked_sub(first).map(|i| i as usize).filter(|i| *i < calls.len()) else { continue };
            slots[idx] = Some(match rpc_error(&a) {
                Some(e) => Err(e),
                None => Ok(a.get("result").cloned().unwrap_or(Value::Null)),
            });
        }
        Ok(slots.into_iter().map(|s| s.unwrap_or_else(|| Err(ChainError::Malformed("missing answer in batch".into())))).collect())
    }
}

fn rpc_error(a: &Value) -> Option<ChainError> {
    let e = a.get("error")?;
    Some(ChainError::Rpc {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: e.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
    })
}

fn kind_of(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() { TransportKind::Timeout } else { TransportKind::Other }
}

/// reqwest errors print the URL, which may carry a provider's API key.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "malformed response"
    } else {
        "request failed"
    };
    let mut msg = kind.to_owned();
    let mut src = std::error::Error::source(e);
    if let Some(s) = src.take() {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
    }
    msg
}

/// A URL as logs, metrics and errors may show it: scheme, host and port, never the path or
/// query where a provider's API key travels.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => label(&u),
        Err(_) => "<unparseable url>".into(),
    }
}

fn label(u: &reqwest::Url) -> String {
    format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or("?"), u.port_or_known_default().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_repeat_the_url() {
        // A typo'd provider URL still carries its key.
        let err = RpcClient::new("https//mainnet.example.io/v3/SECRETKEY123", Duration::from_secs(1)).unwrap_err().to_string();
        assert!(!err.contains("SECRETKEY123") && err.contains("not a valid URL"), "{err}");
        let ok = RpcClient::new("https://mainnet.example.io/v3/SECRETKEY123", Duration::from_secs(1)).unwrap();
        assert_eq!(ok.endpoint_label(), "https://mainnet.example.io:443");
        assert!(!format!("{ok:?}").contains("SECRETKEY123"));
    }
}
