//! The operator-facing admin API under `/admin/v1/`. Bearer tokens carry roles; every
//! mutating call is written to the audit log with the operator's name.

use super::auth::{AdminTokens, Role};
use super::problem::Problem;
use super::withdrawal_v1;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;
use withdraw_core::domain::Status;
use withdraw_core::domain::{Amount, AssetRegistry, WithdrawalId};
use withdraw_core::ports::{AlertRecord, SearchFilter, Withdrawal};
use withdraw_core::ports::{Balance, Balances, Chain, Queue, QueueName, Store};
use withdraw_core::ports::{PortTypes, Ports};
use withdraw_core::stages;
use withdraw_core::stages::{ActionError, ActionOutcome};
use withdraw_core::wire::{
    ActionRequestV1, ActionResultV1, BalanceV1, CreditPendingV1, CreditRequestV1, HotWalletV1, NonceLaneV1, QueueStatsV1, RpcEndpointV1,
    StatsV1, WalletAssetV1,
};
use withdraw_core::wire::{
    AlertV1, AlertmanagerWebhookV4, AuditEntryV1, BulkActionRequestV1, BulkActionResultV1, BulkItemV1, MeV1, PauseRequestV1,
    SigningControlV1, SigningStateV1, WithdrawalSummaryV1,
};

pub struct AdminState<T: PortTypes> {
    pub ports: Arc<Ports<T>>,
    pub assets: Arc<AssetRegistry>,
    pub tokens: AdminTokens,
    /// Per asset symbol: operator credits above this need a second person.
    pub credit_thresholds: HashMap<String, Amount>,
}

