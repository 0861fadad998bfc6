//! The client-facing intake API (docs/design.md §6): `POST /v1/withdrawals`,
//! `GET /v1/withdrawals/{id}` and the change feed `GET /v1/withdrawals?updated_after=`,
//! HMAC-authenticated. Everything malformed is refused here
//! with problem+json and never recorded or queued.

use super::auth::HmacClients;
use super::problem::Problem;
use super::{now_secs, withdrawal_v1};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::sync::Arc;
use withdraw_core::domain::{AssetRegistry, WithdrawalId};
use withdraw_core::ports::FeedCursor;
use withdraw_core::ports::{PortTypes, Ports};
use withdraw_core::ports::{Store, SubmitOutcome};
use withdraw_core::stages::{Intake, WithdrawalRequest, validate};
use withdraw_core::wire::{AcceptedV1, ChangeV1, FeedV1, FieldErrorV1, WithdrawalRequestV1};

pub struct IntakeState<T: PortTypes> {
    pub ports: Arc<Ports<T>>,
    pub intake: Intake,
    pub assets: Arc<AssetRegistry>,
    pub clients: HmacClients,
}

pub fn router<T: PortTypes>(state: Arc<IntakeState<T>>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/withdrawals", post(submit::<T>).get(feed::<T>))
        .route("/v1/withdrawals/{id}", get(status::<T>))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn outcome(label: &'static str) {
    metrics::counter!("withdraw_intake_requests_total", "outcome" => label).increment(1);
}

async fn submit<T: PortTypes>(
    State(s): State<Arc<IntakeState<T>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, Problem> {
    let started = std::time::Instant::now();
    let r = submit_inner(&s, &uri, &headers, &body).await;
    metrics::histogram!("withdraw_intake_request_seconds").record(started.elapsed().as_secs_f64());
    if let Err(p) = &r {
        outcome(p.slug);
    }
    r
}

async fn submit_inner<T: PortTypes>(
    s: &IntakeState<T>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, axum::Json<AcceptedV1>), Problem> {
    let client = s.clients.verify(headers, "POST", path_and_query(uri), body, now_secs())?;
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key header is required"))?
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters"))?;
    if let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok())
        && !ct.starts_with("application/json")
    {
        return Err(Problem::unsupported_media_type());
    }
    let req: WithdrawalRequestV1 =
        serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("body is not a valid withdrawal request: {e}")))?;
    let req = WithdrawalRequest { user_id: req.user_id, asset: req.asset, chain_id: req.chain_id, to: req.to, amount: req.amount };
    let valid = validate(&req, &s.assets).map_err(|errs| Problem {
        errors: errs.into_iter().map(|e| FieldErrorV1 { field: e.field.to_owned(), message: e.message }).collect(),
        ..Problem::bad_request("one or more fields are invalid")
    })?;
    let o = s.intake.submit(&client, key, &valid).await.map_err(|e| {
        tracing::warn!(error = %e, "intake could not record a request");
        Problem::unavailable("could not record the request; retry with the same Idempotency-Key")
    })?;
    match o {
        SubmitOutcome::Created { id } => {
            outcome("accepted");
            Ok((StatusCode::ACCEPTED, axum::Json(AcceptedV1 { id: id.to_string(), status: "RECEIVED".into() })))
        }
        SubmitOutcome::Existing { id, status } => {
            outcome("duplicate");
            Ok((StatusCode::ACCEPTED, axum::Json(AcceptedV1 { id: id.to_string(), status: status.to_string() })))
        }
        SubmitOutcome::Conflict { id } => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key was already used for a different request",
        )
        .detail(format!("the key belongs to withdrawal {id}"))),
    }
}

/// The request target as the client sent and signed it: path and query string.
fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
}

async fn status<T: PortTypes>(
    State(s): State<Arc<IntakeState<T>>>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    let client = s.clients.verify(&headers, "GET", path_and_query(&uri), b"", now_secs())?;
    let id = WithdrawalId::parse(&id).ok_or_else(Problem::not_found)?;
    let d = s.ports.store.get(&id).await?.ok_or_else(Problem::not_found)?;
    // A client sees only its own withdrawals; another client's id is simply not found.
    if d.withdrawal.client_id != client {
        return Err(Problem::not_found());
    }
    Ok(axum::Json(withdrawal_v1(&s.ports, &s.assets, d).await?))
}

/// Changes per feed page unless the client asks for fewer (at most 1000).
const FEED_LIMIT: i64 = 100;

/// `GET /v1/withdrawals?updated_after=<cursor>&limit=<n>`: the client's status changes after
/// the cursor (from the start without one), oldest first. Signed like every request, query
/// string included, so a captured page request cannot be replayed under other parameters.
async fn feed<T: PortTypes>(State(s): State<Arc<IntakeState<T>>>, uri: Uri, headers: HeaderMap) -> Result<impl IntoResponse, Problem> {
    let client = s.clients.verify(&headers, "GET", path_and_query(&uri), b"", now_secs())?;
    let (after, limit) = feed_query(uri.query().unwrap_or(""))?;
    let changes = s.ports.store.changes(client, after, limit).await?;
    let next = changes.last().map_or(after, |c| c.cursor);
    Ok(axum::Json(FeedV1 {
        changes: changes
            .iter()
            .map(|c| ChangeV1 {
                cursor: c.cursor.encode(),
                previous_status: c.from.map(|f| f.to_string()),
                status: c.to.to_string(),
                at_ms: c.at_ms,
                withdrawal: super::summary_v1(&s.assets, &c.withdrawal),
            })
            .collect(),
        next: next.encode(),
    }))
}

/// The feed's query: `updated_after` (a cursor this API gave) and `limit` (1-1000); anything
/// else is refused rather than ignored.
fn feed_query(q: &str) -> Result<(FeedCursor, i64), Problem> {
    let (mut after, mut limit) = (FeedCursor::default(), FEED_LIMIT);
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "updated_after" => {
                after = FeedCursor::decode(v).ok_or_else(|| {
                    Problem::bad_request("updated_after must be a cursor this API returned (\"next\" or a change's \"cursor\")")
                })?
            }
            "limit" => {
                limit = v.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| Problem::bad_request("limit must be 1-1000"))?
            }
            other => return Err(Problem::bad_request(format!("unknown query parameter {other:?} (updated_after, limit)"))),
        }
    }
    Ok((after, limit))
}
