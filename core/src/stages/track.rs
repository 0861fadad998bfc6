//! The tracker: follows each chain block by block, records where our transactions were
//! mined, and finishes withdrawals once their block is final (the chain's `finality`: N
//! confirmations deep, or at or below its `finalized` block) and still canonical. Its reconciler re-enqueues work whose queue message was lost, looks up
//! receipts of transactions the block scan missed, and marks redriven (poison) messages.

use super::{Decision, PortTypes, Ports, StageError, apply};
use crate::domain::{AssetKind, AssetRegistry, Status, WithdrawalId};
use crate::machine::Event;
use crate::ports::*;
use alloy::primitives::{Address, B256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub poll: Duration,
    /// Blocks read per JSON-RPC batch.
    pub blocks_per_batch: u64,
    pub reconcile_every: Duration,
    /// Work untouched for this long is presumed to have lost its queue message.
    pub stale_after: Duration,
    /// How long the tracker lease lasts unrenewed.
    pub lease_ttl: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(200),
            blocks_per_batch: 100,
            reconcile_every: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(15),
        }
    }
}

pub struct Tracker<T: PortTypes> {
    ports: Arc<Ports<T>>,
    /// This process's name on the tracker lease.
    holder: String,
    /// When the lease was last renewed (a write), and whether it was held then.
    lease: std::sync::Mutex<(Option<tokio::time::Instant>, bool)>,
    /// What a payment of each asset must show in its receipt.
    assets: Arc<AssetRegistry>,
    cfg: TrackerConfig,
}

impl<T: PortTypes> Tracker<T> {
    pub fn new(ports: Arc<Ports<T>>, assets: Arc<AssetRegistry>, cfg: TrackerConfig) -> Self {
        for &chain_id in ports.chains.keys() {
            metrics::counter!("withdraw_token_transfer_unproven_total", "chain_id" => chain_id.to_string()).absolute(0);
        }
        metrics::gauge!("withdraw_tracker_lease_held").set(0.0);
        metrics::counter!("withdraw_tracker_lease_lost_total").absolute(0);
        let holder = format!("tracker-{}-{}", std::process::id(), uuid::Uuid::now_v7());
        Self { ports, assets, holder, lease: std::sync::Mutex::new((None, false)), cfg }
    }

    /// One tracker at a time (the Deployment, a `--once` CronJob, a rolling update's surge):
    /// whoever holds the lease follows the chains and reconciles; the others wait. Renewed
    /// at a third of its time to live, so a holder that dies is replaced within it.
    pub async fn hold_lease(&self) -> bool {
        let renew_every = self.cfg.lease_ttl / 3;
        let (last, held) = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if held && last.is_some_and(|t| t.elapsed() < renew_every) {
            return true;
        }
        let now_held = match self.ports.store.acquire_lease(TRACKER_LEASE, &self.holder, self.cfg.lease_ttl.as_millis() as i64).await {
            Ok(h) => h,
            Err(e) => {
                // Unknown: stop working until the store answers, as if lost.
                tracing::warn!(error = %e, "renewing the tracker lease failed");
                false
            }
        };
        if held && !now_held {
            metrics::counter!("withdraw_tracker_lease_lost_total").increment(1);
            tracing::error!(holder = %self.holder, "tracker lease lost: another tracker holds it, or the database did not answer; pausing this one");
        } else if !held && now_held {
            tracing::info!(holder = %self.holder, "tracker lease taken");
        }
        metrics::gauge!("withdraw_tracker_lease_held").set(if now_held { 1.0 } else { 0.0 });
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = (Some(tokio::time::Instant::now()), now_held);
        now_held
    }

    pub async fn run(&self, cancel: CancellationToken) {
        let mut last_reconcile = tokio::time::Instant::now();
        while !cancel.is_cancelled() {
            if !self.hold_lease().await {
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(self.cfg.lease_ttl / 3) => continue }
            }
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
        if !self.hold_lease().await {
            tracing::info!("another tracker holds the lease; this pass does nothing");
            return Ok(());
        }
        self.follow().await?;
        self.reconcile().await
    }

