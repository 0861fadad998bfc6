//! `withdrawd`: one binary, one subcommand per role (docs/design.md §2).

mod bench;
mod config;
mod http;
mod logging;
mod tasks;
mod telemetry;
mod wiring;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use wiring::Role;

#[derive(Parser)]
#[command(name = "withdrawd", version, about = "Custodial hot-wallet withdrawals for EVM chains")]
struct Cli {
    /// TOML configuration; every key can be overridden by WITHDRAW__SECTION__KEY.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format; JSON unless stderr is a terminal.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Every role in one process on the embedded profile (SQLite + a local anvil).
    Dev(DevArgs),
    /// The client-facing intake API.
    Intake,
    /// The operator-facing admin API.
    Admin,
    /// Validates, reserves and signs (the only role that loads keys).
    Signer,
    /// Broadcasts signed transactions.
    Sender,
    /// Follows the chain to confirmation and reconciles lost work.
    Tracker {
        /// One pass then exit (for a CronJob).
        #[arg(long)]
        once: bool,
    },
    /// Creates or upgrades the database schema, then exits.
    Migrate,
    /// Loads and validates the configuration (as a role would), prints what it selects, and
    /// exits; nothing is connected.
    CheckConfig,
    /// Checks the Redis balance store against the database.
    Balances {
        #[command(subcommand)]
        action: BalancesAction,
    },
    /// Manages the SQS queues.
    Queues {
        #[command(subcommand)]
        action: QueuesAction,
    },
    /// Drives the intake over HTTP and reports throughput and latency.
    Bench(bench::BenchArgs),
    /// Measures the chain's own ceiling for the bench: pre-signed transfers from one key,
    /// sent in batches to a fresh anvil, accepted/s and mined/s.
    Ceiling(bench::CeilingArgs),
}

