//! Intake: request validation (pure) and the group-commit writer that records accepted
//! requests. HTTP handlers hand validated requests to one writer task, which records
//! everything that arrived meanwhile in one transaction; one durable commit then answers
//! hundreds of requests, which is what keeps p99 latency low under load.

use super::{PortTypes, Ports, StageError};
use crate::domain::{Amount, Asset, AssetRegistry, WithdrawalId, parse_destination};
use crate::ports::{NewWithdrawal, Queue, QueueName, Store, SubmitOutcome};
use alloy::primitives::Address;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A withdrawal request as the client sent it, before validation.
#[derive(Debug, Clone)]
pub struct WithdrawalRequest {
    pub user_id: String,
    pub asset: String,
    pub chain_id: u64,
    pub to: String,
    pub amount: String,
}

#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub user_id: String,
    pub asset: Asset,
    pub to: Address,
    pub amount: Amount,
}

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError { field, message: message.into() }
}

/// Checks everything that can be checked without state: shapes, address checksum, asset
/// and chain, amount precision. Balances and limits are the signer's business.
pub fn validate(req: &WithdrawalRequest, assets: &AssetRegistry) -> Result<ValidRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let user_ok = !req.user_id.is_empty()
        && req.user_id.len() <= 128
        && req.user_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if !user_ok {
        errors.push(field("user_id", "must be 1-128 characters of letters, digits, '-', '_', '.', ':' or '@'"));
    }
    let to = parse_destination(&req.to).map_err(|e| errors.push(field("to", e.to_string()))).ok();
    let asset = if !assets.has_chain(req.chain_id) {
        errors.push(field("chain_id", format!("chain {} is not served here", req.chain_id)));
        None
    } else {
        match assets.find(&req.asset, req.chain_id) {
            Some(a) => Some(a.clone()),
            None => {
                errors.push(field("asset", format!("asset {:?} is not served on chain {}", req.asset, req.chain_id)));
                None
            }
        }
    };
    let amount = asset
        .as_ref()
        .and_then(|a| Amount::parse_positive(&req.amount, a.decimals).map_err(|e| errors.push(field("amount", e.to_string()))).ok());
    match (to, asset, amount) {
        (Some(to), Some(asset), Some(amount)) if errors.is_empty() => Ok(ValidRequest { user_id: req.user_id.clone(), asset, to, amount }),
        _ => Err(errors),
    }
}

/// The identity of a request for idempotency: equal hashes mean the same withdrawal.
/// Computed over the normalised request, so `"0.50"` and `"0.5"` or a lowercase and a
/// checksummed address are the same request.
pub fn request_hash(v: &ValidRequest) -> String {
    let canonical = format!("v1\n{}\n{}\n{}\n{:#x}\n{}", v.user_id, v.asset.symbol, v.asset.chain_id, v.to, v.amount.base_units());
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// Most requests recorded in one transaction.
    pub max_batch: usize,
    /// Requests waiting for the writer before callers are told to back off.
    pub queue_capacity: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self { max_batch: 512, queue_capacity: 8192 }
    }
}

type Reply = oneshot::Sender<Result<SubmitOutcome, Arc<StageError>>>;

/// Handle to the intake writer; cheap to clone into every HTTP handler.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<(NewWithdrawal, Reply)>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

impl Intake {
    /// Starts the writer. It runs until every `Intake` handle is dropped and the requests
    /// already handed over are recorded, so a graceful shutdown loses none.
    pub fn spawn<T: PortTypes>(ports: Arc<Ports<T>>, cfg: IntakeConfig) -> (Intake, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let handle = tokio::spawn(writer(ports, rx, cfg.max_batch));
        (Intake { tx }, handle)
    }

    /// Records a validated request (or finds the earlier one with the same key).
    pub async fn submit(&self, client_id: &str, idempotency_key: &str, v: &ValidRequest) -> Result<SubmitOutcome, Arc<StageError>> {
        let w = NewWithdrawal {
            id: WithdrawalId::from_stored(uuid::Uuid::now_v7().to_string()),
            client_id: client_id.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            request_hash: request_hash(v),
            user_id: v.user_id.clone(),
            asset: v.asset.symbol.clone(),
            chain_id: v.asset.chain_id,
            to: v.to,
            amount: v.amount,
        };
        let (reply, rx) = oneshot::channel();
        // A full writer queue answers at once (503 with Retry-After upstream) instead of
        // holding the client's connection in an unbounded wait.
        self.tx.try_send((w, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                metrics::counter!("withdraw_intake_overloaded_total").increment(1);
                Arc::new(StageError::Overloaded("the intake writer's queue is full"))
            }
            mpsc::error::TrySendError::Closed(_) => Arc::new(StageError::Shutdown("intake writer stopped")),
        })?;
        rx.await.map_err(|_| Arc::new(StageError::Shutdown("intake writer stopped")))?
    }
}