    /// Reads new blocks on every chain and finishes what is deep enough.
    /// One chain's failure (its nodes down, its finalized block unreadable) does not stop
    /// the others; the first error is returned after every chain had its turn.
    pub async fn follow(&self) -> Result<(), StageError> {
        let mut first_error = None;
        for (&chain_id, chain) in &self.ports.chains {
            if let Err(e) = self.follow_chain(chain_id, chain).await {
                tracing::warn!(chain_id, error = %e, "following this chain failed; the other chains go on");
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
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
                if !self.ports.store.set_cursor(chain_id, None, c).await? {
                    return Ok(());
                }
                c
            }
        };
        let wallets: HashSet<Address> = self.ports.store.wallets(chain_id).await?.into_iter().collect();
        let mut from = cursor + 1;
        while from <= head {
            // A long catch-up outlasts the lease: renew it between batches, stop if it is gone.
            if !self.hold_lease().await {
                return Ok(());
            }
            let to = (from + self.cfg.blocks_per_batch - 1).min(head);
            let blocks = chain.block_receipts(from, to).await?;
            let Some(last) = blocks.last().map(|b| b.number) else { break };
            let ours: Vec<&TxReceipt> = blocks.iter().flat_map(|b| &b.receipts).filter(|r| wallets.contains(&r.from)).collect();
            self.record(chain_id, &ours).await?;
            if !self.ports.store.set_cursor(chain_id, Some(from - 1), last).await? {
                // Moved under us: a rewind (reorg) or another tracker. Never write over it;
                // start again from the cursor next round.
                tracing::warn!(chain_id, expected = from - 1, "the chain cursor moved under this tracker; starting the round again");
                return Ok(());
            }
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
        if attempts.is_empty() {
            return Ok(());
        }
        let by_hash: HashMap<B256, &Attempt> = attempts.iter().map(|a| (a.tx_hash, a)).collect();
        let withdrawals = self.ports.store.load(attempts.iter().map(|a| a.withdrawal_id.clone()).collect()).await?;
        let by_id: HashMap<&WithdrawalId, &Withdrawal> = withdrawals.iter().map(|w| (&w.id, w)).collect();
        let inclusions: Vec<Inclusion> = receipts
            .iter()
            .filter_map(|r| {
                let a = by_hash.get(&r.tx_hash)?;
                let (success, failure) = match a.kind {
                    // A cancel moves nothing: its success is all there is to it.
                    AttemptKind::Cancel => (r.success, None),
                    AttemptKind::Transfer => self.payment_proof(by_id.get(&a.withdrawal_id)?, a, r)?,
                };
                Some(Inclusion {
                    withdrawal_id: a.withdrawal_id.clone(),
                    tx_hash: r.tx_hash,
                    block_number: r.block_number,
                    block_hash: r.block_hash,
                    success,
                    failure,
                })
            })
            .collect();
        if !inclusions.is_empty() {
            self.ports.store.record_inclusions(chain_id, inclusions).await?;
        }
        Ok(())
    }

    /// Whether a mined transfer paid the withdrawal (DESIGN §5, invariant 6): a native
    /// transfer by its successful receipt; a token transfer only by the contract's
    /// `Transfer(hot wallet, destination, amount)` log, for the exact amount. None when the
    /// asset is no longer configured: nothing can be proven either way, so nothing is
    /// recorded and it waits (SENT) for an operator rather than being settled blind.
    fn payment_proof(&self, w: &Withdrawal, a: &Attempt, r: &TxReceipt) -> Option<(bool, Option<String>)> {
        if !r.success {
            return Some((false, None));
        }
        let Some(asset) = self.assets.find(&w.asset, w.chain_id) else {
            tracing::error!(withdrawal.id = %w.id, asset = %w.asset, chain_id = w.chain_id, tx_hash = %r.tx_hash, "mined transfer of an asset no longer configured; cannot prove the payment");
            return None;
        };
        match asset.kind {
            AssetKind::Native => Some((true, None)),
            AssetKind::Erc20 { contract } => {
                let to_them: Vec<&TransferLog> =
                    r.transfers.iter().filter(|t| t.token == contract && t.from == a.wallet && t.to == w.to).collect();
                if to_them.iter().any(|t| t.amount == w.amount.0) {
                    Some((true, None))
                } else if !to_them.is_empty() {
                    // Something was paid, not the amount asked (a fee-on-transfer token): not
                    // proven, and not nothing either. Releasing the funds could pay twice;
                    // completing would misstate it. Left SENT for an operator, loudly.
                    metrics::counter!("withdraw_token_transfer_unproven_total", "chain_id" => w.chain_id.to_string()).increment(1);
                    tracing::error!(withdrawal.id = %w.id, tx_hash = %r.tx_hash, token = %contract, asked = %w.amount.base_units(), paid = ?to_them.iter().map(|t| t.amount.to_string()).collect::<Vec<_>>(), "token paid another amount than asked; left SENT for an operator");
                    None
                } else {
                    Some((
                        false,
                        Some(format!(
                            "token transfer not proven: transaction {:#x} succeeded but the token {contract} logged no Transfer of {} base units from {} to {}",
                            r.tx_hash,
                            w.amount.base_units(),
                            a.wallet,
                            w.to
                        )),
                    ))
                }
            }
        }
    }

    /// Finishes withdrawals mined in a final block (see [`super::final_block`]), after
    /// checking that their block is still the canonical one at that height.
    async fn finish(&self, chain_id: u64, chain: &T::Chain, head: u64) -> Result<(), StageError> {
        let Some(max_block) = super::final_block(chain, head).await? else { return Ok(()) };
        let included = self.ports.store.included_up_to(chain_id, max_block).await?;
        if included.is_empty() {
            return Ok(());
        }
        let mut numbers: Vec<u64> = included.iter().map(|i| i.inclusion.block_number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        // With finality "finalized", the node that vouches for the hashes also says how far
        // it has finalized; what it has not finalized waits, whatever another node said.
        let (hashes, finalized_here) = match chain.finality() {
            Finality::Finalized => {
                let (h, f) = chain.block_hashes_and_finalized(numbers.clone()).await?;
                (h, Some(f))
            }
            Finality::Confirmations(_) => (chain.block_hashes(numbers.clone()).await?, None),
        };
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
            if finalized_here.is_some_and(|f| inc.block_number > f) {
                continue;
            }
            let event = match (i.kind, inc.success) {
                (AttemptKind::Transfer, true) => Event::Confirmed,
                (AttemptKind::Transfer, false) => Event::Reverted,
                (AttemptKind::Cancel, _) => Event::CancelConfirmed,
            };
            let reason = (event == Event::Reverted)
                .then(|| inc.failure.clone().unwrap_or_else(|| format!("transaction {:#x} reverted", inc.tx_hash)));
            decisions.push(Decision { id: inc.withdrawal_id.clone(), from: i.withdrawal.status, event, reason });
        }
        if !reorged.is_empty() {
            self.ports.store.forget_inclusions(reorged).await?;
            if let Some(b) = rewind_to {
                let to = b.saturating_sub(1);
                let cur = self.ports.store.cursor(chain_id).await?;
                if cur.is_some_and(|c| c > to) && !self.ports.store.set_cursor(chain_id, cur, to).await? {
                    tracing::warn!(
                        chain_id,
                        to,
                        "the chain cursor moved while rewinding after a reorg; the reconciler's receipt checks cover the gap"
                    );
                }
            }
        }
        // A block can finish thousands of withdrawals; short transactions let the intake's
        // commits interleave instead of waiting behind one huge one.
        let mut decisions = decisions.into_iter().peekable();
        while decisions.peek().is_some() {
            let chunk: Vec<Decision> = decisions.by_ref().take(256).collect();
            let unproven: HashSet<WithdrawalId> = chunk
                .iter()
                .filter(|d| d.reason.as_deref().is_some_and(|r| r.starts_with("token transfer not proven")))
                .map(|d| d.id.clone())
                .collect();
            let done = apply(&self.ports, "tracker", chunk).await?;
            let completed = done.iter().filter(|(_, s)| *s == Status::Completed).count();
            metrics::counter!("withdraw_completed_total").increment(completed as u64);
            for (id, _) in done.iter().filter(|(id, s)| *s == Status::Failed && unproven.contains(id)) {
                metrics::counter!("withdraw_token_transfer_unproven_total", "chain_id" => chain_id.to_string()).increment(1);
                tracing::error!(withdrawal.id = %id, chain_id, "token transfer mined but not proven by a Transfer log; FAILED and its funds released");
            }
        }
        Ok(())
    }

    /// Recovers lost work. Everything here is safe to repeat: consumers skip withdrawals
    /// that have moved on, and re-broadcasting a signed transaction cannot pay twice.
    pub async fn reconcile(&self) -> Result<(), StageError> {
        // Balance changes a status change still owes (the process died, or the balance
        // store failed, right after the status write): carried out here, idempotently.
        let owed = self.ports.store.pending_settlements(self.ports.clock.now_ms() - SETTLE_GRACE_MS, None, 1000).await?;
        if !owed.is_empty() {
            let n = super::settle(&self.ports, owed).await?;
            tracing::warn!(count = n, "settled balance changes left owed after their status change");
        }
        // Credits journaled but not yet in the balance store (crash, store outage); racing
        // the call applying one right now is harmless: the store applies a credit id once.
        let credits = super::apply_credits(&self.ports).await?;
        if credits > 0 {
            tracing::warn!(count = credits, "applied credits left journaled");
        }
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
            // Every attempt, not only the newest: an older (pre-bump) one may be the one
            // mined, in a block the scan never read (before its first cursor, or skipped).
            let attempts = self.ports.store.attempts_of(stale_sent.iter().map(|w| w.id.clone()).collect()).await?;
            let mut by_chain: HashMap<u64, Vec<Attempt>> = HashMap::new();
            for a in attempts {
                by_chain.entry(a.chain_id).or_default().push(a);
            }
            for (chain_id, attempts) in by_chain {
                let Some(chain) = self.ports.chains.get(&chain_id) else { continue };
                let receipts = chain.receipts(attempts.iter().map(|a| a.tx_hash).collect()).await?;
                let found: Vec<&TxReceipt> = receipts.iter().flatten().collect();
                self.record(chain_id, &found).await?;
                let mined: HashSet<&WithdrawalId> =
                    attempts.iter().zip(&receipts).filter(|(_, r)| r.is_some()).map(|(a, _)| &a.withdrawal_id).collect();
                let mut missing: Vec<String> =
                    attempts.iter().filter(|a| !mined.contains(&a.withdrawal_id)).map(|a| a.withdrawal_id.to_string()).collect();
                missing.sort_unstable();
                missing.dedup();
                if !missing.is_empty() {
                    tracing::warn!(chain_id, count = missing.len(), "sent transactions not mined yet; re-broadcasting");
                    self.ports.queue.send(QueueName::Signed, missing).await?;
                }
            }
        }
        self.sweep_dead_letters().await
    }

