//! HTTP servers: the client-facing intake API, the operator-facing admin API, and the
//! `/healthz`, `/readyz`, `/metrics` endpoints every role serves.

pub mod admin;
pub mod auth;
pub mod extract;
pub mod intake;
pub mod problem;
pub mod server;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use problem::Problem;
use std::sync::Arc;
use withdraw_core::domain::AssetRegistry;
use withdraw_core::ports::{Balances, Chain, Queue, QueueName, Store, WithdrawalDetail};
use withdraw_core::ports::{PortTypes, Ports};
use withdraw_core::wire::*;

/// What the ops endpoints look at.
pub struct Ops<T: PortTypes> {
    pub ports: Arc<Ports<T>>,
    pub metrics: PrometheusHandle,
    /// The last readiness probe's findings, refreshed in the background.
    pub readiness: std::sync::RwLock<Readiness>,
    /// What this process's roles need to do their work, beyond the database.
    pub needs: Needs,
}

/// The dependencies a process's roles need besides the database (which every role needs).
/// A dependency a role does not use is reported by `/readyz`, never fatal to it: an RPC or
/// Redis outage must not take the admin API, the one that pauses signing, out of service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The signer, sender and tracker consume queues. Intake does not wait on them: the
    /// database is its record, and the reconciler enqueues what intake could not.
    pub queues: bool,
    /// The signer reserves and the tracker settles.
    pub balances: bool,
    /// The signer, sender and tracker talk to the chains.
    pub chains: bool,
}

/// What the readiness prober last found: one line per dependency, None while fine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Readiness {
    pub probed: bool,
    /// When the last probe finished: a prober that stopped answering makes this stale.
    #[serde(skip)]
    pub at: Option<std::time::Instant>,
    pub database: Option<String>,
    pub queues: Option<String>,
    pub balances: Option<String>,
    /// Chains with no usable RPC endpoint (from the pool's own health loop).
    pub chains_unavailable: Vec<u64>,
}

impl<T: PortTypes> Ops<T> {
    pub fn new(ports: Arc<Ports<T>>, metrics: PrometheusHandle, needs: Needs) -> Self {
        Self { ports, metrics, readiness: std::sync::RwLock::new(Readiness::default()), needs }
    }

    /// Probes the dependencies once: the database, the queues and the balance store are
    /// asked; chains are read from the pool's health, never with an RPC call.
    pub async fn probe(&self) {
        // Each dependency gets a deadline: one that hangs is reported, not waited on.
        async fn within<T, E: std::fmt::Display>(f: impl std::future::Future<Output = Result<T, E>>) -> Option<String> {
            match tokio::time::timeout(PROBE_TIMEOUT, f).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            }
        }
        let r = Readiness {
            probed: true,
            at: Some(std::time::Instant::now()),
            database: within(self.ports.store.counts()).await,
            queues: within(self.ports.queue.stats(QueueName::Requests)).await,
            balances: within(self.ports.balances.get("readyz", "readyz")).await,
            chains_unavailable: self.ports.chains.iter().filter(|(_, c)| !c.available()).map(|(id, _)| *id).collect(),
        };
        *self.readiness.write().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// Probes every `every` until cancelled: however many probes hit `/readyz`, the
    /// dependencies see one probe per period (DESIGN §6).
    pub async fn run_prober(&self, every: std::time::Duration, cancel: tokio_util::sync::CancellationToken) {
        while !cancel.is_cancelled() {
            self.probe().await;
            tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(every) => {} }
        }
    }
}

/// How long one dependency may take to answer a probe, and how old the last probe may be.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
const PROBE_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// `/healthz` and `/readyz`, plus `/metrics` unless it has a listener of its own.
pub fn ops_router<T: PortTypes>(ops: Arc<Ops<T>>, with_metrics: bool) -> Router {
    let r = Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz::<T>));
    let r = if with_metrics { r.route("/metrics", get(metrics_text::<T>)) } else { r };
    r.with_state(ops)
}

/// Only `/metrics`, for a listener of its own.
pub fn metrics_router<T: PortTypes>(ops: Arc<Ops<T>>) -> Router {
    Router::new().route("/metrics", get(metrics_text::<T>)).with_state(ops)
}

