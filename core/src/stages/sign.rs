//! The signer: validates requests against balances and limits, reserves funds, allocates
//! nonces and signs. Only this stage holds keys. A withdrawal is signed at most once: the
//! store moves it RECEIVED -> SIGNED in the same transaction that takes its nonce.

use super::{Decision, PortTypes, Ports, StageError, apply, parse_deliveries};
use crate::adapters::evm::erc20_transfer_calldata;
use crate::domain::{AssetKind, AssetRegistry, Status, WithdrawalId};
use crate::machine::Event;
use crate::ports::*;
use alloy::primitives::{Address, Bytes, U256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SignerConfig {
    pub batch: usize,
    pub visibility: Duration,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self { batch: 256, visibility: Duration::from_secs(30) }
    }
}

pub struct Signer<T: PortTypes, K: Keys> {
    ports: Arc<Ports<T>>,
    keys: Arc<K>,
    assets: Arc<AssetRegistry>,
    cfg: SignerConfig,
    /// The hot wallet that signs for each chain.
    wallets: HashMap<u64, Address>,
    /// Operators pause signing; messages wait in the queue meanwhile.
    pub paused: Arc<AtomicBool>,
}

impl<T: PortTypes, K: Keys> Signer<T, K> {
    /// Binds each chain to the first key's wallet and makes sure the store knows the
    /// wallet's next nonce (taken from the chain's pending count the first time).
    pub async fn new(ports: Arc<Ports<T>>, keys: Arc<K>, assets: Arc<AssetRegistry>, cfg: SignerConfig) -> Result<Self, StageError> {
        let wallet = *keys.wallets().first().ok_or(StageError::Shutdown("no hot-wallet key loaded"))?;
        let mut wallets = HashMap::new();
        for (&chain_id, chain) in &ports.chains {
            let chain_next = chain.nonce(wallet, true).await?;
            let stored = ports.store.init_nonce(wallet, chain_id, chain_next).await?;
            let latest = chain.nonce(wallet, false).await?;
            if stored < latest {
                // Someone else used this key: our next nonces are already taken on chain.
                tracing::error!(chain_id, %wallet, stored, chain_latest = latest, "hot wallet nonce is behind the chain; another signer is using this key");
            }
            tracing::info!(chain_id, %wallet, next_nonce = stored, "hot wallet ready");
            wallets.insert(chain_id, wallet);
        }
        Ok(Signer { ports, keys, assets, cfg, wallets, paused: Arc::new(AtomicBool::new(false)) })
    }

