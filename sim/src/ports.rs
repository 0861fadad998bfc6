//! The ports the simulated process runs on: the real SQLite store, queues and balances (in
//! inline mode, on a temporary file), wrapped where the simulation injects faults; the
//! simulated chain; the real alloy signer, watched; a clock that reads tokio's paused time.

use crate::chain::{ChainState, Tx, raw_hash};
use crate::world::World;
use alloy::primitives::{Address, B256, Bytes, U256};
use rand::Rng;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use withdraw_core::adapters::evm::LocalKeys;
/// An await point: the scheduler may run another task, or crash the process, here.
pub use withdraw_core::adapters::sqlite::YieldOnce;
use withdraw_core::adapters::sqlite::{SqliteBalances, SqliteQueue};
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::domain::{Amount, WithdrawalId};
use withdraw_core::ports::PortTypes;
use withdraw_core::ports::*;

/// The simulated deployment: real embedded adapters, simulated chain.
#[derive(Debug)]
pub struct SimPorts;

impl PortTypes for SimPorts {
    type Store = RecordStore;
    type Queue = SimQueue;
    type Balances = FlakyBalances;
    type Chain = SimChain;
}

pub type Shared = Arc<Mutex<World>>;

pub fn lock(w: &Shared) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds on tokio's paused clock, from a fixed epoch.
#[derive(Debug)]
pub struct SimClock {
    pub base: tokio::time::Instant,
    pub epoch_ms: i64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.epoch_ms + tokio::time::Instant::now().duration_since(self.base).as_millis() as i64
    }
}

/// The chain port over the simulated chain and its endpoints.
#[derive(Clone)]
pub struct SimChain {
    pub world: Shared,
    pub chain_id: u64,
    pub cap: u128,
    pub finality: Finality,
    /// How far behind its head the node reports its `finalized` block.
    pub finalized_lag: u64,
}

impl SimChain {
    async fn read<R>(&self, f: impl FnOnce(&mut ChainState, crate::chain::View) -> Result<R, ChainError>) -> Result<R, ChainError> {
        YieldOnce::new().await;
        let mut w = lock(&self.world);
        let v = w.chain.pick()?;
        f(&mut w.chain, v)
    }
}

