//! The one typed configuration: built from defaults, then an optional TOML file, then
//! `WITHDRAW__SECTION__KEY` environment variables; validated once at start and passed down.
//! This module is the only place that reads the environment. Secrets are never read from
//! the TOML file: it names where they come from (an environment variable or a file).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use withdraw_core::domain::{Amount, Asset, AssetKind, AssetRegistry};
use zeroize::Zeroizing;

/// anvil's first dev account: public test key, funded on every anvil start. Used only by
/// `withdrawd dev` when no keystore is configured, and only on a dev chain id.
/// anvil's first four dev accounts (public test keys from its default mnemonic): dev mode
/// can sign with several, one nonce lane each.
const ANVIL_DEV_KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub queues: QueuesConfig,
    pub chains: Vec<ChainConfig>,
    pub assets: Vec<AssetConfig>,
    pub intake: IntakeConfig,
    pub admin: AdminConfig,
    pub signer: SignerConfig,
    pub sender: SenderConfig,
    pub tracker: TrackerConfig,
    /// Where user balances live.
    #[serde(default)]
    pub balances: BalancesConfig,
    /// AWS clients (SQS, Secrets Manager).
    #[serde(default)]
    pub aws: AwsConfig,
    /// Health and metrics listener of the signer, sender and tracker roles.
    pub health_listen: SocketAddr,
    /// Bounds of every HTTP listener.
    #[serde(default)]
    pub http: HttpConfig,
}