    pub async fn run(&self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            if self.paused.load(Ordering::Relaxed) {
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(Duration::from_millis(500)) => continue }
            }
            let got = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.ports.queue.receive(QueueName::Requests, self.cfg.batch, self.cfg.visibility, Duration::from_secs(1)) => r,
            };
            let result = match got {
                Ok(d) if d.is_empty() => continue,
                Ok(d) => self.process(d).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "signer batch failed; messages will be redelivered");
                    tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Works one batch of request messages; acks only what is settled in the database.
    pub async fn process(&self, deliveries: Vec<Delivery>) -> Result<(), StageError> {
        let started = std::time::Instant::now();
        let (items, mut ack) = parse_deliveries(deliveries);
        let loaded = self.ports.store.load(items.iter().map(|(id, _)| id.clone()).collect()).await?;
        let by_id: HashMap<&WithdrawalId, &Withdrawal> = loaded.iter().map(|w| (&w.id, w)).collect();

        let mut invalid: Vec<(&Withdrawal, String)> = Vec::new();
        let mut candidates: Vec<&Withdrawal> = Vec::new();
        let mut receipts: HashMap<&WithdrawalId, &Vec<String>> = HashMap::new();
        for (id, r) in &items {
            let Some(w) = by_id.get(id) else {
                tracing::error!(withdrawal.id = %id, "queued withdrawal does not exist; message dropped");
                ack.extend(r.iter().cloned());
                continue;
            };
            if w.status != Status::Received {
                // Redelivery of work already done.
                ack.extend(r.iter().cloned());
                continue;
            }
            receipts.insert(id, r);
            let Some(asset) = self.assets.find(&w.asset, w.chain_id) else {
                invalid.push((w, format!("asset {} on chain {} is no longer configured", w.asset, w.chain_id)));
                continue;
            };
            if let Some(max) = asset.max_amount
                && w.amount > max
            {
                invalid.push((
                    w,
                    format!(
                        "amount {} {} exceeds the per-asset maximum {}",
                        w.amount.to_decimal(asset.decimals),
                        asset.symbol,
                        max.to_decimal(asset.decimals)
                    ),
                ));
                continue;
            }
            if !self.wallets.contains_key(&w.chain_id) {
                invalid.push((w, format!("no hot wallet serves chain {}", w.chain_id)));
                continue;
            }
            candidates.push(w);
        }

        let reservations = candidates
            .iter()
            .map(|w| Reservation { withdrawal_id: w.id.clone(), user_id: w.user_id.clone(), asset: w.asset.clone(), amount: w.amount })
            .collect();
        let outcomes = self.ports.balances.reserve(reservations).await?;
        let mut to_sign: HashMap<u64, Vec<WithdrawalId>> = HashMap::new();
        for (w, o) in candidates.iter().zip(outcomes) {
            match o {
                ReserveOutcome::Reserved | ReserveOutcome::AlreadyReserved => to_sign.entry(w.chain_id).or_default().push(w.id.clone()),
                ReserveOutcome::Insufficient { available } => {
                    let d = self.assets.find(&w.asset, w.chain_id).map(|a| a.decimals).unwrap_or(0);
                    invalid.push((
                        w,
                        format!("insufficient balance: available {}, requested {}", available.to_decimal(d), w.amount.to_decimal(d)),
                    ));
                }
            }
        }

        if !invalid.is_empty() {
            let decisions = invalid
                .iter()
                .map(|(w, reason)| Decision {
                    id: w.id.clone(),
                    from: Status::Received,
                    event: Event::ValidationFailed,
                    reason: Some(reason.clone()),
                })
                .collect();
            apply(&self.ports, "signer", decisions).await?;
            for (w, _) in &invalid {
                ack.extend(receipts[&w.id].iter().cloned());
            }
            metrics::counter!("withdraw_signer_invalid_total").increment(invalid.len() as u64);
        }

        for (chain_id, ids) in to_sign {
            let chain = self.ports.chains.get(&chain_id).ok_or(StageError::UnknownChain(chain_id))?;
            let fees = chain.fees().await?;
            let wallet = self.wallets[&chain_id];
            let (keys, assets) = (self.keys.clone(), self.assets.clone());
            let sign = Box::new(move |w: &Withdrawal, nonce: u64| -> Result<SignedTx, String> {
                let asset = assets.find(&w.asset, w.chain_id).ok_or("asset vanished")?;
                let (to, value, input) = match asset.kind {
                    AssetKind::Native => (w.to, w.amount.0, Bytes::new()),
                    AssetKind::Erc20 { contract } => (contract, U256::ZERO, erc20_transfer_calldata(w.to, w.amount.0)),
                };
                let t = UnsignedTransfer { chain_id: w.chain_id, nonce, to, value, input, gas_limit: asset.gas_limit, fees };
                keys.sign(wallet, &t).map_err(|e| e.to_string())
            });
            let outcomes = self.ports.store.sign_first_attempts(wallet, chain_id, ids, sign).await?;
            let mut signed = Vec::new();
            for o in outcomes {
                match o {
                    SignOutcome::Signed { id, .. } => {
                        ack.extend(receipts[&id].iter().cloned());
                        signed.push(id.to_string());
                    }
                    SignOutcome::Skipped { id, .. } => ack.extend(receipts[&id].iter().cloned()),
                    // Left unacked: redelivered, and dead-lettered if it keeps failing.
                    SignOutcome::SignError { id, error } => tracing::error!(withdrawal.id = %id, error, "signing failed"),
                }
            }
            metrics::counter!("withdraw_signed_total").increment(signed.len() as u64);
            // machine: RECEIVED + Signed -> SIGNED with EnqueueSigned; the transition itself
            // was written by the store together with the nonce.
            if let Err(e) = self.ports.queue.send(QueueName::Signed, signed).await {
                tracing::warn!(error = %e, "signed queue send failed; reconciler will re-enqueue");
            }
        }
        self.ports.queue.ack(QueueName::Requests, ack).await?;
        metrics::histogram!("withdraw_stage_batch_seconds", "stage" => "signer").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}