impl Chain for SimChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn available(&self) -> bool {
        lock(&self.world).chain.available()
    }

    fn endpoints(&self) -> Vec<EndpointHealth> {
        let w = lock(&self.world);
        w.chain
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointHealth {
                name: format!("sim-{i}"),
                tier: EndpointTier::Primary,
                weight: 1,
                state: match e {
                    crate::chain::Endpoint::Down | crate::chain::Endpoint::Timeout => EndpointState::Down,
                    _ => EndpointState::Healthy,
                },
                head: Some(w.chain.head()),
                lag: 0,
                latency_ms: None,
                consecutive_failures: 0,
                last_error: None,
                since_ms: 0,
                serving_reads: i == w.chain.current,
            })
            .collect()
    }

    fn max_fee_cap(&self) -> u128 {
        self.cap
    }

    fn finality(&self) -> Finality {
        self.finality
    }

    async fn head(&self) -> Result<u64, ChainError> {
        self.read(|c, v| Ok(c.view_head(v))).await
    }

    async fn finalized(&self) -> Result<u64, ChainError> {
        let lag = self.finalized_lag;
        self.read(move |c, v| Ok(c.view_head(v).saturating_sub(lag))).await
    }

    async fn fees(&self) -> Result<Fees, ChainError> {
        let cap = self.cap;
        self.read(|c, _| {
            let tip = 1_500_000_000u128;
            let max = c.base_fee.saturating_mul(2).saturating_add(tip).min(cap);
            Ok(Fees::eip1559(max, tip.min(max)))
        })
        .await
    }

    async fn send_raw(&self, raws: Vec<Bytes>) -> Result<Vec<SendResult>, ChainError> {
        YieldOnce::new().await;
        let mut w = lock(&self.world);
        let picked = w.chain.pick();
        // A timed-out broadcast may still have reached the node.
        let landed = match &picked {
            Ok(_) => true,
            Err(ChainError::Transport(TransportKind::Timeout, _)) => w.rng.random_bool(0.5),
            Err(_) => false,
        };
        let mut out = Vec::with_capacity(raws.len());
        if landed {
            for raw in &raws {
                let hash = raw_hash(raw);
                if w.signed_while_paused.contains(&hash) {
                    w.violation(format!("transaction {hash} signed after a pause was answered reached the chain"));
                }
                let r = match w.chain.signed.get(&hash).cloned() {
                    Some(tx) => w.chain.admit(tx),
                    None => SendResult::classify("invalid sender"),
                };
                out.push(r);
            }
            if picked.is_err() {
                w.count("send_timeout_landed");
            }
        }
        match picked {
            Ok(_) => Ok(out),
            Err(e) => Err(e),
        }
    }

    async fn block_receipts(&self, from: u64, to: u64) -> Result<Vec<BlockReceipts>, ChainError> {
        self.read(|c, v| {
            if v.null_receipts {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            for n in from..=to {
                let Some(b) = c.block(v, n) else { break };
                out.push(BlockReceipts { number: b.number, hash: b.hash, receipts: b.receipts.clone() });
            }
            Ok(out)
        })
        .await
    }

    async fn block_hashes(&self, numbers: Vec<u64>) -> Result<Vec<Option<B256>>, ChainError> {
        self.read(|c, v| Ok(numbers.iter().map(|&n| c.block(v, n).map(|b| b.hash)).collect())).await
    }

    async fn block_hashes_and_finalized(&self, numbers: Vec<u64>) -> Result<(Vec<Option<B256>>, u64), ChainError> {
        let lag = self.finalized_lag;
        self.read(move |c, v| Ok((numbers.iter().map(|&n| c.block(v, n).map(|b| b.hash)).collect(), c.view_head(v).saturating_sub(lag))))
            .await
    }

    async fn receipts(&self, hashes: Vec<B256>) -> Result<Vec<Option<TxReceipt>>, ChainError> {
        self.read(|c, v| Ok(hashes.iter().map(|h| c.receipt(v, h)).collect())).await
    }

    async fn nonce(&self, address: Address, pending: bool) -> Result<u64, ChainError> {
        self.read(|c, v| Ok(if pending { c.pending_nonce(v, address) } else { c.view_state(v).nonce(address) })).await
    }

    async fn nonce_at(&self, address: Address, block: u64) -> Result<u64, ChainError> {
        self.read(|c, v| match c.block(v, block) {
            Some(b) => Ok(b.state.nonce(address)),
            None => Err(ChainError::Rpc { code: -32000, message: "header not found".into() }),
        })
        .await
    }

    async fn balance(&self, address: Address) -> Result<U256, ChainError> {
        self.read(|c, v| Ok(c.view_state(v).eth(address))).await
    }

    async fn token_balance(&self, token: Address, holder: Address) -> Result<U256, ChainError> {
        self.read(|c, v| Ok(c.view_state(v).token(token, holder))).await
    }
}

/// The SQLite queues, with messages duplicated or held back for late delivery.
#[derive(Clone)]
pub struct SimQueue {
    pub inner: SqliteQueue,
    pub world: Shared,
    pub clock: Arc<SimClock>,
}

impl Queue for SimQueue {
    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
        let mut now = Vec::with_capacity(bodies.len());
        {
            let mut w = lock(&self.world);
            for b in bodies {
                if w.faults_on && {
                    let p = w.rates.late;
                    w.rng.random_bool(p)
                } {
                    let at = self.clock.now_ms() + w.rng.random_range(1_000..60_000);
                    w.late.push((at, queue, b));
                    w.count("late_delivery");
                    continue;
                }
                if w.faults_on && {
                    let p = w.rates.duplicate;
                    w.rng.random_bool(p)
                } {
                    now.push(b.clone());
                    w.count("duplicate_delivery");
                }
                now.push(b);
            }
        }
        if now.is_empty() {
            return Ok(());
        }
        self.inner.send(queue, now).await
    }

    async fn receive(&self, queue: QueueName, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(queue, max, visibility, wait).await
    }

    async fn ack(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        self.inner.ack(queue, receipts).await
    }

    async fn extend(&self, queue: QueueName, receipts: Vec<String>, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(queue, receipts, visibility).await
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
        self.inner.stats(queue).await
    }
}