#[derive(Subcommand)]
enum BalancesAction {
    /// Rebuilds Redis's reservations and its reserved and spent totals from the database's
    /// record of every withdrawal, and reports each difference. A Redis that lost writes
    /// could otherwise let a user withdraw the same funds twice. Pause signing first.
    Reconcile {
        /// Report only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run although signing is not paused.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum QueuesAction {
    /// Creates the four SQS queues with their redrive policies (or updates the policies),
    /// then prints the [queues.sqs] configuration naming them. For dev and test accounts;
    /// production queues are declared as infrastructure (k8s/ ACK resources).
    Ensure {
        /// Queue names are <prefix>-requests, <prefix>-signed, <prefix>-invalid-dlq, <prefix>-tx-dlq.
        #[arg(long, default_value = "withdraw")]
        prefix: String,
    },
}

#[derive(clap::Args)]
struct DevArgs {
    /// The node to use (default http://127.0.0.1:8545, unless the config lists endpoints).
    #[arg(long)]
    rpc_url: Option<String>,
    #[arg(long, default_value = ".withdrawd")]
    data_dir: PathBuf,
    #[arg(long)]
    confirmations: Option<u64>,
    #[arg(long)]
    intake_addr: Option<SocketAddr>,
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (never on the API ports).
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Encrypted keystore of the hot wallet (password from signer.keystore_password).
    #[arg(long)]
    keystore: Option<PathBuf>,
    /// How many of anvil's dev accounts sign (1-4), each its own nonce lane.
    #[arg(long)]
    hot_wallets: Option<usize>,
    /// Allow a chain id other than 31337 or 1337.
    #[arg(long)]
    allow_any_chain: bool,
}

fn init_logging(format: Option<LogFormat>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WITHDRAW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if json {
        let ecs = tracing_subscriber::fmt::layer().event_format(logging::Ecs { service: "withdrawd" }).with_writer(std::io::stdout);
        tracing_subscriber::registry().with(filter).with(logging::TraceIds).with(ecs).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).compact().init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("withdrawd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line with its causes, each said once, instead of a panic or a
            // debug dump.
            let msg = withdraw_core::adapters::aws::describe::<dyn std::error::Error + Send + Sync>(e.as_ref());
            tracing::error!(error = %msg, "withdrawd failed");
            eprintln!("withdrawd: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let load = || config::Config::load(cli.config.as_deref());
    // Role processes get dev conveniences (anvil's public key, default secrets) only when
    // every configured chain is a dev chain: on a real one they would be an open door.
    let role_config = || load().map(config::Config::without_dev_defaults_off_dev_chains);
    match cli.command {
        Command::Dev(a) => {
            let mut cfg = load()?;
            cfg.apply_dev(&config::DevOverrides {
                rpc_url: a.rpc_url.clone(),
                data_dir: Some(a.data_dir),
                confirmations: a.confirmations,
                intake_listen: a.intake_addr,
                admin_listen: a.admin_addr,
                health_listen: a.health_addr,
                keystore: a.keystore,
                hot_wallets: a.hot_wallets,
            });
            let url = cfg.chains.first().context("no chain configured")?.first_url()?.context("no chain endpoint configured")?;
            let chain_id = withdraw_core::adapters::evm::EvmChain::probe_chain_id(&url, std::time::Duration::from_secs(5))
                .await
                .with_context(|| format!("no usable node at {} (start anvil there, or run scripts/dev.sh)", wiring::redact_url(&url)))?;
            wiring::check_dev_chain(chain_id, a.allow_any_chain)?;
            cfg.set_dev_chain_id(chain_id);
            cfg.validate()?;
            wiring::run_roles(cfg, &Role::ALL, true).await
        }
        Command::Intake => wiring::run_roles(role_config()?, &[Role::Intake], false).await,
        Command::Admin => wiring::run_roles(role_config()?, &[Role::Admin], false).await,
        Command::Signer => wiring::run_roles(role_config()?, &[Role::Signer], false).await,
        Command::Sender => wiring::run_roles(role_config()?, &[Role::Sender], false).await,
        Command::Tracker { once: false } => wiring::run_roles(role_config()?, &[Role::Tracker], false).await,
        Command::Tracker { once: true } => {
            let cfg = role_config()?;
            let ports = wiring::ports(&cfg, true).await?;
            withdraw_core::stages::Tracker::new(ports, Arc::new(cfg.asset_registry()?), wiring::tracker_config(&cfg))
                .once()
                .await
                .context("tracker pass")?;
            Ok(())
        }
        Command::Migrate => {
            let cfg = role_config()?;
            wiring::open_store(&cfg, std::sync::Arc::new(withdraw_core::ports::SystemClock), true).await?;
            tracing::info!(backend = ?cfg.database.backend, "database schema is current");
            Ok(())
        }
        Command::CheckConfig => {
            let cfg = role_config()?;
            println!(
                "configuration ok: database {:?}, queues {:?}, balances {:?}, {} chain(s), {} asset(s), {} intake client(s), {} admin token(s)",
                cfg.database.backend,
                cfg.queues.backend,
                cfg.balances.backend,
                cfg.chains.len(),
                cfg.assets.len(),
                cfg.intake.clients.len(),
                cfg.admin.tokens.len()
            );
            Ok(())
        }
        Command::Balances { action: BalancesAction::Reconcile { dry_run, force } } => {
            let cfg = role_config()?;
            let drift = wiring::reconcile_balances(&cfg, dry_run, force).await?;
            for d in &drift {
                println!("{}{d}", if dry_run { "" } else { "fixed: " });
            }
            eprintln!("withdrawd: {} difference(s){}", drift.len(), if dry_run { " (dry run: nothing changed)" } else { "" });
            Ok(())
        }
        Command::Queues { action: QueuesAction::Ensure { prefix } } => {
            let cfg = load()?;
            let client = aws_sdk_sqs::Client::new(&wiring::aws_config(&cfg).await);
            let vis = std::time::Duration::from_secs(cfg.queues.visibility_timeout_secs);
            let urls = withdraw_core::adapters::sqs::SqsQueue::ensure(&client, &prefix, cfg.queues.max_receives, vis)
                .await
                .context("creating the SQS queues")?;
            println!(
                "# and in [queues]: backend = \"sqs\"\n[queues.sqs]\nrequests_url = \"{}\"\nsigned_url = \"{}\"\ninvalid_dlq_url = \"{}\"\ntx_dlq_url = \"{}\"",
                urls.requests, urls.signed, urls.invalid_dlq, urls.tx_dlq
            );
            Ok(())
        }
        Command::Bench(a) => bench::run(a).await,
        Command::Ceiling(a) => bench::ceiling(a).await,
    }
}
