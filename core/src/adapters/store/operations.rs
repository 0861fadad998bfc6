//! Operations: what operators and the alert receiver record: credits and their second
//! approver, approvals, cancel requests, the signing brake, and alerts.

use super::audit::insert_audit;
use super::conn::{AnyConn, insert_ignore, lock_brake, write_tx};
use crate::adapters::schema::*;
use crate::domain::{Amount, WithdrawalId};
use crate::ports::*;
use diesel::prelude::*;

/// Whether signing is paused for `chain_id` (or everywhere), read under the brake's shared
/// lock inside the caller's write transaction: the check and the signature it allows commit
/// together, so a pause that has answered holds for every replica.
pub(super) fn brake_on(conn: &mut AnyConn, chain_id: u64) -> Result<bool, StoreError> {
    lock_brake(conn, false)?;
    let paused: i64 = signing_controls::table
        .filter(signing_controls::paused.eq(true))
        .filter(signing_controls::scope.eq_any(["all".to_owned(), chain_id.to_string()]))
        .count()
        .get_result(conn)?;
    if paused > 0 {
        metrics::counter!("withdraw_signing_refused_paused_total", "chain_id" => chain_id.to_string()).increment(1);
    }
    Ok(paused > 0)
}

/// A credit by its idempotency key.
pub(super) fn load_credit(conn: &mut AnyConn, key: &str) -> Result<Option<CreditRecord>, StoreError> {
    type Row = (String, String, String, String, String, String, String, Option<String>, String, i64);
    let row: Option<Row> = credits::table
        .filter(credits::idempotency_key.eq(key))
        .select((
            credits::idempotency_key,
            credits::request_hash,
            credits::user_id,
            credits::asset,
            credits::amount,
            credits::reason,
            credits::requested_by,
            credits::approved_by,
            credits::state,
            credits::created_at,
        ))
        .first(conn)
        .optional()?;
    let Some((idempotency_key, request_hash, user_id, asset, amount, reason, requested_by, approved_by, state, created_at_ms)) = row else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("credit {idempotency_key}: bad {what}"));
    Ok(Some(CreditRecord {
        amount: Amount::from_base_units(&amount).ok_or_else(|| corrupt("amount"))?,
        state: CreditState::parse(&state).ok_or_else(|| corrupt("state"))?,
        idempotency_key,
        request_hash,
        user_id,
        asset,
        reason,
        requested_by,
        approved_by,
        created_at_ms,
    }))
}

pub(super) fn record_credit(conn: &mut AnyConn, c: CreditRecord, audit: AuditEntry, now: i64) -> Result<CreditOutcome, StoreError> {
    write_tx(conn, |conn| {
        let inserted = insert_ignore!(
            conn,
            credits::table,
            (
                credits::idempotency_key.eq(&c.idempotency_key),
                credits::request_hash.eq(&c.request_hash),
                credits::user_id.eq(&c.user_id),
                credits::asset.eq(&c.asset),
                credits::amount.eq(c.amount.base_units()),
                credits::reason.eq(&c.reason),
                credits::requested_by.eq(&c.requested_by),
                credits::approved_by.eq(&c.approved_by),
                credits::state.eq(c.state.as_str()),
                credits::created_at.eq(now),
            )
        )?;
        let stored =
            load_credit(conn, &c.idempotency_key)?.ok_or_else(|| StoreError::Query(format!("credit {} vanished", c.idempotency_key)))?;
        if inserted == 1 {
            insert_audit(conn, &audit, now)?;
            Ok(CreditOutcome::Created(stored))
        } else if stored.request_hash == c.request_hash {
            Ok(CreditOutcome::Existing(stored))
        } else {
            Ok(CreditOutcome::Conflict(stored))
        }
    })
}