/// The SQLite balances, failing calls: before doing anything, or after doing it (the
/// caller cannot tell which).
#[derive(Clone)]
pub struct FlakyBalances {
    pub inner: SqliteBalances,
    pub world: Shared,
    pub clock: Arc<SimClock>,
}

enum Fail {
    No,
    Before,
    After,
}

impl FlakyBalances {
    fn roll(&self) -> Fail {
        let mut w = lock(&self.world);
        if w.faults_on && self.clock.now_ms() < w.balances_down_until_ms {
            return Fail::Before;
        }
        let p = w.rates.balance_fail;
        if !w.faults_on || !w.rng.random_bool(p) {
            return Fail::No;
        }
        if w.rng.random_bool(0.5) {
            w.count("balance_fail_before");
            Fail::Before
        } else {
            w.count("balance_fail_after");
            Fail::After
        }
    }

    async fn flaky<R>(&self, call: impl std::future::Future<Output = Result<R, BalanceError>>) -> Result<R, BalanceError> {
        let down = || BalanceError::Unavailable("simulated balance store outage".into());
        match self.roll() {
            Fail::No => call.await,
            Fail::Before => Err(down()),
            Fail::After => {
                call.await?;
                Err(down())
            }
        }
    }
}

impl Balances for FlakyBalances {
    async fn credit(&self, credit_id: &str, user_id: &str, asset: &str, amount: Amount) -> Result<Balance, BalanceError> {
        self.flaky(self.inner.credit(credit_id, user_id, asset, amount)).await
    }

    async fn reserve(&self, batch: Vec<Reservation>) -> Result<Vec<ReserveOutcome>, BalanceError> {
        self.flaky(self.inner.reserve(batch)).await
    }

    async fn commit(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
        self.flaky(self.inner.commit(ids)).await
    }

    async fn release(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
        self.flaky(self.inner.release(ids)).await
    }

    async fn get(&self, user_id: &str, asset: &str) -> Result<Balance, BalanceError> {
        self.flaky(self.inner.get(user_id, asset)).await
    }
}

/// The real signer, watched: every transaction it signs is registered with the chain (so
/// `send_raw` can read it), and one signed after a pause was answered is remembered.
pub struct SimKeys {
    pub inner: LocalKeys,
    pub world: Shared,
}

impl Keys for SimKeys {
    fn wallets(&self) -> Vec<Address> {
        self.inner.wallets()
    }

    fn sign(&self, wallet: Address, t: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
        let signed = self.inner.sign(wallet, t)?;
        let mut w = lock(&self.world);
        let tx = Tx {
            hash: signed.hash,
            from: wallet,
            nonce: t.nonce,
            to: t.to,
            value: t.value,
            input: t.input.clone(),
            gas_limit: t.gas_limit,
            max_fee: t.fees.max_fee_per_gas,
            prio: t.fees.max_priority_fee_per_gas,
        };
        if t.to == wallet && t.value.is_zero() && t.input.is_empty() {
            w.self_transfers.push((wallet, t.nonce));
        }
        w.chain.signed.insert(signed.hash, tx);
        w.signatures += 1;
        if w.paused {
            w.signed_while_paused.push(signed.hash);
        } else {
            // The same bytes signed again after a resume (signatures are deterministic) are
            // a signature of now, not of the pause.
            w.signed_while_paused.retain(|h| *h != signed.hash);
        }
        Ok(signed)
    }
}
