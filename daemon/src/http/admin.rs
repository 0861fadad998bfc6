//! The operator-facing admin API under `/admin/v1/`. Bearer tokens carry roles; every
//! mutating call is written to the audit log with the operator's name.

use super::auth::{AdminTokens, Role};
use super::problem::Problem;
use super::withdrawal_v1;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::sync::Arc;
use withdraw_core::domain::{Amount, AssetRegistry, WithdrawalId};
use withdraw_core::ports::{AuditEntry, Balance, Balances, Chain, Queue, QueueName, Store};
use withdraw_core::stages::{ActionError, ActionOutcome};
use withdraw_core::stages::{PortTypes, Ports};
use withdraw_core::wire::{
    ActionRequestV1, ActionResultV1, BalanceV1, CreditRequestV1, HotWalletV1, NonceLaneV1, QueueStatsV1, RpcEndpointV1, StatsV1,
    WalletAssetV1,
};

pub struct AdminState<T: PortTypes> {
    pub ports: Arc<Ports<T>>,
    pub assets: Arc<AssetRegistry>,
    pub tokens: AdminTokens,
}

pub fn router<T: PortTypes>(state: Arc<AdminState<T>>) -> Router {
    Router::new()
        .route("/admin/v1/balances/credit", post(credit::<T>))
        .route("/admin/v1/balances/{user_id}/{asset}", get(balance::<T>))
        .route("/admin/v1/withdrawals/{id}", get(withdrawal::<T>))
        .route("/admin/v1/withdrawals/{id}/reprocess", post(reprocess::<T>))
        .route("/admin/v1/withdrawals/{id}/discard", post(discard::<T>))
        .route("/admin/v1/stats", get(stats::<T>))
        .route("/admin/v1/hot-wallets", get(hot_wallets::<T>))
        .route("/admin/v1/rpc", get(rpc_health::<T>))
        .with_state(state)
}

fn balance_v1(user_id: &str, asset: &str, decimals: u8, b: &Balance) -> BalanceV1 {
    BalanceV1 {
        user_id: user_id.to_owned(),
        asset: asset.to_owned(),
        credited: b.credited.to_decimal(decimals),
        reserved: b.reserved.to_decimal(decimals),
        spent: b.spent.to_decimal(decimals),
        available: b.available().to_decimal(decimals),
    }
}

async fn credit<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    let op = s.tokens.verify(&headers, Role::Operator)?;
    let req: CreditRequestV1 =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body is not a credit request: {e}")))?;
    let asset = s.assets.find_symbol(&req.asset).ok_or_else(|| Problem::bad_request(format!("unknown asset {:?}", req.asset)))?;
    if req.user_id.is_empty() || req.user_id.len() > 128 {
        return Err(Problem::bad_request("user_id must be 1-128 characters"));
    }
    let amount = Amount::parse_positive(&req.amount, asset.decimals).map_err(|e| Problem::bad_request(e.to_string()))?;
    let b = s.ports.balances.credit(&req.user_id, &asset.symbol, amount).await.map_err(|e| Problem::unavailable(e.to_string()))?;
    let audit = AuditEntry {
        actor: op.name.clone(),
        action: "balance.credit".into(),
        target: format!("user/{}/{}", req.user_id, asset.symbol),
        reason: req.reason.clone(),
        detail: format!("credited {} {}", amount.to_decimal(asset.decimals), asset.symbol),
    };
    if let Err(e) = s.ports.store.audit(audit).await {
        // The credit is done; losing its audit row must be loud.
        tracing::error!(error = %e, operator = op.name, "audit log write failed after a credit");
    }
    Ok(axum::Json(balance_v1(&req.user_id, &asset.symbol, asset.decimals, &b)))
}

async fn balance<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path((user, asset)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let a = s.assets.find_symbol(&asset).ok_or_else(Problem::not_found)?;
    let b = s.ports.balances.get(&user, &a.symbol).await.map_err(|e| Problem::unavailable(e.to_string()))?;
    Ok(axum::Json(balance_v1(&user, &a.symbol, a.decimals, &b)))
}

async fn withdrawal<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let id = WithdrawalId::parse(&id).ok_or_else(Problem::not_found)?;
    let d = s.ports.store.get(&id).await.map_err(|e| Problem::unavailable(e.to_string()))?.ok_or_else(Problem::not_found)?;
    Ok(axum::Json(withdrawal_v1(&s.ports, &s.assets, d).await?))
}

async fn stats<T: PortTypes>(State(s): State<Arc<AdminState<T>>>, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    Ok(axum::Json(collect_stats(&s.ports).await?))
}

pub async fn collect_stats<T: PortTypes>(ports: &Ports<T>) -> Result<StatsV1, Problem> {
    let counts = ports.store.counts().await.map_err(|e| Problem::unavailable(e.to_string()))?;
    let mut queues = Vec::new();
    for q in QueueName::ALL {
        let st = ports.queue.stats(q).await.map_err(|e| Problem::unavailable(e.to_string()))?;
        queues.push(QueueStatsV1 {
            name: q.as_str().to_owned(),
            visible: st.visible,
            in_flight: st.in_flight,
            oldest_age_seconds: st.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
        });
    }
    Ok(StatsV1 { statuses: counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect(), queues })
}

