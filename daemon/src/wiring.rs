//! Config -> adapters -> stages, per role. `dev` runs every role in one process.

use crate::config::{BalanceBackend, Config, DatabaseBackend, KeyMaterial, QueueBackend, key_material, resolve_secret};
use crate::http::{self, Ops};
use crate::tasks::Supervisor;
use anyhow::{Context, Result, bail};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use withdraw_core::adapters::evm::{EvmChain, LocalKeys};
use withdraw_core::adapters::kms::{KmsKey, KmsKeys, KmsLimits};
use withdraw_core::adapters::pool::PoolConfig;
use withdraw_core::adapters::postgres::Postgres;
use withdraw_core::adapters::redis_balances::RedisBalances;
pub use withdraw_core::adapters::rpc::redact_url;
use withdraw_core::adapters::secrets::SecretsManagerKeys;
use withdraw_core::adapters::sqlite::{Sqlite, SqliteBalances, SqliteQueue};
use withdraw_core::adapters::sqs::{SqsQueue, SqsQueueUrls};
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::adapters::{AnyBalances, AnyKeys, AnyQueue, Configured, KeySource};
use withdraw_core::domain::AssetRegistry;
use withdraw_core::ports::Ports;
use withdraw_core::ports::{Clock, SystemClock};
use withdraw_core::stages::{self, Intake, IntakeConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Intake,
    Admin,
    Signer,
    Sender,
    Tracker,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Intake, Role::Admin, Role::Signer, Role::Sender, Role::Tracker];
}

