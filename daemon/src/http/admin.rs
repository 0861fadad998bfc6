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
use withdraw_core::ports::Chain;
use withdraw_core::ports::{AuditEntry, Balance, Balances, Queue, QueueName, Store};
use withdraw_core::stages::{PortTypes, Ports};
use withdraw_core::wire::{BalanceV1, CreditRequestV1, HotWalletV1, QueueStatsV1, StatsV1};

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
        .route("/admin/v1/stats", get(stats::<T>))
        .route("/admin/v1/hot-wallets", get(hot_wallets::<T>))
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
    let funds = s.ports.store.wallet_funds().await.map_err(|e| Problem::unavailable(e.to_string()))?;
    let mut out = Vec::with_capacity(funds.len());
    for f in funds {
        let decimals = s.assets.find(&f.asset, f.chain_id).map(|a| a.decimals).unwrap_or(18);
        let next_nonce = s.ports.store.next_nonce(f.wallet, f.chain_id).await.map_err(|e| Problem::unavailable(e.to_string()))?;
        // The chain's view is best effort: a dead node must not hide the store's view.
        let (latest, pending) = match s.ports.chains.get(&f.chain_id) {
            Some(c) => (c.nonce(f.wallet, false).await.ok(), c.nonce(f.wallet, true).await.ok()),
            None => (None, None),
        };
        out.push(HotWalletV1 {
            chain_id: f.chain_id,
            wallet: f.wallet.to_checksum(None),
            asset: f.asset,
            balance: f.balance.to_decimal(decimals),
            in_flight: f.in_flight.to_decimal(decimals),
            short_by: f.short_by.to_decimal(decimals),
            held: f.held,
            next_nonce,
            chain_nonce_latest: latest,
            chain_nonce_pending: pending,
            updated_at_ms: f.updated_at_ms,
        });
    }
    Ok(axum::Json(out))
}
