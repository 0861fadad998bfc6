//! A deterministic simulation of withdrawd. The real stages (signer with its funds budget,
//! bumper, nonce check, sender, tracker and reconciler with the settler, operator actions,
//! approvals, credits) run over the real embedded adapters (SQLite store, queues and
//! balances on a temporary file, in inline mode) and a simulated chain, on tokio's paused
//! clock, with every random choice drawn from one seed. Faults: process crashes at any
//! await point, duplicated and late messages, a failing balance store, chain reorgs,
//! dropped transactions, foreign use of the key, fee spikes, lying and failing endpoints,
//! and operators acting at random times. Invariants are checked after every step against
//! the chain's own truth, and again once faults stop and the system has settled.
//!
//! A failure is a seed: `withdraw-sim --seed N` replays it exactly.

pub mod chain;
mod exec;
pub mod ports;
pub mod world;

use alloy::primitives::{Address, B256, U256};
use chain::{ChainState, Endpoint, State, TokenKind, Tx};
use exec::{Ended, Task, race};
use ports::{FlakyBalances, Shared, SimChain, SimClock, SimKeys, SimPorts, SimQueue, lock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use withdraw_core::adapters::evm::LocalKeys;
use withdraw_core::adapters::sqlite::{Sqlite, SqliteBalances, SqliteQueue};
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::domain::{Amount, Asset, AssetKind, AssetRegistry, Status, WithdrawalId};
use withdraw_core::ports::*;
use withdraw_core::stages::{self, *};
use world::World;
use zeroize::Zeroizing;

pub const CHAIN_ID: u64 = 31337;
const FEE_CAP: u128 = 500_000_000_000;
const GWEI: u128 = 1_000_000_000;

/// One run's settings. Everything else is drawn from the seed.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// Withdrawals the clients submit over the run.
    pub withdrawals: usize,
    /// Steps with faults on; then the system is left to settle.
    pub steps: usize,
    pub faults: bool,
    /// Deepest reorg the chain makes. The default stays within what the confirmations
    /// absorb (depth below `confirmations`); deeper reorgs break the finality assumption
    /// the tracker and the nonce check rely on, and are an experiment of their own.
    pub max_reorg: u64,
    /// How deep a block must be to be final (the tracker finishes by it, the nonce check
    /// settles by it).
    pub confirmations: u64,
    /// The chain's finality is its `finalized` block (which the simulated node keeps
    /// `confirmations - 1` behind its head) instead of a count of confirmations: the same
    /// depth, reached through the other code path.
    pub finalized: bool,
    /// Hot wallets (nonce lanes).
    pub wallets: usize,
    /// At this step, the chain pays a paid destination a second time: a check of the
    /// checks (a simulation whose invariants cannot fail finds nothing).
    pub double_pay_at: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            withdrawals: 200,
            steps: 1500,
            faults: true,
            max_reorg: 2,
            confirmations: 3,
            finalized: false,
            wallets: 1,
            double_pay_at: None,
        }
    }
}

impl Config {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let d = Config::default();
        let mut cmd = format!("cargo run --release -p withdraw-sim -- --seed {}", self.seed);
        if self.withdrawals != d.withdrawals {
            cmd += &format!(" --withdrawals {}", self.withdrawals);
        }
        if self.steps != d.steps {
            cmd += &format!(" --steps {}", self.steps);
        }
        if !self.faults {
            cmd += " --no-faults";
        }
        if self.max_reorg != d.max_reorg {
            cmd += &format!(" --max-reorg {}", self.max_reorg);
        }
        if self.confirmations != d.confirmations {
            cmd += &format!(" --confirmations {}", self.confirmations);
        }
        if self.finalized {
            cmd += " --finalized";
        }
        if self.wallets != d.wallets {
            cmd += &format!(" --wallets {}", self.wallets);
        }
        cmd
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub steps: usize,
    pub withdrawals: usize,
    pub by_status: BTreeMap<String, usize>,
    /// Why withdrawals ended where they did (INVALID, FAILED, ...), by the reason's start.
    pub reasons: BTreeMap<String, usize>,
    pub faults: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    /// The events that led to the first violation (or to the end).
    pub trace: Vec<String>,
    /// The last log lines of the simulated process.
    pub logs: Vec<String>,
    pub sim_ms: i64,
    pub blocks: u64,
    pub signatures: u64,
    /// A digest of everything observable: equal across replays of a seed.
    pub digest: u64,
}

impl Report {
    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
    }
}

/// One asset of the simulated deployment.
struct SimAsset {
    symbol: &'static str,
    token: Option<(Address, TokenKind)>,
    decimals: u8,
    /// Withdrawal amounts are drawn in units of this many base units.
    unit: u128,
    max_units: u64,
}

fn sim_assets() -> Vec<SimAsset> {
    vec![
        SimAsset { symbol: "ETH", token: None, decimals: 18, unit: 1_000_000_000_000_000, max_units: 2_500 },
        SimAsset {
            symbol: "TOK",
            token: Some((Address::repeat_byte(0xa1), TokenKind::Pays)),
            decimals: 6,
            unit: 1_000_000,
            max_units: 2_500,
        },
        SimAsset {
            symbol: "BAD",
            token: Some((Address::repeat_byte(0xa2), TokenKind::ReturnsFalse)),
            decimals: 6,
            unit: 1_000_000,
            max_units: 500,
        },
        SimAsset {
            symbol: "REV",
            token: Some((Address::repeat_byte(0xa3), TokenKind::Reverts)),
            decimals: 6,
            unit: 1_000_000,
            max_units: 500,
        },
    ]
}

fn registry(assets: &[SimAsset]) -> AssetRegistry {
    AssetRegistry::new(
        assets
            .iter()
            .map(|a| Asset {
                symbol: a.symbol.into(),
                chain_id: CHAIN_ID,
                kind: a.token.map_or(AssetKind::Native, |(contract, _)| AssetKind::Erc20 { contract }),
                decimals: a.decimals,
                max_amount: Some(Amount(U256::from(a.unit) * U256::from(a.max_units * 4 / 5))),
                gas_limit: if a.token.is_some() { 65_000 } else { 21_000 },
                approval_threshold: Some(Amount(U256::from(a.unit) * U256::from(a.max_units / 2))),
            })
            .collect(),
    )
}

/// A request as the client made it: the simulation's record of what is owed.
#[derive(Debug, Clone)]
struct Req {
    id: Option<WithdrawalId>,
    key: String,
    user: String,
    asset: usize,
    amount: Amount,
    to: Address,
}

/// The client side and the operators' record, shared by the tasks of a step.
#[derive(Default)]
struct Model {
    reqs: Vec<Req>,
    /// Requests whose submission got no answer: the client retries them.
    unanswered: Vec<usize>,
    /// Credits asked for, per (user, asset): what the books may at most hold.
    credited: BTreeMap<(String, String), U256>,
    /// Credits waiting for a second person: (key).
    pending_credits: Vec<String>,
    credits: Vec<CreditReq>,
    credit_seq: u64,
    paused_all: bool,
    paused_chain: bool,
    /// Operators' reprocesses that answered: (withdrawal, when).
    reprocessed: Vec<(WithdrawalId, i64)>,
}

/// The simulated process: its ports and stages. Dropped whole on a crash.
struct Process {
    ports: Arc<Ports<SimPorts>>,
    signer: Signer<SimPorts, SimKeys>,
    sender: Sender<SimPorts>,
    tracker: Tracker<SimPorts>,
    bumper: Bumper<SimPorts, SimKeys>,
    keeper: NonceKeeper<SimPorts, SimKeys>,
}

const USERS: usize = 6;
const OPERATOR: &str = "alice";
const APPROVER: &str = "bob";
const VISIBILITY: Duration = Duration::from_secs(30);
/// Receives before a message is redriven to its dead-letter queue.
const MAX_RECEIVES: u32 = 3;