pub fn install_metrics() -> Result<PrometheusHandle> {
    let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .context("metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    crate::telemetry::describe();
    crate::telemetry::preinit();
    metrics::gauge!("withdraw_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Opens the database (running migrations), connects the configured queue and balance
/// backends (checking each answers) and every chain. With `chains_required`, a chain with
/// no usable endpoint fails the start (the signer, sender and tracker work on the chain);
/// without, it is connected all the same and comes in when an endpoint answers (intake and
/// admin: the API that pauses signing must come up during an RPC outage).
pub async fn ports(cfg: &Config, chains_required: bool) -> Result<Arc<Ports<Configured>>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, sqlite) = open_store(cfg, clock.clone(), false).await?;
    // The SQLite backends of the queues and balances live in the SQLite database.
    let sqlite_for = |what: &str| {
        sqlite.clone().with_context(|| {
            format!("{what}.backend \"sqlite\" keeps them in the SQLite database, but database.backend is \"postgres\"; choose sqs / redis")
        })
    };
    let mut chains = HashMap::new();
    for c in &cfg.chains {
        let pool = PoolConfig {
            chain_id: c.chain_id,
            timeout: Duration::from_millis(c.rpc_timeout_ms),
            health_every: Duration::from_millis(c.health_every_ms),
            max_lag: c.max_lag_blocks,
            fail_threshold: c.fail_threshold,
        };
        let chain = EvmChain::connect_with(pool, c.endpoint_specs()?, c.max_fee_cap_wei as u128, chains_required)
            .await
            .with_context(|| format!("connecting chain {}", c.chain_id))?
            .with_fee_policy(c.fee_policy())
            .with_finality(c.finality(cfg.tracker.confirmations));
        // A node without a finalized block would leave every withdrawal SENT forever: say so
        // at start, in the roles that need the chain.
        use withdraw_core::ports::Chain as _;
        if chains_required && chain.finality() == withdraw_core::ports::Finality::Finalized {
            let finalized = chain.finalized().await.map_err(|e| {
                anyhow::anyhow!("chain {}: finality is \"finalized\" but the node's finalized block cannot be read: {e}", c.chain_id)
            })?;
            if chain.head().await.is_ok_and(|head| finalized >= head) {
                tracing::warn!(
                    chain_id = c.chain_id,
                    finalized,
                    "this node calls its head finalized: \"finalized\" is no safer than 1 confirmation here; consider {{ confirmations = N }}"
                );
            }
        }
        chains.insert(c.chain_id, chain);
    }
    let queue = match (cfg.queues.backend, &cfg.queues.sqs) {
        (QueueBackend::Sqs, Some(s)) => {
            let client = aws_sdk_sqs::Client::new(&aws_config(cfg).await);
            let urls = SqsQueueUrls {
                requests: s.requests_url.clone(),
                signed: s.signed_url.clone(),
                invalid_dlq: s.invalid_dlq_url.clone(),
                tx_dlq: s.tx_dlq_url.clone(),
            };
            AnyQueue::Sqs(SqsQueue::connect(client, urls).await.context("connecting the SQS queues")?)
        }
        (QueueBackend::Sqs, None) => {
            bail!("queues.backend is \"sqs\" but [queues.sqs] (the four queue URLs) is missing; `withdrawd queues ensure` prints it")
        }
        (QueueBackend::Sqlite, _) => AnyQueue::Sqlite(SqliteQueue::new(sqlite_for("queues")?, clock.clone(), cfg.queues.max_receives)),
    };
    let balances = match (cfg.balances.backend, &cfg.balances.redis_url) {
        (BalanceBackend::Redis, Some(url)) => {
            let url = resolve_secret("balances.redis_url", url)?;
            cfg.balances.check_redis_url(&url)?;
            let ca = cfg.balances.redis_ca()?;
            AnyBalances::Redis(RedisBalances::connect_with_ca(&url, ca.as_deref()).await.context("connecting the Redis balance store")?)
        }
        (BalanceBackend::Redis, None) => bail!("balances.backend is \"redis\" but balances.redis_url is not set"),
        (BalanceBackend::Sqlite, _) => AnyBalances::Sqlite(SqliteBalances::new(sqlite_for("balances")?, clock.clone())),
    };
    Ok(Arc::new(Ports { store, queue, balances, chains, clock }))
}

/// Opens the configured database. SQLite is created and migrated on open (one process
/// owns the file in dev). PostgreSQL is migrated only by `withdrawd migrate` (a Job before
/// a rollout); a role refuses to start on a schema older than it expects.
pub async fn open_store(cfg: &Config, clock: Arc<dyn Clock>, migrate: bool) -> Result<(RecordStore, Option<Sqlite>)> {
    match cfg.database.backend {
        DatabaseBackend::Sqlite => {
            std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
            let path = cfg.sqlite_path();
            let db = Sqlite::open(&path).with_context(|| format!("database {}", path.display()))?;
            Ok((RecordStore::new(db.clone(), clock), Some(db)))
        }
        DatabaseBackend::Postgres => {
            let url = cfg.database.url.as_ref().context("database.backend is \"postgres\" but database.url is not set")?;
            let mut url = resolve_secret("database.url", url)?;
            // libpq waits forever for a host that drops packets unless told otherwise.
            if !url.contains("connect_timeout") {
                let sep = if url.contains('?') { '&' } else { '?' };
                url.push(sep);
                url.push_str("connect_timeout=5");
            }
            let max = cfg.database.max_connections;
            let pg = tokio::task::spawn_blocking(move || -> Result<Postgres> {
                let pg = Postgres::connect(&url, max).context("connecting to PostgreSQL")?;
                if migrate {
                    pg.migrate().context("migrating the PostgreSQL schema")?;
                } else {
                    pg.check_schema().context("checking the PostgreSQL schema")?;
                }
                Ok(pg)
            })
            .await
            .context("database worker")??;
            Ok((RecordStore::new(pg, clock), None))
        }
    }
}

/// `withdrawd balances reconcile`: the database's record of every withdrawal is the journal
/// of reservations; Redis is made to agree with it.
pub async fn reconcile_balances(cfg: &Config, dry_run: bool, force: bool) -> Result<Vec<withdraw_core::adapters::redis_balances::Drift>> {
    use withdraw_core::adapters::redis_balances::JournalEntry;
    use withdraw_core::domain::Status;
    use withdraw_core::ports::{SearchFilter, Store};
    let url = match (cfg.balances.backend, &cfg.balances.redis_url) {
        (BalanceBackend::Redis, Some(url)) => resolve_secret("balances.redis_url", url)?,
        _ => bail!("balances live in the database (balances.backend is not \"redis\"): there is nothing to reconcile"),
    };
    cfg.balances.check_redis_url(&url)?;
    let ca = cfg.balances.redis_ca()?;
    let redis = RedisBalances::connect_with_ca(&url, ca.as_deref()).await.context("connecting the Redis balance store")?;
    let (store, _) = open_store(cfg, Arc::new(SystemClock), false).await?;
    let paused = store.signing_controls().await?.iter().any(|c| c.chain_id.is_none() && c.paused);
    if !paused && !force && !dry_run {
        bail!("signing is not paused: pause it for every chain first (admin API or withdraw-console), or pass --force");
    }
    let mut journal = Vec::new();
    for status in Status::ALL {
        let mut before = None;
        loop {
            let page = store.search(SearchFilter { status: Some(status), query: None, before: before.clone(), limit: 1000 }).await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id.clone());
            let full = page.len() == 1000;
            journal.extend(page.into_iter().map(|w| JournalEntry {
                withdrawal_id: w.id,
                user_id: w.user_id,
                asset: w.asset,
                amount: w.amount,
                status: w.status,
            }));
            if !full {
                break;
            }
        }
    }
    tracing::info!(withdrawals = journal.len(), dry_run, "reconciling Redis balances with the database");
    redis.reconcile(journal, dry_run).await.context("reconciling Redis with the database")
}

