//! Tracking: where attempts were mined, which withdrawals wait on the chain, each chain's
//! block cursor, and the leases that keep one tracker per chain.

use super::attempts::latest_attempts;
use super::conn::{AnyConn, insert_ignore, write_tx};
use super::rows::*;
use crate::adapters::schema::*;
use crate::domain::{Status, WithdrawalId};
use crate::ports::*;
use diesel::prelude::*;

/// Pages through a query's candidates in order, each with its newest attempt, until `limit`
/// of them pass `keep` (a filter that needs the newest attempt, applied after loading), so
/// that candidates it drops cannot fill the limit and hide the ones behind them.
fn first_passing(
    conn: &mut AnyConn,
    limit: i64,
    mut page: impl FnMut(&mut AnyConn, i64, i64) -> Result<Vec<WithdrawalRow>, StoreError>,
    keep: impl Fn(&Withdrawal, &Attempt) -> bool,
) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
    let want = usize::try_from(limit).unwrap_or(0);
    let size = limit.clamp(100, 500);
    let mut out = Vec::new();
    let mut offset = 0;
    while out.len() < want {
        let rows = page(conn, offset, size)?;
        let loaded = rows.len() as i64;
        let ws = rows.into_iter().map(WithdrawalRow::into_domain).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<String> = ws.iter().map(|w| w.id.as_str().to_owned()).collect();
        let mut latest: std::collections::HashMap<WithdrawalId, Attempt> =
            latest_attempts(conn, &ids)?.into_iter().map(|a| (a.withdrawal_id.clone(), a)).collect();
        out.extend(ws.into_iter().filter_map(|w| latest.remove(&w.id).map(|a| (w, a))).filter(|(w, a)| keep(w, a)));
        if loaded < size {
            break;
        }
        offset += size;
    }
    out.truncate(want);
    Ok(out)
}

/// SENT (or a discarded SEND_FAILED being cancelled) since before the threshold (status
/// index), not mined; the newest attempt's age decides (a bumped one waits another period).
pub(super) fn stuck(conn: &mut AnyConn, chain_id: u64, older_than_ms: i64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
    let page = |conn: &mut AnyConn, offset: i64, size: i64| {
        withdrawals::table
            // The database drops part of what the filter below would, and nothing it keeps
            // (so pages rarely run on): a dead-lettered transfer with no cancel — an incident
            // can leave thousands waiting on an operator — and anything with an attempt
            // signed since the threshold.
            .filter(
                withdrawals::status.eq(Status::Sent.as_str()).or(withdrawals::status.eq(Status::SendFailed.as_str()).and(
                    diesel::dsl::exists(
                        attempts::table
                            .filter(attempts::withdrawal_id.eq(withdrawals::id))
                            .filter(attempts::kind.eq(AttemptKind::Cancel.as_str())),
                    ),
                )),
            )
            .filter(withdrawals::chain_id.eq(chain_id as i64))
            .filter(withdrawals::updated_at.lt(older_than_ms))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                attempts::table.filter(attempts::withdrawal_id.eq(withdrawals::id)).filter(attempts::created_at.ge(older_than_ms)),
            )))
            .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
            .order((withdrawals::updated_at.asc(), withdrawals::id.asc()))
            .offset(offset)
            .limit(size)
            .select(WithdrawalRow::as_select())
            .load(conn)
            .map_err(StoreError::from)
    };
    first_passing(conn, limit, page, |w, a| {
        // A dead-lettered transfer waits for an operator; its cancel does not.
        a.created_at_ms < older_than_ms && (w.status == Status::Sent || a.kind == AttemptKind::Cancel)
    })
}

pub(super) fn record_inclusions(conn: &mut AnyConn, chain_id: u64, mut batch: Vec<Inclusion>) -> Result<(), StoreError> {
    // In withdrawal id order: each insert's foreign-key check share-locks its withdrawal,
    // and `lock_withdrawals` takes the same rows in the same order, so the two never
    // deadlock on PostgreSQL.
    batch.sort_by(|a, b| a.withdrawal_id.as_str().cmp(b.withdrawal_id.as_str()));
    write_tx(conn, |conn| {
        for i in &batch {
            diesel::delete(inclusions::table.filter(inclusions::withdrawal_id.eq(i.withdrawal_id.as_str()))).execute(conn)?;
            diesel::insert_into(inclusions::table)
                .values(InclusionRow {
                    withdrawal_id: i.withdrawal_id.as_str().to_owned(),
                    chain_id: chain_id as i64,
                    tx_hash: hex_hash(&i.tx_hash),
                    block_number: i.block_number as i64,
                    block_hash: hex_hash(&i.block_hash),
                    success: i.success,
                    failure: i.failure.clone(),
                })
                .execute(conn)?;
        }
        Ok(())
    })
}