    /// Gives redriven (poison) messages their dead-letter status, and drains the
    /// dead-letter queues: the database's status is the operators' work list (the console
    /// and the alerts read it), so every message is deleted once looked at.
    ///
    /// A message acts only if its withdrawal is still in the status it was redriven from
    /// (RECEIVED, SIGNED) *and has not changed since the message was first sent*. An older
    /// message is history: the withdrawal was reprocessed by an operator (or moved on) after
    /// it, and acting on it would undo that decision (DESIGN §5, invariant 7).
    async fn sweep_dead_letters(&self) -> Result<(), StageError> {
        for (queue, stuck, event) in
            [(QueueName::InvalidDlq, Status::Received, Event::ValidationFailed), (QueueName::TxDlq, Status::Signed, Event::SendFailed)]
        {
            // Bounded: a backlog of any size drains at DLQ_BATCH × DLQ_ROUNDS per pass.
            for _ in 0..DLQ_ROUNDS {
                let deliveries = self.ports.queue.receive(queue, DLQ_BATCH, Duration::from_secs(60), Duration::ZERO).await?;
                if deliveries.is_empty() {
                    break;
                }
                // The pipeline's own notices: the status is already written; nothing to do.
                let (notices, deliveries): (Vec<Delivery>, Vec<Delivery>) =
                    deliveries.into_iter().partition(|d| d.body.starts_with(super::DLQ_NOTICE));
                let mut ack: Vec<String> = notices.into_iter().map(|d| d.receipt).collect();
                let sent_at: HashMap<String, i64> = deliveries.iter().map(|d| (d.receipt.clone(), d.sent_at_ms)).collect();
                let (items, junk) = super::parse_deliveries(deliveries);
                ack.extend(junk);
                let loaded = self.ports.store.load(items.iter().map(|(id, _)| id.clone()).collect()).await?;
                let current: HashMap<&WithdrawalId, (Status, i64)> = loaded.iter().map(|w| (&w.id, (w.status, w.updated_at_ms))).collect();
                let mut decisions = Vec::new();
                let mut stale = 0u64;
                for (id, receipts) in &items {
                    let newest = receipts.iter().filter_map(|r| sent_at.get(r)).copied().max().unwrap_or(0);
                    match current.get(id) {
                        Some(&(s, updated_at)) if s == stuck && updated_at <= newest => decisions.push(Decision {
                            id: id.clone(),
                            from: s,
                            event,
                            reason: Some("redriven to the dead-letter queue after repeated failed deliveries".into()),
                        }),
                        Some(&(s, _)) if s == stuck => stale += 1,
                        _ => {}
                    }
                    ack.extend(receipts.iter().cloned());
                }
                if stale > 0 {
                    tracing::info!(
                        queue = queue.as_str(),
                        count = stale,
                        "dead-letter messages older than their withdrawal's last change dropped"
                    );
                    metrics::counter!("withdraw_dlq_stale_messages_total", "queue" => queue.as_str()).increment(stale);
                }
                let won = apply(&self.ports, "reconciler", decisions).await?;
                // Into the invalid DLQ: an earlier approval no longer holds.
                let invalid: Vec<WithdrawalId> = won.into_iter().filter(|(_, s)| *s == Status::Invalid).map(|(id, _)| id).collect();
                self.ports.store.revoke_approvals(invalid).await?;
                self.ports.queue.ack(queue, ack).await?;
            }
        }
        Ok(())
    }
}

/// The lease only one tracker holds at a time.
const TRACKER_LEASE: &str = "tracker";

/// How old an owed balance change must be before the settler takes it (the stage that
/// wrote it normally settles it within milliseconds).
const SETTLE_GRACE_MS: i64 = 2_000;

/// Dead-letter messages read per receive, and receives per reconcile pass.
const DLQ_BATCH: usize = 500;
const DLQ_ROUNDS: usize = 20;