struct Sim {
    cfg: Config,
    rng: ChaCha8Rng,
    world: Shared,
    clock: Arc<SimClock>,
    keys: Arc<SimKeys>,
    wallets: Vec<Address>,
    assets: Vec<SimAsset>,
    registry: Arc<AssetRegistry>,
    model: RefCell<Model>,
    _dir: tempfile::TempDir,
    db_path: PathBuf,
    process: Option<Process>,
    /// A balances handle without faults, for the checks.
    books: Option<SqliteBalances>,
    logs: LogSink,
    step: usize,
    /// The chain changed since the last payment check.
    chain_dirty: bool,
}

/// Runs one seed to the end and reports.
pub fn run(cfg: &Config) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut secrets = Vec::new();
    for _ in 0..cfg.wallets.max(1) {
        let mut k = [0u8; 32];
        rng.fill(&mut k[..]);
        k[0] = k[0].clamp(1, 0xfe);
        secrets.push(hex::encode(k));
    }
    let logs = LogSink::new(secrets.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a tokio runtime");
    let cfg = cfg.clone();
    rt.block_on(async move {
        let mut sim = Sim::new(cfg, rng, secrets, logs);
        sim.run().await
    })
}

impl Sim {
    fn new(cfg: Config, mut rng: ChaCha8Rng, secrets: Vec<String>, logs: LogSink) -> Sim {
        let hex_keys: Vec<Zeroizing<String>> = secrets.into_iter().map(Zeroizing::new).collect();
        let local = LocalKeys::from_hex(&hex_keys).expect("seeded keys are valid");
        let wallets = local.wallets();
        let assets = sim_assets();
        let mut genesis = State::default();
        for &w in &wallets {
            genesis.eth.insert(w, U256::from(400u128) * U256::from(10u128.pow(18)));
            for a in &assets {
                if let Some((t, _)) = a.token {
                    genesis.token.insert((t, w), U256::from(a.unit) * U256::from(1_000_000u64));
                }
            }
        }
        let mut chain = ChainState::new(CHAIN_ID, genesis);
        for a in &assets {
            if let Some((t, kind)) = a.token {
                chain.tokens.insert(t, kind);
            }
        }
        let world_rng = ChaCha8Rng::seed_from_u64(rng.random());
        let mut world = World::new(chain, world_rng);
        world.faults_on = cfg.faults;
        let world = Arc::new(Mutex::new(world));
        let keys = Arc::new(SimKeys { inner: local, world: world.clone() });
        let clock = Arc::new(SimClock { base: tokio::time::Instant::now(), epoch_ms: 1_800_000_000_000 });
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() { tempfile::tempdir_in(base) } else { tempfile::tempdir() }.expect("a temporary directory");
        let db_path = dir.path().join("sim.db");
        let registry = Arc::new(registry(&assets));
        Sim {
            cfg,
            rng,
            world,
            clock,
            keys,
            wallets,
            assets,
            registry,
            model: RefCell::new(Model::default()),
            _dir: dir,
            db_path,
            process: None,
            books: None,
            logs,
            step: 0,
            chain_dirty: true,
        }
    }

    fn note(&self, what: impl Into<String>) {
        lock(&self.world).note(what);
    }

    fn count(&self, kind: &'static str) {
        lock(&self.world).count(kind);
    }

    fn failed(&self) -> bool {
        !lock(&self.world).violations.is_empty()
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn run(&mut self) -> Report {
        self.start().await;
        self.initial_credits().await;
        // The step budget, stretched (up to three times) until every request was sent.
        while (self.step < self.cfg.steps || self.model.borrow().reqs.len() < self.cfg.withdrawals)
            && self.step < self.cfg.steps * 3
            && !self.failed()
        {
            self.step += 1;
            if self.cfg.double_pay_at == Some(self.step) {
                self.double_pay();
            }
            self.one_step().await;
            self.check_step().await;
        }
        if !self.failed() {
            self.settle().await;
        }
        self.report().await
    }

    /// Starts (or restarts) the process on the same database file, as the daemon does:
    /// the signer binds its wallets and the nonce check runs before anything is signed.
    async fn start(&mut self) {
        let db = Sqlite::open_inline(&self.db_path).expect("the simulation's database opens");
        let clock: Arc<dyn Clock> = self.clock.clone();
        let ports = Arc::new(Ports::<SimPorts> {
            store: RecordStore::new(db.clone(), clock.clone()),
            queue: SimQueue {
                inner: SqliteQueue::new(db.clone(), clock.clone(), MAX_RECEIVES),
                world: self.world.clone(),
                clock: self.clock.clone(),
            },
            balances: FlakyBalances {
                inner: SqliteBalances::new(db.clone(), clock.clone()),
                world: self.world.clone(),
                clock: self.clock.clone(),
            },
            chains: HashMap::from([(
                CHAIN_ID,
                SimChain {
                    world: self.world.clone(),
                    chain_id: CHAIN_ID,
                    cap: FEE_CAP,
                    finality: if self.cfg.finalized { Finality::Finalized } else { Finality::Confirmations(self.cfg.confirmations) },
                    finalized_lag: self.cfg.confirmations.saturating_sub(1),
                },
            )]),
            clock: clock.clone(),
        });
        self.books = Some(SqliteBalances::new(db, clock));
        let signer = match Signer::new(
            ports.clone(),
            self.keys.clone(),
            self.registry.clone(),
            SignerConfig { batch: 64, visibility: VISIBILITY, wait: Duration::ZERO },
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                self.note(format!("process start failed: {e}"));
                return;
            }
        };
        let keeper = NonceKeeper::new(
            ports.clone(),
            self.keys.clone(),
            self.registry.clone(),
            NonceKeeperConfig {
                every: Duration::from_secs(5),
                stuck_after: Duration::from_secs(20),
                displaced_after: Duration::from_secs(15),
            },
        );
        if let Err(e) = keeper.check_all().await {
            self.note(format!("process start failed at the nonce check: {e}"));
            return;
        }
        let sender = Sender::new(ports.clone(), SenderConfig { batch: 64, visibility: VISIBILITY, wait: Duration::ZERO });
        let tracker = Tracker::new(
            ports.clone(),
            self.registry.clone(),
            TrackerConfig {
                poll: Duration::from_millis(500),
                blocks_per_batch: 50,
                reconcile_every: Duration::from_secs(5),
                stale_after: Duration::from_secs(30),
                lease_ttl: Duration::from_secs(6),
            },
        );
        let bumper = Bumper::new(
            ports.clone(),
            self.keys.clone(),
            BumperConfig { stuck_after: Duration::from_secs(20), every: Duration::from_secs(1), percent: 10 },
        );
        self.note("process started");
        self.process = Some(Process { ports, signer, sender, tracker, bumper, keeper });
    }

    async fn initial_credits(&mut self) {
        for u in 0..USERS {
            for a in 0..self.assets.len() {
                let units = self.rng.random_range(1_000..8_000u64);
                let amount = Amount(U256::from(self.assets[a].unit) * U256::from(units));
                self.credit(format!("u{u}"), a, amount).await;
            }
        }
    }

    /// An operator credits a user (journaled, idempotent per key), retrying while the
    /// process is down or the call fails, as an operator would with the same key.
    async fn credit(&mut self, user: String, asset: usize, amount: Amount) {
        let key = {
            let mut m = self.model.borrow_mut();
            m.credit_seq += 1;
            let key = format!("credit-{}", m.credit_seq);
            *m.credited.entry((user.clone(), self.assets[asset].symbol.to_owned())).or_default() += amount.0;
            key
        };
        for _ in 0..20 {
            if self.process.is_none() {
                self.start().await;
            }
            let Some(p) = &self.process else { continue };
            // The opening balances: no second approver.
            match stages::credit(&p.ports, &key, &user, self.assets[asset].symbol, amount, "opening balance", OPERATOR, None).await {
                Ok(a) => {
                    if a.balance.is_none() {
                        self.model.borrow_mut().pending_credits.push(key.clone());
                    }
                    return;
                }
                Err(_) => tokio::time::advance(Duration::from_millis(200)).await,
            }
        }
    }