pub fn router<T: PortTypes>(state: Arc<AdminState<T>>) -> Router {
    Router::new()
        .route("/admin/v1/balances/credit", post(credit::<T>))
        .route("/admin/v1/credits/{key}/approve", post(approve_credit::<T>))
        .route("/admin/v1/balances/{user_id}/{asset}", get(balance::<T>))
        .route("/admin/v1/withdrawals/{id}", get(withdrawal::<T>))
        .route("/admin/v1/withdrawals/{id}/reprocess", post(reprocess::<T>))
        .route("/admin/v1/withdrawals/{id}/discard", post(discard::<T>))
        .route("/admin/v1/stats", get(stats::<T>))
        .route("/admin/v1/hot-wallets", get(hot_wallets::<T>))
        .route("/admin/v1/rpc", get(rpc_health::<T>))
        .route("/admin/v1/me", get(me::<T>))
        .route("/admin/v1/withdrawals", get(search::<T>))
        .route("/admin/v1/dlq/{queue}", get(dlq_list::<T>))
        .route("/admin/v1/dlq/{queue}/{action}", post(dlq_bulk::<T>))
        .route("/admin/v1/approvals", get(approvals_list::<T>))
        .route("/admin/v1/approvals/{id}/{action}", post(approval_action::<T>))
        .route("/admin/v1/signing", get(signing_state::<T>))
        .route("/admin/v1/signing/{action}", post(signing_action::<T>))
        .route("/admin/v1/audit", get(audit_list::<T>))
        .route("/admin/v1/alerts", get(alerts_list::<T>))
        .route("/admin/v1/alerts/alertmanager", post(alertmanager::<T>))
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

/// Credits a user (operator role), idempotently under the `Idempotency-Key` header, with a
/// reason; above the asset's `credit_approval_threshold` it waits (202) for an approver who
/// is not the requester. Journal and audit row are one transaction.
async fn credit<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, Problem> {
    let op = s.tokens.verify(&headers, Role::Operator)?;
    let key = idempotency_key(&headers)?;
    let req: CreditRequestV1 =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body is not a credit request: {e}")))?;
    let asset = s.assets.find_symbol(&req.asset).ok_or_else(|| Problem::bad_request(format!("unknown asset {:?}", req.asset)))?;
    if req.user_id.is_empty() || req.user_id.len() > 128 {
        return Err(Problem::bad_request("user_id must be 1-128 characters"));
    }
    let amount = Amount::parse_positive(&req.amount, asset.decimals).map_err(|e| Problem::bad_request(e.to_string()))?;
    let reason = req.reason.as_deref().unwrap_or("");
    let threshold = s.credit_thresholds.get(&asset.symbol).copied();
    let answer =
        stages::credit(&s.ports, key, &req.user_id, &asset.symbol, amount, reason, &op.name, threshold).await.map_err(action_problem)?;
    credit_response(answer, asset.decimals)
}

/// A second person approves a waiting credit (approver role); it is then applied.
async fn approve_credit<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, Problem> {
    let op = s.tokens.verify(&headers, Role::Approver)?;
    let req: ActionRequestV1 =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body is not an action request: {e}")))?;
    let answer = stages::approve_credit(&s.ports, &key, &op.name, &req.reason).await.map_err(action_problem)?;
    let decimals = s.assets.find_symbol(&answer.credit.asset).map(|a| a.decimals).unwrap_or(0);
    credit_response(answer, decimals)
}

fn credit_response(answer: stages::CreditAnswer, decimals: u8) -> Result<axum::response::Response, Problem> {
    let c = &answer.credit;
    Ok(match &answer.balance {
        Some(b) => axum::Json(balance_v1(&c.user_id, &c.asset, decimals, b)).into_response(),
        None => (
            axum::http::StatusCode::ACCEPTED,
            axum::Json(CreditPendingV1 {
                credit: c.idempotency_key.clone(),
                state: c.state.as_str().to_owned(),
                requested_by: c.requested_by.clone(),
            }),
        )
            .into_response(),
    })
}

/// The `Idempotency-Key` header a mutating money call must carry.
fn idempotency_key(headers: &HeaderMap) -> Result<&str, Problem> {
    headers
        .get("idempotency-key")
        .ok_or_else(|| {
            Problem::new(axum::http::StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key header is required")
                .detail("a credit retried after a timeout must not credit twice: send a key unique to this credit")
        })?
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters"))
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
    Ok(axum::Json(result_v1(&id, &outcome)))
}

fn result_v1(id: &WithdrawalId, o: &ActionOutcome) -> ActionResultV1 {
    ActionResultV1 { id: id.to_string(), outcome: o.name().into(), status: o.status().to_string() }
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

fn unavailable(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(e.to_string())
}

fn summary<T: PortTypes>(s: &AdminState<T>, w: &Withdrawal) -> WithdrawalSummaryV1 {
    let decimals = s.assets.find(&w.asset, w.chain_id).map(|a| a.decimals).unwrap_or(18);
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

fn limit_of(q: &HashMap<String, String>) -> Result<i64, Problem> {
    match q.get("limit") {
        None => Ok(100),
        Some(l) => l.parse::<i64>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| Problem::bad_request("limit must be 1-1000")),
    }
}

/// The token's name and roles, so the console shows only what it may do.
async fn me<T: PortTypes>(State(s): State<Arc<AdminState<T>>>, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    let op = s.tokens.verify_any(&headers)?;
    Ok(axum::Json(MeV1 { name: op.name, roles: op.roles.iter().map(|r| r.as_str().to_owned()).collect() }))
}

/// `?status=&q=&before=&limit=`: q is a withdrawal id, user id, destination or tx hash.
async fn search<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let status = match q.get("status").map(|v| v.to_ascii_uppercase()) {
        None => None,
        Some(v) => Some(v.parse::<Status>().map_err(|e| Problem::bad_request(e.to_string()))?),
    };
    let before = match q.get("before") {
        None => None,
        Some(b) => Some(WithdrawalId::parse(b).ok_or_else(|| Problem::bad_request("before must be a withdrawal id"))?),
    };
    let filter = SearchFilter { status, query: q.get("q").cloned(), before, limit: limit_of(&q)? };
    let found = s.ports.store.search(filter).await.map_err(unavailable)?;
    Ok(axum::Json(found.iter().map(|w| summary(&s, w)).collect::<Vec<_>>()))
}

fn dlq_status(queue: &str) -> Result<Status, Problem> {
    match queue {
        "invalid" => Ok(Status::Invalid),
        "tx" => Ok(Status::SendFailed),
        _ => Err(Problem::not_found().detail("dead-letter queues are \"invalid\" and \"tx\"")),
    }
}

/// A dead-letter queue's withdrawals, newest first, with the reason each failed.
async fn dlq_list<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let status = dlq_status(&queue)?;
    let found = s
        .ports
        .store
        .search(SearchFilter { status: Some(status), limit: limit_of(&q)?, ..Default::default() })
        .await
        .map_err(unavailable)?;
    Ok(axum::Json(found.iter().map(|w| summary(&s, w)).collect::<Vec<_>>()))
}

/// Reprocess or discard many dead-letter entries with one reason; each succeeds or fails
/// on its own (an entry that moved meanwhile is reported, not retried).
async fn dlq_bulk<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path((queue, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    let op = s.tokens.verify(&headers, Role::Operator)?;
    let status = dlq_status(&queue)?;
    let discard = match action.as_str() {
        "reprocess" => false,
        "discard" => true,
        _ => return Err(Problem::not_found().detail("actions are \"reprocess\" and \"discard\"")),
    };
    let req: BulkActionRequestV1 = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("body must be {{\"ids\": [...], \"reason\": \"...\"}}: {e}")))?;
    if req.reason.trim().is_empty() {
        return Err(Problem::bad_request("a non-empty \"reason\" is required"));
    }
    if req.ids.is_empty() || req.ids.len() > 500 {
        return Err(Problem::bad_request("ids must list 1-500 withdrawals"));
    }
    let mut results = Vec::with_capacity(req.ids.len());
    for raw in &req.ids {
        let item = |outcome: Option<&str>, st: Option<String>, error: Option<String>| BulkItemV1 {
            id: raw.clone(),
            outcome: outcome.map(str::to_owned),
            status: st,
            error,
        };
        let Some(id) = WithdrawalId::parse(raw) else {
            results.push(item(None, None, Some("not a withdrawal id".into())));
            continue;
        };
        // Only entries of this queue: a bulk action on the invalid queue never cancels a transfer.
        match s.ports.store.get(&id).await.map_err(unavailable)? {
            None => {
                results.push(item(None, None, Some("no such withdrawal".into())));
                continue;
            }
            Some(d) if d.withdrawal.status != status => {
                results.push(item(None, Some(d.withdrawal.status.to_string()), Some(format!("not in the {queue} dead-letter queue"))));
                continue;
            }
            Some(_) => {}
        }
        let r = if discard {
            withdraw_core::stages::discard(&s.ports, &id, &op.name, &req.reason).await
        } else {
            withdraw_core::stages::reprocess(&s.ports, &id, &op.name, &req.reason).await
        };
        match r {
            Ok(o) => results.push(item(Some(o.name()), Some(o.status().to_string()), None)),
            Err(ActionError::Stage(e)) => return Err(unavailable(e)),
            Err(e) => results.push(item(None, None, Some(e.to_string()))),
        }
    }
    Ok(axum::Json(BulkActionResultV1 { results }))
}