pub(super) fn forget_inclusions(conn: &mut AnyConn, ids: Vec<String>) -> Result<(), StoreError> {
    diesel::delete(inclusions::table.filter(inclusions::withdrawal_id.eq_any(&ids))).execute(conn)?;
    Ok(())
}

pub(super) fn included_up_to(
    conn: &mut AnyConn,
    chain_id: u64,
    max_block: u64,
    open: Vec<&'static str>,
) -> Result<Vec<IncludedWithdrawal>, StoreError> {
    let rows: Vec<(InclusionRow, WithdrawalRow, String)> = withdrawals::table
        .inner_join(inclusions::table.on(inclusions::withdrawal_id.eq(withdrawals::id)))
        .inner_join(attempts::table.on(attempts::tx_hash.eq(inclusions::tx_hash)))
        .filter(withdrawals::status.eq_any(open))
        .filter(inclusions::chain_id.eq(chain_id as i64))
        .filter(inclusions::block_number.le(max_block as i64))
        .select((InclusionRow::as_select(), WithdrawalRow::as_select(), attempts::kind))
        .limit(5000)
        .load(conn)?;
    rows.into_iter()
        .map(|(i, w, kind)| {
            Ok(IncludedWithdrawal {
                inclusion: i.into_domain()?,
                withdrawal: w.into_domain()?,
                kind: if kind == "cancel" { AttemptKind::Cancel } else { AttemptKind::Transfer },
            })
        })
        .collect()
}

/// Open, unmined withdrawals an operator asked to cancel whose newest attempt is still the
/// transfer (a cancel not yet signed), oldest request first.
pub(super) fn pending_cancels(conn: &mut AnyConn, chain_id: u64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
    let page = |conn: &mut AnyConn, offset: i64, size: i64| {
        withdrawals::table
            .inner_join(cancel_requests::table.on(cancel_requests::withdrawal_id.eq(withdrawals::id)))
            .filter(withdrawals::status.eq_any([Status::Signed.as_str(), Status::Sent.as_str(), Status::SendFailed.as_str()]))
            .filter(withdrawals::chain_id.eq(chain_id as i64))
            .filter(diesel::dsl::not(diesel::dsl::exists(inclusions::table.filter(inclusions::withdrawal_id.eq(withdrawals::id)))))
            .order((cancel_requests::requested_at.asc(), withdrawals::id.asc()))
            .offset(offset)
            .limit(size)
            .select(WithdrawalRow::as_select())
            .load(conn)
            .map_err(StoreError::from)
    };
    first_passing(conn, limit, page, |_, a| a.kind == AttemptKind::Transfer)
}

pub(super) fn cursor(conn: &mut AnyConn, chain_id: u64) -> Result<Option<u64>, StoreError> {
    let b: Option<i64> = chain_cursors::table
        .filter(chain_cursors::chain_id.eq(chain_id as i64))
        .select(chain_cursors::block_number)
        .first(conn)
        .optional()?;
    Ok(b.map(|b| b as u64))
}

pub(super) fn set_cursor(conn: &mut AnyConn, chain_id: u64, expected: Option<u64>, block: u64) -> Result<bool, StoreError> {
    let n = match expected {
        Some(e) => diesel::update(
            chain_cursors::table.filter(chain_cursors::chain_id.eq(chain_id as i64)).filter(chain_cursors::block_number.eq(e as i64)),
        )
        .set(chain_cursors::block_number.eq(block as i64))
        .execute(conn)?,
        None => insert_ignore!(
            conn,
            chain_cursors::table,
            (chain_cursors::chain_id.eq(chain_id as i64), chain_cursors::block_number.eq(block as i64))
        )?,
    };
    Ok(n == 1)
}

pub(super) fn acquire_lease(conn: &mut AnyConn, name: String, holder: String, ttl_ms: i64, now: i64) -> Result<bool, StoreError> {
    // Renew our own, or take an expired one: one conditional update.
    let n = diesel::update(leases::table.filter(leases::name.eq(&name)).filter(leases::holder.eq(&holder).or(leases::expires_at.lt(now))))
        .set((leases::holder.eq(&holder), leases::expires_at.eq(now + ttl_ms)))
        .execute(conn)?;
    if n == 1 {
        return Ok(true);
    }
    let n = insert_ignore!(conn, leases::table, (leases::name.eq(&name), leases::holder.eq(&holder), leases::expires_at.eq(now + ttl_ms)))?;
    Ok(n == 1)
}