async fn hot_wallets<T: PortTypes>(State(s): State<Arc<AdminState<T>>>, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let unavailable = |e: withdraw_core::ports::StoreError| Problem::unavailable(e.to_string());
    // The signer's last views (nonce check, funds check): no RPC from the admin API, so a
    // dead node shows as stale `checked_at_ms`, not as a hanging console.
    let checks = s.ports.store.nonce_checks().await.map_err(unavailable)?;
    let funds = s.ports.store.wallet_funds().await.map_err(unavailable)?;
    let mut keys: Vec<(u64, alloy::primitives::Address)> = checks.iter().map(|c| (c.chain_id, c.wallet)).collect();
    keys.extend(funds.iter().map(|f| (f.chain_id, f.wallet)));
    keys.sort();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len());
    for (chain_id, wallet) in keys {
        let check = checks.iter().find(|c| c.chain_id == chain_id && c.wallet == wallet);
        let next_nonce = match check {
            Some(c) => Some(c.next_nonce),
            None => s.ports.store.next_nonce(wallet, chain_id).await.map_err(unavailable)?,
        };
        let assets = funds
            .iter()
            .filter(|f| f.chain_id == chain_id && f.wallet == wallet)
            .map(|f| {
                let decimals = s.assets.find(&f.asset, f.chain_id).map(|a| a.decimals).unwrap_or(18);
                WalletAssetV1 {
                    asset: f.asset.clone(),
                    balance: f.balance.to_decimal(decimals),
                    in_flight: f.in_flight.to_decimal(decimals),
                    short_by: f.short_by.to_decimal(decimals),
                    held: f.held,
                    updated_at_ms: f.updated_at_ms,
                }
            })
            .collect();
        out.push(HotWalletV1 {
            chain_id,
            wallet: wallet.to_checksum(None),
            next_nonce,
            nonces: check.map(|c| NonceLaneV1 {
                chain_latest: c.chain_latest,
                chain_pending: c.chain_pending,
                in_flight: c.next_nonce.saturating_sub(c.chain_latest),
                gaps: c.gaps.clone(),
                blocked: c.blocked.clone(),
                checked_at_ms: c.checked_at_ms,
            }),
            funds: assets,
        });
    }
    Ok(axum::Json(out))
}

/// Every chain's RPC endpoints as this process's pool sees them (no call made here).
async fn rpc_health<T: PortTypes>(State(s): State<Arc<AdminState<T>>>, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let mut chains: Vec<_> = s.ports.chains.iter().collect();
    chains.sort_by_key(|(id, _)| **id);
    let out: Vec<RpcEndpointV1> = chains
        .into_iter()
        .flat_map(|(&chain_id, c)| {
            c.endpoints().into_iter().map(move |e| RpcEndpointV1 {
                chain_id,
                name: e.name,
                tier: e.tier.as_str().into(),
                weight: e.weight,
                state: e.state.as_str().into(),
                head: e.head,
                lag: e.lag,
                latency_ms: e.latency_ms,
                consecutive_failures: e.consecutive_failures,
                last_error: e.last_error,
                since_ms: e.since_ms,
                serving_reads: e.serving_reads,
            })
        })
        .collect();
    Ok(axum::Json(out))
}

fn action_problem(e: ActionError) -> Problem {
    match e {
        ActionError::NotFound(_) => Problem::not_found(),
        ActionError::Conflict(m) => Problem::conflict(m),
        ActionError::MissingReason => Problem::bad_request("a non-empty \"reason\" is required"),
        ActionError::Stage(e) => Problem::unavailable(e.to_string()),
    }
}

async fn action<T: PortTypes>(
    s: &AdminState<T>,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    discard: bool,
) -> Result<axum::Json<ActionResultV1>, Problem> {
    let op = s.tokens.verify(headers, Role::Operator)?;
    let id = WithdrawalId::parse(id).ok_or_else(Problem::not_found)?;
    let req: ActionRequestV1 =
        serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("body must be {{\"reason\": \"...\"}}: {e}")))?;
    let outcome = if discard {
        withdraw_core::stages::discard(&s.ports, &id, &op.name, &req.reason).await
    } else {
        withdraw_core::stages::reprocess(&s.ports, &id, &op.name, &req.reason).await
    }
    .map_err(action_problem)?;
    let status = s.ports.store.get(&id).await.map_err(|e| Problem::unavailable(e.to_string()))?.map(|d| d.withdrawal.status.to_string());
    let outcome = match outcome {
        ActionOutcome::Moved(_) => "moved",
        ActionOutcome::CancelRequested => "cancel_requested",
        ActionOutcome::AlreadyCancelling => "already_cancelling",
    };
    Ok(axum::Json(ActionResultV1 { id: id.to_string(), outcome: outcome.into(), status: status.unwrap_or_default() }))
}

/// Sends a dead-lettered withdrawal back into the pipeline.
async fn reprocess<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    action(&s, &headers, &id, &body, false).await
}

/// Gives up on a withdrawal (a signed one is cancelled on chain at its nonce).
async fn discard<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    action(&s, &headers, &id, &body, true).await
}