async fn writer<T: PortTypes>(ports: Arc<Ports<T>>, mut rx: mpsc::Receiver<(NewWithdrawal, Reply)>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut sends = tokio::task::JoinSet::new();
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let (rows, replies): (Vec<_>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
        let started = std::time::Instant::now();
        let n = rows.len();
        let result = ports.store.submit(rows).await;
        metrics::histogram!("withdraw_intake_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("withdraw_intake_batch_size").record(n as f64);
        super::mark_processed("intake");
        match result {
            Ok(outcomes) => {
                let created: Vec<String> = outcomes
                    .iter()
                    .filter_map(|o| if let SubmitOutcome::Created { id } = o { Some(id.to_string()) } else { None })
                    .collect();
                // The record is committed: answer now. The enqueue is a hint that runs beside
                // the next batch's commit; if it is lost (crash, queue outage) the reconciler
                // re-enqueues RECEIVED withdrawals that sit too long.
                for (o, r) in outcomes.into_iter().zip(replies) {
                    let _ = r.send(Ok(o));
                }
                if !created.is_empty() {
                    let ports = ports.clone();
                    sends.spawn(async move {
                        if let Err(e) = ports.queue.send(QueueName::Requests, created).await {
                            tracing::warn!(error = %e, "request queue send failed after commit; reconciler will re-enqueue");
                        }
                    });
                }
                // Reap finished sends so the set stays small.
                while sends.try_join_next().is_some() {}
            }
            Err(e) => {
                tracing::error!(error = %e, requests = n, "recording withdrawal requests failed");
                let e = Arc::new(StageError::Store(e));
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }
    // Shutting down: let the last enqueues land rather than leave them to the reconciler.
    while sends.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AssetKind;

    fn registry() -> AssetRegistry {
        AssetRegistry::new(vec![
            Asset {
                symbol: "ETH".into(),
                chain_id: 31337,
                kind: AssetKind::Native,
                decimals: 18,
                max_amount: None,
                gas_limit: 21_000,
                approval_threshold: None,
            },
            Asset {
                symbol: "USDC".into(),
                chain_id: 31337,
                kind: AssetKind::Erc20 { contract: Address::repeat_byte(1) },
                decimals: 6,
                max_amount: None,
                gas_limit: 100_000,
                approval_threshold: None,
            },
        ])
    }

    fn req(user: &str, asset: &str, chain: u64, to: &str, amount: &str) -> WithdrawalRequest {
        WithdrawalRequest { user_id: user.into(), asset: asset.into(), chain_id: chain, to: to.into(), amount: amount.into() }
    }

    const TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    fn check(r: WithdrawalRequest, expect_fields: &[&str]) {
        let got = validate(&r, &registry());
        match got {
            Ok(_) => assert!(expect_fields.is_empty(), "{r:?} accepted, expected errors on {expect_fields:?}"),
            Err(errs) => {
                let fields: Vec<&str> = errs.iter().map(|e| e.field).collect();
                assert_eq!(fields, expect_fields, "{r:?}: {errs:?}");
            }
        }
    }

    #[test]
    fn validation_table() {
        check(req("u1", "ETH", 31337, TO, "0.25"), &[]);
        check(req("u1", "USDC", 31337, TO, "12.5"), &[]);
        check(req("u1", "USDC", 31337, TO, "12.1234567"), &["amount"]);
        check(req("u1", "ETH", 31337, TO, "0"), &["amount"]);
        check(req("u1", "ETH", 31337, TO, "-1"), &["amount"]);
        check(req("u1", "DOGE", 31337, TO, "1"), &["asset"]);
        check(req("u1", "ETH", 1, TO, "1"), &["chain_id"]);
        check(req("u1", "ETH", 31337, "0x70997970c51812dc3A010C7d01b50e0d17dc79C8", "1"), &["to"]);
        check(req("", "ETH", 31337, TO, "1"), &["user_id"]);
        check(req("u 1", "ETH", 31337, "nope", "x"), &["user_id", "to", "amount"]);
    }

    #[test]
    fn hash_is_over_the_normalised_request() {
        let reg = registry();
        let a = validate(&req("u1", "ETH", 31337, TO, "0.5"), &reg).unwrap();
        let b = validate(&req("u1", "ETH", 31337, &TO.to_lowercase(), "0.50"), &reg).unwrap();
        let c = validate(&req("u1", "ETH", 31337, TO, "0.51"), &reg).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