async fn approvals_list<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let filter = SearchFilter { status: Some(Status::PendingApproval), limit: limit_of(&q)?, ..Default::default() };
    let found = s.ports.store.search(filter).await.map_err(unavailable)?;
    Ok(axum::Json(found.iter().map(|w| summary(&s, w)).collect::<Vec<_>>()))
}

async fn approval_action<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    let op = s.tokens.verify(&headers, Role::Approver)?;
    let id = WithdrawalId::parse(&id).ok_or_else(Problem::not_found)?;
    let req: ActionRequestV1 =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body must be {{\"reason\": \"...\"}}: {e}")))?;
    let outcome = match action.as_str() {
        "approve" => withdraw_core::stages::approve(&s.ports, &id, &op.name, &req.reason).await,
        "reject" => withdraw_core::stages::reject(&s.ports, &id, &op.name, &req.reason).await,
        _ => return Err(Problem::not_found().detail("actions are \"approve\" and \"reject\"")),
    }
    .map_err(action_problem)?;
    Ok(axum::Json(result_v1(&id, &outcome)))
}

async fn signing_view<T: PortTypes>(s: &AdminState<T>) -> Result<SigningStateV1, Problem> {
    let controls = s.ports.store.signing_controls().await.map_err(unavailable)?;
    Ok(SigningStateV1 {
        paused_all: controls.iter().any(|c| c.paused && c.chain_id.is_none()),
        paused_chains: controls.iter().filter(|c| c.paused).filter_map(|c| c.chain_id).collect(),
        controls: controls
            .into_iter()
            .map(|c| SigningControlV1 {
                scope: c.chain_id.map_or_else(|| "all".to_owned(), |id| id.to_string()),
                paused: c.paused,
                actor: c.actor,
                reason: c.reason,
                updated_at_ms: c.updated_at_ms,
            })
            .collect(),
    })
}

