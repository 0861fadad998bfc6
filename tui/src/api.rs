//! The admin API client. Every call runs in its own task and answers with a `Msg`, so a
//! slow or dead API never blocks the UI loop; each call has a timeout. Failures keep their
//! kind (no answer, or an HTTP refusal) so the console never calls a 404 "API down".

use crate::app::{Acted, Action, CANNOT_CONNECT, Cmd, Failure, Fetch, Loaded, Msg, urlencode};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use withdraw_core::wire::*;
use zeroize::Zeroizing;

const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

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

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(self.token.as_str()).send().await.map_err(describe)?;
        answer(r).await
    }

    /// Actions: a bulk one works through up to 500 withdrawals one by one on the server, so it
    /// gets longer than a read; a timeout is reported as an unknown outcome, never as "failed".
    async fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T, Failure> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token.as_str())
            .timeout(ACTION_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(describe)?;
        answer(r).await
    }

    pub async fn fetch(&self, f: &Fetch) -> Result<Loaded, Failure> {
        let p = f.path();
        Ok(match f {
            Fetch::Me => Loaded::Me(self.get(&p).await?),
            Fetch::Stats => Loaded::Stats(self.get(&p).await?),
            Fetch::Rpc => Loaded::Rpc(self.get(&p).await?),
            Fetch::Wallets => Loaded::Wallets(self.get(&p).await?),
            Fetch::Signing => Loaded::Signing(self.get(&p).await?),
            Fetch::Alerts => Loaded::Alerts(self.get(&p).await?),
            Fetch::Audit => Loaded::Audit(self.get(&p).await?),
            Fetch::Withdrawals(_) => Loaded::Withdrawals(self.get(&p).await?),
            Fetch::Dlq(k) => Loaded::Dlq(*k, self.get(&p).await?),
            Fetch::Approvals => Loaded::Approvals(self.get(&p).await?),
            Fetch::Detail(_) => Loaded::Detail(Box::new(self.get(&p).await?)),
        })
    }

    /// Carries out an operator's action: which items moved, which did not and why.
    pub async fn act(&self, action: Action, ids: &[String], reason: &str) -> Acted {
        let mut acted = Acted { action, done: Vec::new(), failed: Vec::new(), unknown: Vec::new(), error: None };
        match action {
            Action::Reprocess(k) | Action::Discard(k) => {
                let verb = if matches!(action, Action::Reprocess(_)) { "reprocess" } else { "discard" };
                let r: Result<BulkActionResultV1, Failure> =
                    self.post(&format!("/admin/v1/dlq/{}/{verb}", k.path()), serde_json::json!({"ids": ids, "reason": reason})).await;
                match r {
                    Ok(r) => {
                        for i in r.results {
                            match i.error {
                                Some(e) => acted.failed.push((i.id, e)),
                                None => acted.done.push(i.id),
                            }
                        }
                    }
                    Err(e) => acted.error = Some(e),
                }
            }
            Action::Approve | Action::Reject => {
                let verb = if action == Action::Approve { "approve" } else { "reject" };
                for (i, id) in ids.iter().enumerate() {
                    let r: Result<ActionResultV1, Failure> =
                        self.post(&format!("/admin/v1/approvals/{}/{verb}", urlencode(id)), serde_json::json!({"reason": reason})).await;
                    match r {
                        // A 2xx the console cannot read was still done.
                        Ok(_) | Err(Failure::Unreadable(_)) => acted.done.push(id.clone()),
                        // No answer at all, before anything was done: nothing was.
                        Err(e @ Failure::Down(_)) if i == 0 && !e.maybe_done() => {
                            acted.error = Some(e);
                            break;
                        }
                        Err(e @ Failure::Http { status: ..500, .. }) => acted.failed.push((id.clone(), e.to_string())),
                        // The API went away: this one and the rest were not sent.
                        Err(e) if !e.maybe_done() => {
                            for rest in &ids[i..] {
                                acted.failed.push((rest.clone(), format!("not sent: {e}")));
                            }
                            break;
                        }
                        // A timeout or a 5xx: maybe done. The API stopped answering well, so the
                        // rest are not sent (each could take the whole timeout).
                        Err(e) => {
                            acted.unknown.push((id.clone(), e.to_string()));
                            for rest in &ids[i + 1..] {
                                acted.failed.push((rest.clone(), "not sent: the API stopped answering".into()));
                            }
                            break;
                        }
                    }
                }
            }
            Action::Pause(chain) | Action::Resume(chain) => {
                let verb = if matches!(action, Action::Pause(_)) { "pause" } else { "resume" };
                let r: Result<SigningStateV1, Failure> =
                    self.post(&format!("/admin/v1/signing/{verb}"), serde_json::json!({"reason": reason, "chain_id": chain})).await;
                if let Err(e) = r {
                    acted.error = Some(e);
                }
            }
        }
        acted
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
                let _ = tx.send(Msg::Acted(api.act(action, &ids, &reason).await));
            });
        }
        Cmd::Copy(_) => {} // done by the runtime, which owns the terminal
    }
}

fn describe(e: reqwest::Error) -> Failure {
    Failure::Down(
        if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            CANNOT_CONNECT
        } else {
            "connection failed"
        }
        .into(),
    )
}

async fn answer<T: DeserializeOwned>(r: reqwest::Response) -> Result<T, Failure> {
    let status = r.status();
    if status.is_success() {
        return r.json().await.map_err(|e| Failure::Unreadable(e.to_string()));
    }
    // problem+json: show its detail, else its title, else the status alone.
    let text = r.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<ProblemV1>(&text).ok().map(|p| p.detail.unwrap_or(p.title)).unwrap_or_default();
    Err(Failure::Http { status: status.as_u16(), detail })
}