pub async fn aws_config(cfg: &Config) -> aws_config::SdkConfig {
    withdraw_core::adapters::aws::sdk_config(&withdraw_core::adapters::aws::AwsSettings {
        region: cfg.aws.region.clone(),
        endpoint_url: cfg.aws.endpoint_url.clone(),
    })
    .await
}

/// How long a stage's receive waits for a first message: SQS long polling, or a short
/// wait on the local queue tables (which wake at once on a send in this process).
fn receive_wait(cfg: &Config) -> Duration {
    match (cfg.queues.backend, &cfg.queues.sqs) {
        (QueueBackend::Sqs, Some(s)) => Duration::from_secs(s.wait_secs),
        _ => Duration::from_secs(1),
    }
}

async fn load_keys(cfg: &Config) -> Result<AnyKeys> {
    let mut sources = Vec::new();
    match key_material(&cfg.signer)? {
        KeyMaterial::Hex(k) => sources.push(KeySource::Local(LocalKeys::from_hex(&k)?)),
        KeyMaterial::Keystore { path, password } => sources.push(KeySource::Local(LocalKeys::from_keystore(&path, &password)?)),
        KeyMaterial::SecretsManager { ids, ttl } => {
            let client = aws_sdk_secretsmanager::Client::new(&aws_config(cfg).await);
            sources.push(KeySource::SecretsManager(SecretsManagerKeys::load(client, ids, ttl).await?))
        }
        KeyMaterial::None => {}
    }
    if !cfg.signer.kms_keys.is_empty() {
        let timeout = Duration::from_millis(cfg.signer.kms_timeout_ms);
        // The SDK retries a throttled or failed attempt (standard mode, 3 attempts) within
        // the whole timeout; the adapter bounds each signature by it again.
        let sdk = aws_config(cfg).await;
        let kms = aws_sdk_kms::config::Builder::from(&sdk)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2).min(timeout))
                    .operation_attempt_timeout(timeout / 2)
                    .operation_timeout(timeout)
                    .build(),
            )
            .build();
        let keys = cfg.signer.kms_keys.iter().map(|k| KmsKey { key_id: k.key_id.clone(), address: k.address }).collect();
        let limits = KmsLimits { concurrency: cfg.signer.kms_concurrency, timeout };
        sources.push(KeySource::Kms(KmsKeys::load(aws_sdk_kms::Client::from_conf(kms), keys, limits).await?));
    }
    Ok(AnyKeys::new(sources)?)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("{what}: cannot listen on {addr}"))
}

/// Bound addresses, written for tools and tests that start us on port 0.
#[derive(serde::Serialize)]
struct Endpoints {
    intake: Option<String>,
    admin: Option<String>,
    health: Option<String>,
}