/// Every HTTP listener's bounds (DESIGN §6): a slow or silent client holds a connection
/// for seconds, and a flood of them is refused rather than queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// From a request's first byte (or a kept-alive connection's last answer) to the end of
    /// its headers; a connection idle this long is closed.
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    /// The whole request, handler included (408 past it).
    pub request_timeout_ms: u64,
    /// Open connections per listener; past it new ones are closed on accept.
    pub max_connections: usize,
    /// Serve `/metrics` on this address only (and not on the intake and admin ports).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { header_timeout_ms: 10_000, body_timeout_ms: 10_000, request_timeout_ms: 30_000, max_connections: 1024, metrics_listen: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// SQLite file; relative paths are under `data_dir`.
    pub sqlite_path: PathBuf,
    #[serde(default)]
    pub backend: DatabaseBackend,
    /// `postgres://user[:password]@host:port/db` when `backend = "postgres"`; a secret,
    /// since the URL may carry the password.
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// Connections per process (PostgreSQL).
    #[serde(default = "sixteen")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    /// One SQLite file (the embedded profile).
    #[default]
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    pub visibility_timeout_secs: u64,
    /// Deliveries before a message is redriven to its dead-letter queue. With SQS the
    /// queues' redrive policy decides (`withdrawd queues ensure` sets it from this).
    pub max_receives: u32,
    #[serde(default)]
    pub backend: QueueBackend,
    /// The queue URLs when `backend = "sqs"`.
    #[serde(default)]
    pub sqs: Option<SqsConfig>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// Queue tables in the SQLite file.
    #[default]
    Sqlite,
    Sqs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    pub requests_url: String,
    pub signed_url: String,
    pub invalid_dlq_url: String,
    pub tx_dlq_url: String,
    /// Long-poll wait of each receive (1-20 s).
    #[serde(default = "twenty")]
    pub wait_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BalanceBackend {
    /// Balance tables in the SQLite file.
    #[default]
    Sqlite,
    Redis,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancesConfig {
    #[serde(default)]
    pub backend: BalanceBackend,
    /// `redis://[:password@]host:port/db`, or `rediss://` for TLS (ElastiCache with
    /// in-transit encryption, which AUTH needs); a secret, since the URL may carry the
    /// password.
    #[serde(default)]
    pub redis_url: Option<SecretRef>,
    /// PEM file of the CA that signs Redis's certificate, for a private CA. Unset, a
    /// `rediss://` server is verified against the system's roots (ElastiCache's are there).
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
}

impl BalancesConfig {
    /// Refuses a Redis URL that would turn TLS off without saying so: a CA configured for a
    /// plain `redis://` URL, or redis-rs's `#insecure`, which skips certificate checks.
    /// (Errors never quote the URL: it carries the password.)
    pub fn check_redis_url(&self, url: &str) -> Result<()> {
        if self.redis_ca_file.is_some() && !url.starts_with("rediss://") {
            bail!("balances.redis_ca_file is set, but balances.redis_url is not rediss://: the connection would not use TLS");
        }
        if url.starts_with("rediss://") && url.contains("#insecure") {
            bail!(
                "balances.redis_url ends in #insecure, which turns off the check of Redis's certificate: use balances.redis_ca_file for a private CA"
            );
        }
        Ok(())
    }

    /// The CA to verify Redis's certificate against, when one is configured.
    pub fn redis_ca(&self) -> Result<Option<Vec<u8>>> {
        self.redis_ca_file
            .as_ref()
            .map(|f| std::fs::read(f).with_context(|| format!("balances.redis_ca_file: cannot read {}", f.display())))
            .transpose()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Else the SDK's default (`AWS_REGION`, the instance's region).
    #[serde(default)]
    pub region: Option<String>,
    /// A stand-in endpoint (moto, LocalStack) for dev and tests.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub chain_id: u64,
    /// One primary endpoint (shorthand for a one-entry `endpoints`).
    #[serde(default)]
    pub rpc_url: Option<UrlSource>,
    /// The chain's endpoint pool: several providers and own nodes.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// Highest max_fee_per_gas ever signed, in wei.
    pub max_fee_cap_wei: u64,
    pub rpc_timeout_ms: u64,
    /// Blocks an endpoint may be behind (or ahead of) the corroborated head and still serve reads.
    #[serde(default = "five")]
    pub max_lag_blocks: u64,
    /// How often every endpoint is probed.
    #[serde(default = "thousand")]
    pub health_every_ms: u64,
    /// Consecutive failures that take an endpoint out (its circuit opens).
    #[serde(default = "three_u32")]
    pub fail_threshold: u32,
    /// When a mined transfer is final here: `"finalized"` (the chain's finalized block) or
    /// `{ confirmations = N }`; unset, `tracker.confirmations`.
    #[serde(default)]
    pub finality: Option<FinalityConfig>,
    /// How this chain's transactions are priced.
    #[serde(default)]
    pub fees: FeesConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FinalityConfig {
    Tag(FinalityTag),
    Depth { confirmations: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalityTag {
    Finalized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeeModelConfig {
    #[default]
    Eip1559,
    Legacy,
}

/// The fee oracle of one chain (`[chains.fees]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeesConfig {
    /// `"eip1559"`, or `"legacy"` for a chain without EIP-1559 (gas price from `eth_gasPrice`).
    pub model: FeeModelConfig,
    /// Blocks of `eth_feeHistory` the priority fee is read from.
    pub history_blocks: u64,
    /// The reward percentile read in each of those blocks (0-100); the median over the
    /// non-empty blocks is offered.
    pub reward_percentile: u8,
    /// Max fee = next block's base fee × this / 100 + priority fee.
    pub base_fee_multiplier_percent: u64,
    /// The least priority fee (or legacy gas price) offered, in wei; `max_fee_cap_wei` still
    /// wins over it.
    pub floor_wei: u64,
}

impl Default for FeesConfig {
    fn default() -> Self {
        let p = withdraw_core::adapters::evm::FeePolicy::default();
        FeesConfig {
            model: FeeModelConfig::Eip1559,
            history_blocks: p.history_blocks,
            reward_percentile: p.reward_percentile,
            base_fee_multiplier_percent: p.base_fee_multiplier_percent as u64,
            floor_wei: p.floor_wei as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The endpoint's URL, given as is or, since a provider's URL often carries its API key,
    /// as a secret (`{ env = "…" }` or `{ file = "…" }`), resolved at start.
    pub url: UrlSource,
    /// Shown in logs, metrics and the admin API (provider URLs often embed API keys, so the
    /// default is scheme://host:port only).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tier: TierConfig,
    #[serde(default = "one_u32")]
    pub weight: u32,
}

/// A URL in the config file, or a reference to a secret holding it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UrlSource {
    Plain(String),
    Secret(SecretRef),
}

impl UrlSource {
    /// The URL itself; `what` names it in errors (which never include the URL).
    pub fn resolve(&self, what: &str) -> Result<Zeroizing<String>> {
        match self {
            UrlSource::Plain(u) => Ok(Zeroizing::new(u.clone())),
            UrlSource::Secret(r) => resolve_secret(what, r),
        }
    }
}

impl std::fmt::Debug for UrlSource {
    /// A plain URL may carry an API key too: only its scheme, host and port are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Plain(u) => write!(f, "{}", crate::wiring::redact_url(u)),
            UrlSource::Secret(r) => r.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TierConfig {
    #[default]
    Primary,
    Backup,
}

impl ChainConfig {
    /// This chain's finality; `default_confirmations` (`tracker.confirmations`) when unset.
    pub fn finality(&self, default_confirmations: u64) -> withdraw_core::ports::Finality {
        match self.finality {
            Some(FinalityConfig::Tag(FinalityTag::Finalized)) => withdraw_core::ports::Finality::Finalized,
            Some(FinalityConfig::Depth { confirmations }) => withdraw_core::ports::Finality::Confirmations(confirmations),
            None => withdraw_core::ports::Finality::Confirmations(default_confirmations),
        }
    }

    pub fn fee_policy(&self) -> withdraw_core::adapters::evm::FeePolicy {
        use withdraw_core::adapters::evm::{FeeModel, FeePolicy};
        let f = &self.fees;
        FeePolicy {
            model: match f.model {
                FeeModelConfig::Eip1559 => FeeModel::Eip1559,
                FeeModelConfig::Legacy => FeeModel::Legacy,
            },
            history_blocks: f.history_blocks,
            reward_percentile: f.reward_percentile,
            base_fee_multiplier_percent: f.base_fee_multiplier_percent as u128,
            floor_wei: f.floor_wei as u128,
        }
    }

    /// The pool's endpoints: `endpoints`, or the single `rpc_url`, with URLs kept as
    /// secrets resolved.
    pub fn endpoint_specs(&self) -> Result<Vec<withdraw_core::adapters::pool::EndpointSpec>> {
        use withdraw_core::adapters::pool::EndpointSpec;
        use withdraw_core::ports::EndpointTier;
        if self.endpoints.is_empty() {
            return self
                .rpc_url
                .iter()
                .map(|u| {
                    let url = u.resolve(&format!("chain {} rpc_url", self.chain_id))?.to_string();
                    Ok(EndpointSpec { url, name: None, tier: EndpointTier::Primary, weight: 1 })
                })
                .collect();
        }
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(EndpointSpec {
                    url: e
                        .url
                        .resolve(&format!("chain {} endpoint {}", self.chain_id, e.name.clone().unwrap_or_else(|| i.to_string())))?
                        .to_string(),
                    name: e.name.clone(),
                    tier: match e.tier {
                        TierConfig::Primary => EndpointTier::Primary,
                        TierConfig::Backup => EndpointTier::Backup,
                    },
                    weight: e.weight,
                })
            })
            .collect()
    }

    /// The first endpoint's URL, resolved.
    pub fn first_url(&self) -> Result<Option<String>> {
        Ok(self.endpoint_specs()?.into_iter().next().map(|e| e.url))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    pub symbol: String,
    pub chain_id: u64,
    /// ERC-20 contract; absent for the chain's native coin.
    #[serde(default)]
    pub contract: Option<String>,
    pub decimals: u8,
    /// Largest single withdrawal, whole units ("100").
    #[serde(default)]
    pub max_amount: Option<String>,
    #[serde(default)]
    pub gas_limit: Option<u64>,
    /// Withdrawals above this (whole units) wait for an approver.
    #[serde(default)]
    pub approval_threshold: Option<String>,
    /// Operator credits above this (whole units) need a second person's approval.
    #[serde(default)]
    pub credit_approval_threshold: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of an environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// Path of a file holding the secret (e.g. a systemd credential or a mounted secret).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Used when neither is set or the variable is absent; only the dev profile sets it.
    #[serde(default)]
    pub dev_default: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    pub secret: SecretRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    pub listen: SocketAddr,
    pub timestamp_window_secs: u64,
    pub clients: Vec<ClientConfig>,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// Who the token belongs to; written to the audit log.
    pub name: String,
    pub roles: Vec<String>,
    pub token: SecretRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<AdminTokenConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    pub batch: usize,
    /// Encrypted keystore file of the hot wallet.
    #[serde(default)]
    pub keystore: Option<PathBuf>,
    #[serde(default)]
    pub keystore_password: Option<SecretRef>,
    /// A raw hex key from the environment or a file, when no keystore is used.
    #[serde(default)]
    pub key: Option<SecretRef>,
    /// More hot wallets besides `key`: each is its own nonce lane, sharing the load.
    #[serde(default)]
    pub extra_keys: Vec<SecretRef>,
    /// AWS Secrets Manager secret ids (or ARNs), one per hot wallet, each holding a hex
    /// key or `{"private_key": "0x…"}`; instead of `key`/`keystore`.
    #[serde(default)]
    pub secrets_manager_ids: Vec<String>,
    /// How often those secrets are read again (rotation).
    #[serde(default = "three_hundred")]
    pub secrets_ttl_secs: u64,
    /// Wallets whose keys live in AWS KMS and never in this process, beside or instead of
    /// the sources above: `[[signer.kms_keys]] key_id = "alias/hot-1"`, with an optional
    /// `address` the key must be.
    #[serde(default)]
    pub kms_keys: Vec<KmsKeyConfig>,
    /// KMS signing requests in flight at once, per batch.
    #[serde(default = "thirty_two")]
    pub kms_concurrency: usize,
    /// Longest one batch of KMS signatures may take, the SDK's retries included.
    #[serde(default = "five_thousand")]
    pub kms_timeout_ms: u64,
    /// Dev only: sign with anvil's dev accounts.
    #[serde(default)]
    pub use_anvil_dev_key: bool,
    /// Dev only: how many of anvil's dev accounts (1-4) serve as hot wallets.
    #[serde(default = "one")]
    pub anvil_dev_wallets: usize,
    /// A transfer not mined this long after its newest attempt is replaced with higher fees.
    pub stuck_after_secs: u64,
    /// How often each wallet's nonce lane is compared with the chain (gaps, foreign use).
    #[serde(default = "fifteen")]
    pub nonce_check_secs: u64,
    /// A transfer signed this long ago whose nonce the chain passed without its receipt is
    /// re-signed at a new nonce (its nonce was taken by a transaction not ours).
    #[serde(default = "thirty")]
    pub displaced_after_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsKeyConfig {
    /// Key id, key ARN, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    /// The wallet address this key must be (checked at start).
    #[serde(default)]
    pub address: Option<alloy::primitives::Address>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    pub batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    pub confirmations: u64,
    pub poll_ms: u64,
    pub reconcile_every_secs: u64,
    pub stale_after_secs: u64,
    /// How long the tracker lease lasts unrenewed: after a tracker dies, another takes
    /// over within this.
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
}

fn default_lease_ttl_secs() -> u64 {
    15
}

/// Overrides from `withdrawd dev`'s flags.
#[derive(Debug, Default, Clone)]
pub struct DevOverrides {
    pub rpc_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub confirmations: Option<u64>,
    pub intake_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
    pub keystore: Option<PathBuf>,
    pub hot_wallets: Option<usize>,
}

fn sixteen() -> u32 {
    16
}

fn twenty() -> u64 {
    20
}

fn three_hundred() -> u64 {
    300
}

fn one() -> usize {
    1
}

fn thirty_two() -> usize {
    32
}

fn five_thousand() -> u64 {
    5_000
}

fn fifteen() -> u64 {
    15
}

fn thirty() -> u64 {
    30
}

fn five() -> u64 {
    5
}

fn thousand() -> u64 {
    1000
}

fn one_u32() -> u32 {
    1
}

fn three_u32() -> u32 {
    3
}

impl Config {
    /// The defaults of docs/design.md §7, before the chain id is known.
    pub fn dev_defaults() -> Config {
        Config {
            data_dir: PathBuf::from(".withdrawd"),
            database: DatabaseConfig {
                sqlite_path: PathBuf::from("withdrawd.db"),
                backend: DatabaseBackend::Sqlite,
                url: None,
                max_connections: 16,
            },
            queues: QueuesConfig { visibility_timeout_secs: 30, max_receives: 5, backend: QueueBackend::Sqlite, sqs: None },
            chains: vec![ChainConfig {
                chain_id: 31337,
                rpc_url: Some(UrlSource::Plain("http://127.0.0.1:8545".into())),
                endpoints: Vec::new(),
                max_fee_cap_wei: 500_000_000_000,
                rpc_timeout_ms: 10_000,
                max_lag_blocks: 5,
                health_every_ms: 1000,
                fail_threshold: 3,
                finality: None,
                fees: FeesConfig::default(),
            }],
            assets: vec![AssetConfig {
                symbol: "ETH".into(),
                chain_id: 31337,
                contract: None,
                decimals: 18,
                max_amount: Some("100".into()),
                gas_limit: None,
                approval_threshold: Some("10".into()),
                credit_approval_threshold: Some("1000".into()),
            }],
            intake: IntakeConfig {
                listen: "127.0.0.1:8080".parse().expect("static address"),
                timestamp_window_secs: 30,
                clients: vec![ClientConfig {
                    id: "dev".into(),
                    secret: SecretRef { env: Some("WITHDRAW_DEV_HMAC_SECRET".into()), file: None, dev_default: Some("dev-secret".into()) },
                }],
                max_body_bytes: 16 * 1024,
            },
            admin: AdminConfig {
                listen: "127.0.0.1:8081".parse().expect("static address"),
                tokens: vec![AdminTokenConfig {
                    name: "dev-admin".into(),
                    roles: vec!["viewer".into(), "operator".into(), "approver".into(), "alerts".into()],
                    token: SecretRef {
                        env: Some("WITHDRAW_DEV_ADMIN_TOKEN".into()),
                        file: None,
                        dev_default: Some("dev-admin-token".into()),
                    },
                }],
            },
            signer: SignerConfig {
                batch: 256,
                keystore: None,
                keystore_password: None,
                key: None,
                extra_keys: Vec::new(),
                secrets_manager_ids: Vec::new(),
                secrets_ttl_secs: 300,
                kms_keys: Vec::new(),
                kms_concurrency: 32,
                kms_timeout_ms: 5_000,
                use_anvil_dev_key: true,
                anvil_dev_wallets: 1,
                stuck_after_secs: 60,
                nonce_check_secs: 15,
                displaced_after_secs: 30,
            },
            sender: SenderConfig { batch: 256 },
            tracker: TrackerConfig {
                confirmations: 1,
                poll_ms: 200,
                reconcile_every_secs: 5,
                stale_after_secs: 60,
                lease_ttl_secs: default_lease_ttl_secs(),
            },
            balances: BalancesConfig::default(),
            aws: AwsConfig::default(),
            health_listen: "127.0.0.1:8082".parse().expect("static address"),
            http: HttpConfig::default(),
        }
    }

    /// Defaults, then the TOML file, then `WITHDRAW__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let defaults = config::Config::try_from(&Config::dev_defaults()).context("internal: default config")?;
        let mut b = config::Config::builder().add_source(defaults);
        if let Some(f) = file {
            if !f.exists() {
                bail!("config file {} does not exist", f.display());
            }
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        b = b.add_source(config::Environment::with_prefix("WITHDRAW").prefix_separator("__").separator("__").try_parsing(true));
        let cfg: Config = b.build().and_then(|c| c.try_deserialize()).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn apply_dev(&mut self, o: &DevOverrides) {
        if let Some(u) = &o.rpc_url {
            for c in &mut self.chains {
                c.rpc_url = Some(UrlSource::Plain(u.clone()));
                c.endpoints.clear();
            }
        }
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(n) = o.confirmations {
            self.tracker.confirmations = n;
        }
        if let Some(a) = o.intake_listen {
            self.intake.listen = a;
        }
        if let Some(a) = o.health_listen {
            self.health_listen = a;
        }
        if let Some(a) = o.admin_listen {
            self.admin.listen = a;
        }
        if let Some(k) = &o.keystore {
            self.signer.keystore = Some(k.clone());
            self.signer.use_anvil_dev_key = false;
        }
        if let Some(n) = o.hot_wallets {
            self.signer.anvil_dev_wallets = n;
        }
    }

    /// Drops every dev default (anvil's public dev key, the built-in HMAC secret and admin
    /// token) unless all configured chains are dev chains (31337, 1337). `withdrawd dev`
    /// has its own guard: it refuses a non-dev chain outright.
    pub fn without_dev_defaults_off_dev_chains(mut self) -> Config {
        if self.chains.iter().all(|c| matches!(c.chain_id, 31337 | 1337)) {
            return self;
        }
        self.signer.use_anvil_dev_key = false;
        for c in &mut self.intake.clients {
            c.secret.dev_default = None;
        }
        for t in &mut self.admin.tokens {
            t.token.dev_default = None;
        }
        self
    }

    /// Points the single dev chain and its assets at the chain id the node reported.
    pub fn set_dev_chain_id(&mut self, chain_id: u64) {
        for c in &mut self.chains {
            c.chain_id = chain_id;
        }
        for a in &mut self.assets {
            a.chain_id = chain_id;
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.chains.is_empty() {
            bail!("no chains configured");
        }
        for c in &self.chains {
            match (c.rpc_url.is_some(), c.endpoints.is_empty()) {
                (true, false) => bail!("chain {}: set either rpc_url or endpoints, not both", c.chain_id),
                (false, true) => bail!("chain {}: no RPC endpoint (set rpc_url or endpoints)", c.chain_id),
                _ => {}
            }
            if c.health_every_ms == 0 || c.fail_threshold == 0 {
                bail!("chain {}: health_every_ms and fail_threshold must be at least 1", c.chain_id);
            }
        }
        for c in &self.chains {
            let f = &c.fees;
            if f.reward_percentile > 100 || !(1..=1024).contains(&f.history_blocks) || f.base_fee_multiplier_percent < 100 {
                bail!(
                    "chains[{}].fees: reward_percentile must be 0-100, history_blocks 1-1024 and base_fee_multiplier_percent at least 100",
                    c.chain_id
                );
            }
            if c.finality == Some(FinalityConfig::Depth { confirmations: 0 }) {
                bail!("chains[{}].finality: confirmations must be at least 1", c.chain_id);
            }
        }
        if self.tracker.confirmations == 0 {
            bail!("tracker.confirmations must be at least 1");
        }
        if self.queues.max_receives == 0 {
            bail!("queues.max_receives must be at least 1");
        }
        if self.intake.clients.is_empty() {
            bail!("intake.clients is empty: no client could submit");
        }
        if self.signer.use_anvil_dev_key && !(1..=ANVIL_DEV_KEYS.len()).contains(&self.signer.anvil_dev_wallets) {
            bail!("signer.anvil_dev_wallets must be 1-{} (got {})", ANVIL_DEV_KEYS.len(), self.signer.anvil_dev_wallets);
        }
        // A missing [queues.sqs] is checked where the queues are opened: `withdrawd queues
        // ensure` runs before the URLs exist.
        if let Some(s) = &self.queues.sqs
            && !(1..=20).contains(&s.wait_secs)
        {
            bail!("queues.sqs.wait_secs must be 1-20 (SQS's limit)");
        }
        if self.balances.backend == BalanceBackend::Redis && self.balances.redis_url.is_none() {
            bail!("balances.backend is \"redis\" but balances.redis_url is not set");
        }
        let key_sources = [self.signer.keystore.is_some(), self.signer.key.is_some(), !self.signer.secrets_manager_ids.is_empty()];
        if key_sources.iter().filter(|s| **s).count() > 1 {
            bail!("signer: set only one of keystore, key and secrets_manager_ids");
        }
        if self.signer.kms_concurrency == 0 || self.signer.kms_timeout_ms == 0 {
            bail!("signer.kms_concurrency and signer.kms_timeout_ms must be at least 1");
        }
        if self.signer.nonce_check_secs == 0 {
            bail!("signer.nonce_check_secs must be at least 1");
        }
        self.asset_registry()?;
        self.credit_thresholds()?;
        Ok(())
    }

    pub fn sqlite_path(&self) -> PathBuf {
        if self.database.sqlite_path.is_absolute() {
            self.database.sqlite_path.clone()
        } else {
            self.data_dir.join(&self.database.sqlite_path)
        }
    }

    /// Per asset symbol, the amount above which an operator credit needs a second person.
    pub fn credit_thresholds(&self) -> Result<std::collections::HashMap<String, Amount>> {
        let mut out = std::collections::HashMap::new();
        for a in &self.assets {
            if let Some(t) = &a.credit_approval_threshold {
                let t = Amount::parse_positive(t, a.decimals).with_context(|| format!("asset {}: credit_approval_threshold", a.symbol))?;
                out.insert(a.symbol.clone(), t);
            }
        }
        Ok(out)
    }

    pub fn asset_registry(&self) -> Result<AssetRegistry> {
        let mut out = Vec::new();
        // Balances are kept per (user, symbol) across chains, amounts in base units of the
        // asset's decimals: one symbol with other decimals on another chain would let a
        // credit of "1" there be spent as 10^12 of it here. Refused at start.
        for (i, a) in self.assets.iter().enumerate() {
            if let Some(b) = self.assets[..i].iter().find(|b| b.symbol == a.symbol && b.decimals != a.decimals) {
                bail!(
                    "asset {} has {} decimals on chain {} but {} on chain {}: balances are kept per symbol, so one symbol must have one number of decimals (name the other one differently, e.g. {}.{})",
                    a.symbol,
                    b.decimals,
                    b.chain_id,
                    a.decimals,
                    a.chain_id,
                    a.symbol,
                    a.chain_id
                );
            }
            if self.assets[..i].iter().any(|b| b.symbol == a.symbol && b.chain_id == a.chain_id) {
                bail!("asset {} on chain {} is configured twice", a.symbol, a.chain_id);
            }
        }
        for a in &self.assets {
            if !self.chains.iter().any(|c| c.chain_id == a.chain_id) {
                bail!("asset {} is on chain {}, which is not configured", a.symbol, a.chain_id);
            }
            let kind = match &a.contract {
                None => AssetKind::Native,
                Some(c) => AssetKind::Erc20 {
                    contract: withdraw_core::domain::parse_destination(c).with_context(|| format!("asset {}: contract", a.symbol))?,
                },
            };
            let max_amount = a
                .max_amount
                .as_deref()
                .map(|m| Amount::parse_positive(m, a.decimals))
                .transpose()
                .with_context(|| format!("asset {}: max_amount", a.symbol))?;
            let gas_limit = a.gas_limit.unwrap_or(match kind {
                AssetKind::Native => 21_000,
                AssetKind::Erc20 { .. } => 100_000,
            });
            let approval_threshold = a
                .approval_threshold
                .as_deref()
                .map(|m| Amount::parse_positive(m, a.decimals))
                .transpose()
                .with_context(|| format!("asset {}: approval_threshold", a.symbol))?;
            out.push(Asset {
                symbol: a.symbol.clone(),
                chain_id: a.chain_id,
                kind,
                decimals: a.decimals,
                max_amount,
                gas_limit,
                approval_threshold,
            });
        }
        Ok(AssetRegistry::new(out))
    }
}

/// Reads a secret from where the configuration says it lives.
pub fn resolve_secret(what: &str, r: &SecretRef) -> Result<Zeroizing<String>> {
    if let Some(f) = &r.file {
        let s = Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("{what}: cannot read secret file {}", f.display()))?);
        let trimmed = Zeroizing::new(s.trim().to_owned());
        if trimmed.is_empty() {
            bail!("{what}: secret file {} is empty", f.display());
        }
        return Ok(trimmed);
    }
    if let Some(name) = &r.env
        && let Ok(v) = std::env::var(name)
    {
        if v.is_empty() {
            bail!("{what}: environment variable {name} is empty");
        }
        return Ok(Zeroizing::new(v));
    }
    match &r.dev_default {
        Some(d) => Ok(Zeroizing::new(d.clone())),
        None => bail!("{what}: no secret found (set {})", r.env.as_deref().unwrap_or("a file or env reference")),
    }
}

/// Where the signer's key comes from. Resolved only by the signer role.
pub enum KeyMaterial {
    Hex(Vec<Zeroizing<String>>),
    Keystore {
        path: PathBuf,
        password: Zeroizing<String>,
    },
    SecretsManager {
        ids: Vec<String>,
        ttl: std::time::Duration,
    },
    /// Every wallet is a KMS key (`signer.kms_keys`): nothing to load here.
    None,
}

pub fn key_material(cfg: &SignerConfig) -> Result<KeyMaterial> {
    if !cfg.secrets_manager_ids.is_empty() {
        return Ok(KeyMaterial::SecretsManager {
            ids: cfg.secrets_manager_ids.clone(),
            ttl: std::time::Duration::from_secs(cfg.secrets_ttl_secs.max(1)),
        });
    }
    if let Some(path) = &cfg.keystore {
        let pw = cfg.keystore_password.as_ref().context("signer.keystore is set but signer.keystore_password is not")?;
        return Ok(KeyMaterial::Keystore { path: path.clone(), password: resolve_secret("keystore password", pw)? });
    }
    if let Some(k) = &cfg.key {
        let mut keys = vec![resolve_secret("hot-wallet key", k)?];
        for (i, k) in cfg.extra_keys.iter().enumerate() {
            keys.push(resolve_secret(&format!("hot-wallet key extra_keys[{i}]"), k)?);
        }
        return Ok(KeyMaterial::Hex(keys));
    }
    if !cfg.kms_keys.is_empty() {
        return Ok(KeyMaterial::None);
    }
    if cfg.use_anvil_dev_key {
        let n = cfg.anvil_dev_wallets;
        if n == 0 || n > ANVIL_DEV_KEYS.len() {
            bail!("signer.anvil_dev_wallets must be 1-{} (got {n})", ANVIL_DEV_KEYS.len());
        }
        return Ok(KeyMaterial::Hex(ANVIL_DEV_KEYS[..n].iter().map(|k| Zeroizing::new((*k).to_owned())).collect()));
    }
    bail!("no hot-wallet key configured: set signer.keystore, signer.key, signer.secrets_manager_ids or signer.kms_keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_never_reach_a_real_chain() {
        let mut cfg = Config::dev_defaults();
        let kept = cfg.clone().without_dev_defaults_off_dev_chains();
        assert!(kept.signer.use_anvil_dev_key && kept.admin.tokens[0].token.dev_default.is_some(), "dev chain: kept");
        cfg.chains[0].chain_id = 1;
        cfg.assets[0].chain_id = 1;
        let real = cfg.without_dev_defaults_off_dev_chains();
        assert!(!real.signer.use_anvil_dev_key);
        assert!(real.intake.clients.iter().all(|c| c.secret.dev_default.is_none()));
        assert!(real.admin.tokens.iter().all(|t| t.token.dev_default.is_none()));
        let err = key_material(&real.signer).err().expect("no key configured").to_string();
        assert!(err.contains("no hot-wallet key configured"), "{err}");
        let Err(err) = resolve_secret("admin token", &real.admin.tokens[0].token) else {
            panic!("a token resolved without any configured")
        };
        let err = err.to_string();
        assert!(err.contains("no secret found"), "{err}");
    }

    #[test]
    fn the_shipped_example_configs_load() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/withdrawd.toml.example");
        let cfg = Config::load(Some(&example)).unwrap_or_else(|e| panic!("{}: {e:#}", example.display()));
        assert_eq!(cfg.chains[0].endpoints.len(), 2);
        let cfg = cfg.without_dev_defaults_off_dev_chains();
        assert!(!cfg.signer.use_anvil_dev_key && cfg.intake.clients[0].secret.file.is_some());

        let aws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/withdrawd-aws.example.toml");
        let cfg = Config::load(Some(&aws)).unwrap_or_else(|e| panic!("{}: {e:#}", aws.display()));
        assert_eq!(
            (cfg.database.backend, cfg.queues.backend, cfg.balances.backend),
            (DatabaseBackend::Postgres, QueueBackend::Sqs, BalanceBackend::Redis)
        );
        assert_eq!(cfg.admin.tokens.len(), 2, "the file's tokens replace the dev token");
        let cfg = cfg.without_dev_defaults_off_dev_chains();
        assert!(matches!(key_material(&cfg.signer).unwrap(), KeyMaterial::SecretsManager { ref ids, .. } if ids.len() == 2));
        assert!(cfg.admin.tokens.iter().all(|t| t.token.dev_default.is_none()));
        assert_eq!(cfg.chains[0].finality(1), withdraw_core::ports::Finality::Finalized);
        assert_eq!(cfg.chains[0].fee_policy().floor_wei, 100_000_000);
    }

    #[test]
    fn finality_and_fees_per_chain() {
        let dir = tempfile::tempdir().unwrap();
        let load = |chain: &str| {
            let f = dir.path().join("c.toml");
            std::fs::write(
                &f,
                format!("[[chains]]\nchain_id = 31337\nrpc_url = \"http://127.0.0.1:8545\"\nmax_fee_cap_wei = 1000000000000\nrpc_timeout_ms = 1000\n{chain}\n"),
            )
            .unwrap();
            Config::load(Some(&f))
        };
        use withdraw_core::adapters::evm::FeeModel;
        use withdraw_core::ports::Finality;
        assert_eq!(load("").unwrap().chains[0].finality(4), Finality::Confirmations(4), "unset: tracker.confirmations");
        assert_eq!(load("finality = \"finalized\"").unwrap().chains[0].finality(4), Finality::Finalized);
        assert_eq!(load("finality = { confirmations = 12 }").unwrap().chains[0].finality(4), Finality::Confirmations(12));
        let legacy = load("fees = { model = \"legacy\", floor_wei = 7 }").unwrap();
        assert_eq!((legacy.chains[0].fee_policy().model, legacy.chains[0].fee_policy().floor_wei), (FeeModel::Legacy, 7));
        for (bad, says) in [
            ("finality = \"latest\"", "invalid configuration"),
            ("finality = { confirmations = 0 }", "at least 1"),
            ("fees = { reward_percentile = 101 }", "reward_percentile must be 0-100"),
            ("fees = { base_fee_multiplier_percent = 90 }", "at least 100"),
            ("fees = { model = \"eip4844\" }", "invalid configuration"),
        ] {
            let err = format!("{:#}", load(bad).err().unwrap_or_else(|| panic!("{bad} loaded")));
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::dev_defaults().validate().unwrap();
    }

    #[test]
    fn asset_on_unknown_chain_is_refused() {
        let mut c = Config::dev_defaults();
        c.assets[0].chain_id = 5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("chain 5"), "{e}");
    }

    /// One symbol, 18 decimals on one chain and 6 on another: a credit of "1" on the second
    /// would be 10^12 of the first's base units in the one balance they share. Refused.
    #[test]
    fn holes_one_symbol_with_two_decimals_is_refused() {
        let mut c = Config::dev_defaults();
        let mut other = c.chains[0].clone();
        other.chain_id = 1337;
        c.chains.push(other);
        let mut usdc = c.assets[0].clone();
        usdc.chain_id = 1337;
        usdc.decimals = 6;
        c.assets.push(usdc.clone());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("decimals") && e.contains("one symbol must have one number of decimals"), "{e}");
        c.assets.last_mut().unwrap().decimals = c.assets[0].decimals;
        c.validate().expect("the same symbol with the same decimals on two chains is fine");
        c.assets.push(usdc);
        c.assets.last_mut().unwrap().decimals = c.assets[0].decimals;
        assert!(c.validate().unwrap_err().to_string().contains("configured twice"));
    }

    #[test]
    fn bad_max_amount_is_refused() {
        let mut c = Config::dev_defaults();
        c.assets[0].max_amount = Some("1.5e3".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "[tracker]\nconfirmations = 3\npoll_ms = 100\nreconcile_every_secs = 1\nstale_after_secs = 2\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.tracker.confirmations, 3);
        assert_eq!(c.intake.clients[0].id, "dev");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "[tracker]\nconfirmaitons = 3\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("confirmaitons"), "{e}");
    }

    #[test]
    fn secret_from_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "abc\n").unwrap();
        let s = resolve_secret("x", &SecretRef { env: None, file: Some(f), dev_default: None }).unwrap();
        assert_eq!(s.as_str(), "abc");
        assert!(resolve_secret("x", &SecretRef { env: None, file: None, dev_default: None }).is_err());
    }

    #[test]
    fn a_redis_url_that_would_turn_tls_off_is_refused() {
        let with_ca = BalancesConfig { redis_ca_file: Some("/ca.pem".into()), ..BalancesConfig::default() };
        let without = BalancesConfig::default();
        assert!(with_ca.check_redis_url("rediss://:pw@h:6379/0").is_ok());
        assert!(without.check_redis_url("redis://:pw@h:6379/0").is_ok(), "plain text stays possible without a CA (a local Redis)");
        for (b, url) in [(&with_ca, "redis://:pw@h:6379/0"), (&without, "rediss://:pw@h:6379/0#insecure")] {
            let e = b.check_redis_url(url).unwrap_err().to_string();
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    /// A provider's URL carries its API key: it can be kept as a secret (a file here), and a
    /// URL written in the config is never printed past its host and port.
    #[test]
    fn an_endpoint_url_can_be_a_secret_and_is_never_printed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("rpc-url");
        std::fs::write(&key, "https://mainnet.example.org/v3/KEY-IN-A-FILE\n").unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(
            &f,
            format!(
                "[[chains]]\nchain_id = 31337\nmax_fee_cap_wei = 1\nrpc_timeout_ms = 1\n\
                 [[chains.endpoints]]\nname = \"infura\"\nurl = {{ file = \"{}\" }}\n\
                 [[chains.endpoints]]\nurl = \"https://backup.example.org/KEY-IN-THE-CONFIG\"\ntier = \"backup\"\n",
                key.display()
            ),
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        let chain = &c.chains[0];
        let urls: Vec<String> = chain.endpoint_specs().unwrap().into_iter().map(|e| e.url).collect();
        assert_eq!(urls, ["https://mainnet.example.org/v3/KEY-IN-A-FILE", "https://backup.example.org/KEY-IN-THE-CONFIG"]);
        let shown = format!("{:?} {:?}", chain.endpoints, chain.endpoint_specs().unwrap());
        assert!(!shown.contains("KEY-IN"), "{shown}");
        assert!(shown.contains("https://backup.example.org:443"), "{shown}");

        std::fs::remove_file(&key).unwrap();
        let e = format!("{:#}", chain.endpoint_specs().unwrap_err());
        assert!(e.contains("chain 31337 endpoint infura") && !e.contains("KEY-IN"), "{e}");
    }
}