pub(super) fn approve_credit(
    conn: &mut AnyConn,
    key: String,
    approver: String,
    audit: AuditEntry,
    now: i64,
) -> Result<ApproveCreditOutcome, StoreError> {
    write_tx(conn, |conn| {
        let Some(c) = load_credit(conn, &key)? else { return Ok(ApproveCreditOutcome::NotFound) };
        if c.requested_by == approver {
            return Ok(ApproveCreditOutcome::SamePerson);
        }
        let n = diesel::update(
            credits::table.filter(credits::idempotency_key.eq(&key)).filter(credits::state.eq(CreditState::PendingApproval.as_str())),
        )
        .set((credits::state.eq(CreditState::Approved.as_str()), credits::approved_by.eq(&approver)))
        .execute(conn)?;
        let now_c = load_credit(conn, &key)?.ok_or_else(|| StoreError::Query(format!("credit {key} vanished")))?;
        if n == 1 {
            insert_audit(conn, &audit, now)?;
            Ok(ApproveCreditOutcome::Approved(now_c))
        } else {
            Ok(ApproveCreditOutcome::NotPending(now_c))
        }
    })
}

pub(super) fn credits_to_apply(conn: &mut AnyConn, limit: i64) -> Result<Vec<CreditRecord>, StoreError> {
    let keys: Vec<String> = credits::table
        .filter(credits::state.eq(CreditState::Approved.as_str()))
        .order(credits::created_at.asc())
        .limit(limit)
        .select(credits::idempotency_key)
        .load(conn)?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.extend(load_credit(conn, &k)?);
    }
    Ok(out)
}

pub(super) fn credit_applied(conn: &mut AnyConn, key: String, now: i64) -> Result<(), StoreError> {
    diesel::update(credits::table.filter(credits::idempotency_key.eq(&key)))
        .set((credits::state.eq(CreditState::Applied.as_str()), credits::applied_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub(super) fn request_cancel(conn: &mut AnyConn, req: CancelRequest, audit: AuditEntry) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        let n = insert_ignore!(
            conn,
            cancel_requests::table,
            (
                cancel_requests::withdrawal_id.eq(req.withdrawal_id.as_str()),
                cancel_requests::actor.eq(&req.actor),
                cancel_requests::reason.eq(&req.reason),
                cancel_requests::requested_at.eq(req.requested_at_ms),
            )
        )?;
        if n == 1 {
            insert_audit(conn, &audit, req.requested_at_ms)?;
        }
        Ok(n == 1)
    })
}

pub(super) fn record_approval(conn: &mut AnyConn, a: Approval) -> Result<bool, StoreError> {
    let n = insert_ignore!(
        conn,
        approvals::table,
        (
            approvals::withdrawal_id.eq(a.withdrawal_id.as_str()),
            approvals::approver.eq(&a.approver),
            approvals::reason.eq(&a.reason),
            approvals::approved_at.eq(a.approved_at_ms),
        )
    )?;
    Ok(n == 1)
}

pub(super) fn revoke_approvals(conn: &mut AnyConn, ids: Vec<String>) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        diesel::delete(approvals::table.filter(approvals::withdrawal_id.eq_any(chunk))).execute(conn)?;
    }
    Ok(())
}

pub(super) fn approved(conn: &mut AnyConn, ids: Vec<String>) -> Result<Vec<WithdrawalId>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<String> =
            approvals::table.filter(approvals::withdrawal_id.eq_any(chunk)).select(approvals::withdrawal_id).load(conn)?;
        out.extend(rows.into_iter().map(WithdrawalId::from_stored));
    }
    Ok(out)
}

pub(super) fn signing_controls(conn: &mut AnyConn) -> Result<Vec<SigningControl>, StoreError> {
    let rows: Vec<(String, bool, String, String, i64)> = signing_controls::table
        .select((
            signing_controls::scope,
            signing_controls::paused,
            signing_controls::actor,
            signing_controls::reason,
            signing_controls::updated_at,
        ))
        .order(signing_controls::scope.asc())
        .load(conn)?;
    rows.into_iter()
        .map(|(scope, paused, actor, reason, at)| {
            let chain_id = if scope == "all" {
                None
            } else {
                Some(scope.parse().map_err(|_| StoreError::Corrupt(format!("signing control scope {scope}")))?)
            };
            Ok(SigningControl { chain_id, paused, actor, reason, updated_at_ms: at })
        })
        .collect()
}

