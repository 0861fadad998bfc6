//! The nonce check: keeps each hot wallet's nonce lane whole (docs/design.md §5, invariant 4).
//! At start and periodically it compares the store's next nonce with the chain's latest
//! (mined) and pending counts and repairs what it finds:
//!
//! - **Nonces used behind our back** (the key used elsewhere, a restored database): the
//!   store's next nonce is raised past them, and a transfer whose nonce was taken by a
//!   transaction that is not one of its attempts is re-signed at a new nonce. That is safe
//!   only once the foreign transaction is final (the chain's finality, as the tracker uses it) and none of the
//!   withdrawal's own attempts has a receipt: a nonce mined once cannot be mined again, so
//!   the old attempts can never pay.
//! - **Gaps**: a nonce below the next one that the node does not hold and no open
//!   withdrawal owns (e.g. the chain's count was moved back) is filled with a 0-value
//!   self-transfer, so every later nonce can be mined. Fills are recorded and re-broadcast
//!   (with higher fees when stuck) until mined.
//! - **Blocked**: a nonce held by a withdrawal in the tx dead-letter queue stops every later
//!   one; only an operator may decide (reprocess or discard), so it is reported, not fixed.
//!
//! Runs in the signer role: re-signing and filling need the keys.

use super::sign::transfer_signer;
use super::{Decision, PortTypes, Ports, StageError, apply};
use crate::decide::{self, Holder, Lane, Recorded, Repairs};
use crate::domain::{AssetRegistry, Status};
use crate::machine::Event;
use crate::ports::*;
use alloy::primitives::{Address, B256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct NonceKeeperConfig {
    pub every: Duration,
    /// A fill not mined after this long is re-signed with higher fees.
    pub stuck_after: Duration,
    /// How old a transfer's newest attempt must be before a nonce passed by the chain
    /// without our receipt counts as taken by someone else. The tracker records our own
    /// inclusions within a few blocks; this keeps the receipt check to the real suspects
    /// instead of every transfer mined since the tracker's last pass.
    pub displaced_after: Duration,
}

impl Default for NonceKeeperConfig {
    fn default() -> Self {
        Self { every: Duration::from_secs(15), stuck_after: Duration::from_secs(60), displaced_after: Duration::from_secs(30) }
    }
}

/// Transfers whose receipts one check looks up at most.
const MAX_SUSPECTS: usize = 500;
/// Suspects one check looks for positive evidence on (a bisection of the chain each).
const MAX_PROOFS: usize = 16;

/// What the chain shows about who took a nonce.
#[derive(Debug, PartialEq, Eq)]
enum Proof {
    /// The block where the wallet's count passed the nonce holds the wallet's transactions,
    /// as many as the count moved there, and none of them is ours.
    Foreign { block: u64 },
    /// Not shown (and why): the answer was null, empty, inconsistent, or ours is there.
    None(&'static str),
}

/// Looks for positive evidence that nonce `n` of `wallet` was taken by a transaction that is
/// not in `ours`: finds the first block at or below `settled_block` whose transaction count
/// passes `n` (bisecting `eth_getTransactionCount` by block), reads that block's receipts,
/// and checks that the wallet's transactions there are as many as the count moved and that
/// none is ours. Anything short of that is no evidence (DESIGN §5, invariant 6).
async fn nonce_taken_by_another<C: Chain>(
    chain: &C,
    wallet: Address,
    n: u64,
    settled_block: u64,
    ours: &HashSet<B256>,
) -> Result<Proof, ChainError> {
    if chain.nonce_at(wallet, settled_block).await? <= n {
        return Ok(Proof::None("not taken deep enough"));
    }
    let (mut lo, mut hi) = (0u64, settled_block);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if chain.nonce_at(wallet, mid).await? > n {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let block = lo;
    let before = if block == 0 { 0 } else { chain.nonce_at(wallet, block - 1).await? };
    let after = chain.nonce_at(wallet, block).await?;
    if !(before <= n && n < after) {
        return Ok(Proof::None("transaction counts disagree between reads"));
    }
    let blocks = chain.block_receipts(block, block).await?;
    let Some(found) = blocks.into_iter().find(|b| b.number == block) else {
        return Ok(Proof::None("the block's receipts were not served"));
    };
    let from_wallet: Vec<&TxReceipt> = found.receipts.iter().filter(|r| r.from == wallet).collect();
    if from_wallet.len() as u64 != after - before {
        return Ok(Proof::None("the block's receipts do not match the transaction count"));
    }
    if from_wallet.iter().any(|r| ours.contains(&r.tx_hash)) {
        return Ok(Proof::None("one of ours is in the block"));
    }
    Ok(Proof::Foreign { block })
}

pub struct NonceKeeper<T: PortTypes, K: Keys> {
    ports: Arc<Ports<T>>,
    keys: Arc<K>,
    assets: Arc<AssetRegistry>,
    cfg: NonceKeeperConfig,
    /// The last (gaps, blocked) seen per wallet, to log changes only.
    last: Mutex<HashMap<(u64, Address), LaneFindings>>,
}

/// A lane's gaps and blocked nonces.
type LaneFindings = (Vec<u64>, Vec<u64>);

impl<T: PortTypes, K: Keys> NonceKeeper<T, K> {
    pub fn new(ports: Arc<Ports<T>>, keys: Arc<K>, assets: Arc<AssetRegistry>, cfg: NonceKeeperConfig) -> Self {
        // Series exist from the start: "no repair so far" is a 0, not a missing series.
        for &chain_id in ports.chains.keys() {
            for c in [
                "withdraw_nonce_resigned_total",
                "withdraw_nonce_fills_total",
                "withdraw_nonce_conflicts_total",
                "withdraw_nonce_restored_total",
            ] {
                metrics::counter!(c, "chain_id" => chain_id.to_string()).absolute(0);
            }
            for w in keys.wallets() {
                metrics::counter!("withdraw_nonce_foreign_total", "chain_id" => chain_id.to_string(), "wallet" => w.to_checksum(None))
                    .absolute(0);
            }
        }
        Self { ports, keys, assets, cfg, last: Mutex::new(HashMap::new()) }
    }

    pub async fn run(&self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(self.cfg.every) => {} }
            if let Err(e) = self.check_all().await {
                tracing::warn!(error = %e, "nonce check failed");
            }
        }
    }

    /// Checks (and repairs) every wallet this process holds a key for, on every chain.
    pub async fn check_all(&self) -> Result<Vec<NonceCheck>, StageError> {
        let ours: HashSet<Address> = self.keys.wallets().into_iter().collect();
        let mut out = Vec::new();
        for (&chain_id, chain) in &self.ports.chains {
            for wallet in self.ports.store.wallets(chain_id).await? {
                if ours.contains(&wallet) {
                    out.push(self.check_wallet(chain_id, chain, wallet).await?);
                }
            }
        }
        Ok(out)
    }

    pub async fn check_wallet(&self, chain_id: u64, chain: &T::Chain, wallet: Address) -> Result<NonceCheck, StageError> {
        // Order matters. The store's next nonce first, then the owners: every nonce below
        // it was committed with its attempt, so the owners' read sees it. The chain last: an
        // owner that finished meanwhile was mined, so its nonce is below the chain's count.
        // Nothing read later may replace `next` (a newer one would cover nonces signed after
        // the owners' read, which would look like gaps): after any repair the whole
        // sequence is read again.
        let started = std::time::Instant::now();
        let labels = [("chain_id", chain_id.to_string()), ("wallet", wallet.to_checksum(None))];
        let mut round = 0;
        let (next, owners, head, latest, pending) = loop {
            round += 1;
            let next = self.ports.store.next_nonce(wallet, chain_id).await?.ok_or(StageError::Setup("wallet has no nonce lane"))?;
            let owners = self.ports.store.nonce_owners(chain_id, wallet).await?;
            metrics::histogram!("withdraw_nonce_owners_seconds").record(started.elapsed().as_secs_f64());
            let head = chain.head().await?;
            let latest = chain.nonce(wallet, false).await?;
            let pending = chain.nonce(wallet, true).await?;

            // Our own transactions never reach the store's next nonce: anything at or past
            // it on chain was signed by someone else with our key.
            let seen = latest.max(pending);
            if seen > next && round == 1 {
                let (before, after) = self.ports.store.advance_nonce(wallet, chain_id, seen).await?;
                if after > before {
                    metrics::counter!("withdraw_nonce_foreign_total", &labels).increment(after - before);
                    tracing::error!(chain_id, %wallet, store_next = before, chain_latest = latest, chain_pending = pending, "nonces of this hot wallet were used outside withdrawd; skipping past them");
                }
                continue;
            }
            break (next, owners, head, latest, pending);
        };

        // A foreign use of our nonce counts (and displaced transfers are re-signed) only once
        // it is final by the chain's finality, the tracker's notion of settled.
        // A node that cannot answer for the final block (the finalized block of a rollup
        // is often past what a pruned node keeps) gives no evidence: nothing is re-signed
        // this round, and the gap search below still runs.
        let (settled, settled_block) = if matches!(chain.finality(), Finality::Confirmations(n) if n <= 1) {
            (latest, head)
        } else {
            let read = async {
                let block = super::final_block(chain, head).await?.unwrap_or(0);
                Ok::<_, ChainError>((chain.nonce_at(wallet, block).await?, block))
            };
            match read.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(chain_id, %wallet, error = %e, "cannot read the wallet's nonce at the final block; no displaced transfer is re-signed this round");
                    (0, 0)
                }
            }
        };
        // After a re-sign the lane changed under this read: gaps are looked for on the next
        // check, from a fresh read, never from owners that no longer hold.
        let resigned = self.resign_displaced(chain_id, chain, wallet, &owners, settled, settled_block).await? > 0;
        let (mut gaps, mut blocked) = (Vec::new(), Vec::new());
        if !resigned {
            let holders: Vec<Holder> = owners.iter().map(|o| Holder { nonce: o.nonce, status: o.status, kind: o.kind }).collect();
            Lane { gaps, blocked } = decide::classify_lane(latest, pending, next, &holders);
            let fills = self.ports.store.fills(chain_id, wallet, latest).await?;
            let new_gaps = decide::unfilled(&gaps, &fills);
            let new_gaps = self.restore_reorged(chain_id, chain, wallet, new_gaps).await?;
            self.fill(chain_id, chain, wallet, &new_gaps, fills).await?;
        }

        let check = NonceCheck {
            chain_id,
            wallet,
            next_nonce: next,
            chain_latest: latest,
            chain_pending: pending,
            gaps,
            blocked,
            checked_at_ms: self.ports.clock.now_ms(),
        };
        self.ports.store.record_nonce_check(check.clone()).await?;
        metrics::histogram!("withdraw_nonce_check_seconds").record(started.elapsed().as_secs_f64());
        metrics::gauge!("withdraw_nonce_gaps", &labels).set(check.gaps.len() as f64);
        metrics::gauge!("withdraw_nonce_blocked", &labels).set(check.blocked.len() as f64);
        metrics::gauge!("withdraw_nonce_lag", &labels).set(next.saturating_sub(latest) as f64);
        let changed = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let now = (check.gaps.clone(), check.blocked.clone());
            last.insert((chain_id, wallet), now.clone()).is_none_or(|prev| prev != now)
        };
        if changed && !(check.gaps.is_empty() && check.blocked.is_empty()) {
            tracing::error!(chain_id, %wallet, gaps = ?check.gaps, blocked_by_dead_letters = ?check.blocked, chain_latest = latest, next_nonce = next, "hot wallet nonce lane is not whole");
        } else if changed {
            tracing::info!(chain_id, %wallet, chain_latest = latest, next_nonce = next, "hot wallet nonce lane is whole");
        }
        Ok(check)
    }

    /// Re-signs open transfers whose nonce the chain used (up to `settled`) for a
    /// transaction that is not one of theirs. Returns how many were re-signed.
    async fn resign_displaced(
        &self,
        chain_id: u64,
        chain: &T::Chain,
        wallet: Address,
        owners: &[NonceOwner],
        settled: u64,
        settled_block: u64,
    ) -> Result<usize, StageError> {
        // Recorded as mined by the tracker: its own attempt took the nonce (a reorg removes
        // the record first). The rest below `settled` need a receipt check.
        let before = self.ports.clock.now_ms() - self.cfg.displaced_after.as_millis() as i64;
        let mut displaced: Vec<&NonceOwner> = owners
            .iter()
            .filter(|o| !o.mined && o.nonce < settled && o.signed_at_ms < before)
            .filter(|o| match o.kind {
                // A dead-lettered one is the operator's (never re-signed here), but one they
                // discarded may end CANCELLED below.
                AttemptKind::Transfer => matches!(o.status, Status::Signed | Status::Sent | Status::SendFailed),
                // A discarded one whose nonce a foreign transaction took: see below.
                AttemptKind::Cancel => true,
            })
            .collect();
        // Oldest nonces first, a bounded receipt batch per check.
        displaced.sort_by_key(|o| o.nonce);
        displaced.truncate(MAX_SUSPECTS);
        if displaced.is_empty() {
            return Ok(0);
        }
        let hashes: Vec<_> = displaced.iter().flat_map(|o| o.hashes.iter().copied()).collect();
        let receipts = chain.receipts(hashes.clone()).await?;
        let mined: HashSet<_> = hashes.iter().zip(&receipts).filter(|(_, r)| r.is_some()).map(|(h, _)| *h).collect();
        // One of its attempts was mined: the tracker finishes it; nothing to re-sign. A
        // missing receipt proves nothing (a lagging, pruned or load-balanced endpoint answers
        // null for a mined transaction): each remaining suspect needs positive evidence
        // that the transaction which took its nonce is none of its own.
        let mut lost: Vec<&&NonceOwner> = Vec::new();
        for o in displaced.iter().filter(|o| !o.hashes.iter().any(|h| mined.contains(h))).take(MAX_PROOFS) {
            let ours: HashSet<B256> = o.hashes.iter().copied().collect();
            // A node that cannot answer (a pruned one asked for an old block's count) gives
            // no evidence for this suspect; it must not stall the whole lane's check.
            let proof = nonce_taken_by_another(chain, wallet, o.nonce, settled_block, &ours).await.unwrap_or_else(|e| {
                tracing::debug!(nonce = o.nonce, error = %e, "reading the chain for a displacement proof failed");
                Proof::None("the chain could not be read for a proof")
            });
            match proof {
                Proof::Foreign { block } => {
                    tracing::warn!(withdrawal.id = %o.withdrawal_id, nonce = o.nonce, block, "the transaction that took this nonce is on chain and is none of this withdrawal's");
                    lost.push(o);
                }
                Proof::None(why) => {
                    metrics::counter!("withdraw_nonce_displacement_unproven_total", "chain_id" => chain_id.to_string()).increment(1);
                    tracing::info!(withdrawal.id = %o.withdrawal_id, nonce = o.nonce, why, "nonce passed without our receipt, but no proof another transaction took it; not re-signing");
                }
            }
        }
        // A discarded withdrawal (its cancel signed) whose nonce went to someone else: neither
        // the transfer nor the cancel can ever be mined, which is what the operator asked
        // for. It ends CANCELLED, its reservation released; nothing is signed again.
        // So is one whose cancel could not be signed (a replacement past the fee cap) and
        // whose transfer lost the nonce: re-signing it would pay what the operator withdrew.
        let mut cancel_requested = HashSet::new();
        for o in lost.iter().filter(|o| o.kind == AttemptKind::Transfer) {
            // Read after the proof: a cancel request recorded now stops any re-sign (the
            // store refuses one for a withdrawal with a cancel request), and a re-sign that
            // committed before it shows as a newer attempt at another nonce, still payable.
            let Some(d) = self.ports.store.get(&o.withdrawal_id).await? else { continue };
            let newest_is_the_lost_one =
                d.attempts.last().is_some_and(|a| a.kind == AttemptKind::Transfer && a.nonce == o.nonce && a.wallet == wallet);
            if d.cancel.is_some() && d.inclusion.is_none() && newest_is_the_lost_one {
                cancel_requested.insert(o.withdrawal_id.clone());
            }
        }
        let abandoned: Vec<Decision> = lost
            .iter()
            .filter(|o| o.kind == AttemptKind::Cancel || cancel_requested.contains(&o.withdrawal_id))
            .map(|o| Decision {
                id: o.withdrawal_id.clone(),
                from: o.status,
                event: Event::CancelConfirmed,
                reason: Some(format!(
                    "discarded; nonce {} was taken by a transaction that is not ours, so nothing of it can be mined",
                    o.nonce
                )),
            })
            .collect();
        if !abandoned.is_empty() {
            for d in &abandoned {
                tracing::warn!(withdrawal.id = %d.id, "discarded withdrawal's nonce was used elsewhere; cancelled without a cancel transaction");
            }
            apply(&self.ports, "signer", abandoned).await?;
        }
        let mut batch: Vec<(crate::domain::WithdrawalId, u64)> = lost
            .iter()
            .filter(|o| o.kind == AttemptKind::Transfer && o.status != Status::SendFailed && !cancel_requested.contains(&o.withdrawal_id))
            .map(|o| (o.withdrawal_id.clone(), o.nonce))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        batch.sort_by_key(|(_, n)| *n);
        let fees = chain.fees().await?;
        let sign = transfer_signer(self.keys.clone(), self.assets.clone(), wallet, fees);
        let outcomes = self.ports.store.resign_displaced(wallet, chain_id, batch, sign).await?;
        let mut ids = Vec::new();
        for o in outcomes {
            match o {
                SignOutcome::Signed { id, nonce, hash, .. } => {
                    tracing::warn!(withdrawal.id = %id, new_nonce = nonce, tx_hash = %hash, "transfer's nonce was used by a foreign transaction; re-signed at a new nonce");
                    ids.push(id);
                }
                SignOutcome::Skipped { .. } | SignOutcome::Paused { .. } => {}
                SignOutcome::SignError { id, error } => {
                    tracing::error!(withdrawal.id = %id, error, "re-signing a displaced transfer failed")
                }
            }
        }
        metrics::counter!("withdraw_nonce_resigned_total", "chain_id" => chain_id.to_string()).increment(ids.len() as u64);
        for id in &ids {
            let entry = AuditEntry {
                actor: "signer".into(),
                action: "withdrawal.resign".into(),
                target: format!("withdrawal/{id}"),
                reason: Some("nonce used on chain by a transaction that is not ours".into()),
                detail: "re-signed at a new nonce; no earlier attempt can be mined".into(),
            };
            self.ports.store.audit(entry).await?;
        }
        let n = ids.len();
        self.ports.queue.send(QueueName::Signed, ids.iter().map(|i| i.to_string()).collect()).await?;
        Ok(n)
    }

    /// A gap whose nonce belongs to a COMPLETED withdrawal is a transfer the chain forgot: a
    /// reorg past the chain's finality took its block and no node kept it. Filling it
    /// with a 0-value transfer would leave the user unpaid while the record says COMPLETED,
    /// so the transaction recorded as mined is broadcast again instead: the same signed
    /// bytes, which can be mined at most once. Only when no such transaction exists, or one
    /// of that nonce's attempts is still on chain (the count moved for another reason), does
    /// the gap get a fill. Returns the gaps still to fill.
    async fn restore_reorged(&self, chain_id: u64, chain: &T::Chain, wallet: Address, gaps: Vec<u64>) -> Result<Vec<u64>, StageError> {
        if gaps.is_empty() {
            return Ok(gaps);
        }
        let at = self.ports.store.attempts_at(chain_id, wallet, gaps.clone()).await?;
        if at.is_empty() {
            return Ok(gaps);
        }
        let receipts = chain.receipts(at.iter().map(|a| a.attempt.tx_hash).collect()).await?;
        let recorded: Vec<Recorded> = at
            .iter()
            .enumerate()
            .map(|(i, a)| Recorded {
                nonce: a.attempt.nonce,
                status: a.status,
                was_mined: a.mined_hash == Some(a.attempt.tx_hash),
                on_chain: receipts.get(i).is_some_and(|r| r.is_some()),
            })
            .collect();
        let Repairs { restore, fill: still } = decide::restore_or_fill(&gaps, &recorded);
        let restore: Vec<&AttemptAtNonce> = restore.into_iter().map(|i| &at[i]).collect();
        if !restore.is_empty() {
            let results = chain.send_raw(restore.iter().map(|a| a.attempt.raw.clone()).collect()).await?;
            for (a, r) in restore.iter().zip(results) {
                tracing::error!(
                    chain_id,
                    %wallet,
                    nonce = a.attempt.nonce,
                    withdrawal.id = %a.attempt.withdrawal_id,
                    status = %a.status,
                    result = ?r,
                    "a finished withdrawal's transaction is no longer on chain (reorg past the chain's finality); broadcasting it again"
                );
                metrics::counter!("withdraw_nonce_restored_total", "chain_id" => chain_id.to_string()).increment(1);
            }
        }
        Ok(still)
    }

    /// Signs fills for new gaps, bumps stuck fills, and broadcasts every unmined fill.
    async fn fill(&self, chain_id: u64, chain: &T::Chain, wallet: Address, gaps: &[u64], known: Vec<NonceFill>) -> Result<(), StageError> {
        let mut newest = decide::newest_fills(known);
        if gaps.is_empty() && newest.is_empty() {
            return Ok(());
        }
        let network = chain.fees().await?;
        let now = self.ports.clock.now_ms();
        let stuck_before = now - self.cfg.stuck_after.as_millis() as i64;
        for (nonce, fees) in decide::fills_to_sign(gaps, &newest, network, chain.max_fee_cap(), stuck_before) {
            let t = UnsignedTransfer::self_transfer(chain_id, wallet, nonce, fees);
            let signed = self.keys.sign(wallet, &t).map_err(|e| StageError::Signing(e.to_string()))?;
            let fill = NonceFill {
                chain_id,
                wallet,
                nonce,
                tx_hash: signed.hash,
                raw: signed.raw,
                max_fee_per_gas: fees.max_fee_per_gas,
                created_at_ms: now,
            };
            if !self.ports.store.record_fill(fill.clone()).await? {
                // Signing paused: the signature is dropped unrecorded and unsent.
                continue;
            }
            tracing::warn!(chain_id, %wallet, nonce, tx_hash = %fill.tx_hash, "filling a nonce gap with a 0-value self-transfer");
            metrics::counter!("withdraw_nonce_fills_total", "chain_id" => chain_id.to_string()).increment(1);
            newest.insert(nonce, fill);
        }
        let mut fills: Vec<&NonceFill> = newest.values().collect();
        fills.sort_by_key(|f| f.nonce);
        let results = chain.send_raw(fills.iter().map(|f| f.raw.clone()).collect()).await?;
        for (f, r) in fills.iter().zip(results) {
            if !r.is_sent() {
                tracing::warn!(chain_id, %wallet, nonce = f.nonce, result = ?r, "fill broadcast refused; trying again next check");
            }
        }
        Ok(())
    }
}