pub async fn run_roles(cfg: Config, roles: &[Role], banner: bool) -> Result<()> {
    let has = |r: Role| roles.contains(&r);
    let workers = has(Role::Signer) || has(Role::Sender) || has(Role::Tracker);
    let metrics = install_metrics()?;
    let mut w = Wiring {
        ports: ports(&cfg, workers).await?,
        assets: Arc::new(cfg.asset_registry()?),
        limits: http::server::Limits {
            header_timeout: Duration::from_millis(cfg.http.header_timeout_ms),
            body_timeout: Duration::from_millis(cfg.http.body_timeout_ms),
            request_timeout: Duration::from_millis(cfg.http.request_timeout_ms),
            max_connections: cfg.http.max_connections,
        },
        sup: Supervisor::new(),
        cfg: &cfg,
    };
    let wallets = if has(Role::Signer) { w.signer().await? } else { Vec::new() };
    if has(Role::Sender) {
        w.sender();
    }
    if has(Role::Tracker) {
        w.tracker();
    }
    let needs = http::Needs { queues: workers, balances: has(Role::Signer) || has(Role::Tracker), chains: workers };
    let ops = w.ops(metrics, needs).await?;
    let mut endpoints = Endpoints { intake: None, admin: None, health: Some(w.health(&ops).await?) };
    if has(Role::Intake) {
        endpoints.intake = Some(w.intake().await?);
    }
    if has(Role::Admin) {
        endpoints.admin = Some(w.admin().await?);
    }

    // The SQLite backend creates the data directory; with PostgreSQL nothing else needs it.
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let ep_path = cfg.data_dir.join("endpoints.json");
    std::fs::write(&ep_path, serde_json::to_vec_pretty(&endpoints)?).with_context(|| format!("writing {}", ep_path.display()))?;
    tracing::info!(intake = ?endpoints.intake, admin = ?endpoints.admin, health = ?endpoints.health, "withdrawd running");
    if banner {
        print_banner(&cfg, &endpoints, &wallets);
    }
    w.sup.run_until_shutdown(Duration::from_secs(20)).await?;
    tracing::info!("withdrawd stopped");
    Ok(())
}

/// What every role's wiring shares: the config, this process's adapters and assets, the
/// limits of its listeners, and the supervisor its tasks join. One method per role.
struct Wiring<'a> {
    cfg: &'a Config,
    ports: Arc<Ports<Configured>>,
    assets: Arc<AssetRegistry>,
    limits: http::server::Limits,
    sup: Supervisor,
}

