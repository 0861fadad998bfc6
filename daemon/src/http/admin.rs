//! The operator-facing admin API under `/admin/v1/` (docs/design.md §6). Bearer tokens carry
//! roles; every mutating call is written to the audit log with the operator's name. Each
//! handler states what it needs in its arguments: the role (`Authed<Operator>`), typed path
//! segments, query and body, each refused as problem+json before the handler runs.

use super::auth::{AdminTokens, Alerts, AnyRole, Approver, Authed, Operator, Viewer};
use super::extract::{BodyShape, ProblemJson, ProblemPath, ProblemQuery, parsed};
use super::problem::Problem;
use super::withdrawal_v1;
use axum::Router;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::sync::Arc;
use withdraw_core::adapters::Configured;
use withdraw_core::domain::{Amount, AssetRegistry, Status, WithdrawalId};
use withdraw_core::ports::{AlertRecord, Balance, Balances, Chain, PortTypes, Ports, Queue, QueueName, SearchFilter, Store, Withdrawal};
use withdraw_core::stages::{self, ActionError, ActionOutcome, OperatorAction};
use withdraw_core::wire::{
    ActionRequestV1, ActionResultV1, AlertV1, AlertmanagerWebhookV4, AuditEntryV1, BalanceV1, BulkActionRequestV1, BulkActionResultV1,
    BulkItemV1, CreditPendingV1, CreditRequestV1, HotWalletV1, MeV1, NonceLaneV1, PauseRequestV1, QueueStatsV1, RpcEndpointV1,
    SigningControlV1, SigningStateV1, StatsV1, WalletAssetV1, WithdrawalSummaryV1,
};

/// What every admin handler reads. Concrete on the `Configured` profile, the only one the
/// daemon serves: its tests drive the real binary over HTTP (daemon/tests/it/admin.rs) or
/// this router on that profile over a SQLite file (the tests below), so a type parameter
/// here would be carried through every handler for no second instance. Cheap to clone:
/// handlers get it by value through `State`.
#[derive(Clone)]
pub struct AdminState {
    pub ports: Arc<Ports<Configured>>,
    pub assets: Arc<AssetRegistry>,
    pub tokens: Arc<AdminTokens>,
    /// Per asset symbol: operator credits above this need a second person.
    pub credit_thresholds: Arc<HashMap<String, Amount>>,
}

/// Where `Authed` finds the tokens.
impl FromRef<AdminState> for Arc<AdminTokens> {
    fn from_ref(s: &AdminState) -> Self {
        s.tokens.clone()
    }
}

type Answer<T> = Result<axum::Json<T>, Problem>;

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/balances/credit", post(credit))
        .route("/admin/v1/credits/{key}/approve", post(approve_credit))
        .route("/admin/v1/balances/{user_id}/{asset}", get(balance))
        .route("/admin/v1/withdrawals/{id}", get(withdrawal))
        .route("/admin/v1/withdrawals/{id}/{action}", post(withdrawal_action))
        .route("/admin/v1/stats", get(stats))
        .route("/admin/v1/hot-wallets", get(hot_wallets))
        .route("/admin/v1/rpc", get(rpc_health))
        .route("/admin/v1/me", get(me))
        .route("/admin/v1/withdrawals", get(search))
        .route("/admin/v1/dlq/{queue}", get(dlq_list))
        .route("/admin/v1/dlq/{queue}/{action}", post(dlq_bulk))
        .route("/admin/v1/approvals", get(approvals_list))
        .route("/admin/v1/approvals/{id}/{action}", post(approval_action))
        .route("/admin/v1/signing", get(signing_state))
        .route("/admin/v1/signing/{action}", post(signing_action))
        .route("/admin/v1/audit", get(audit_list))
        .route("/admin/v1/alerts", get(alerts_list))
        .route("/admin/v1/alerts/alertmanager", post(alertmanager))
        .with_state(state)
}

// Bodies: what the problem of a malformed one says was expected.

