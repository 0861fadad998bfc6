//! A fault-injecting JSON-RPC proxy of the test suite's own: it sits in front of a real
//! anvil and, on command, delays, fails with an HTTP status, lies about the chain id, or
//! reports a head that is stalled or far ahead.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Pass,
    /// Answers this HTTP status with no body (500, 503, 429…).
    Status(u16),
    /// Holds every answer this long (past the client's timeout: a hung node).
    Delay(Duration),
    /// `eth_chainId` answers this id.
    WrongChainId(u64),
    /// `eth_blockNumber` answers the real head plus this.
    HeadAhead(u64),
    /// `eth_blockNumber` keeps answering the head it had when the stall began.
    StallHead,
}

struct Inner {
    upstream: String,
    fault: Mutex<(Fault, Option<u64>)>,
    http: reqwest::Client,
}

pub struct FaultProxy {
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let inner = Arc::new(Inner { upstream: upstream.to_owned(), fault: Mutex::new((Fault::Pass, None)), http: reqwest::Client::new() });
        let app = axum::Router::new().route("/", axum::routing::post(handle)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { url, inner, task }
    }

    pub fn set(&self, fault: Fault) {
        *self.inner.fault.lock().unwrap() = (fault, None);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(p): State<Arc<Inner>>, body: Bytes) -> axum::response::Response {
    let fault = p.fault.lock().unwrap().0.clone();
    match &fault {
        Fault::Status(code) => return StatusCode::from_u16(*code).unwrap().into_response(),
        Fault::Delay(d) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let upstream = match p.http.post(&p.upstream).header("content-type", "application/json").body(body.to_vec()).send().await {
        Ok(r) => r,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let mut answer: Value = upstream.json().await.unwrap_or(Value::Null);
    let calls: Vec<&Value> = match &req {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let method_of = |id: &Value| calls.iter().find(|c| &c["id"] == id).and_then(|c| c["method"].as_str()).unwrap_or("").to_owned();
    let mut rewrite = |a: &mut Value| {
        let method = method_of(&a["id"]);
        let num = a["result"].as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        match (&fault, method.as_str(), num) {
            (Fault::WrongChainId(id), "eth_chainId", _) => a["result"] = Value::String(format!("{id:#x}")),
            (Fault::HeadAhead(n), "eth_blockNumber", Some(h)) => a["result"] = Value::String(format!("{:#x}", h + n)),
            (Fault::StallHead, "eth_blockNumber", Some(h)) => {
                let mut f = p.fault.lock().unwrap();
                let frozen = *f.1.get_or_insert(h);
                a["result"] = Value::String(format!("{frozen:#x}"));
            }
            _ => {}
        }
    };
    match &mut answer {
        Value::Array(list) => list.iter_mut().for_each(&mut rewrite),
        v @ Value::Object(_) => rewrite(v),
        _ => {}
    }
    axum::Json(answer).into_response()
}