impl Wiring<'_> {
    fn queue_visibility(&self) -> Duration {
        Duration::from_secs(self.cfg.queues.visibility_timeout_secs)
    }

    /// The signer, its bumper and its nonce check; the only role that loads keys. Returns
    /// the hot wallets.
    async fn signer(&mut self) -> Result<Vec<alloy::primitives::Address>> {
        let cfg = self.cfg;
        let keys = load_keys(cfg).await?;
        let wallets = withdraw_core::ports::Keys::wallets(&keys);
        let keys = Arc::new(keys);
        let bumper = stages::Bumper::new(
            self.ports.clone(),
            keys.clone(),
            stages::BumperConfig {
                stuck_after: Duration::from_secs(cfg.signer.stuck_after_secs),
                every: (Duration::from_secs(cfg.signer.stuck_after_secs) / 4).clamp(Duration::from_millis(200), Duration::from_secs(1)),
                ..Default::default()
            },
        );
        let cancel = self.sup.cancel.clone();
        self.sup.spawn_critical("bumper", async move { bumper.run(cancel).await });
        let signer = stages::Signer::new(
            self.ports.clone(),
            keys.clone(),
            self.assets.clone(),
            stages::SignerConfig { batch: cfg.signer.batch, visibility: self.queue_visibility(), wait: receive_wait(cfg) },
        )
        .await
        .context("signer start")?;
        let keeper = stages::NonceKeeper::new(
            self.ports.clone(),
            keys,
            self.assets.clone(),
            stages::NonceKeeperConfig {
                every: Duration::from_secs(cfg.signer.nonce_check_secs),
                stuck_after: Duration::from_secs(cfg.signer.stuck_after_secs),
                displaced_after: Duration::from_secs(cfg.signer.displaced_after_secs),
            },
        );
        // Before the first signature: a key used elsewhere must not cost a batch of
        // transfers signed at nonces the chain already took.
        keeper.check_all().await.context("nonce check at start")?;
        let cancel = self.sup.cancel.clone();
        self.sup.spawn_critical("nonce-check", async move { keeper.run(cancel).await });
        let cancel = self.sup.cancel.clone();
        self.sup.spawn_critical("signer", async move { signer.run(cancel).await });
        Ok(wallets)
    }

    fn sender(&mut self) {
        let sender = stages::Sender::new(
            self.ports.clone(),
            stages::SenderConfig { batch: self.cfg.sender.batch, visibility: self.queue_visibility(), wait: receive_wait(self.cfg) },
        );
        let cancel = self.sup.cancel.clone();
        self.sup.spawn_critical("sender", async move { sender.run(cancel).await });
    }

    fn tracker(&mut self) {
        let tracker = stages::Tracker::new(self.ports.clone(), self.assets.clone(), tracker_config(self.cfg));
        let cancel = self.sup.cancel.clone();
        self.sup.spawn_critical("tracker", async move { tracker.run(cancel).await });
    }

    /// What every role serves besides its work: the readiness prober, `/metrics` on a
    /// listener of its own if configured, and the gauges sampled every 5 s.
    async fn ops(&mut self, metrics: PrometheusHandle, needs: http::Needs) -> Result<Arc<Ops<Configured>>> {
        let ops = Arc::new(Ops::new(self.ports.clone(), metrics.clone(), needs));
        ops.probe().await;
        {
            let (ops, cancel) = (ops.clone(), self.sup.cancel.clone());
            self.sup.spawn_critical("readiness", async move { ops.run_prober(Duration::from_secs(5), cancel).await });
        }
        if let Some(addr) = self.cfg.http.metrics_listen {
            let listener = bind(addr, "metrics").await?;
            let app = http::metrics_router(ops.clone());
            let (limits, cancel) = (self.limits, self.sup.cancel.clone());
            self.sup.spawn_critical("metrics-http", async move { http::server::serve(listener, app, limits, "metrics", cancel).await });
        }
        let p = self.ports.clone();
        let cancel = self.sup.cancel.clone();
        self.sup.spawn_critical("metrics-upkeep", async move {
            loop {
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(Duration::from_secs(5)) => {} }
                metrics.run_upkeep();
                sample_gauges(&p).await;
            }
        });
        Ok(ops)
    }

    /// The intake API and its group-commit writer. Returns the bound address.
    async fn intake(&mut self) -> Result<String> {
        let cfg = self.cfg;
        let mut clients = Vec::new();
        for c in &cfg.intake.clients {
            let secret = resolve_secret(&format!("intake client {}", c.id), &c.secret)?;
            clients.push((c.id.clone(), zeroize::Zeroizing::new(secret.as_bytes().to_vec())));
        }
        let (intake, writer) = Intake::spawn(self.ports.clone(), IntakeConfig::default());
        let state = Arc::new(http::intake::IntakeState {
            ports: self.ports.clone(),
            intake,
            assets: self.assets.clone(),
            clients: http::auth::HmacClients::new(clients, cfg.intake.timestamp_window_secs),
        });
        let app = http::intake::router(state, cfg.intake.max_body_bytes).layer(axum::middleware::from_fn(crate::logging::with_trace));
        let listener = bind(cfg.intake.listen, "intake").await?;
        let addr = listener.local_addr()?.to_string();
        let (limits, cancel) = (self.limits, self.sup.cancel.clone());
        self.sup.spawn_critical("intake-http", async move {
            http::server::serve(listener, app, limits, "intake", cancel).await;
            // The router (and with it every Intake handle) is gone: the writer records
            // what it was handed and stops.
            let _ = writer.await;
        });
        Ok(addr)
    }

    /// The admin API. Returns the bound address.
    async fn admin(&mut self) -> Result<String> {
        let cfg = self.cfg;
        let mut tokens = Vec::new();
        for t in &cfg.admin.tokens {
            let secret = resolve_secret(&format!("admin token {}", t.name), &t.token)?;
            let roles = t
                .roles
                .iter()
                .map(|r| http::auth::Role::parse(r).with_context(|| format!("admin token {}: unknown role {r:?}", t.name)))
                .collect::<Result<Vec<_>>>()?;
            tokens.push((secret, http::auth::Caller { name: t.name.clone(), roles }));
        }
        let state = http::admin::AdminState {
            ports: self.ports.clone(),
            assets: self.assets.clone(),
            tokens: Arc::new(http::auth::AdminTokens::new(tokens)),
            credit_thresholds: Arc::new(cfg.credit_thresholds()?),
        };
        let app = http::admin::router(state).layer(axum::middleware::from_fn(crate::logging::with_trace));
        let listener = bind(cfg.admin.listen, "admin").await?;
        let addr = listener.local_addr()?.to_string();
        let (limits, cancel) = (self.limits, self.sup.cancel.clone());
        self.sup.spawn_critical("admin-http", async move { http::server::serve(listener, app, limits, "admin", cancel).await });
        Ok(addr)
    }

    /// `/healthz`, `/readyz` and (unless it has a listener of its own) `/metrics`, on a
    /// listener of their own in every role: never on the API ports, where they would show
    /// dependency errors and the pipeline's figures to clients. Returns the bound address.
    async fn health(&mut self, ops: &Arc<Ops<Configured>>) -> Result<String> {
        let listener = bind(self.cfg.health_listen, "health").await?;
        let addr = listener.local_addr()?.to_string();
        let app = http::ops_router(ops.clone(), self.cfg.http.metrics_listen.is_none());
        let (limits, cancel) = (self.limits, self.sup.cancel.clone());
        self.sup.spawn_critical("health-http", async move { http::server::serve(listener, app, limits, "health", cancel).await });
        Ok(addr)
    }
}

