//! HTTP servers: the client-facing intake API, the operator-facing admin API, and the
//! `/healthz`, `/readyz`, `/metrics` endpoints every role serves.

pub mod admin;
pub mod auth;
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
use withdraw_core::stages::{PortTypes, Ports};
use withdraw_core::wire::*;

/// What the ops endpoints look at.
pub struct Ops<T: PortTypes> {
    pub ports: Arc<Ports<T>>,
    pub metrics: PrometheusHandle,
}

pub fn ops_router<T: PortTypes>(ops: Arc<Ops<T>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz::<T>))
        .route("/metrics", get(metrics_text::<T>))
        .with_state(ops)
}

/// Ready when the database, the queues and the balance store answer and every chain's
/// node gives a head.
async fn readyz<T: PortTypes>(State(ops): State<Arc<Ops<T>>>) -> Result<impl IntoResponse, Problem> {
    ops.ports.store.counts().await.map_err(|e| Problem::unavailable(format!("database: {e}")))?;
    ops.ports.queue.stats(QueueName::Requests).await.map_err(|e| Problem::unavailable(format!("queues: {e}")))?;
    ops.ports.balances.get("readyz", "readyz").await.map_err(|e| Problem::unavailable(format!("balances: {e}")))?;
    for (id, chain) in &ops.ports.chains {
        chain.head().await.map_err(|e| Problem::unavailable(format!("chain {id}: {e}")))?;
    }
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

async fn metrics_text<T: PortTypes>(State(ops): State<Arc<Ops<T>>>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render())
}

/// The API view of a withdrawal.
pub async fn withdrawal_v1<T: PortTypes>(ports: &Ports<T>, assets: &AssetRegistry, d: WithdrawalDetail) -> Result<WithdrawalV1, Problem> {
    let w = &d.withdrawal;
    let decimals = assets.find(&w.asset, w.chain_id).map(|a| a.decimals).unwrap_or(0);
    let confirmations = match &d.inclusion {
        Some(inc) => {
            let seen = ports.store.cursor(w.chain_id).await.map_err(|e| Problem::unavailable(e.to_string()))?.unwrap_or(0);
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
