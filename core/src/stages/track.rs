//! The tracker: follows each chain block by block, records where our transactions were
//! mined, and finishes withdrawals once their block is `confirmations` deep and still
//! canonical. Its reconciler re-enqueues work whose queue message was lost, looks up
//! receipts of transactions the block scan missed, and marks redriven (poison) messages.

use super::{Decision, PortTypes, Ports, StageError, apply};
use crate::domain::{Status, WithdrawalId};
use crate::machine::Event;
use crate::ports::*;
use alloy::primitives::{Address, B256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub confirmations: u64,
    pub poll: Duration,
    /// Blocks read per JSON-RPC batch.
    pub blocks_per_batch: u64,
    pub reconcile_every: Duration,
    /// Work untouched for this long is presumed to have lost its queue message.
    pub stale_after: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            confirmations: 1,
            poll: Duration::from_millis(200),
            blocks_per_batch: 100,
            reconcile_every: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
        }
    }
}

pub struct Tracker<T: PortTypes> {
    ports: Arc<Ports<T>>,
    cfg: TrackerConfig,
}

impl<T: PortTypes> Tracker<T> {
    pub fn new(ports: Arc<Ports<T>>, cfg: TrackerConfig) -> Self {
        Self { ports, cfg: TrackerConfig { confirmations: cfg.confirmations.max(1), ..cfg } }
    }

