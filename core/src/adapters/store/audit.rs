//! The audit log: who did what to which withdrawal or setting, and why.

use super::conn::AnyConn;
use crate::adapters::schema::*;
use crate::ports::*;
use diesel::prelude::*;

/// Writes an audit row inside the caller's transaction.
pub(super) fn insert_audit(conn: &mut AnyConn, entry: &AuditEntry, now: i64) -> Result<(), StoreError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now),
            audit_log::actor.eq(&entry.actor),
            audit_log::action.eq(&entry.action),
            audit_log::target.eq(&entry.target),
            audit_log::reason.eq(&entry.reason),
            audit_log::detail.eq(&entry.detail),
        ))
        .execute(conn)?;
    Ok(())
}

pub(super) fn audit_log(conn: &mut AnyConn, limit: i64, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
    let mut q = audit_log::table.into_boxed();
    if let Some(b) = before {
        q = q.filter(audit_log::id.lt(b));
    }
    type Row = (i64, i64, String, String, String, Option<String>, String);
    let rows: Vec<Row> = q
        .order(audit_log::id.desc())
        .limit(limit.clamp(1, 1000))
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor,
            audit_log::action,
            audit_log::target,
            audit_log::reason,
            audit_log::detail,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, target, reason, detail)| AuditRecord { id, at_ms: at, actor, action, target, reason, detail })
        .collect())
}
