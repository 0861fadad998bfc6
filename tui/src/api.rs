//! The admin API client. Every call runs in its own task and answers with a `Msg`, so a
//! slow or dead API never blocks the UI loop; each call has a timeout.

use crate::app::{Action, Cmd, Fetch, Loaded, Msg};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use withdraw_core::wire::*;
use zeroize::Zeroizing;

pub struct Api {
    base: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(base: &str, token: Zeroizing<String>) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).connect_timeout(Duration::from_secs(2)).build()?;
        Ok(Api { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(self.token.as_str()).send().await.map_err(describe)?;
        answer(r).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T, String> {
        let r =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(self.token.as_str()).json(&body).send().await.map_err(describe)?;
        answer(r).await
    }

    pub async fn fetch(&self, f: &Fetch) -> Result<Loaded, String> {
        Ok(match f {
            Fetch::Me => Loaded::Me(self.get("/admin/v1/me").await?),
            Fetch::Stats => Loaded::Stats(self.get("/admin/v1/stats").await?),
            Fetch::Rpc => Loaded::Rpc(self.get("/admin/v1/rpc").await?),
            Fetch::Wallets => Loaded::Wallets(self.get("/admin/v1/hot-wallets").await?),
            Fetch::Signing => Loaded::Signing(self.get("/admin/v1/signing").await?),
            Fetch::Alerts => Loaded::Alerts(self.get("/admin/v1/alerts?limit=200").await?),
            Fetch::Audit => Loaded::Audit(self.get("/admin/v1/audit?limit=200").await?),
            Fetch::Withdrawals(q) => {
                let q = if q.is_empty() { String::new() } else { format!("&q={}", urlencode(q)) };
                Loaded::Withdrawals(self.get(&format!("/admin/v1/withdrawals?limit=200{q}")).await?)
            }
            Fetch::Dlq(k) => Loaded::Dlq(*k, self.get(&format!("/admin/v1/dlq/{}?limit=500", k.path())).await?),
            Fetch::Approvals => Loaded::Approvals(self.get("/admin/v1/approvals?limit=500").await?),
            Fetch::Detail(id) => Loaded::Detail(Box::new(self.get(&format!("/admin/v1/withdrawals/{}", urlencode(id))).await?)),
        })
    }

    /// Carries out an operator's action; the summary goes to the status line.
    pub async fn act(&self, action: Action, ids: &[String], reason: &str) -> Result<String, String> {
        match action {
            Action::Reprocess(k) | Action::Discard(k) => {
                let verb = if matches!(action, Action::Reprocess(_)) { "reprocess" } else { "discard" };
                let r: BulkActionResultV1 =
                    self.post(&format!("/admin/v1/dlq/{}/{verb}", k.path()), serde_json::json!({"ids": ids, "reason": reason})).await?;
                let failed: Vec<String> = r.results.iter().filter_map(|i| i.error.as_ref().map(|e| format!("{}: {e}", i.id))).collect();
                let ok = r.results.len() - failed.len();
                Ok(if failed.is_empty() {
                    format!("{verb}: {ok} done")
                } else {
                    format!("{verb}: {ok} done, {} failed ({})", failed.len(), failed.join("; "))
                })
            }
            Action::Approve | Action::Reject => {
                let verb = if action == Action::Approve { "approve" } else { "reject" };
                let mut failed = Vec::new();
                for id in ids {
                    let r: Result<ActionResultV1, String> =
                        self.post(&format!("/admin/v1/approvals/{}/{verb}", urlencode(id)), serde_json::json!({"reason": reason})).await;
                    if let Err(e) = r {
                        failed.push(format!("{id}: {e}"));
                    }
                }
                let ok = ids.len() - failed.len();
                Ok(if failed.is_empty() {
                    format!("{verb}: {ok} done")
                } else {
                    format!("{verb}: {ok} done, {} failed ({})", failed.len(), failed.join("; "))
                })
            }
        }
    }
}

/// Runs a command off the UI loop; its answer comes back as a message.
pub fn spawn(api: &Arc<Api>, cmd: Cmd, tx: &UnboundedSender<Msg>) {
    let (api, tx) = (api.clone(), tx.clone());
    match cmd {
        Cmd::Fetch(f) => {
            tokio::spawn(async move {
                let msg = match api.fetch(&f).await {
                    Ok(l) => Msg::Loaded(f, l),
                    Err(e) => Msg::Failed(f, e),
                };
                let _ = tx.send(msg);
            });
        }
        Cmd::Act { action, ids, reason } => {
            tokio::spawn(async move {
                let summary = api.act(action, &ids, &reason).await.unwrap_or_else(|e| format!("{} failed: {e}", action.verb()));
                let _ = tx.send(Msg::Acted(summary));
            });
        }
        Cmd::Copy(_) => {} // done by the runtime, which owns the terminal
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

async fn answer<T: DeserializeOwned>(r: reqwest::Response) -> Result<T, String> {
    let status = r.status();
    if status.is_success() {
        return r.json().await.map_err(|e| format!("unreadable answer: {e}"));
    }
    // problem+json: show its detail, else the status.
    let text = r.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<ProblemV1>(&text).ok().and_then(|p| p.detail.or(Some(p.title)));
    Err(format!("HTTP {}{}", status.as_u16(), detail.map(|d| format!(": {d}")).unwrap_or_default()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
