//! The sender: broadcasts signed attempts and records SENT. Broadcasting the same bytes
//! twice is harmless (same hash, same nonce), so the sender is idempotent by nature; what it
//! must never do is sign anything, and it cannot: it has no keys.

use super::{Decision, PortTypes, Ports, StageError, apply, parse_deliveries};
use crate::domain::{Status, WithdrawalId};
use crate::machine::Event;
use crate::ports::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub batch: usize,
    pub visibility: Duration,
    /// How long one receive waits for a first message (SQS long polling: up to 20 s).
    pub wait: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self { batch: 256, visibility: Duration::from_secs(30), wait: Duration::from_secs(1) }
    }
}

pub struct Sender<T: PortTypes> {
    ports: Arc<Ports<T>>,
    cfg: SenderConfig,
    /// Withdrawals of chains with no usable endpoint: acked (so no delivery counts toward
    /// the dead-letter queue) and offered again by `run`.
    parked: std::sync::Mutex<Vec<String>>,
    /// When parked withdrawals were last offered again.
    last_recheck: std::sync::Mutex<tokio::time::Instant>,
}

/// How often parked withdrawals are offered again.
const PARK_RECHECK: Duration = Duration::from_secs(2);

impl<T: PortTypes> Sender<T> {
    pub fn new(ports: Arc<Ports<T>>, cfg: SenderConfig) -> Self {
        Self { ports, cfg, parked: std::sync::Mutex::new(Vec::new()), last_recheck: std::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    pub async fn run(&self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            if !self.ready().await {
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(Duration::from_millis(500)) => continue }
            }
            let got = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.ports.queue.receive(QueueName::Signed, self.cfg.batch, self.cfg.visibility, self.cfg.wait) => r,
            };
            let result = match got {
                Ok(d) if d.is_empty() => continue,
                Ok(d) => self.work(d).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(true) => backoff = Duration::from_millis(100),
                Ok(false) | Err(_) => {
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "sender batch failed; messages will be redelivered");
                    }
                    tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// The loop's step before a receive: offers parked broadcasts again when due; false
    /// while no chain can be read.
    pub async fn ready(&self) -> bool {
        let due = {
            let mut last = self.last_recheck.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= PARK_RECHECK;
            if due {
                *last = tokio::time::Instant::now();
            }
            due
        };
        if due {
            let parked = std::mem::take(&mut *self.parked.lock().unwrap_or_else(|p| p.into_inner()));
            if !parked.is_empty()
                && let Err(e) = self.ports.queue.send(QueueName::Signed, parked).await
            {
                // They stay SIGNED/SENT; the reconciler re-enqueues them.
                tracing::warn!(error = %e, "re-offering parked broadcasts failed");
            }
        }
        self.ports.chains.values().any(|c| c.available())
    }

    /// The loop's step after a receive: the batch, its messages kept hidden meanwhile.
    pub async fn work(&self, d: Vec<Delivery>) -> Result<bool, StageError> {
        let receipts = d.iter().map(|m| m.receipt.clone()).collect();
        super::with_heartbeat(&self.ports, QueueName::Signed, receipts, self.cfg.visibility, self.process(d)).await
    }

    /// Broadcasts one batch. Returns false when some broadcasts had an unknown outcome
    /// (left for redelivery), so the loop backs off instead of hammering a sick node.
    pub async fn process(&self, deliveries: Vec<Delivery>) -> Result<bool, StageError> {
        let started = std::time::Instant::now();
        let (items, mut ack) = parse_deliveries(deliveries);
        let loaded = self.ports.store.load(items.iter().map(|(id, _)| id.clone()).collect()).await?;
        let status: HashMap<&WithdrawalId, Status> = loaded.iter().map(|w| (&w.id, w.status)).collect();
        let mut receipts: HashMap<WithdrawalId, Vec<String>> = HashMap::new();
        for (id, r) in items {
            match status.get(&id) {
                Some(Status::Signed | Status::Sent | Status::SendFailed) => {
                    receipts.insert(id, r);
                }
                _ => ack.extend(r),
            }
        }
        let mut attempts = self.ports.store.latest_attempts(receipts.keys().cloned().collect()).await?;
        // A dead-lettered transfer waits for an operator; only its cancel is broadcast.
        attempts.retain(|a| {
            let keep = status.get(&a.withdrawal_id) != Some(&Status::SendFailed) || a.kind == AttemptKind::Cancel;
            if !keep {
                ack.extend(receipts.remove(&a.withdrawal_id).unwrap_or_default());
            }
            keep
        });
        // Nonce order per wallet: a node holds a later nonce until the earlier one arrives.
        attempts.sort_by_key(|a| (a.chain_id, a.wallet, a.nonce));
        let mut by_chain: HashMap<u64, Vec<Attempt>> = HashMap::new();
        for a in attempts {
            by_chain.entry(a.chain_id).or_default().push(a);
        }
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        let mut accepted = Vec::new();
        let mut all_known = true;
        for (chain_id, attempts) in by_chain {
            let chain = self.ports.chains.get(&chain_id).ok_or(StageError::UnknownChain(chain_id))?;
            if !chain.available() {
                tracing::warn!(chain_id, parked = attempts.len(), "no usable RPC endpoint; parking this chain's broadcasts");
                let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
                for a in &attempts {
                    ack.extend(receipts.remove(&a.withdrawal_id).unwrap_or_default());
                    parked.push(a.withdrawal_id.to_string());
                }
                continue;
            }
            let mut results = chain.send_raw(attempts.iter().map(|a| a.raw.clone()).collect()).await?;
            // "Nonce too low" is only good news if one of our own attempts took the nonce.
            let low: Vec<usize> = (0..attempts.len()).filter(|&i| results[i] == SendResult::NonceTooLow).collect();
            if !low.is_empty() {
                let ours = self.ours_mined(chain, low.iter().map(|&i| attempts[i].withdrawal_id.clone()).collect()).await?;
                for i in low {
                    if !ours.contains(&attempts[i].withdrawal_id) {
                        results[i] = SendResult::NonceTakenElsewhere;
                    }
                }
            }
            for (a, r) in attempts.iter().zip(results) {
                let id = &a.withdrawal_id;
                let st = status.get(id).copied();
                if r.is_sent() {
                    if matches!(r, SendResult::Accepted | SendResult::AlreadyKnown) {
                        accepted.push(a.tx_hash);
                    }
                    if st == Some(Status::Signed) {
                        sent.push(Decision { id: id.clone(), from: Status::Signed, event: Event::Broadcast, reason: None });
                    }
                    ack.extend(receipts.remove(id).unwrap_or_default());
                } else if r == SendResult::NonceTakenElsewhere {
                    // Never re-signed here (the sender has no keys, and a blind new nonce
                    // could pay twice): the signer's nonce check re-signs it once the
                    // foreign transaction is settled deep enough.
                    metrics::counter!("withdraw_nonce_conflicts_total", "chain_id" => chain_id.to_string()).increment(1);
                    tracing::error!(withdrawal.id = %id, nonce = a.nonce, wallet = %a.wallet, "nonce already used on chain by a transaction that is not ours; left to the nonce check");
                    ack.extend(receipts.remove(id).unwrap_or_default());
                } else if r == SendResult::ReplacementUnderpriced && a.kind == AttemptKind::Cancel {
                    // A cancel that cannot outbid the transfer this node holds (one signed at
                    // the market's fees because the transfer is at the fee cap): the node
                    // keeps one of our transactions for the nonce, and whichever is mined
                    // decides. Retrying the same bytes would get the same answer; the bumper
                    // re-sends the cancel when it can be priced higher.
                    tracing::info!(withdrawal.id = %id, nonce = a.nonce, "cancel refused as underpriced: the node holds the transfer at this nonce");
                    ack.extend(receipts.remove(id).unwrap_or_default());
                } else if r.is_retryable() || r == SendResult::ReplacementUnderpriced {
                    all_known = false;
                    tracing::warn!(withdrawal.id = %id, nonce = a.nonce, result = ?r, "broadcast not confirmed; will retry");
                } else if st == Some(Status::Signed) {
                    tracing::error!(withdrawal.id = %id, nonce = a.nonce, result = ?r, "broadcast refused; to the tx dead-letter queue");
                    failed.push(Decision {
                        id: id.clone(),
                        from: Status::Signed,
                        event: Event::SendFailed,
                        reason: Some(format!("node refused the transaction: {r:?}")),
                    });
                    ack.extend(receipts.remove(id).unwrap_or_default());
                } else {
                    // Re-broadcast of a SENT attempt (or a cancel) refused: the tracker's
                    // receipt check and the bumper decide.
                    tracing::warn!(withdrawal.id = %id, nonce = a.nonce, kind = a.kind.as_str(), result = ?r, "re-broadcast refused");
                    ack.extend(receipts.remove(id).unwrap_or_default());
                }
            }
        }
        let n_sent = sent.len();
        sent.extend(failed);
        // Status first: the tracker may see the receipt within milliseconds.
        apply(&self.ports, "sender", sent).await?;
        self.ports.store.mark_sent(accepted).await?;
        metrics::counter!("withdraw_sent_total").increment(n_sent as u64);
        self.ports.queue.ack(QueueName::Signed, ack).await?;
        metrics::histogram!("withdraw_stage_batch_seconds", "stage" => "sender").record(started.elapsed().as_secs_f64());
        super::mark_processed("sender");
        Ok(all_known)
    }

    /// Of these withdrawals, the ones with an attempt (any fee bump or cancel) mined.
    async fn ours_mined(&self, chain: &T::Chain, ids: Vec<WithdrawalId>) -> Result<std::collections::HashSet<WithdrawalId>, StageError> {
        let all = self.ports.store.attempts_of(ids).await?;
        let receipts = chain.receipts(all.iter().map(|a| a.tx_hash).collect()).await?;
        Ok(all.into_iter().zip(receipts).filter(|(_, r)| r.is_some()).map(|(a, _)| a.withdrawal_id).collect())
    }
}
