//! The bumper: replaces transfers stuck in the mempool. Past `stuck_after` without inclusion,
//! a withdrawal's newest attempt is re-signed at the same nonce with both fees raised past the
//! replacement threshold (see `fees::bump`), up to the chain's fee cap, and handed to the
//! sender. Whichever attempt is mined decides; they share a nonce, so at most one can be.
//! It also signs operators' cancels: a discarded withdrawal's nonce is taken over by a
//! 0-value self-transfer priced past the replacement threshold, and whichever of the two
//! is mined decides COMPLETED or CANCELLED. Runs in the signer role: it needs the keys.

use super::{PortTypes, Ports, StageError};
use crate::fees::{Bump, bump};
use crate::ports::*;
use crate::tx::decode_transfer;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct BumperConfig {
    /// Age of the newest attempt without inclusion after which it is replaced.
    pub stuck_after: Duration,
    pub every: Duration,
    /// Price bump in percent (nodes require 10).
    pub percent: u128,
}

impl Default for BumperConfig {
    fn default() -> Self {
        Self { stuck_after: Duration::from_secs(60), every: Duration::from_secs(5), percent: 10 }
    }
}

pub struct Bumper<T: PortTypes, K: Keys> {
    ports: Arc<Ports<T>>,
    keys: Arc<K>,
    cfg: BumperConfig,
}

impl<T: PortTypes, K: Keys> Bumper<T, K> {
    pub fn new(ports: Arc<Ports<T>>, keys: Arc<K>, cfg: BumperConfig) -> Self {
        Self { ports, keys, cfg }
    }