pub fn tracker_config(cfg: &Config) -> stages::TrackerConfig {
    stages::TrackerConfig {
        poll: Duration::from_millis(cfg.tracker.poll_ms),
        blocks_per_batch: 100,
        reconcile_every: Duration::from_secs(cfg.tracker.reconcile_every_secs),
        stale_after: Duration::from_secs(cfg.tracker.stale_after_secs),
        lease_ttl: Duration::from_secs(cfg.tracker.lease_ttl_secs.max(1)),
    }
}

/// Queue depths and status counts as gauges, for dashboards and alerts.
async fn sample_gauges(ports: &Ports<Configured>) {
    match http::admin::collect_stats(ports).await {
        Ok(stats) => {
            for q in stats.queues {
                metrics::gauge!("withdraw_queue_visible_messages", "queue" => q.name.clone()).set(q.visible as f64);
                metrics::gauge!("withdraw_queue_inflight_messages", "queue" => q.name.clone()).set(q.in_flight as f64);
                metrics::gauge!("withdraw_queue_oldest_message_age_seconds", "queue" => q.name).set(q.oldest_age_seconds.unwrap_or(0.0));
            }
            for s in withdraw_core::domain::Status::ALL {
                let n = stats.statuses.get(s.as_str()).copied().unwrap_or(0);
                metrics::gauge!("withdraw_withdrawals", "status" => s.as_str()).set(n as f64);
            }
            use withdraw_core::ports::Store;
            match ports.store.oldest_in(withdraw_core::domain::Status::Sent).await {
                Ok(oldest) => {
                    let age = oldest.map_or(0.0, |at| (ports.clock.now_ms() - at).max(0) as f64 / 1000.0);
                    metrics::gauge!("withdraw_sent_oldest_age_seconds").set(age);
                }
                Err(e) => tracing::warn!(error = %e, "reading the oldest SENT withdrawal failed"),
            }
        }
        Err(p) => tracing::warn!(detail = ?p.detail, "sampling queue and status gauges failed"),
    }
}

fn print_banner(cfg: &Config, ep: &Endpoints, wallets: &[alloy::primitives::Address]) {
    let client = &cfg.intake.clients[0];
    let secret_src = client.secret.env.as_deref().unwrap_or("file");
    let token = &cfg.admin.tokens[0];
    let token_src = token.token.env.as_deref().unwrap_or("file");
    eprintln!(
        "\nwithdrawd dev is running\n  intake API   http://{}   (HMAC client '{}', secret from ${} or 'dev-secret')\n  admin API    http://{}   (Bearer token from ${} or 'dev-admin-token')\n  health       http://{}   (/healthz, /readyz, /metrics)\n  chain        {} (chain id {})\n  hot wallets  {}\n  data         {}\n",
        ep.intake.as_deref().unwrap_or("-"),
        client.id,
        secret_src,
        ep.admin.as_deref().unwrap_or("-"),
        token_src,
        ep.health.as_deref().unwrap_or("-"),
        cfg.chains[0].first_url().ok().flatten().map(|u| redact_url(&u)).unwrap_or_else(|| "-".into()),
        cfg.chains[0].chain_id,
        if wallets.is_empty() { "-".into() } else { wallets.iter().map(|w| w.to_checksum(None)).collect::<Vec<_>>().join(", ") },
        cfg.data_dir.display(),
    );
}

/// `withdrawd dev`'s refusal to touch a real chain by accident.
pub fn check_dev_chain(chain_id: u64, allow_any: bool) -> Result<()> {
    if matches!(chain_id, 31337 | 1337) || allow_any {
        return Ok(());
    }
    bail!("the node serves chain id {chain_id}, not a dev chain (31337 or 1337); pass --allow-any-chain if you really mean it")
}