impl BodyShape for CreditRequestV1 {
    const EXPECTED: &'static str = r#"a credit request {"user_id", "asset", "amount", "reason"}"#;
}
impl BodyShape for ActionRequestV1 {
    const EXPECTED: &'static str = r#"{"reason": "..."}"#;
}
impl BodyShape for BulkActionRequestV1 {
    const EXPECTED: &'static str = r#"{"ids": [...], "reason": "..."}"#;
}
impl BodyShape for PauseRequestV1 {
    const EXPECTED: &'static str = r#"{"reason": "...", "chain_id": optional}"#;
}
impl BodyShape for AlertmanagerWebhookV4 {
    const EXPECTED: &'static str = "an Alertmanager webhook payload (version 4)";
}

// Path segments and query values, each read from its text; what does not parse is refused
// with the message given here (a path segment 404, a query value 400).

/// Implements `Deserialize` for a type read from one path segment or query value.
macro_rules! from_text {
    ($t:ty, $parse:expr) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parsed(d, $parse)
            }
        }
    };
}

/// A withdrawal id in the path.
struct Wid(WithdrawalId);
from_text!(Wid, |s: &str| WithdrawalId::parse(s).map(Wid).ok_or("not a withdrawal id"));

/// `reprocess` or `discard` in the path.
struct Action(OperatorAction);
from_text!(Action, |s: &str| OperatorAction::parse(s).map(Action).ok_or(r#"actions are "reprocess" and "discard""#));

/// A dead-letter queue in the path, and the status its entries have.
#[derive(Clone, Copy)]
enum DlqQueue {
    Invalid,
    Tx,
}
from_text!(DlqQueue, |s: &str| match s {
    "invalid" => Ok(DlqQueue::Invalid),
    "tx" => Ok(DlqQueue::Tx),
    _ => Err(r#"dead-letter queues are "invalid" and "tx""#),
});

impl DlqQueue {
    fn name(self) -> &'static str {
        match self {
            DlqQueue::Invalid => "invalid",
            DlqQueue::Tx => "tx",
        }
    }

    fn status(self) -> Status {
        match self {
            DlqQueue::Invalid => Status::Invalid,
            DlqQueue::Tx => Status::SendFailed,
        }
    }
}

/// An approver's decision in the path.
enum ApprovalDecision {
    Approve,
    Reject,
}
from_text!(ApprovalDecision, |s: &str| match s {
    "approve" => Ok(ApprovalDecision::Approve),
    "reject" => Ok(ApprovalDecision::Reject),
    _ => Err(r#"actions are "approve" and "reject""#),
});

/// `pause` (true) or `resume` (false) in the path.
struct Pause(bool);
from_text!(Pause, |s: &str| match s {
    "pause" => Ok(Pause(true)),
    "resume" => Ok(Pause(false)),
    _ => Err(r#"actions are "pause" and "resume""#),
});

/// `limit=`: 1-1000, 100 when absent.
#[derive(Clone, Copy)]
struct Limit(i64);
from_text!(Limit, |s: &str| s.parse::<i64>().ok().filter(|n| (1..=1000).contains(n)).map(Limit).ok_or("limit must be 1-1000"));

impl Default for Limit {
    fn default() -> Self {
        Limit(100)
    }
}

/// `status=` of a withdrawal search, in any case.
struct StatusParam(Status);
from_text!(StatusParam, |s: &str| s.to_ascii_uppercase().parse::<Status>().map(StatusParam));

/// `before=` of a withdrawal search: a withdrawal id.
struct BeforeWithdrawal(WithdrawalId);
from_text!(BeforeWithdrawal, |s: &str| WithdrawalId::parse(s).map(BeforeWithdrawal).ok_or("before must be a withdrawal id"));

/// `before=` of the audit log: an entry id.
struct BeforeEntry(i64);
from_text!(BeforeEntry, |s: &str| s.parse::<i64>().map(BeforeEntry).map_err(|_| "before must be an audit entry id"));

/// `status=` of the alerts list.
struct AlertStatus(String);
from_text!(AlertStatus, |s: &str| match s {
    "firing" | "resolved" => Ok(AlertStatus(s.to_owned())),
    _ => Err("status must be firing or resolved"),
});

/// `?limit=`
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    limit: Limit,
}

/// `?status=&q=&before=&limit=`: q is a withdrawal id, user id, destination or tx hash.
#[derive(Deserialize)]
struct SearchQuery {
    status: Option<StatusParam>,
    q: Option<String>,
    before: Option<BeforeWithdrawal>,
    #[serde(default)]
    limit: Limit,
}

/// `?before=&limit=`
#[derive(Deserialize)]
struct AuditQuery {
    before: Option<BeforeEntry>,
    #[serde(default)]
    limit: Limit,
}

/// `?status=&limit=`
#[derive(Deserialize)]
struct AlertsQuery {
    status: Option<AlertStatus>,
    #[serde(default)]
    limit: Limit,
}

/// The `Idempotency-Key` header a mutating money call must carry.
struct IdempotencyKey(String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let key = parts.headers.get("idempotency-key").ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key header is required")
                .detail("a credit retried after a timeout must not credit twice: send a key unique to this credit")
        })?;
        key.to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .map(|k| IdempotencyKey(k.to_owned()))
            .ok_or_else(|| Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters"))
    }
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
async fn credit(
    State(s): State<AdminState>,
    Authed { caller: op, .. }: Authed<Operator>,
    IdempotencyKey(key): IdempotencyKey,
    ProblemJson(req): ProblemJson<CreditRequestV1>,
) -> Result<Response, Problem> {
    let asset = s.assets.find_symbol(&req.asset).ok_or_else(|| Problem::bad_request(format!("unknown asset {:?}", req.asset)))?;
    if req.user_id.is_empty() || req.user_id.len() > 128 {
        return Err(Problem::bad_request("user_id must be 1-128 characters"));
    }
    let amount = Amount::parse_positive(&req.amount, asset.decimals).map_err(|e| Problem::bad_request(e.to_string()))?;
    let reason = req.reason.as_deref().unwrap_or("");
    let threshold = s.credit_thresholds.get(&asset.symbol).copied();
    let answer = stages::credit(&s.ports, &key, &req.user_id, &asset.symbol, amount, reason, &op.name, threshold).await?;
    Ok(credit_response(answer, asset.decimals))
}

/// A second person approves a waiting credit (approver role); it is then applied.
async fn approve_credit(
    State(s): State<AdminState>,
    Authed { caller: op, .. }: Authed<Approver>,
    ProblemPath(key): ProblemPath<String>,
    ProblemJson(req): ProblemJson<ActionRequestV1>,
) -> Result<Response, Problem> {
    let answer = stages::approve_credit(&s.ports, &key, &op.name, &req.reason).await?;
    let decimals = s.assets.find_symbol(&answer.credit.asset).map(|a| a.decimals).unwrap_or(0);
    Ok(credit_response(answer, decimals))
}

fn credit_response(answer: stages::CreditAnswer, decimals: u8) -> Response {
    let c = &answer.credit;
    match &answer.balance {
        Some(b) => axum::Json(balance_v1(&c.user_id, &c.asset, decimals, b)).into_response(),
        None => (
            StatusCode::ACCEPTED,
            axum::Json(CreditPendingV1 {
                credit: c.idempotency_key.clone(),
                state: c.state.as_str().to_owned(),
                requested_by: c.requested_by.clone(),
            }),
        )
            .into_response(),
    }
}

async fn balance(
    State(s): State<AdminState>,
    _: Authed<Viewer>,
    ProblemPath((user, asset)): ProblemPath<(String, String)>,
) -> Answer<BalanceV1> {
    let a = s.assets.find_symbol(&asset).ok_or_else(Problem::not_found)?;
    let b = s.ports.balances.get(&user, &a.symbol).await?;
    Ok(axum::Json(balance_v1(&user, &a.symbol, a.decimals, &b)))
}

async fn withdrawal(
    State(s): State<AdminState>,
    _: Authed<Viewer>,
    ProblemPath(Wid(id)): ProblemPath<Wid>,
) -> Answer<withdraw_core::wire::WithdrawalV1> {
    let d = s.ports.store.get(&id).await?.ok_or_else(Problem::not_found)?;
    Ok(axum::Json(withdrawal_v1(&s.ports, &s.assets, d).await?))
}

async fn stats(State(s): State<AdminState>, _: Authed<Viewer>) -> Answer<StatsV1> {
    Ok(axum::Json(collect_stats(&s.ports).await?))
}

pub async fn collect_stats<T: PortTypes>(ports: &Ports<T>) -> Result<StatsV1, Problem> {
    let counts = ports.store.counts().await?;
    let mut queues = Vec::new();
    for q in QueueName::ALL {
        let st = ports.queue.stats(q).await?;
        queues.push(QueueStatsV1 {
            name: q.as_str().to_owned(),
            visible: st.visible,
            in_flight: st.in_flight,
            oldest_age_seconds: st.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
        });
    }
    Ok(StatsV1 { statuses: counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect(), queues })
}

async fn hot_wallets(State(s): State<AdminState>, _: Authed<Viewer>) -> Answer<Vec<HotWalletV1>> {
    // The signer's last views (nonce check, funds check): no RPC from the admin API, so a
    // dead node shows as stale `checked_at_ms`, not as a hanging console.
    let checks = s.ports.store.nonce_checks().await?;
    let funds = s.ports.store.wallet_funds().await?;
    let mut keys: Vec<(u64, alloy::primitives::Address)> = checks.iter().map(|c| (c.chain_id, c.wallet)).collect();
    keys.extend(funds.iter().map(|f| (f.chain_id, f.wallet)));
    keys.sort();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len());
    for (chain_id, wallet) in keys {
        let check = checks.iter().find(|c| c.chain_id == chain_id && c.wallet == wallet);
        let next_nonce = match check {
            Some(c) => Some(c.next_nonce),
            None => s.ports.store.next_nonce(wallet, chain_id).await?,
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
async fn rpc_health(State(s): State<AdminState>, _: Authed<Viewer>) -> Answer<Vec<RpcEndpointV1>> {
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

fn result_v1(id: &WithdrawalId, o: &ActionOutcome) -> ActionResultV1 {
    ActionResultV1 { id: id.to_string(), outcome: o.name().into(), status: o.status().to_string() }
}

/// `reprocess` sends a dead-lettered withdrawal back into the pipeline; `discard` gives up on
/// it (a signed one is cancelled on chain at its nonce).
async fn withdrawal_action(
    State(s): State<AdminState>,
    Authed { caller: op, .. }: Authed<Operator>,
    ProblemPath((Wid(id), Action(action))): ProblemPath<(Wid, Action)>,
    ProblemJson(req): ProblemJson<ActionRequestV1>,
) -> Answer<ActionResultV1> {
    let outcome = action.apply(&s.ports, &id, &op.name, &req.reason).await?;
    Ok(axum::Json(result_v1(&id, &outcome)))
}

fn summary(s: &AdminState, w: &Withdrawal) -> WithdrawalSummaryV1 {
    super::summary_v1(&s.assets, w)
}

async fn summaries(s: &AdminState, filter: SearchFilter) -> Answer<Vec<WithdrawalSummaryV1>> {
    let found = s.ports.store.search(filter).await?;
    Ok(axum::Json(found.iter().map(|w| summary(s, w)).collect()))
}

/// The token's name and roles, so the console shows only what it may do.
async fn me(Authed { caller: op, .. }: Authed<AnyRole>) -> axum::Json<MeV1> {
    axum::Json(MeV1 { name: op.name, roles: op.roles.iter().map(|r| r.as_str().to_owned()).collect() })
}

async fn search(
    State(s): State<AdminState>,
    _: Authed<Viewer>,
    ProblemQuery(q): ProblemQuery<SearchQuery>,
) -> Answer<Vec<WithdrawalSummaryV1>> {
    let filter = SearchFilter { status: q.status.map(|p| p.0), query: q.q, before: q.before.map(|b| b.0), limit: q.limit.0 };
    summaries(&s, filter).await
}

/// A dead-letter queue's withdrawals, newest first, with the reason each failed.
async fn dlq_list(
    State(s): State<AdminState>,
    _: Authed<Viewer>,
    ProblemPath(queue): ProblemPath<DlqQueue>,
    ProblemQuery(page): ProblemQuery<Page>,
) -> Answer<Vec<WithdrawalSummaryV1>> {
    summaries(&s, SearchFilter { status: Some(queue.status()), limit: page.limit.0, ..Default::default() }).await
}

/// Reprocess or discard many dead-letter entries with one reason; each succeeds or fails
/// on its own (an entry that moved meanwhile is reported, not retried).
async fn dlq_bulk(
    State(s): State<AdminState>,
    Authed { caller: op, .. }: Authed<Operator>,
    ProblemPath((queue, Action(action))): ProblemPath<(DlqQueue, Action)>,
    ProblemJson(req): ProblemJson<BulkActionRequestV1>,
) -> Answer<BulkActionResultV1> {
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
        match s.ports.store.get(&id).await? {
            None => {
                results.push(item(None, None, Some("no such withdrawal".into())));
                continue;
            }
            Some(d) if d.withdrawal.status != queue.status() => {
                let error = format!("not in the {} dead-letter queue", queue.name());
                results.push(item(None, Some(d.withdrawal.status.to_string()), Some(error)));
                continue;
            }
            Some(_) => {}
        }
        match action.apply(&s.ports, &id, &op.name, &req.reason).await {
            Ok(o) => results.push(item(Some(o.name()), Some(o.status().to_string()), None)),
            // The store or a queue failing fails the call; a refusal is this item's answer.
            Err(e @ ActionError::Stage(_)) => return Err(e.into()),
            Err(e) => results.push(item(None, None, Some(e.to_string()))),
        }
    }
    Ok(axum::Json(BulkActionResultV1 { results }))
}

async fn approvals_list(
    State(s): State<AdminState>,
    _: Authed<Viewer>,
    ProblemQuery(page): ProblemQuery<Page>,
) -> Answer<Vec<WithdrawalSummaryV1>> {
    summaries(&s, SearchFilter { status: Some(Status::PendingApproval), limit: page.limit.0, ..Default::default() }).await
}

async fn approval_action(
    State(s): State<AdminState>,
    Authed { caller: op, .. }: Authed<Approver>,
    ProblemPath((Wid(id), decision)): ProblemPath<(Wid, ApprovalDecision)>,
    ProblemJson(req): ProblemJson<ActionRequestV1>,
) -> Answer<ActionResultV1> {
    let outcome = match decision {
        ApprovalDecision::Approve => stages::approve(&s.ports, &id, &op.name, &req.reason).await,
        ApprovalDecision::Reject => stages::reject(&s.ports, &id, &op.name, &req.reason).await,
    }?;
    Ok(axum::Json(result_v1(&id, &outcome)))
}

async fn signing_view(s: &AdminState) -> Result<SigningStateV1, Problem> {
    let controls = s.ports.store.signing_controls().await?;
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

async fn signing_state(State(s): State<AdminState>, _: Authed<Viewer>) -> Answer<SigningStateV1> {
    Ok(axum::Json(signing_view(&s).await?))
}

/// Pauses or resumes signing (every chain, or `chain_id`); takes effect within a second.
async fn signing_action(
    State(s): State<AdminState>,
    Authed { caller: op, .. }: Authed<Operator>,
    ProblemPath(Pause(paused)): ProblemPath<Pause>,
    ProblemJson(req): ProblemJson<PauseRequestV1>,
) -> Answer<SigningStateV1> {
    stages::set_signing(&s.ports, req.chain_id, paused, &op.name, &req.reason).await?;
    Ok(axum::Json(signing_view(&s).await?))
}

async fn audit_list(
    State(s): State<AdminState>,
    _: Authed<Viewer>,
    ProblemQuery(q): ProblemQuery<AuditQuery>,
) -> Answer<Vec<AuditEntryV1>> {
    let rows = s.ports.store.audit_log(q.limit.0, q.before.map(|b| b.0)).await?;
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
            .collect(),
    ))
}

async fn alerts_list(State(s): State<AdminState>, _: Authed<Viewer>, ProblemQuery(q): ProblemQuery<AlertsQuery>) -> Answer<Vec<AlertV1>> {
    let rows = s.ports.store.alerts(q.status.map(|st| st.0), q.limit.0).await?;
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
            .collect(),
    ))
}

/// Alertmanager's webhook (payload version 4): alerts are kept per fingerprint, the latest
/// notification deciding firing or resolved, so repeats and re-sends are harmless.
async fn alertmanager(
    State(s): State<AdminState>,
    _: Authed<Alerts>,
    ProblemJson(hook): ProblemJson<AlertmanagerWebhookV4>,
) -> Answer<serde_json::Value> {
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
    let new = s.ports.store.record_alerts(batch).await?;
    tracing::info!(received = n, new, receiver = hook.receiver, "alerts received from Alertmanager");
    Ok(axum::Json(serde_json::json!({"received": n, "new": new})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::{Caller, Role};
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;
    use withdraw_core::adapters::sqlite::{Sqlite, SqliteBalances, SqliteQueue};
    use withdraw_core::adapters::store::RecordStore;
    use withdraw_core::adapters::{AnyBalances, AnyQueue};
    use withdraw_core::domain::{Asset, AssetKind};
    use withdraw_core::ports::{Clock, SystemClock};
    use zeroize::Zeroizing;

    /// The admin router on the production profile over a SQLite file, with a viewer (`vic`)
    /// and an operator (`ann`).
    fn app(dir: &std::path::Path) -> Router {
        let db = Sqlite::open(&dir.join("admin.db")).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ports = Ports::<Configured> {
            store: RecordStore::new(db.clone(), clock.clone()),
            queue: AnyQueue::Sqlite(SqliteQueue::new(db.clone(), clock.clone(), 5)),
            balances: AnyBalances::Sqlite(SqliteBalances::new(db, clock.clone())),
            chains: HashMap::new(),
            clock,
        };
        let eth = Asset {
            symbol: "ETH".into(),
            chain_id: 31337,
            kind: AssetKind::Native,
            decimals: 18,
            max_amount: None,
            gas_limit: 21_000,
            approval_threshold: None,
        };
        let token = |t: &str, name: &str, roles: Vec<Role>| (Zeroizing::new(t.to_owned()), Caller { name: name.into(), roles });
        router(AdminState {
            ports: Arc::new(ports),
            assets: Arc::new(AssetRegistry::new(vec![eth])),
            tokens: Arc::new(AdminTokens::new(vec![
                token("vic", "vic", vec![Role::Viewer]),
                token("ann", "ann", vec![Role::Viewer, Role::Operator]),
            ])),
            credit_thresholds: Arc::new(HashMap::new()),
        })
    }

    /// One request: `"METHOD /path"`, a token, a content type (None: no header), a body and
    /// an `Idempotency-Key`.
    struct Call<'a> {
        what: &'a str,
        call: &'a str,
        token: Option<&'a str>,
        content_type: Option<&'a str>,
        body: String,
        key: Option<&'a str>,
    }

    const JSON: Option<&str> = Some("application/json");
    const ANN: Option<&str> = Some("ann");
    const VIC: Option<&str> = Some("vic");
    const PAUSE: &str = "POST /admin/v1/signing/pause";

    fn call<'a>(what: &'a str, call: &'a str, token: Option<&'a str>, content_type: Option<&'a str>, body: &str) -> Call<'a> {
        Call { what, call, token, content_type, body: body.to_owned(), key: None }
    }

    fn get<'a>(what: &'a str, path: &'a str, token: Option<&'a str>) -> Call<'a> {
        Call { what, call: path, token, content_type: None, body: String::new(), key: None }
    }

    impl<'a> Call<'a> {
        fn keyed(self, key: &'a str) -> Self {
            Call { key: Some(key), ..self }
        }
    }

    /// Sends `c` and checks the answer: its status; for an error, problem+json with that
    /// status in its body and `detail` containing `detail`; for a success, JSON.
    async fn check(app: &Router, c: Call<'_>, status: u16, detail: &str) {
        let (method, path) = c.call.split_once(' ').unwrap_or(("GET", c.call));
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = c.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = c.content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(k) = c.key {
            req = req.header("idempotency-key", k);
        }
        let resp = app.clone().oneshot(req.body(Body::from(c.body)).unwrap()).await.unwrap();
        let got = resp.status().as_u16();
        let ct = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let what = c.what;
        assert_eq!(got, status, "{what}: {text}");
        if status < 400 {
            assert_eq!(ct, "application/json", "{what}: {text}");
            return;
        }
        assert_eq!(ct, "application/problem+json", "{what}: {text}");
        let p: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(p["status"], status, "{what}: {p}");
        let d = p["detail"].as_str().unwrap_or_default();
        assert!(d.contains(detail), "{what}: detail {d:?} lacks {detail:?}");
    }

    #[tokio::test]
    async fn roles_bodies_and_queries_are_refused_as_problems() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let reason = r#"{"reason": "incident 7"}"#;
        let credit = r#"{"user_id": "u", "asset": "ETH", "amount": "1", "reason": "deposit 1"}"#;
        let cases = [
            // The caller.
            (get("no token", "/admin/v1/stats", None), 401, "missing Authorization: Bearer token"),
            (get("an unknown token", "/admin/v1/stats", Some("nope")), 401, "unknown token"),
            (call("no token and a bad body", PAUSE, None, JSON, "{"), 401, "Bearer"),
            (call("a viewer pausing", PAUSE, VIC, JSON, reason), 403, "needs the operator role"),
            (call("a viewer crediting", "POST /admin/v1/balances/credit", VIC, JSON, credit).keyed("c-1"), 403, "operator role"),
            (get("a viewer reading", "/admin/v1/signing", VIC), 200, ""),
            (get("any role asking who it is", "/admin/v1/me", VIC), 200, ""),
            // The body.
            (call("malformed JSON", PAUSE, ANN, JSON, r#"{"reason": "#), 400, "EOF while parsing"),
            (call("a wrong-typed field", PAUSE, ANN, JSON, r#"{"reason": 7}"#), 400, "reason: invalid type: integer `7`"),
            (call("a missing field", PAUSE, ANN, JSON, "{}"), 400, "missing field `reason`"),
            (call("an unknown field", PAUSE, ANN, JSON, r#"{"reason": "x", "chain": 1}"#), 400, "unknown field `chain`"),
            (call("what was expected", "POST /admin/v1/dlq/invalid/reprocess", ANN, JSON, "[]"), 400, r#"body must be {"ids""#),
            (call("plain text", PAUSE, ANN, Some("text/plain"), reason), 415, ""),
            (call("a form", PAUSE, ANN, Some("application/x-www-form-urlencoded"), reason), 415, ""),
            (call("JSON with a charset", PAUSE, ANN, Some("application/json; charset=utf-8"), reason), 200, ""),
            (call("no content type: read as JSON", "POST /admin/v1/signing/resume", ANN, None, reason), 200, ""),
            (call("a reason of spaces", PAUSE, ANN, JSON, r#"{"reason": " "}"#), 400, "reason"),
            (call("a credit without a key", "POST /admin/v1/balances/credit", ANN, JSON, credit), 400, "unique to this credit"),
            (call("a credit of the wrong shape", "POST /admin/v1/balances/credit", ANN, JSON, "{}").keyed("c-2"), 400, "credit request"),
            (call("a credit", "POST /admin/v1/balances/credit", ANN, JSON, credit).keyed("c-3"), 200, ""),
            // The query string.
            (get("limit 0", "/admin/v1/withdrawals?limit=0", VIC), 400, "limit must be 1-1000"),
            (get("a limit not a number", "/admin/v1/audit?limit=ten", VIC), 400, "limit must be 1-1000"),
            (get("an unknown status", "/admin/v1/withdrawals?status=LOST", VIC), 400, "LOST"),
            (get("before not an id", "/admin/v1/withdrawals?before=x", VIC), 400, "before must be a withdrawal id"),
            (get("an audit cursor not an id", "/admin/v1/audit?before=x", VIC), 400, "before must be an audit entry id"),
            (get("an unknown alert status", "/admin/v1/alerts?status=x", VIC), 400, "status must be firing or resolved"),
            (get("a good query", "/admin/v1/withdrawals?status=invalid&limit=5&q=u", VIC), 200, ""),
            // The path.
            (get("not a withdrawal id", "/admin/v1/withdrawals/nope", VIC), 404, "not a withdrawal id"),
            (get("an unknown queue", "/admin/v1/dlq/nope", VIC), 404, r#""invalid" and "tx""#),
            (call("an unknown bulk action", "POST /admin/v1/dlq/tx/explode", ANN, JSON, reason), 404, r#""reprocess" and "discard""#),
            (call("neither pause nor resume", "POST /admin/v1/signing/halt", ANN, JSON, reason), 404, r#""pause" and "resume""#),
        ];
        for (c, status, detail) in cases {
            check(&app, c, status, detail).await;
        }
        let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(3 << 20));
        check(&app, call("past the body limit", PAUSE, ANN, JSON, &big), 413, "length limit").await;
    }
}
