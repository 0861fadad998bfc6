//! The signer: validates requests against balances and limits, reserves funds, allocates
//! nonces and signs. Only this stage holds keys. A withdrawal is signed at most once: the
//! store moves it RECEIVED -> SIGNED in the same transaction that takes its nonce.

use super::{Decision, PortTypes, Ports, StageError, apply, parse_deliveries};
use crate::decide::{self, Book, Claim, Fit, GasTerms, Want};
use crate::domain::{Amount, AssetKind, AssetRegistry, Status, WithdrawalId};
use crate::machine::Event;
use crate::ports::*;
use crate::tx::erc20_transfer_calldata;
use alloy::primitives::{Address, Bytes, U256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SignerConfig {
    pub batch: usize,
    pub visibility: Duration,
    /// How long one receive waits for a first message (SQS long polling: up to 20 s).
    pub wait: Duration,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self { batch: 256, visibility: Duration::from_secs(30), wait: Duration::from_secs(1) }
    }
}

pub struct Signer<T: PortTypes, K: Keys> {
    ports: Arc<Ports<T>>,
    keys: Arc<K>,
    assets: Arc<AssetRegistry>,
    cfg: SignerConfig,
    /// The hot wallets that sign for each chain; each is its own nonce lane.
    wallets: HashMap<u64, Vec<Address>>,
    /// Where each chain's next batch starts in its wallet list (round robin).
    rotation: Mutex<HashMap<u64, usize>>,
    /// Operators' pauses (all chains or one), re-read from the store every second: work for
    /// a paused chain is held, not signed.
    controls: Mutex<(Option<tokio::time::Instant>, Vec<SigningControl>)>,
    /// Withdrawals held for lack of hot-wallet funds, per chain: still RECEIVED, their
    /// messages acked (so no receive counts pile up toward the DLQ), re-enqueued by `run`.
    held: Mutex<HashMap<u64, Vec<WithdrawalId>>>,
    /// Whether each wallet was short at the last check (to log changes, and to give
    /// work to the others meanwhile).
    short: Mutex<HashMap<(u64, Address), bool>>,
    /// Per chain: when the wallet's funds were last read, and what is left to spend per
    /// asset since (reads are an RPC and a scan of in-flight work; at most one per second).
    funds: Mutex<FundsCache>,
    /// When held withdrawals were last offered again.
    last_recheck: Mutex<tokio::time::Instant>,
}

/// Per (chain, wallet): when the funds were read, and per asset what is left to spend.
type FundsCache = HashMap<(u64, Address), (tokio::time::Instant, HashMap<String, U256>)>;

/// How long a read of a hot wallet's funds is reused, deducting what is signed meanwhile.
const FUNDS_FRESH: Duration = Duration::from_secs(1);

/// How often held withdrawals are offered to the signer again.
const HOLD_RECHECK: Duration = Duration::from_secs(3);

impl<T: PortTypes, K: Keys> Signer<T, K> {
    /// Binds each chain to every loaded key's wallet and makes sure the store knows each
    /// wallet's next nonce (taken from the chain's pending count the first time; the nonce
    /// check corrects it later if the key was used elsewhere).
    pub async fn new(ports: Arc<Ports<T>>, keys: Arc<K>, assets: Arc<AssetRegistry>, cfg: SignerConfig) -> Result<Self, StageError> {
        let all = keys.wallets();
        if all.is_empty() {
            return Err(StageError::Setup("no hot-wallet key loaded"));
        }
        let mut wallets = HashMap::new();
        for (&chain_id, chain) in &ports.chains {
            for &wallet in &all {
                let chain_next = chain.nonce(wallet, true).await?;
                let stored = ports.store.init_nonce(wallet, chain_id, chain_next).await?;
                tracing::info!(chain_id, %wallet, next_nonce = stored, "hot wallet ready");
            }
            wallets.insert(chain_id, all.clone());
            metrics::counter!("withdraw_signer_sign_errors_total", "chain_id" => chain_id.to_string()).absolute(0);
        }
        metrics::gauge!("withdraw_signer_paused", "scope" => "all").set(0.0);
        Ok(Signer {
            ports,
            keys,
            assets,
            cfg,
            wallets,
            rotation: Mutex::new(HashMap::new()),
            controls: Mutex::new((None, Vec::new())),
            held: Mutex::new(HashMap::new()),
            short: Mutex::new(HashMap::new()),
            funds: Mutex::new(HashMap::new()),
            last_recheck: Mutex::new(tokio::time::Instant::now()),
        })
    }