    async fn one_step(&mut self) {
        let dt = self.rng.random_range(100..2_000u64);
        tokio::time::advance(Duration::from_millis(dt)).await;
        lock(&self.world).now_ms = self.now() - self.clock.epoch_ms;
        self.deliver_late().await;
        if self.process.is_none() {
            if self.rng.random_bool(0.6) {
                self.start().await;
            }
            if self.process.is_none() {
                // The world goes on while the process is down (endpoints recover or not).
                if self.cfg.faults && self.rng.random_bool(0.3) {
                    self.chain_fault();
                } else {
                    self.maybe_mine();
                }
                return;
            }
        }
        let roll = self.rng.random_range(0..100u32);
        match roll {
            0..=54 => self.work().await,
            55..=84 => self.maybe_mine(),
            _ if self.cfg.faults => self.chain_fault(),
            _ => self.maybe_mine(),
        }
    }

    /// Mines a copy of a mined native payment from another sender, as if paid twice.
    fn double_pay(&mut self) {
        let mut w = lock(&self.world);
        let paid = w
            .chain
            .canonical
            .iter()
            .flat_map(|b| b.txs.iter().zip(&b.receipts))
            .find(|(t, r)| r.success && !t.value.is_zero() && self.wallets.contains(&t.from))
            .map(|(t, _)| t.clone());
        if let Some(t) = paid {
            let payer = Address::repeat_byte(0x5a);
            // Funded in every block, so a reorg cannot take the payer's funds away.
            for b in w.chain.canonical.iter_mut() {
                *b.state.eth.entry(payer).or_default() += U256::from(10u128.pow(21));
            }
            let again = Tx { hash: B256::repeat_byte(0x5a), from: payer, nonce: 0, max_fee: FEE_CAP, prio: GWEI, ..t };
            w.chain.mempool.insert((payer, 0), again);
            w.note("sabotage: a second payment to a paid destination enters the pool");
        }
    }

    fn maybe_mine(&mut self) {
        let capacity = self.rng.random_range(1..=30);
        let hash = B256::from(self.rng.random::<[u8; 32]>());
        let mut w = lock(&self.world);
        let base = w.chain.base_fee;
        // A random walk that drifts back down after a spike.
        let drift = if base > 40 * GWEI { self.rng.random_range(800..1_020u128) } else { self.rng.random_range(880..1_125u128) };
        let next = (base * drift / 1_000).clamp(GWEI, FEE_CAP);
        w.chain.mine(hash, capacity, next);
        let b = w.chain.canonical.last().expect("mined");
        let (n, txs) = (b.number, b.txs.len());
        w.note(format!("block {n} mined with {txs} txs, base fee {} gwei", base / GWEI));
        self.chain_dirty = true;
    }