    pub async fn run(&self, cancel: CancellationToken) {
        let mut last_reconcile = tokio::time::Instant::now();
        while !cancel.is_cancelled() {
            if let Err(e) = self.follow().await {
                tracing::warn!(error = %e, "tracker round failed");
            }
            if last_reconcile.elapsed() >= self.cfg.reconcile_every {
                last_reconcile = tokio::time::Instant::now();
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(error = %e, "reconcile round failed");
                }
            }
            tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(self.cfg.poll) => {} }
        }
    }

    /// One pass: follow the chains, then reconcile (what `tracker --once` runs).
    pub async fn once(&self) -> Result<(), StageError> {
        self.follow().await?;
        self.reconcile().await
    }

    /// Reads new blocks on every chain and finishes what is deep enough.
    pub async fn follow(&self) -> Result<(), StageError> {
        for (&chain_id, chain) in &self.ports.chains {
            self.follow_chain(chain_id, chain).await?;
        }
        super::mark_processed("tracker");
        Ok(())
    }

    async fn follow_chain(&self, chain_id: u64, chain: &T::Chain) -> Result<(), StageError> {
        let head = chain.head().await?;
        metrics::gauge!("withdraw_chain_head_block", "chain_id" => chain_id.to_string()).set(head as f64);
        let cursor = match self.ports.store.cursor(chain_id).await? {
            Some(c) => c,
            None => {
                // First start: look back a little; older inclusions are found by receipt.
                let c = head.saturating_sub(64);
                self.ports.store.set_cursor(chain_id, c).await?;
                c
            }
        };
        let wallets: HashSet<Address> = self.ports.store.wallets(chain_id).await?.into_iter().collect();
        let mut from = cursor + 1;
        while from <= head {
            let to = (from + self.cfg.blocks_per_batch - 1).min(head);
            let blocks = chain.block_receipts(from, to).await?;
            let Some(last) = blocks.last().map(|b| b.number) else { break };
            let ours: Vec<&TxReceipt> = blocks.iter().flat_map(|b| &b.receipts).filter(|r| wallets.contains(&r.from)).collect();
            self.record(chain_id, &ours).await?;
            self.ports.store.set_cursor(chain_id, last).await?;
            from = last + 1;
        }
        self.finish(chain_id, chain, head).await
    }

    /// Records inclusions of receipts that belong to our attempts.
    async fn record(&self, chain_id: u64, receipts: &[&TxReceipt]) -> Result<(), StageError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let attempts = self.ports.store.find_attempts(receipts.iter().map(|r| r.tx_hash).collect()).await?;
        let by_hash: HashMap<B256, &Attempt> = attempts.iter().map(|a| (a.tx_hash, a)).collect();
        let inclusions: Vec<Inclusion> = receipts
            .iter()
            .filter_map(|r| {
                by_hash.get(&r.tx_hash).map(|a| Inclusion {
                    withdrawal_id: a.withdrawal_id.clone(),
                    tx_hash: r.tx_hash,
                    block_number: r.block_number,
                    block_hash: r.block_hash,
                    success: r.success,
                })
            })
            .collect();
        if !inclusions.is_empty() {
            self.ports.store.record_inclusions(chain_id, inclusions).await?;
        }
        Ok(())
    }

    /// Finishes withdrawals mined at least `confirmations` deep, after checking that their
    /// block is still the canonical one at that height.
    async fn finish(&self, chain_id: u64, chain: &T::Chain, head: u64) -> Result<(), StageError> {
        let Some(max_block) = (head + 1).checked_sub(self.cfg.confirmations) else { return Ok(()) };
        let included = self.ports.store.included_up_to(chain_id, max_block).await?;
        if included.is_empty() {
            return Ok(());
        }
        let mut numbers: Vec<u64> = included.iter().map(|i| i.inclusion.block_number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let hashes = chain.block_hashes(numbers.clone()).await?;
        let canonical: HashMap<u64, Option<B256>> = numbers.into_iter().zip(hashes).collect();
        let mut decisions = Vec::new();
        let mut reorged: Vec<WithdrawalId> = Vec::new();
        let mut rewind_to: Option<u64> = None;
        for i in &included {
            let inc = &i.inclusion;
            if canonical.get(&inc.block_number).copied().flatten() != Some(inc.block_hash) {
                tracing::warn!(withdrawal.id = %inc.withdrawal_id, block = inc.block_number, "block of a mined withdrawal was reorged away");
                reorged.push(inc.withdrawal_id.clone());
                rewind_to = Some(rewind_to.map_or(inc.block_number, |r| r.min(inc.block_number)));
                continue;
            }
            let event = match (i.kind, inc.success) {
                (AttemptKind::Transfer, true) => Event::Confirmed,
                (AttemptKind::Transfer, false) => Event::Reverted,
                (AttemptKind::Cancel, _) => Event::CancelConfirmed,
            };
            let reason = (event == Event::Reverted).then(|| format!("transaction {:#x} reverted", inc.tx_hash));
            decisions.push(Decision { id: inc.withdrawal_id.clone(), from: i.withdrawal.status, event, reason });
        }
        if !reorged.is_empty() {
            self.ports.store.forget_inclusions(reorged).await?;
            if let Some(b) = rewind_to {
                self.ports.store.set_cursor(chain_id, b.saturating_sub(1)).await?;
            }
        }
        // A block can finish thousands of withdrawals; short transactions let the intake's
        // commits interleave instead of waiting behind one huge one.
        let mut decisions = decisions.into_iter().peekable();
        while decisions.peek().is_some() {
            let chunk: Vec<Decision> = decisions.by_ref().take(256).collect();
            let done = apply(&self.ports, "tracker", chunk).await?;
            let completed = done.iter().filter(|(_, s)| *s == Status::Completed).count();
            metrics::counter!("withdraw_completed_total").increment(completed as u64);
        }
        Ok(())
    }

    /// Recovers lost work. Everything here is safe to repeat: consumers skip withdrawals
    /// that have moved on, and re-broadcasting a signed transaction cannot pay twice.
    pub async fn reconcile(&self) -> Result<(), StageError> {
        let stale_before = self.ports.clock.now_ms() - self.cfg.stale_after.as_millis() as i64;
        for (status, queue) in [(Status::Received, QueueName::Requests), (Status::Signed, QueueName::Signed)] {
            let stale = self.ports.store.take_stale(status, stale_before, 1000).await?;
            if !stale.is_empty() {
                tracing::warn!(status = %status, count = stale.len(), "re-enqueueing work that sat too long");
                self.ports.queue.send(queue, stale.iter().map(|w| w.id.to_string()).collect()).await?;
            }
        }
        let stale_sent = self.ports.store.take_stale(Status::Sent, stale_before, 1000).await?;
        if !stale_sent.is_empty() {
            let attempts = self.ports.store.latest_attempts(stale_sent.iter().map(|w| w.id.clone()).collect()).await?;
            let mut by_chain: HashMap<u64, Vec<Attempt>> = HashMap::new();
            for a in attempts {
                by_chain.entry(a.chain_id).or_default().push(a);
            }
            for (chain_id, attempts) in by_chain {
                let Some(chain) = self.ports.chains.get(&chain_id) else { continue };
                let receipts = chain.receipts(attempts.iter().map(|a| a.tx_hash).collect()).await?;
                let found: Vec<&TxReceipt> = receipts.iter().flatten().collect();
                self.record(chain_id, &found).await?;
                let missing: Vec<String> =
                    attempts.iter().zip(&receipts).filter(|(_, r)| r.is_none()).map(|(a, _)| a.withdrawal_id.to_string()).collect();
                if !missing.is_empty() {
                    tracing::warn!(chain_id, count = missing.len(), "sent transactions not mined yet; re-broadcasting");
                    self.ports.queue.send(QueueName::Signed, missing).await?;
                }
            }
        }
        self.sweep_dead_letters().await
    }

    /// Dead-letter messages are the operators' work list. A message redriven there because
    /// it failed too often still has its withdrawal in RECEIVED or SIGNED: give it the
    /// dead-letter status so it shows in the console. Messages whose withdrawal has left the
    /// dead-letter status (reprocessed or discarded) are deleted.
    async fn sweep_dead_letters(&self) -> Result<(), StageError> {
        for (queue, stuck, event) in
            [(QueueName::InvalidDlq, Status::Received, Event::ValidationFailed), (QueueName::TxDlq, Status::Signed, Event::SendFailed)]
        {
            let deliveries = self.ports.queue.receive(queue, 500, Duration::from_secs(60), Duration::ZERO).await?;
            if deliveries.is_empty() {
                continue;
            }
            let (items, mut ack) = super::parse_deliveries(deliveries);
            let loaded = self.ports.store.load(items.iter().map(|(id, _)| id.clone()).collect()).await?;
            let status: HashMap<&WithdrawalId, Status> = loaded.iter().map(|w| (&w.id, w.status)).collect();
            let mut decisions = Vec::new();
            for (id, receipts) in &items {
                match status.get(id) {
                    Some(s) if *s == stuck => decisions.push(Decision {
                        id: id.clone(),
                        from: *s,
                        event,
                        reason: Some("redriven to the dead-letter queue after repeated failed deliveries".into()),
                    }),
                    Some(s) if s.is_dead_letter() => {}
                    _ => ack.extend(receipts.iter().cloned()),
                }
            }
            let won = apply(&self.ports, "reconciler", decisions).await?;
            // Into the invalid DLQ: an earlier approval no longer holds.
            let invalid: Vec<WithdrawalId> = won.into_iter().filter(|(_, s)| *s == Status::Invalid).map(|(id, _)| id).collect();
            self.ports.store.revoke_approvals(invalid).await?;
            self.ports.queue.ack(queue, ack).await?;
        }
        Ok(())
    }
}