async fn signing_state<T: PortTypes>(State(s): State<Arc<AdminState<T>>>, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    Ok(axum::Json(signing_view(&s).await?))
}

/// Pauses or resumes signing (every chain, or `chain_id`); takes effect within a second.
async fn signing_action<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Path(action): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    let op = s.tokens.verify(&headers, Role::Operator)?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(Problem::not_found().detail("actions are \"pause\" and \"resume\"")),
    };
    let req: PauseRequestV1 = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("body must be {{\"reason\": \"...\", \"chain_id\": optional}}: {e}")))?;
    withdraw_core::stages::set_signing(&s.ports, req.chain_id, paused, &op.name, &req.reason).await.map_err(action_problem)?;
    Ok(axum::Json(signing_view(&s).await?))
}

async fn audit_list<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let before = match q.get("before") {
        None => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| Problem::bad_request("before must be an audit entry id"))?),
    };
    let rows = s.ports.store.audit_log(limit_of(&q)?, before).await.map_err(unavailable)?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| AuditEntryV1 {
                id: r.id,
                at_ms: r.at_ms,
                actor: r.actor,
                action: r.action,
                target: r.target,
                reason: r.reason,
                detail: r.detail,
            })
            .collect::<Vec<_>>(),
    ))
}

async fn alerts_list<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Viewer)?;
    let status = match q.get("status").map(String::as_str) {
        None => None,
        Some(st @ ("firing" | "resolved")) => Some(st.to_owned()),
        Some(_) => return Err(Problem::bad_request("status must be firing or resolved")),
    };
    let rows = s.ports.store.alerts(status, limit_of(&q)?).await.map_err(unavailable)?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|a| AlertV1 {
                fingerprint: a.fingerprint,
                status: a.status,
                name: a.name,
                severity: a.severity,
                summary: a.summary,
                console: a.console,
                labels: a.labels,
                annotations: a.annotations,
                starts_at: a.starts_at,
                ends_at: a.ends_at,
                received_at_ms: a.received_at_ms,
            })
            .collect::<Vec<_>>(),
    ))
}

/// Alertmanager's webhook (payload version 4): alerts are kept per fingerprint, the latest
/// notification deciding firing or resolved, so repeats and re-sends are harmless.
async fn alertmanager<T: PortTypes>(
    State(s): State<Arc<AdminState<T>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    s.tokens.verify(&headers, Role::Alerts)?;
    let hook: AlertmanagerWebhookV4 =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("not an Alertmanager webhook payload: {e}")))?;
    if hook.version != "4" {
        return Err(Problem::bad_request(format!("webhook payload version {:?} is not supported (expected \"4\")", hook.version)));
    }
    let now = s.ports.clock.now_ms();
    let mut batch = Vec::with_capacity(hook.alerts.len());
    for a in hook.alerts {
        if a.fingerprint.is_empty() || !matches!(a.status.as_str(), "firing" | "resolved") {
            return Err(Problem::bad_request("every alert needs a fingerprint and a status of firing or resolved"));
        }
        batch.push(AlertRecord {
            name: a.labels.get("alertname").cloned().unwrap_or_else(|| "unnamed".into()),
            severity: a.labels.get("severity").cloned(),
            summary: a.annotations.get("summary").cloned(),
            console: a.annotations.get("console").cloned(),
            labels: serde_json::to_value(&a.labels).unwrap_or_default(),
            annotations: serde_json::to_value(&a.annotations).unwrap_or_default(),
            fingerprint: a.fingerprint,
            status: a.status,
            starts_at: a.starts_at,
            // Alertmanager sends the zero time for "not ended".
            ends_at: a.ends_at.filter(|e| !e.starts_with("0001-")),
            received_at_ms: now,
        });
    }
    let n = batch.len();
    let new = s.ports.store.record_alerts(batch).await.map_err(unavailable)?;
    tracing::info!(received = n, new, receiver = hook.receiver, "alerts received from Alertmanager");
    Ok(axum::Json(serde_json::json!({"received": n, "new": new})))
}