    /// Delivers messages held back whose time has come.
    async fn deliver_late(&mut self) {
        let now = self.now();
        let due: Vec<(QueueName, String)> = {
            let mut w = lock(&self.world);
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut w.late).into_iter().partition(|(at, _, _)| *at <= now);
            w.late = keep;
            due.into_iter().map(|(_, q, b)| (q, b)).collect()
        };
        if due.is_empty() {
            return;
        }
        if let Some(p) = &self.process {
            for (q, b) in due {
                let _ = p.ports.queue.inner.send(q, vec![b]).await;
            }
        } else {
            // The queue outlives the process; deliver on the next step it runs.
            lock(&self.world).late.extend(due.into_iter().map(|(q, b)| (now, q, b)));
        }
    }

    fn chain_fault(&mut self) {
        let kind = self.rng.random_range(0..106u32);
        let mut w = lock(&self.world);
        match kind {
            100.. => {
                // The balance store goes down for a while (a Redis failover, a partition).
                let secs = self.rng.random_range(30..240);
                w.balances_down_until_ms = self.clock.now_ms() + secs * 1_000;
                w.count("balance_outage");
                w.note(format!("the balance store is down for {secs} s"));
            }
            0..=14 => {
                let depth = self.rng.random_range(1..=self.cfg.max_reorg.max(1));
                let drop_p = 0.25;
                let mut dice = ChaCha8Rng::seed_from_u64(self.rng.random());
                let back = w.chain.unwind(depth, |_| !dice.random_bool(drop_p));
                for _ in 0..=depth {
                    let capacity = self.rng.random_range(0..=20);
                    let hash = B256::from(self.rng.random::<[u8; 32]>());
                    let base = w.chain.base_fee;
                    w.chain.mine(hash, capacity, base);
                }
                w.count("reorg");
                let head = w.chain.head();
                w.note(format!("reorg of depth {depth}: {back} txs back in the pool, new head {head}"));
                self.chain_dirty = true;
            }
            15..=29 => {
                let ours: Vec<(Address, u64)> = w.chain.mempool.keys().copied().filter(|(a, _)| self.wallets.contains(a)).collect();
                if !ours.is_empty() {
                    let k = ours[self.rng.random_range(0..ours.len())];
                    w.chain.mempool.remove(&k);
                    w.count("tx_dropped");
                    w.note(format!("pool dropped the transaction at nonce {} of {}", k.1, k.0));
                }
            }
            30..=37 => {
                // Someone else signs with our key: at the next nonce the chain will mine
                // (displacing ours in the pool) or past our pending ones.
                let wallet = self.wallets[self.rng.random_range(0..self.wallets.len())];
                let nonce = if self.rng.random_bool(0.5) {
                    w.chain.latest().nonce(wallet)
                } else {
                    w.chain.pending_nonce(Default::default(), wallet)
                };
                let drain = self.rng.random_bool(0.2);
                let value = if drain { w.chain.latest().eth(wallet) * U256::from(9) / U256::from(10) } else { U256::from(10u128.pow(16)) };
                let tx = Tx {
                    hash: B256::from(self.rng.random::<[u8; 32]>()),
                    from: wallet,
                    nonce,
                    to: Address::repeat_byte(0xee),
                    value,
                    input: Default::default(),
                    gas_limit: 21_000,
                    max_fee: FEE_CAP,
                    prio: 50 * GWEI,
                };
                w.chain.mempool.insert((wallet, nonce), tx);
                w.count(if drain { "wallet_drained" } else { "foreign_use" });
                w.note(format!("foreign transaction from {wallet} at nonce {nonce}{}", if drain { " draining the wallet" } else { "" }));
            }
            38..=41 => {
                let wallet = self.wallets[self.rng.random_range(0..self.wallets.len())];
                if w.chain.latest().eth(wallet) < U256::from(50u128) * U256::from(10u128.pow(18)) {
                    let last = w.chain.canonical.last_mut().expect("head");
                    *last.state.eth.entry(wallet).or_default() += U256::from(300u128) * U256::from(10u128.pow(18));
                    w.count("wallet_topped_up");
                    w.note(format!("hot wallet {wallet} topped up"));
                }
                let tok = self.assets[1].token.expect("TOK is a token").0;
                let full = U256::from(self.assets[1].unit) * U256::from(1_000_000u64);
                if w.chain.latest().token(tok, wallet) < full / U256::from(2) {
                    let last = w.chain.canonical.last_mut().expect("head");
                    last.state.token.insert((tok, wallet), full);
                    w.count("wallet_topped_up");
                    w.note(format!("hot wallet {wallet} topped up with TOK"));
                }
            }
            42..=44 => {
                // The wallet's tokens leave (a sweep to cold storage): transfers revert until
                // it is topped up.
                let wallet = self.wallets[self.rng.random_range(0..self.wallets.len())];
                let tok = self.assets[1].token.expect("TOK is a token").0;
                let last = w.chain.canonical.last_mut().expect("head");
                last.state.token.insert((tok, wallet), U256::from(self.assets[1].unit) * U256::from(100u64));
                w.count("token_drained");
                w.note(format!("hot wallet {wallet}'s TOK swept away"));
            }
            45..=52 => {
                let f = self.rng.random_range(3..10u128);
                w.chain.base_fee = (w.chain.base_fee * f).min(FEE_CAP * 3 / 5);
                w.count("base_fee_spike");
                let b = w.chain.base_fee / GWEI;
                w.note(format!("base fee spikes to {b} gwei"));
            }
            53..=57 if !w.chain.orphaned.is_empty() => {
                w.chain.current = self.rng.random_range(0..w.chain.endpoints.len());
                let c = w.chain.current;
                w.note(format!("reads move to endpoint {c}"));
            }
            _ => {
                let i = self.rng.random_range(0..w.chain.endpoints.len());
                let mode = match self.rng.random_range(0..9u32) {
                    0..=2 => Endpoint::Healthy,
                    3 => Endpoint::Lagging(self.rng.random_range(1..=3)),
                    4 => Endpoint::NullReceipts,
                    5 => Endpoint::OldFork,
                    6 => Endpoint::Timeout,
                    7 => Endpoint::RateLimited,
                    _ => Endpoint::Down,
                };
                w.chain.endpoints[i] = mode;
                if mode != Endpoint::Healthy {
                    w.count(mode.kind());
                }
                w.note(format!("endpoint {i} is now {mode:?}"));
            }
        }
    }

    /// Runs one to three of the process's tasks concurrently, perhaps crashing it.
    async fn work(&mut self) {
        let n = self.rng.random_range(1..=3);
        let mut kinds = Vec::new();
        for _ in 0..n {
            let k = match self.rng.random_range(0..100u32) {
                0..=19 => "signer",
                20..=39 => "sender",
                40..=56 => "tracker",
                57..=64 => "reconciler",
                65..=71 => "bumper",
                72..=78 => "nonce-check",
                79..=89 => "intake",
                _ => "operator",
            };
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        // One process runs one tracker loop: following and reconciling never overlap.
        if kinds.contains(&"tracker") && kinds.contains(&"reconciler") {
            kinds.retain(|k| *k != "tracker");
        }
        let crash_at = (self.cfg.faults && self.rng.random_bool(0.04)).then(|| self.rng.random_range(1..40u32));
        let op = if kinds.contains(&"operator") { self.choose_op().await } else { Op::Nothing };
        let intake = if kinds.contains(&"intake") { self.choose_submissions() } else { Vec::new() };
        let p = self.process.as_ref().expect("running");
        let world = self.world.clone();
        let model = &self.model;
        let assets = &self.assets;
        let mut tasks: Vec<Task<'_>> = Vec::new();
        for k in &kinds {
            let fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> = match *k {
                "signer" => Box::pin(async move {
                    if p.signer.ready().await
                        && let Ok(d) = p.ports.queue.receive(QueueName::Requests, 64, VISIBILITY, Duration::ZERO).await
                        && !d.is_empty()
                    {
                        let _ = p.signer.work(d).await;
                    }
                }),
                "sender" => Box::pin(async move {
                    if p.sender.ready().await
                        && let Ok(d) = p.ports.queue.receive(QueueName::Signed, 64, VISIBILITY, Duration::ZERO).await
                        && !d.is_empty()
                    {
                        let _ = p.sender.work(d).await;
                    }
                }),
                "tracker" => Box::pin(async move {
                    if p.tracker.hold_lease().await {
                        let _ = p.tracker.follow().await;
                    }
                }),
                "reconciler" => Box::pin(async move {
                    let _ = p.tracker.once().await;
                }),
                "bumper" => Box::pin(async move {
                    let _ = p.bumper.tick().await;
                }),
                "nonce-check" => Box::pin(async move {
                    let _ = p.keeper.check_all().await;
                }),
                "intake" => {
                    let subs = intake.clone();
                    Box::pin(submit(p, model, assets, subs))
                }
                _ => {
                    let op = op.clone();
                    let world = world.clone();
                    Box::pin(operate(p, model, world, op))
                }
            };
            tasks.push((k, fut));
        }
        let ended = race(&mut self.rng, tasks, crash_at).await;
        if let Ended::Crashed(at) = ended {
            self.process = None;
            self.books = None;
            self.count("crash");
            self.note(format!("CRASH at poll {at} while running {}", kinds.join(", ")));
        }
    }

    /// Requests the clients send next: new ones, retries of unanswered ones, and replays.
    fn choose_submissions(&mut self) -> Vec<usize> {
        let mut m = self.model.borrow_mut();
        let mut out: Vec<usize> = std::mem::take(&mut m.unanswered);
        if !m.reqs.is_empty() && self.rng.random_bool(0.15) {
            // A client (or an attacker with a captured request) sends one again.
            out.push(self.rng.random_range(0..m.reqs.len()));
        }
        let room = self.cfg.withdrawals.saturating_sub(m.reqs.len());
        let n = self.rng.random_range(1..=8).min(room);
        for _ in 0..n {
            let asset = match self.rng.random_range(0..100u32) {
                0..=49 => 0,
                50..=79 => 1,
                80..=89 => 2,
                _ => 3,
            };
            let a = &self.assets[asset];
            // Mostly ordinary amounts; some above the approval threshold or the maximum.
            let units = if self.rng.random_bool(0.15) {
                self.rng.random_range(1..=a.max_units)
            } else {
                self.rng.random_range(1..=a.max_units / 8)
            };
            let i = m.reqs.len();
            m.reqs.push(Req {
                id: None,
                key: format!("req-{i}"),
                user: format!("u{}", self.rng.random_range(0..USERS)),
                asset,
                amount: Amount(U256::from(a.unit) * U256::from(units)),
                to: Address::from(self.rng.random::<[u8; 20]>()),
            });
            out.push(i);
        }
        out.sort_unstable();
        out.dedup();
        // Unanswered until an answer comes (the task may crash before it even starts).
        m.unanswered.extend(out.iter().copied());
        out
    }

    /// What an operator does now, from what the console would show.
    async fn choose_op(&mut self) -> Op {
        let Some(p) = &self.process else { return Op::Nothing };
        let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
        let Ok(rows) = p.ports.store.load(ids).await else { return Op::Nothing };
        let pick = |rng: &mut ChaCha8Rng, s: &[Status]| -> Option<WithdrawalId> {
            let c: Vec<&Withdrawal> = rows.iter().filter(|w| s.contains(&w.status)).collect();
            (!c.is_empty()).then(|| c[rng.random_range(0..c.len())].id.clone())
        };
        let (paused_all, paused_chain) = {
            let m = self.model.borrow();
            (m.paused_all, m.paused_chain)
        };
        match self.rng.random_range(0..100u32) {
            0..=24 => pick(&mut self.rng, &[Status::Invalid, Status::SendFailed]).map_or(Op::Nothing, Op::Reprocess),
            25..=34 => pick(&mut self.rng, &[Status::Invalid, Status::SendFailed, Status::Sent]).map_or(Op::Nothing, Op::Discard),
            35..=54 => pick(&mut self.rng, &[Status::PendingApproval]).map_or(Op::Nothing, Op::Approve),
            55..=59 => pick(&mut self.rng, &[Status::PendingApproval]).map_or(Op::Nothing, Op::Reject),
            60..=69 => {
                let chain = self.rng.random_bool(0.5);
                if (chain && paused_chain) || (!chain && paused_all) { Op::Resume(chain) } else { Op::Pause(chain) }
            }
            70..=77 if paused_all || paused_chain => Op::Resume(paused_chain),
            78..=89 => {
                let mut m = self.model.borrow_mut();
                if !m.credits.is_empty() && self.rng.random_bool(0.15) {
                    // The same call again (a retry after a timeout): must credit nothing more.
                    let c = m.credits[self.rng.random_range(0..m.credits.len())].clone();
                    return Op::Credit(c, true);
                }
                let asset = self.rng.random_range(0..self.assets.len());
                let units = if self.rng.random_bool(0.2) { 2_500 } else { self.rng.random_range(100..1_500u64) };
                let user = format!("u{}", self.rng.random_range(0..USERS));
                let amount = Amount(U256::from(self.assets[asset].unit) * U256::from(units));
                let threshold = Amount(U256::from(self.assets[asset].unit) * U256::from(2_000u64));
                m.credit_seq += 1;
                *m.credited.entry((user.clone(), self.assets[asset].symbol.to_owned())).or_default() += amount.0;
                let c = CreditReq { key: format!("credit-{}", m.credit_seq), user, asset: self.assets[asset].symbol, amount, threshold };
                m.credits.push(c.clone());
                Op::Credit(c, false)
            }
            _ => {
                let m = self.model.borrow();
                if m.pending_credits.is_empty() {
                    Op::Nothing
                } else {
                    Op::ApproveCredit(m.pending_credits[self.rng.random_range(0..m.pending_credits.len())].clone())
                }
            }
        }
    }

    /// Checks after every step: what must hold at every moment.
    async fn check_step(&mut self) {
        if self.chain_dirty {
            self.chain_dirty = false;
            self.check_payments(false);
        }
        let paused: Vec<B256> = lock(&self.world).signed_while_paused.clone();
        if let Some(p) = &self.process {
            if !paused.is_empty()
                && let Ok(found) = p.ports.store.find_attempts(paused).await
                && let Some(a) = found.first()
            {
                let what = format!("withdrawal {} recorded an attempt {} signed after a pause was answered", a.withdrawal_id, a.tx_hash);
                lock(&self.world).violation(what);
            }
            // A 0-value self-transfer (a fill, or a cancel) never takes over the nonce of an
            // open transfer nobody asked to cancel: fills go to true gaps only.
            let fills: Vec<(Address, u64)> = std::mem::take(&mut lock(&self.world).self_transfers);
            for (wallet, nonce) in fills {
                let Ok(at) = p.ports.store.attempts_at(CHAIN_ID, wallet, vec![nonce]).await else { continue };
                for a in at.iter().filter(|a| a.attempt.kind == AttemptKind::Transfer && matches!(a.status, Status::Signed | Status::Sent))
                {
                    let cancelled = p.ports.store.get(&a.attempt.withdrawal_id).await.ok().flatten().is_some_and(|d| d.cancel.is_some());
                    let newest =
                        p.ports.store.get(&a.attempt.withdrawal_id).await.ok().flatten().and_then(|d| d.attempts.last().map(|l| l.nonce));
                    if !cancelled && newest == Some(nonce) {
                        let what =
                            format!("a 0-value fill was signed at nonce {nonce}, owned by open withdrawal {}", a.attempt.withdrawal_id);
                        lock(&self.world).violation(what);
                    }
                }
            }
            if self.step.is_multiple_of(4) {
                self.check_books(false).await;
            }
            if self.step.is_multiple_of(20) {
                self.check_operator_actions_stand().await;
            }
        }
        if let Some(leak) = self.logs.leak() {
            lock(&self.world).violation(format!("key material in the process's output: {leak}"));
        }
    }

    /// An operator's reprocess is not undone by the dead-letter sweep acting on a message
    /// from before it. After a reprocess, a withdrawal can be dead-lettered again only by a
    /// message sent after it and received `MAX_RECEIVES` times, each delivery hidden for
    /// the visibility timeout: not sooner than that many timeouts, less one, later.
    async fn check_operator_actions_stand(&mut self) {
        let Some(p) = &self.process else { return };
        let reprocessed = self.model.borrow().reprocessed.clone();
        let soonest = (MAX_RECEIVES as i64 - 1) * VISIBILITY.as_millis() as i64 - 5_000;
        let mut bad = Vec::new();
        for (id, at) in reprocessed {
            let Ok(Some(d)) = p.ports.store.get(&id).await else { continue };
            if let Some(h) = d.history.iter().find(|h| {
                h.actor == "reconciler" && matches!(h.to, Status::Invalid | Status::SendFailed) && h.at_ms > at && h.at_ms < at + soonest
            }) {
                bad.push(format!(
                    "the dead-letter sweep moved withdrawal {id} to {} {} ms after an operator reprocessed it",
                    h.to,
                    h.at_ms - at
                ));
            }
        }
        self.model.borrow_mut().reprocessed.retain(|(_, at)| *at + soonest > self.clock.now_ms());
        let mut w = lock(&self.world);
        for b in bad {
            w.violation(b);
        }
    }

    /// No destination receives more than its withdrawal, nor twice.
    fn check_payments(&mut self, final_check: bool) {
        let paid = {
            let w = lock(&self.world);
            payments(&w.chain)
        };
        let m = self.model.borrow();
        let mut bad = Vec::new();
        for r in &m.reqs {
            let token = self.assets[r.asset].token.map(|(t, _)| t);
            let (amount, count) = paid.get(&(token, r.to)).copied().unwrap_or_default();
            if amount > r.amount.0 || count > 1 {
                bad.push((
                    format!(
                        "destination {} of withdrawal {} ({} {} base units) received {amount} in {count} transfers",
                        r.to,
                        r.id.as_ref().map_or("?".into(), |i| i.to_string()),
                        r.amount.0,
                        self.assets[r.asset].symbol
                    ),
                    r.to,
                ));
            }
        }
        drop(m);
        let _ = final_check;
        let mut w = lock(&self.world);
        for (b, dest) in bad {
            let lines: Vec<String> = w
                .chain
                .canonical
                .iter()
                .flat_map(|blk| blk.txs.iter().zip(&blk.receipts).map(move |(t, r)| (blk.number, t, r)))
                .filter(|(_, t, r)| t.to == dest || r.transfers.iter().any(|l| l.to == dest))
                .map(|(n, t, r)| format!("  paid in block {n} by {} at nonce {} (success {})", t.hash, t.nonce, r.success))
                .collect();
            w.violation(b);
            for l in lines {
                w.note(l);
            }
        }
    }

    /// For each user: reserved + spent within credited, credited within what operators
    /// credited; at the end, the books equal the withdrawals' outcomes.
    async fn check_books(&mut self, final_check: bool) {
        let Some(books) = &self.books else { return };
        let Some(p) = &self.process else { return };
        let credited = self.model.borrow().credited.clone();
        let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
        let rows = if final_check { p.ports.store.load(ids).await.unwrap_or_default() } else { Vec::new() };
        let mut bad = Vec::new();
        for u in 0..USERS {
            let user = format!("u{u}");
            for a in &self.assets {
                let Ok(b) = books.get(&user, a.symbol).await else { continue };
                let asked = credited.get(&(user.clone(), a.symbol.to_owned())).copied().unwrap_or_default();
                let (c, r, s) = (b.credited.0, b.reserved.0, b.spent.0);
                if r + s > c {
                    bad.push(format!("{user} {}: reserved {r} + spent {s} > credited {c}", a.symbol));
                }
                if c > asked {
                    bad.push(format!("{user} {}: credited {c} > the {asked} operators credited", a.symbol));
                }
                if final_check {
                    let sum = |st: &[Status]| -> U256 {
                        rows.iter().filter(|w| w.user_id == user && w.asset == a.symbol && st.contains(&w.status)).map(|w| w.amount.0).sum()
                    };
                    let spent = sum(&[Status::Completed]);
                    let held = sum(&[Status::PendingApproval, Status::Signed, Status::Sent, Status::SendFailed]);
                    if s != spent {
                        bad.push(format!("{user} {}: spent {s}, but COMPLETED withdrawals total {spent}", a.symbol));
                    }
                    if r != held {
                        bad.push(format!("{user} {}: reserved {r}, but open withdrawals hold {held}", a.symbol));
                    }
                }
            }
        }
        let mut w = lock(&self.world);
        for b in bad {
            w.violation(b);
        }
    }

    /// Faults stop; time runs on until the system is quiet; then the end-state checks.
    async fn settle(&mut self) {
        {
            let mut w = lock(&self.world);
            w.faults_on = false;
            for e in w.chain.endpoints.iter_mut() {
                *e = Endpoint::Healthy;
            }
            w.note("faults stop; the system settles");
            // Operators fund the hot wallets: work held for lack of funds goes on.
            let tokens: Vec<(Address, U256)> =
                self.assets.iter().filter_map(|a| a.token.map(|(t, _)| (t, U256::from(a.unit) * U256::from(1_000_000u64)))).collect();
            for &wallet in &self.wallets {
                let last = w.chain.canonical.last_mut().expect("head");
                *last.state.eth.entry(wallet).or_default() += U256::from(1_000u128) * U256::from(10u128.pow(18));
                for &(t, full) in &tokens {
                    *last.state.token.entry((t, wallet)).or_default() += full;
                }
            }
            w.chain.base_fee = w.chain.base_fee.min(20 * GWEI);
            let late = std::mem::take(&mut w.late);
            w.late = late.into_iter().map(|(_, q, b)| (0, q, b)).collect();
        }
        // Clients retry what got no answer.
        while !self.model.borrow().unanswered.is_empty() || self.process.is_none() {
            if self.process.is_none() {
                self.start().await;
                continue;
            }
            let subs = std::mem::take(&mut self.model.borrow_mut().unanswered);
            let p = self.process.as_ref().expect("running");
            submit(p, &self.model, &self.assets, subs).await;
        }
        // Whatever the operators believe (a pause whose answer a crash swallowed still
        // holds), they resume both scopes.
        for chain in [false, true] {
            let p = self.process.as_ref().expect("running");
            operate(p, &self.model, self.world.clone(), Op::Resume(chain)).await;
        }
        // After the incident, operators send back what the outages dead-lettered, and keep
        // triaging what lands in a dead-letter queue while the system settles: each once
        // sent back (the round it was), discarded if it fails again 300 s later.
        let mut retried: HashMap<WithdrawalId, u32> = HashMap::new();
        let mut discarded: HashSet<WithdrawalId> = HashSet::new();
        {
            let p = self.process.as_ref().expect("running");
            let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
            let rows = p.ports.store.load(ids).await.unwrap_or_default();
            // A dead-lettered transfer holds its lane (never auto-filled): an operator sends
            // every one back; one that fails again is discarded further down.
            for w in rows.iter().filter(|w| {
                w.status == Status::SendFailed
                    || (w.status == Status::Invalid && w.reason.as_deref().is_some_and(|r| r.starts_with("redriven")))
            }) {
                operate(p, &self.model, self.world.clone(), Op::Reprocess(w.id.clone())).await;
                retried.insert(w.id.clone(), 0);
            }
        }
        let mut quiet_rounds = 0;
        for round in 0..900 {
            tokio::time::advance(Duration::from_secs(1)).await;
            lock(&self.world).now_ms = self.now() - self.clock.epoch_ms;
            self.deliver_late().await;
            self.maybe_mine();
            let p = self.process.as_ref().expect("running");
            if p.signer.ready().await
                && let Ok(d) = p.ports.queue.receive(QueueName::Requests, 64, VISIBILITY, Duration::ZERO).await
                && !d.is_empty()
            {
                let _ = p.signer.work(d).await;
            }
            if p.sender.ready().await
                && let Ok(d) = p.ports.queue.receive(QueueName::Signed, 64, VISIBILITY, Duration::ZERO).await
                && !d.is_empty()
            {
                let _ = p.sender.work(d).await;
            }
            if p.tracker.hold_lease().await {
                let _ = p.tracker.follow().await;
            }
            if round % 5 == 0 {
                let _ = p.tracker.once().await;
                let _ = p.keeper.check_all().await;
            }
            let _ = p.bumper.tick().await;
            if round % 10 == 5 {
                let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
                let rows = p.ports.store.load(ids).await.unwrap_or_default();
                for w in rows.iter().filter(|w| w.status == Status::SendFailed) {
                    match retried.get(&w.id) {
                        None => {
                            operate(p, &self.model, self.world.clone(), Op::Reprocess(w.id.clone())).await;
                            retried.insert(w.id.clone(), round);
                        }
                        // Still dead-lettered after a retry: the operator gives up on it.
                        Some(&at) if round >= at + 300 && discarded.insert(w.id.clone()) => {
                            operate(p, &self.model, self.world.clone(), Op::Discard(w.id.clone())).await;
                        }
                        Some(_) => {}
                    }
                }
            }
            self.check_step().await;
            if self.failed() {
                return;
            }
            if round % 10 == 9 {
                if self.quiet(&discarded).await {
                    quiet_rounds += 1;
                    if quiet_rounds >= 3 {
                        break;
                    }
                } else {
                    quiet_rounds = 0;
                }
            }
        }
        self.final_checks().await;
    }

    /// Nothing left in flight: every withdrawal where a person must act or done, no
    /// balance change owed, nothing of ours in the pool.
    /// A SEND_FAILED transfer holds its lane: quiet only once the operators gave up on it.
    async fn quiet(&self, discarded: &HashSet<WithdrawalId>) -> bool {
        let Some(p) = &self.process else { return false };
        let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
        let Ok(rows) = p.ports.store.load(ids).await else { return false };
        let settled = rows.iter().all(|w| {
            w.status.is_terminal()
                || matches!(w.status, Status::Invalid | Status::PendingApproval)
                || (w.status == Status::SendFailed && discarded.contains(&w.id))
        });
        let owed = p.ports.store.pending_settlements(i64::MAX, None, 1).await.map(|o| o.is_empty()).unwrap_or(false);
        let pool_empty = !lock(&self.world).chain.mempool.keys().any(|(a, _)| self.wallets.contains(a));
        settled && owed && pool_empty
    }

    async fn final_checks(&mut self) {
        let Some(p) = &self.process else { return };
        let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
        if ids.len() != self.model.borrow().reqs.len() {
            lock(&self.world).violation("a submitted request was never recorded".into());
        }
        let rows = p.ports.store.load(ids).await.unwrap_or_default();
        let by_id: HashMap<&WithdrawalId, &Withdrawal> = rows.iter().map(|w| (&w.id, w)).collect();
        let paid = payments(&lock(&self.world).chain);
        let mut bad = Vec::new();
        for r in self.model.borrow().reqs.iter() {
            let Some(id) = &r.id else { continue };
            let Some(w) = by_id.get(id) else {
                bad.push(format!("withdrawal {id} was answered but is not in the store"));
                continue;
            };
            let token = self.assets[r.asset].token.map(|(t, _)| t);
            let (amount, count) = paid.get(&(token, r.to)).copied().unwrap_or_default();
            match w.status {
                Status::Completed if amount != r.amount.0 || count != 1 => {
                    bad.push(format!("COMPLETED withdrawal {id} was paid {amount} of {} in {count} transfers", r.amount.0))
                }
                Status::Completed => {}
                s if !amount.is_zero() => bad.push(format!("{s} withdrawal {id} was paid {amount} on the canonical chain")),
                s if !(s.is_terminal() || matches!(s, Status::Invalid | Status::SendFailed | Status::PendingApproval)) => {
                    bad.push(format!("withdrawal {id} is still {s} after the system settled"))
                }
                _ => {}
            }
        }
        if !bad.is_empty() {
            let controls = p.ports.store.signing_controls().await.unwrap_or_default();
            let funds = p.ports.store.wallet_funds().await.unwrap_or_default();
            {
                let mut w = lock(&self.world);
                w.note(format!("  signing controls: {:?}", controls.iter().map(|c| (c.chain_id, c.paused)).collect::<Vec<_>>()));
                for f in funds {
                    w.note(format!("  wallet funds: {f:?}"));
                }
            }
            // Where each lane waits: the nonce the chain mines next, what the pool holds
            // there, and who owns it in the store.
            for &wallet in &self.wallets {
                let (latest, pooled) = {
                    let w = lock(&self.world);
                    let latest = w.chain.latest().nonce(wallet);
                    (latest, w.chain.mempool.get(&(wallet, latest)).map(|t| (t.hash, t.max_fee)))
                };
                let owners = p.ports.store.attempts_at(CHAIN_ID, wallet, vec![latest]).await.unwrap_or_default();
                let owners: Vec<String> = owners
                    .iter()
                    .map(|a| format!("{} {:?} {} {:?}", a.attempt.withdrawal_id, a.attempt.kind, a.status, a.attempt.tx_hash))
                    .collect();
                let fills = p.ports.store.fills(CHAIN_ID, wallet, latest).await.unwrap_or_default();
                let fills: Vec<u64> = fills.iter().map(|f| f.nonce).filter(|&n| n == latest).collect();
                lock(&self.world).note(format!(
                    "  lane {wallet}: the chain mines nonce {latest} next; the pool holds {pooled:?} there; store owners {owners:?}; fills {fills:?}"
                ));
            }
        }
        match p.ports.store.pending_settlements(i64::MAX, None, 5).await {
            Ok(o) if !o.is_empty() => bad.push(format!("{} balance changes still owed after the system settled", o.len())),
            _ => {}
        }
        for &wallet in &self.wallets {
            let chain_next = lock(&self.world).chain.latest().nonce(wallet);
            let stored = p.ports.store.next_nonce(wallet, CHAIN_ID).await.ok().flatten();
            if stored != Some(chain_next) {
                bad.push(format!("nonce lane of {wallet} is not whole: the store's next nonce is {stored:?}, the chain's {chain_next}"));
            }
        }
        {
            let mut w = lock(&self.world);
            for b in bad {
                w.violation(b);
            }
        }
        self.check_payments(true);
        self.check_books(true).await;
        self.check_operator_actions_stand().await;
        let trace: Vec<String> = lock(&self.world).trace.iter().cloned().collect();
        let secrets = self.logs.secrets();
        if trace.iter().any(|t| secrets.iter().any(|s| t.to_ascii_lowercase().contains(&s[..16]))) {
            lock(&self.world).violation("key material in the simulation's trace".into());
        }
    }

    async fn report(&mut self) -> Report {
        let mut by_status = BTreeMap::new();
        let mut reasons = BTreeMap::new();
        if self.process.is_none() {
            self.start().await;
        }
        if let Some(p) = &self.process {
            let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
            for w in p.ports.store.load(ids).await.unwrap_or_default() {
                *by_status.entry(w.status.to_string()).or_insert(0) += 1;
                if let Some(r) = &w.reason {
                    let short: String = r.chars().take_while(|c| !c.is_ascii_digit()).take(48).collect();
                    *reasons.entry(format!("{}: {}", w.status, short.trim_end())).or_insert(0) += 1;
                }
            }
        }
        let first = lock(&self.world).violations.first().cloned();
        if let (Some(v), Some(p)) = (first, &self.process) {
            let ids: Vec<WithdrawalId> = self.model.borrow().reqs.iter().filter_map(|r| r.id.clone()).collect();
            if let Some(id) = ids.iter().find(|i| v.contains(i.as_str()))
                && let Ok(Some(d)) = p.ports.store.get(id).await
            {
                let mut w = lock(&self.world);
                // The newest few: a lane blocked for long bumps one transfer many times.
                let skip = d.attempts.len().saturating_sub(4);
                if skip > 0 {
                    w.note(format!("  ({skip} older attempts not shown)"));
                }
                for a in d.attempts.iter().skip(skip) {
                    w.note(format!(
                        "  attempt {} nonce {} {:?} max_fee {} signed at {}",
                        a.tx_hash,
                        a.nonce,
                        a.kind,
                        a.max_fee_per_gas,
                        a.created_at_ms - self.clock.epoch_ms
                    ));
                    let taken = w
                        .chain
                        .canonical
                        .iter()
                        .flat_map(|b| b.txs.iter().map(move |t| (b.number, t)))
                        .find(|(_, t)| t.from == a.wallet && t.nonce == a.nonce)
                        .map(|(n, t)| (n, t.hash, t.to, w.chain.signed.contains_key(&t.hash)));
                    w.note(format!("  nonce {} on the canonical chain: {taken:?} (block, hash, to, signed by our keys)", a.nonce));
                }
                for h in &d.history {
                    w.note(format!(
                        "  history {:?} -> {} by {} at {}: {}",
                        h.from,
                        h.to,
                        h.actor,
                        h.at_ms - self.clock.epoch_ms,
                        h.reason.clone().unwrap_or_default()
                    ));
                }
            }
        }
        let w = lock(&self.world);
        let mut digest = std::collections::hash_map::DefaultHasher::new();
        use std::hash::{Hash, Hasher};
        for t in &w.trace {
            t.hash(&mut digest);
        }
        by_status.hash(&mut digest);
        w.chain.head().hash(&mut digest);
        w.signatures.hash(&mut digest);
        Report {
            seed: self.cfg.seed,
            steps: self.step,
            withdrawals: self.model.borrow().reqs.len(),
            by_status,
            reasons,
            faults: w.counts.clone(),
            violations: w.violations.clone(),
            trace: w.trace.iter().cloned().collect(),
            logs: self.logs.tail(),
            sim_ms: self.clock.now_ms() - self.clock.epoch_ms,
            blocks: w.chain.head(),
            signatures: w.signatures,
            digest: digest.finish(),
        }
    }
}