    pub async fn run(&self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(self.cfg.every) => {} }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "fee bump round failed");
            }
        }
    }

    /// One round over every chain; returns how many replacements were handed to the sender.
    pub async fn tick(&self) -> Result<usize, StageError> {
        let older_than = self.ports.clock.now_ms() - self.cfg.stuck_after.as_millis() as i64;
        let ours = self.keys.wallets();
        let mut bumped = 0;
        for (&chain_id, chain) in &self.ports.chains {
            let stuck = self.ports.store.stuck(chain_id, older_than, 256).await?;
            let stuck: Vec<_> = stuck.into_iter().filter(|(_, a)| ours.contains(&a.wallet)).collect();
            let cancels = self.ports.store.pending_cancels(chain_id, 256).await?;
            let cancels: Vec<_> = cancels.into_iter().filter(|(_, a)| ours.contains(&a.wallet)).collect();
            if stuck.is_empty() && cancels.is_empty() {
                continue;
            }
            let network = chain.fees().await?;
            let now = self.ports.clock.now_ms();
            let mut replacements = Vec::new();
            let mut rebroadcast = Vec::new();
            for (w, old) in &cancels {
                let old_fees = Fees {
                    max_fee_per_gas: old.max_fee_per_gas,
                    max_priority_fee_per_gas: old.max_priority_fee_per_gas,
                    legacy: network.legacy,
                };
                let fees = match bump(old_fees, network, chain.max_fee_cap(), self.cfg.percent) {
                    Bump::To(f) => f,
                    Bump::AtCap => {
                        // No cancel can outbid the transfer in a pool that still holds it;
                        // that transfer is priced at the cap and will be mined, paying (the
                        // tracker finishes it COMPLETED). A pool that dropped it takes any
                        // price, though, and not signing would hold the nonce (and every
                        // withdrawal behind it) forever. So the cancel goes out at the
                        // market's fees: one of the two is mined, and whichever it is
                        // decides. Signed once: afterwards the newest attempt is the cancel.
                        metrics::counter!("withdraw_fee_cap_reached_total").increment(1);
                        let cap = chain.max_fee_cap();
                        let market = Fees {
                            max_fee_per_gas: network.max_fee_per_gas.min(cap),
                            max_priority_fee_per_gas: network.max_priority_fee_per_gas.min(network.max_fee_per_gas).min(cap),
                            legacy: network.legacy,
                        };
                        tracing::error!(withdrawal.id = %w.id, nonce = old.nonce, cap, max_fee_per_gas = market.max_fee_per_gas, "a cancel cannot outbid the transfer under the fee cap; cancelling at the market's fees, for a pool that no longer holds the transfer; the transfer may still be mined");
                        market
                    }
                };
                let cancel = UnsignedTransfer::self_transfer(chain_id, old.wallet, old.nonce, fees);
                match self.keys.sign(old.wallet, &cancel) {
                    Ok(signed) => {
                        replacements.push(replacing(old, signed, AttemptKind::Cancel, fees, UnsignedTransfer::SELF_TRANSFER_GAS, now))
                    }
                    Err(e) => tracing::error!(withdrawal.id = %w.id, error = %e, "signing a cancel failed"),
                }
            }
            let n_cancels = replacements.len();
            // A stuck transfer with a cancel requested gets the cancel, not a fee bump.
            for (w, old) in stuck.iter().filter(|(w, _)| !cancels.iter().any(|(c, _)| c.id == w.id)) {
                let old_fees = Fees {
                    max_fee_per_gas: old.max_fee_per_gas,
                    max_priority_fee_per_gas: old.max_priority_fee_per_gas,
                    legacy: network.legacy,
                };
                let fees = match bump(old_fees, network, chain.max_fee_cap(), self.cfg.percent) {
                    Bump::To(f) => f,
                    Bump::AtCap => {
                        metrics::counter!("withdraw_fee_cap_reached_total").increment(1);
                        tracing::warn!(withdrawal.id = %w.id, nonce = old.nonce, max_fee_per_gas = old.max_fee_per_gas, cap = chain.max_fee_cap(), "stuck transaction cannot be bumped: fee cap reached; re-broadcasting as is");
                        rebroadcast.push(w.id.to_string());
                        continue;
                    }
                };
                let mut transfer = match decode_transfer(&old.raw) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(withdrawal.id = %w.id, error = e, "cannot decode a stored attempt");
                        continue;
                    }
                };
                transfer.fees = fees;
                let signed = match self.keys.sign(old.wallet, &transfer) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(withdrawal.id = %w.id, error = %e, "signing a replacement failed");
                        continue;
                    }
                };
                replacements.push(replacing(old, signed, old.kind, fees, old.gas_limit, now));
            }
            let applied = self.ports.store.record_replacements(replacements.clone()).await?;
            let mut ids = Vec::new();
            let mut n_bumps = 0;
            for (i, (r, ok)) in replacements.iter().zip(applied).enumerate() {
                if ok && i < n_cancels {
                    tracing::warn!(withdrawal.id = %r.attempt.withdrawal_id, nonce = r.attempt.nonce, "cancel signed: a 0-value self-transfer now competes for the nonce");
                    metrics::counter!("withdraw_cancels_signed_total").increment(1);
                    ids.push(r.attempt.withdrawal_id.to_string());
                } else if ok {
                    tracing::info!(
                        withdrawal.id = %r.attempt.withdrawal_id,
                        nonce = r.attempt.nonce,
                        max_fee_per_gas = r.attempt.max_fee_per_gas,
                        max_priority_fee_per_gas = r.attempt.max_priority_fee_per_gas,
                        "stuck transaction replaced with higher fees"
                    );
                    n_bumps += 1;
                    ids.push(r.attempt.withdrawal_id.to_string());
                }
            }
            metrics::counter!("withdraw_fee_bumps_total").increment(n_bumps);
            bumped += ids.len();
            ids.extend(rebroadcast);
            self.ports.queue.send(QueueName::Signed, ids).await?;
        }
        Ok(bumped)
    }
}

/// The attempt that takes over `old`'s nonce: newer than it, so it is the one sent.
fn replacing(old: &Attempt, signed: SignedTx, kind: AttemptKind, fees: Fees, gas_limit: u64, now: i64) -> Replacement {
    Replacement {
        replaces: old.tx_hash,
        attempt: Attempt {
            withdrawal_id: old.withdrawal_id.clone(),
            tx_hash: signed.hash,
            wallet: old.wallet,
            chain_id: old.chain_id,
            nonce: old.nonce,
            kind,
            raw: signed.raw,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            gas_limit,
            created_at_ms: now.max(old.created_at_ms + 1),
            sent_at_ms: None,
        },
    }
}
