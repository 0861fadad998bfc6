//! A fault-injecting JSON-RPC proxy of the test suite's own: it sits in front of a real
//! anvil and, on command, drops connections, delays, fails with an HTTP status, lies about
//! the chain id, reports a head that is stalled or far ahead, hides receipts, or refuses
//! broadcasts with an error a node list does not know. It speaks just enough
//! HTTP/1.1 (keep-alive, Content-Length bodies) to carry JSON-RPC, so it can also hang up
//! mid-request, which a framework would not let it do.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Pass,
    /// Reads the request, then closes the connection without an answer.
    Drop,
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
    /// `eth_getTransactionReceipt` and `eth_getBlockReceipts` answer null, as a lagging,
    /// pruned or load-balanced endpoint does for a mined transaction; all else passes.
    NullReceipts,
    /// `eth_sendRawTransaction` answers this JSON-RPC error (code, message) inside HTTP 200
    /// (the call is still passed on, as a provider that fails after forwarding would).
    SendError(i64, String),
}

struct Inner {
    upstream: String,
    /// JSON-RPC calls received (each call of a batch counts).
    calls: std::sync::atomic::AtomicU64,
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
        let inner = Arc::new(Inner {
            upstream: upstream.to_owned(),
            calls: Default::default(),
            fault: Mutex::new((Fault::Pass, None)),
            http: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let p = inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(p.clone(), sock));
            }
        });
        FaultProxy { url, inner, task }
    }

    /// JSON-RPC calls received so far.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(std::sync::atomic::Ordering::Relaxed)
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

/// One connection: requests in a keep-alive loop until the client or a fault closes it.
async fn serve(p: Arc<Inner>, sock: tokio::net::TcpStream) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        // Request line, then headers up to the blank line.
        loop {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, answer) = match answer(&p, body).await {
            Some(a) => a,
            None => return, // hang up
        };
        let head = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", answer.len());
        if w.write_all(head.as_bytes()).await.is_err() || w.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The status line's code and reason, and the body; None to drop the connection.
async fn answer(p: &Inner, body: Vec<u8>) -> Option<(String, Vec<u8>)> {
    let fault = p.fault.lock().unwrap().0.clone();
    match &fault {
        Fault::Drop => return None,
        Fault::Status(code) => return Some((format!("{code} Fault"), Vec::new())),
        Fault::Delay(d) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = req.as_array().map_or(1, |a| a.len() as u64);
    p.calls.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    let upstream = match p.http.post(&p.upstream).header("content-type", "application/json").body(body).send().await {
        Ok(r) => r,
        Err(_) => return Some(("502 Bad Gateway".into(), Vec::new())),
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
            (Fault::NullReceipts, "eth_getTransactionReceipt" | "eth_getBlockReceipts", _) => a["result"] = Value::Null,
            (Fault::SendError(code, message), "eth_sendRawTransaction", _) => {
                a.as_object_mut().unwrap().remove("result");
                a["error"] = serde_json::json!({"code": code, "message": message});
            }
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
    Some(("200 OK".into(), serde_json::to_vec(&answer).unwrap()))
}