/// Per (token or native, destination): the amount received on the canonical chain from
/// anyone, and in how many transactions.
fn payments(c: &ChainState) -> HashMap<(Option<Address>, Address), (U256, usize)> {
    let mut out: HashMap<(Option<Address>, Address), (U256, usize)> = HashMap::new();
    for b in &c.canonical {
        for (t, r) in b.txs.iter().zip(&b.receipts) {
            if r.success && !t.value.is_zero() && !c.tokens.contains_key(&t.to) {
                let e = out.entry((None, t.to)).or_default();
                e.0 += t.value;
                e.1 += 1;
            }
            for l in &r.transfers {
                let e = out.entry((Some(l.token), l.to)).or_default();
                e.0 += l.amount;
                e.1 += 1;
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct CreditReq {
    key: String,
    user: String,
    asset: &'static str,
    amount: Amount,
    threshold: Amount,
}

/// An operator's action, chosen from what the console shows.
#[derive(Debug, Clone)]
enum Op {
    Nothing,
    Reprocess(WithdrawalId),
    Discard(WithdrawalId),
    Approve(WithdrawalId),
    Reject(WithdrawalId),
    /// true: this chain only; false: every chain.
    Pause(bool),
    Resume(bool),
    /// A credit, and whether it repeats an earlier call.
    Credit(CreditReq, bool),
    ApproveCredit(String),
}

async fn operate(p: &Process, model: &RefCell<Model>, world: Shared, op: Op) {
    let ports = &p.ports;
    let scope = |chain: bool| chain.then_some(CHAIN_ID);
    let result: Result<String, String> = match &op {
        Op::Nothing => return,
        Op::Reprocess(id) => match stages::reprocess(ports, id, OPERATOR, "retry").await {
            Ok(o) => {
                if matches!(o, ActionOutcome::Moved(_)) {
                    model.borrow_mut().reprocessed.push((id.clone(), ports.clock.now_ms()));
                }
                Ok(format!("{o:?}"))
            }
            Err(e) => Err(e.to_string()),
        },
        Op::Discard(id) => stages::discard(ports, id, OPERATOR, "give up").await.map(|o| format!("{o:?}")).map_err(|e| e.to_string()),
        Op::Approve(id) => stages::approve(ports, id, APPROVER, "looks fine").await.map(|o| format!("{o:?}")).map_err(|e| e.to_string()),
        Op::Reject(id) => stages::reject(ports, id, APPROVER, "suspicious").await.map(|o| format!("{o:?}")).map_err(|e| e.to_string()),
        Op::Pause(chain) => {
            let r = stages::set_signing(ports, scope(*chain), true, OPERATOR, "incident").await;
            if r.is_ok() {
                // From this answer on, nothing new may be signed.
                let mut m = model.borrow_mut();
                if *chain {
                    m.paused_chain = true;
                } else {
                    m.paused_all = true;
                }
                lock(&world).paused = true;
            }
            r.map(|_| "paused".into()).map_err(|e| e.to_string())
        }
        Op::Resume(chain) => {
            // What was signed during the pause must not have been recorded by now; signed
            // during the pause and recorded after this resume is not a breach of it.
            let during: Vec<B256> = lock(&world).signed_while_paused.clone();
            if !during.is_empty()
                && let Ok(found) = ports.store.find_attempts(during).await
                && let Some(a) = found.first()
            {
                let what = format!("withdrawal {} recorded an attempt {} signed after a pause was answered", a.withdrawal_id, a.tx_hash);
                lock(&world).violation(what);
            }
            {
                let mut m = model.borrow_mut();
                if *chain {
                    m.paused_chain = false;
                } else {
                    m.paused_all = false;
                }
                let still = m.paused_all || m.paused_chain;
                let mut w = lock(&world);
                w.paused = still;
                if !still {
                    w.signed_while_paused.clear();
                }
            }
            stages::set_signing(ports, scope(*chain), false, OPERATOR, "resolved")
                .await
                .map(|_| "resumed".into())
                .map_err(|e| e.to_string())
        }
        Op::Credit(c, _) => match stages::credit(ports, &c.key, &c.user, c.asset, c.amount, "deposit", OPERATOR, Some(c.threshold)).await {
            Ok(a) => {
                if a.balance.is_none() && !a.repeated {
                    model.borrow_mut().pending_credits.push(c.key.clone());
                }
                Ok(format!("credit {} {:?}{}", c.key, a.credit.state, if a.repeated { " (repeat)" } else { "" }))
            }
            Err(e) => Err(e.to_string()),
        },
        Op::ApproveCredit(key) => match stages::approve_credit(ports, key, APPROVER, "verified deposit").await {
            Ok(a) => {
                model.borrow_mut().pending_credits.retain(|k| k != key);
                Ok(format!("credit {key} approved: {:?}", a.credit.state))
            }
            Err(e) => Err(e.to_string()),
        },
    };
    let mut w = lock(&world);
    let name = format!("{op:?}");
    w.count(match op {
        Op::Reprocess(_) => "operator_reprocess",
        Op::Discard(_) => "operator_discard",
        Op::Approve(_) => "operator_approve",
        Op::Reject(_) => "operator_reject",
        Op::Pause(_) => "operator_pause",
        Op::Resume(_) => "operator_resume",
        Op::Credit(_, false) => "operator_credit",
        Op::Credit(_, true) => "operator_credit_repeat",
        Op::ApproveCredit(_) => "operator_credit_approve",
        Op::Nothing => "operator_idle",
    });
    match result {
        Ok(o) => w.note(format!("operator {name}: {o}")),
        Err(e) => w.note(format!("operator {name} refused: {e}")),
    }
}

/// Clients submit requests: the intake writer's commit then its enqueue. Requests
/// without an answer (the process crashed) are retried with the same key later.
async fn submit(p: &Process, model: &RefCell<Model>, assets: &[SimAsset], which: Vec<usize>) {
    if which.is_empty() {
        return;
    }
    let now = p.ports.clock.now_ms();
    let rows: Vec<NewWithdrawal> = {
        let m = model.borrow();
        which
            .iter()
            .map(|&i| {
                let r = &m.reqs[i];
                let a = &assets[r.asset];
                let canonical = format!("{}\n{}\n{}\n{}", r.user, a.symbol, r.to, r.amount.0);
                let mut bytes = [0u8; 10];
                bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
                NewWithdrawal {
                    id: WithdrawalId::from_stored(uuid::Builder::from_unix_timestamp_millis(now as u64, &bytes).into_uuid().to_string()),
                    client_id: "exchange".into(),
                    idempotency_key: r.key.clone(),
                    request_hash: hex::encode(alloy::primitives::keccak256(canonical.as_bytes())),
                    user_id: r.user.clone(),
                    asset: a.symbol.into(),
                    chain_id: CHAIN_ID,
                    to: r.to,
                    amount: r.amount,
                }
            })
            .collect()
    };
    {
        let mut m = model.borrow_mut();
        for &i in &which {
            if !m.unanswered.contains(&i) {
                m.unanswered.push(i);
            }
        }
    }
    let outcomes = match p.ports.store.submit(rows).await {
        Ok(o) => o,
        Err(_) => return,
    };
    let mut created = Vec::new();
    let mut bad = Vec::new();
    {
        let mut m = model.borrow_mut();
        for (&i, o) in which.iter().zip(outcomes) {
            m.unanswered.retain(|&u| u != i);
            let (id, fresh) = match o {
                SubmitOutcome::Created { id } => (id, true),
                SubmitOutcome::Existing { id, .. } => (id, false),
                other => {
                    bad.push(format!("request {} was refused on a retry with the same body: {other:?}", m.reqs[i].key));
                    continue;
                }
            };
            match &m.reqs[i].id {
                Some(known) if *known != id => bad.push(format!("a repeat of request {} created a second withdrawal {id}", m.reqs[i].key)),
                _ => m.reqs[i].id = Some(id.clone()),
            }
            if fresh {
                created.push(id.to_string());
            }
        }
    }
    if !bad.is_empty() {
        let world = &p.ports.queue.world;
        let mut w = lock(world);
        for b in bad {
            w.violation(b);
        }
    }
    if !created.is_empty() {
        let _ = p.ports.queue.send(QueueName::Requests, created).await;
    }
}

/// Captures the simulated process's log lines: the last few for a failure's report, and
/// every line searched for the hot-wallet keys.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<LogBuf>>,
}

struct LogBuf {
    secrets: Vec<String>,
    line: Vec<u8>,
    tail: std::collections::VecDeque<String>,
    leak: Option<String>,
}

impl LogSink {
    fn new(secrets: Vec<String>) -> Self {
        LogSink { inner: Arc::new(Mutex::new(LogBuf { secrets, line: Vec::new(), tail: Default::default(), leak: None })) }
    }

    fn leak(&self) -> Option<String> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).leak.take()
    }

    fn secrets(&self) -> Vec<String> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).secrets.clone()
    }

    fn tail(&self) -> Vec<String> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).tail.iter().cloned().collect()
    }
}

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for &c in buf {
            if c == b'\n' {
                let line = String::from_utf8_lossy(&b.line).into_owned();
                b.line.clear();
                let lower = line.to_ascii_lowercase();
                if b.secrets.iter().any(|s| lower.contains(&s[..16])) {
                    b.leak = Some("a log line holds the start of a hot-wallet key".into());
                }
                if b.tail.len() == 30 {
                    b.tail.pop_front();
                }
                b.tail.push_back(line);
            } else {
                b.line.push(c);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