pub(super) fn set_signing_control(conn: &mut AnyConn, c: SigningControl, audit: AuditEntry) -> Result<(), StoreError> {
    let scope = c.chain_id.map_or_else(|| "all".to_owned(), |id| id.to_string());
    write_tx(conn, |conn| {
        // Waits for every signing transaction in flight: when this commits (and
        // the API answers), nothing signs any more until resumed.
        lock_brake(conn, true)?;
        diesel::delete(signing_controls::table.filter(signing_controls::scope.eq(&scope))).execute(conn)?;
        diesel::insert_into(signing_controls::table)
            .values((
                signing_controls::scope.eq(&scope),
                signing_controls::paused.eq(c.paused),
                signing_controls::actor.eq(&c.actor),
                signing_controls::reason.eq(&c.reason),
                signing_controls::updated_at.eq(c.updated_at_ms),
            ))
            .execute(conn)?;
        insert_audit(conn, &audit, c.updated_at_ms)?;
        Ok(())
    })
}

pub(super) fn record_alerts(conn: &mut AnyConn, batch: Vec<AlertRecord>) -> Result<usize, StoreError> {
    write_tx(conn, |conn| {
        let mut new = 0;
        for a in &batch {
            let known: Option<String> =
                alerts::table.filter(alerts::fingerprint.eq(&a.fingerprint)).select(alerts::status).first(conn).optional()?;
            new += known.is_none() as usize;
            diesel::delete(alerts::table.filter(alerts::fingerprint.eq(&a.fingerprint))).execute(conn)?;
            diesel::insert_into(alerts::table)
                .values((
                    alerts::fingerprint.eq(&a.fingerprint),
                    alerts::status.eq(&a.status),
                    alerts::name.eq(&a.name),
                    alerts::severity.eq(&a.severity),
                    alerts::summary.eq(&a.summary),
                    alerts::console.eq(&a.console),
                    alerts::labels.eq(a.labels.to_string()),
                    alerts::annotations.eq(a.annotations.to_string()),
                    alerts::starts_at.eq(&a.starts_at),
                    alerts::ends_at.eq(&a.ends_at),
                    alerts::received_at.eq(a.received_at_ms),
                ))
                .execute(conn)?;
        }
        Ok(new)
    })
}

pub(super) fn alerts(conn: &mut AnyConn, status: Option<String>, limit: i64) -> Result<Vec<AlertRecord>, StoreError> {
    let mut q = alerts::table.into_boxed();
    if let Some(st) = status {
        q = q.filter(alerts::status.eq(st));
    }
    type Row = (String, String, String, Option<String>, Option<String>, Option<String>, String, String, String, Option<String>, i64);
    let rows: Vec<Row> = q
        .order(alerts::received_at.desc())
        .limit(limit.clamp(1, 1000))
        .select((
            alerts::fingerprint,
            alerts::status,
            alerts::name,
            alerts::severity,
            alerts::summary,
            alerts::console,
            alerts::labels,
            alerts::annotations,
            alerts::starts_at,
            alerts::ends_at,
            alerts::received_at,
        ))
        .load(conn)?;
    let json = |s: &str| serde_json::from_str(s).map_err(|_| StoreError::Corrupt(format!("alert json {s}")));
    rows.into_iter()
        .map(|(fingerprint, status, name, severity, summary, console, labels, annotations, starts_at, ends_at, at)| {
            Ok(AlertRecord {
                fingerprint,
                status,
                name,
                severity,
                summary,
                console,
                labels: json(&labels)?,
                annotations: json(&annotations)?,
                starts_at,
                ends_at,
                received_at_ms: at,
            })
        })
        .collect()
}