/// Ready while the database answered the last probe, and what the process's roles need
/// besides ([`Needs`]) answered too; anything else is reported in the body, not fatal.
/// Answered from the last probe, never by asking the dependencies per request.
async fn readyz<T: PortTypes>(State(ops): State<Arc<Ops<T>>>) -> Result<impl IntoResponse, Problem> {
    let r = ops.readiness.read().unwrap_or_else(|p| p.into_inner()).clone();
    if !r.probed {
        return Err(Problem::unavailable("starting: no readiness probe has run yet"));
    }
    if r.at.is_none_or(|t| t.elapsed() > PROBE_STALE_AFTER) {
        return Err(Problem::unavailable("the readiness probe has not finished for too long"));
    }
    if let Some(e) = &r.database {
        return Err(Problem::unavailable(format!("database: {e}")));
    }
    if ops.needs.queues
        && let Some(e) = &r.queues
    {
        return Err(Problem::unavailable(format!("queues: {e}")));
    }
    if ops.needs.balances
        && let Some(e) = &r.balances
    {
        return Err(Problem::unavailable(format!("balances: {e}")));
    }
    if ops.needs.chains && !r.chains_unavailable.is_empty() {
        return Err(Problem::unavailable(format!("chains without a usable RPC endpoint: {:?}", r.chains_unavailable)));
    }
    Ok(axum::Json(serde_json::json!({
        "status": "ready",
        "queues": r.queues.as_deref().unwrap_or("ok"),
        "balances": r.balances.as_deref().unwrap_or("ok"),
        "chains_unavailable": r.chains_unavailable,
    })))
}

async fn metrics_text<T: PortTypes>(State(ops): State<Arc<Ops<T>>>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render())
}

/// The decimals a withdrawal's amount is shown in: its asset's, or none (base units) for an
/// asset no longer configured, where any other guess would misstate the amount.
fn decimals_of(assets: &AssetRegistry, w: &withdraw_core::ports::Withdrawal) -> u8 {
    assets.find(&w.asset, w.chain_id).map(|a| a.decimals).unwrap_or(0)
}

/// A withdrawal in a list or a feed: its amount in the asset's decimals.
pub fn summary_v1(assets: &AssetRegistry, w: &withdraw_core::ports::Withdrawal) -> WithdrawalSummaryV1 {
    let decimals = decimals_of(assets, w);
    WithdrawalSummaryV1 {
        id: w.id.to_string(),
        status: w.status.to_string(),
        reason: w.reason.clone(),
        user_id: w.user_id.clone(),
        asset: w.asset.clone(),
        chain_id: w.chain_id,
        to: w.to.to_checksum(None),
        amount: w.amount.to_decimal(decimals),
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
    }
}

/// The API view of a withdrawal.
pub async fn withdrawal_v1<T: PortTypes>(ports: &Ports<T>, assets: &AssetRegistry, d: WithdrawalDetail) -> Result<WithdrawalV1, Problem> {
    let w = &d.withdrawal;
    let decimals = decimals_of(assets, w);
    let confirmations = match &d.inclusion {
        Some(inc) => {
            let seen = ports.store.cursor(w.chain_id).await?.unwrap_or(0);
            (seen + 1).saturating_sub(inc.block_number)
        }
        None => 0,
    };
    Ok(WithdrawalV1 {
        id: w.id.to_string(),
        status: w.status.to_string(),
        reason: w.reason.clone(),
        user_id: w.user_id.clone(),
        asset: w.asset.clone(),
        chain_id: w.chain_id,
        to: w.to.to_checksum(None),
        amount: w.amount.to_decimal(decimals),
        amount_base_units: w.amount.base_units(),
        created_at_ms: w.created_at_ms,
        updated_at_ms: w.updated_at_ms,
        attempts: d
            .attempts
            .iter()
            .map(|a| AttemptV1 {
                tx_hash: format!("{:#x}", a.tx_hash),
                kind: a.kind.as_str().to_owned(),
                wallet: a.wallet.to_checksum(None),
                nonce: a.nonce,
                max_fee_per_gas: a.max_fee_per_gas.to_string(),
                max_priority_fee_per_gas: a.max_priority_fee_per_gas.to_string(),
                gas_limit: a.gas_limit,
                created_at_ms: a.created_at_ms,
                sent_at_ms: a.sent_at_ms,
            })
            .collect(),
        inclusion: d.inclusion.as_ref().map(|i| InclusionV1 {
            tx_hash: format!("{:#x}", i.tx_hash),
            block_number: i.block_number,
            block_hash: format!("{:#x}", i.block_hash),
            success: i.success,
        }),
        confirmations,
        history: d
            .history
            .iter()
            .map(|h| HistoryV1 {
                from: h.from.map(|s| s.to_string()),
                to: h.to.to_string(),
                reason: h.reason.clone(),
                actor: h.actor.clone(),
                at_ms: h.at_ms,
            })
            .collect(),
        cancel: d.cancel.as_ref().map(|c| CancelV1 {
            actor: c.actor.clone(),
            reason: c.reason.clone(),
            requested_at_ms: c.requested_at_ms,
        }),
    })
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