    pub async fn run(&self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            // Paused, or no chain has a usable RPC endpoint: leave the messages queued
            // (receiving them would only count deliveries toward the dead-letter queue).
            if !self.ready().await {
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(Duration::from_millis(500)) => continue }
            }
            let got = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.ports.queue.receive(QueueName::Requests, self.cfg.batch, self.cfg.visibility, self.cfg.wait) => r,
            };
            let result = match got {
                Ok(d) if d.is_empty() => continue,
                Ok(d) => self.work(d).await,
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

    /// The loop's step before a receive: offers held withdrawals again when due, re-reads
    /// the pauses; false while signing is paused everywhere or no chain can be read.
    pub async fn ready(&self) -> bool {
        let due = {
            let mut last = self.last_recheck.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= HOLD_RECHECK;
            if due {
                *last = tokio::time::Instant::now();
            }
            due
        };
        if due {
            self.offer_held_again().await;
        }
        self.refresh_controls().await;
        !self.paused_for(None) && self.ports.chains.values().any(|c| c.available())
    }

    /// The loop's step after a receive: the batch, its messages kept hidden meanwhile.
    pub async fn work(&self, d: Vec<Delivery>) -> Result<(), StageError> {
        // A long poll (SQS: up to 20 s) can outlast the view of signing pauses read before
        // it; read it again (at most once a second) before signing.
        self.refresh_controls().await;
        let receipts = d.iter().map(|m| m.receipt.clone()).collect();
        super::with_heartbeat(&self.ports, QueueName::Requests, receipts, self.cfg.visibility, self.process(d)).await
    }

    /// Splits candidates (in order) into those the hot wallet can fund now and those to hold
    /// (`decide::fit_to_funds`): on-chain balance minus everything signed but not yet mined,
    /// counting worst-case gas. Records what it saw for operators.
    async fn budget(
        &self,
        chain_id: u64,
        chain: &T::Chain,
        wallet: Address,
        candidates: &[&Withdrawal],
        fees: Fees,
    ) -> Result<(Vec<WithdrawalId>, Vec<WithdrawalId>), StageError> {
        let native = self.assets.all().iter().find(|a| a.chain_id == chain_id && a.kind == AssetKind::Native).map(|a| a.symbol.clone());
        let native_key = native.unwrap_or_else(|| "<native>".into());
        let cached = {
            let f = self.funds.lock().unwrap_or_else(|p| p.into_inner());
            f.get(&(chain_id, wallet)).filter(|(at, _)| at.elapsed() < FUNDS_FRESH).cloned()
        };
        // A fresh read when the cache is stale or lacks an asset this batch needs. `books`
        // is filled only by a fresh read, for operators.
        let needs_read = cached.as_ref().is_none_or(|(_, left)| candidates.iter().any(|w| !left.contains_key(&w.asset)));
        let mut books: HashMap<String, Book> = HashMap::new();
        let (read_at, left): (tokio::time::Instant, HashMap<String, U256>) = match cached {
            Some(hit) if !needs_read => hit,
            _ => {
                let in_flight = self.ports.store.in_flight(chain_id, wallet).await?;
                let mut balances = HashMap::from([(native_key.clone(), chain.balance(wallet).await?)]);
                for a in candidates.iter().map(|w| &w.asset).chain(in_flight.iter().map(|f| &f.asset)) {
                    if let Some(AssetKind::Erc20 { contract }) = self.assets.find(a, chain_id).map(|a| a.kind)
                        && !balances.contains_key(a)
                    {
                        balances.insert(a.clone(), chain.token_balance(contract, wallet).await?);
                    }
                }
                // The store answers each withdrawal's newest attempt only (`Store::in_flight`).
                let claims: Vec<Claim<'_>> = in_flight
                    .iter()
                    .map(|f| Claim {
                        asset: &f.asset,
                        amount: f.amount.0,
                        attempts: vec![GasTerms { gas_limit: f.gas_limit, max_fee_per_gas: f.max_fee_per_gas }],
                    })
                    .collect();
                books = decide::book(&native_key, &balances, &claims);
                (tokio::time::Instant::now(), books.iter().map(|(k, b)| (k.clone(), b.left())).collect())
            }
        };
        let wants: Vec<Want<'_>> = candidates
            .iter()
            .map(|w| Want {
                asset: &w.asset,
                amount: w.amount.0,
                gas_limit: self.assets.find(&w.asset, chain_id).map(|a| a.gas_limit).unwrap_or(0),
            })
            .collect();
        let Fit { fits, short_by: short, left } = decide::fit_to_funds(&native_key, left, &wants, fees.max_fee_per_gas);
        let take: Vec<WithdrawalId> = candidates[..fits].iter().map(|w| w.id.clone()).collect();
        let held: Vec<WithdrawalId> = candidates[fits..].iter().map(|w| w.id.clone()).collect();
        // Keep what is left for the next batch, as of the read; a short wallet is re-read on
        // every batch, so a top-up is seen at once.
        let is_short = !held.is_empty();
        let at = if is_short { read_at.checked_sub(FUNDS_FRESH).unwrap_or(read_at) } else { read_at };
        self.funds.lock().unwrap_or_else(|p| p.into_inner()).insert((chain_id, wallet), (at, left.clone()));
        let now = self.ports.clock.now_ms();
        let funds: Vec<WalletFunds> = books
            .iter()
            .map(|(asset, b)| WalletFunds {
                chain_id,
                wallet,
                asset: asset.clone(),
                balance: Amount(b.balance),
                in_flight: Amount(b.in_flight),
                short_by: Amount(short.get(asset).copied().unwrap_or_default()),
                held: if short.contains_key(asset) { held.len() as u64 } else { 0 },
                updated_at_ms: now,
            })
            .collect();
        for f in &funds {
            // Base units as a float: exact enough to alert on, never used for money.
            let labels = [("chain_id", chain_id.to_string()), ("wallet", wallet.to_checksum(None)), ("asset", f.asset.clone())];
            metrics::gauge!("withdraw_hot_wallet_balance_base_units", &labels).set(f64::from(f.balance.0));
            metrics::gauge!("withdraw_hot_wallet_in_flight_base_units", &labels).set(f64::from(f.in_flight.0));
        }
        if !funds.is_empty() {
            self.ports.store.record_wallet_funds(funds).await?;
        }
        let labels = [("chain_id", chain_id.to_string()), ("wallet", wallet.to_checksum(None))];
        metrics::gauge!("withdraw_hot_wallet_short", &labels).set(if is_short { 1.0 } else { 0.0 });
        metrics::gauge!("withdraw_signer_held_withdrawals", &labels).set(held.len() as f64);
        let was_short = self.short.lock().unwrap_or_else(|p| p.into_inner()).insert((chain_id, wallet), is_short).unwrap_or(false);
        if is_short && !was_short {
            let short_by: Vec<String> = short.iter().map(|(k, v)| format!("{k} {v}")).collect();
            tracing::error!(chain_id, %wallet, held = held.len(), short_by = ?short_by, "hot wallet cannot fund pending withdrawals; holding them until it is topped up");
        } else if !is_short && was_short {
            tracing::info!(chain_id, %wallet, "hot wallet funded again; resuming held withdrawals");
        }
        Ok((take, held))
    }

    /// Re-reads operators' pauses at most once a second; a failed read keeps the last view.
    async fn refresh_controls(&self) {
        let fresh = self.controls.lock().unwrap_or_else(|p| p.into_inner()).0.is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if fresh {
            return;
        }
        match self.ports.store.signing_controls().await {
            Ok(c) => {
                for ctl in &c {
                    let scope = ctl.chain_id.map_or_else(|| "all".to_owned(), |id| id.to_string());
                    metrics::gauge!("withdraw_signer_paused", "scope" => scope).set(if ctl.paused { 1.0 } else { 0.0 });
                }
                *self.controls.lock().unwrap_or_else(|p| p.into_inner()) = (Some(tokio::time::Instant::now()), c);
            }
            Err(e) => tracing::warn!(error = %e, "reading signing pauses failed; keeping the last view"),
        }
    }

    /// Whether signing is paused for every chain (`None`) or for this one.
    fn paused_for(&self, chain_id: Option<u64>) -> bool {
        let c = self.controls.lock().unwrap_or_else(|p| p.into_inner());
        c.1.iter().any(|ctl| ctl.paused && (ctl.chain_id.is_none() || (chain_id.is_some() && ctl.chain_id == chain_id)))
    }

    /// Splits a chain's batch over its wallets (`decide::rotate`), starting where the last
    /// batch stopped; wallets short at their last check get nothing while another can take
    /// the work.
    fn share(&self, chain_id: u64, ids: Vec<WithdrawalId>) -> Vec<(Address, Vec<WithdrawalId>)> {
        let all = &self.wallets[&chain_id];
        let short: HashSet<Address> = {
            let short = self.short.lock().unwrap_or_else(|p| p.into_inner());
            all.iter().copied().filter(|w| short.get(&(chain_id, *w)).copied().unwrap_or(false)).collect()
        };
        let turn = {
            let mut r = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
            let e = r.entry(chain_id).or_insert(0);
            let turn = *e;
            *e = e.wrapping_add(1);
            turn
        };
        decide::rotate(all, &short, turn, ids.len()).into_iter().map(|(wallet, run)| (wallet, ids[run].to_vec())).collect()
    }

    /// Hands withdrawals held for lack of funds back to the queue, so the next batch
    /// re-checks them against the wallet's current balance.
    async fn offer_held_again(&self) {
        let held: Vec<String> = {
            let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            h.drain().flat_map(|(_, ids)| ids).map(|id| id.to_string()).collect()
        };
        if held.is_empty() {
            return;
        }
        if let Err(e) = self.ports.queue.send(QueueName::Requests, held).await {
            // They stay RECEIVED; the reconciler re-enqueues them after stale_after.
            tracing::warn!(error = %e, "re-offering held withdrawals failed");
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
        // Above its asset's approval threshold, a withdrawal is signed only once approved;
        // its reservation stays while it waits.
        let over: Vec<WithdrawalId> = candidates
            .iter()
            .filter(|w| self.assets.find(&w.asset, w.chain_id).and_then(|a| a.approval_threshold).is_some_and(|t| w.amount > t))
            .map(|w| w.id.clone())
            .collect();
        let approved: std::collections::HashSet<WithdrawalId> =
            if over.is_empty() { Default::default() } else { self.ports.store.approved(over.clone()).await?.into_iter().collect() };
        let mut awaiting = Vec::new();
        let mut to_sign: HashMap<u64, Vec<WithdrawalId>> = HashMap::new();
        for (w, o) in candidates.iter().zip(outcomes) {
            match o {
                ReserveOutcome::Reserved | ReserveOutcome::AlreadyReserved if over.contains(&w.id) && !approved.contains(&w.id) => {
                    awaiting.push(Decision { id: w.id.clone(), from: Status::Received, event: Event::NeedsApproval, reason: None });
                }
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

        if !awaiting.is_empty() {
            let ids: Vec<WithdrawalId> = awaiting.iter().map(|d| d.id.clone()).collect();
            apply(&self.ports, "signer", awaiting).await?;
            for id in &ids {
                ack.extend(receipts[id].iter().cloned());
            }
            tracing::info!(count = ids.len(), "withdrawals above their approval threshold wait for an approver");
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
            let won = apply(&self.ports, "signer", decisions).await?;
            self.ports.store.revoke_approvals(won.into_iter().map(|(id, _)| id).collect()).await?;
            for (w, _) in &invalid {
                ack.extend(receipts[&w.id].iter().cloned());
            }
            metrics::counter!("withdraw_signer_invalid_total").increment(invalid.len() as u64);
        }

        for (chain_id, ids) in to_sign {
            let chain = self.ports.chains.get(&chain_id).ok_or(StageError::UnknownChain(chain_id))?;
            let paused = self.paused_for(Some(chain_id));
            if paused || !chain.available() {
                // Paused by an operator, or every endpoint of this chain is down: hold its
                // work (no nonce taken, no delivery counted) and offer it again shortly;
                // other chains go on.
                for id in &ids {
                    ack.extend(receipts[id].iter().cloned());
                }
                if paused {
                    tracing::info!(chain_id, held = ids.len(), "signing paused for this chain; holding its withdrawals");
                } else {
                    tracing::warn!(chain_id, held = ids.len(), "no usable RPC endpoint; holding this chain's withdrawals");
                }
                self.held.lock().unwrap_or_else(|p| p.into_inner()).entry(chain_id).or_default().extend(ids);
                continue;
            }
            let fees = chain.fees().await?;
            for (wallet, ids) in self.share(chain_id, ids) {
                let candidates: Vec<&Withdrawal> = ids.iter().filter_map(|id| by_id.get(id).copied()).collect();
                let (ids, held) = self.budget(chain_id, chain, wallet, &candidates, fees).await?;
                if !held.is_empty() {
                    for id in &held {
                        ack.extend(receipts[id].iter().cloned());
                    }
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).entry(chain_id).or_default().extend(held);
                }
                if ids.is_empty() {
                    continue;
                }
                let sign = transfer_signer(self.keys.clone(), self.assets.clone(), wallet, fees);
                let outcomes = self.ports.store.sign_first_attempts(wallet, chain_id, ids, sign).await?;
                let mut signed = Vec::new();
                let mut paused = Vec::new();
                let mut refused = Vec::new();
                for o in outcomes {
                    match o {
                        // Paused between our view of the controls and the write: held like
                        // any paused work, offered again once resumed.
                        SignOutcome::Paused { id } => {
                            ack.extend(receipts[&id].iter().cloned());
                            paused.push(id);
                        }
                        SignOutcome::Signed { id, .. } => {
                            ack.extend(receipts[&id].iter().cloned());
                            signed.push(id.to_string());
                        }
                        SignOutcome::Skipped { id, .. } => ack.extend(receipts[&id].iter().cloned()),
                        // The keys refused (KMS down, throttled, its permission removed).
                        // Left unacked: redelivered, and dead-lettered if it keeps failing,
                        // so a refusal that lasts ends where an operator sees it (and its
                        // reservation is freed) rather than held out of sight. Holding it in
                        // memory instead would re-offer every copy the reconciler adds, and
                        // keep a throttled KMS throttled. The counter pages while it lasts.
                        SignOutcome::SignError { id, error } => refused.push((id, error)),
                    }
                }
                if let Some((first, error)) = refused.first() {
                    metrics::counter!("withdraw_signer_sign_errors_total", "chain_id" => chain_id.to_string())
                        .increment(refused.len() as u64);
                    tracing::error!(chain_id, %wallet, refused = refused.len(), first = %first, error, "the keys refused to sign; these withdrawals are redelivered, and dead-lettered if it lasts");
                }
                if !paused.is_empty() {
                    tracing::info!(chain_id, held = paused.len(), "signing paused for this chain; holding its withdrawals");
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).entry(chain_id).or_default().extend(paused);
                }
                metrics::counter!("withdraw_signed_total").increment(signed.len() as u64);
                // machine: RECEIVED + Signed -> SIGNED with EnqueueSigned; the transition
                // itself was written by the store together with the nonce.
                if let Err(e) = self.ports.queue.send(QueueName::Signed, signed).await {
                    tracing::warn!(error = %e, "signed queue send failed; reconciler will re-enqueue");
                }
            }
        }
        self.ports.queue.ack(QueueName::Requests, ack).await?;
        metrics::histogram!("withdraw_stage_batch_seconds", "stage" => "signer").record(started.elapsed().as_secs_f64());
        super::mark_processed("signer");
        Ok(())
    }
}

/// Signs a withdrawal's transfer (native coin or ERC-20 `transfer`) from `wallet` at the
/// nonce the store allocates.
pub(super) fn transfer_signer<K: Keys>(keys: Arc<K>, assets: Arc<AssetRegistry>, wallet: Address, fees: Fees) -> SignFn {
    Box::new(move |items: &[(&Withdrawal, u64)]| -> Vec<Result<SignedTx, String>> {
        let unsigned: Vec<Result<UnsignedTransfer, String>> = items
            .iter()
            .map(|(w, nonce)| {
                let asset = assets.find(&w.asset, w.chain_id).ok_or("asset is no longer configured")?;
                let (to, value, input) = match asset.kind {
                    AssetKind::Native => (w.to, w.amount.0, Bytes::new()),
                    AssetKind::Erc20 { contract } => (contract, U256::ZERO, erc20_transfer_calldata(w.to, w.amount.0)),
                };
                Ok(UnsignedTransfer { chain_id: w.chain_id, nonce: *nonce, to, value, input, gas_limit: asset.gas_limit, fees })
            })
            .collect();
        let ready: Vec<UnsignedTransfer> = unsigned.iter().filter_map(|t| t.as_ref().ok().cloned()).collect();
        let mut signed = keys.sign_many(wallet, &ready).into_iter();
        unsigned
            .into_iter()
            .map(|t| {
                t?;
                signed
                    .next()
                    .unwrap_or_else(|| Err(KeyError::Signing("the keys answered fewer transfers than asked".into())))
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
}
