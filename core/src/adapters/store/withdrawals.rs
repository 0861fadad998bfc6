//! Withdrawals: recording requests idempotently, reading them, and moving them between
//! statuses with their history, the balance change they owe (settlements) and an
//! operator's audit row in the same transaction.

use super::audit::insert_audit;
use super::conn::{AnyConn, insert_ignore, insert_rows, lock_withdrawals, write_tx};
use super::rows::*;
use crate::adapters::schema::*;
use crate::domain::{Status, WithdrawalId};
use crate::ports::*;
use diesel::prelude::*;

/// The withdrawals with these ids (those that exist).
pub(super) fn load_rows(conn: &mut AnyConn, ids: &[String]) -> Result<Vec<Withdrawal>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    // SQLite caps bound parameters (32766 since 3.32); chunk well below it.
    for chunk in ids.chunks(500) {
        let rows: Vec<WithdrawalRow> =
            withdrawals::table.filter(withdrawals::id.eq_any(chunk)).select(WithdrawalRow::as_select()).load(conn)?;
        for r in rows {
            out.push(r.into_domain()?);
        }
    }
    Ok(out)
}

/// Applies many transitions with a few statements per distinct (from, to, reason, actor,
/// settle) instead of two per withdrawal; returns, in order, whether each applied.
pub(super) fn transition(conn: &mut AnyConn, batch: &[Transition], now: i64) -> Result<Vec<bool>, StoreError> {
    lock_withdrawals(conn, &batch.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())?;
    let mut applied = vec![false; batch.len()];
    type Group<'a> = (Status, Status, Option<&'a str>, &'a str, Option<Settle>);
    let mut groups: std::collections::HashMap<Group, Vec<usize>> = std::collections::HashMap::new();
    for (i, t) in batch.iter().enumerate() {
        groups.entry((t.from, t.to, t.reason.as_deref(), t.actor.as_str(), t.settle)).or_default().push(i);
    }
    for ((from, to, reason, actor, settle), idx) in groups {
        for chunk in idx.chunks(500) {
            let ids: Vec<&str> = chunk.iter().map(|&i| batch[i].id.as_str()).collect();
            // A withdrawal whose last balance change is still owed stays where it is until
            // the settler has carried it out: a reprocess must not reserve anew while the
            // release of the old reservation is pending (it would release the new one).
            let movable: std::collections::HashSet<String> = withdrawals::table
                .filter(withdrawals::id.eq_any(&ids))
                .filter(withdrawals::status.eq(from.as_str()))
                .filter(diesel::dsl::not(diesel::dsl::exists(settlements::table.filter(settlements::withdrawal_id.eq(withdrawals::id)))))
                .select(withdrawals::id)
                .load::<String>(conn)?
                .into_iter()
                .collect();
            if movable.is_empty() {
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            let moving: Vec<&str> = ids.iter().copied().filter(|id| movable.contains(*id) && seen.insert(*id)).collect();
            diesel::update(withdrawals::table.filter(withdrawals::id.eq_any(&moving)))
                .set((
                    withdrawals::status.eq(to.as_str()),
                    withdrawals::reason.eq(reason),
                    withdrawals::updated_at.eq(now),
                    withdrawals::nudged_at.eq(None::<i64>),
                ))
                .execute(conn)?;
            let history: Vec<NewHistory> = moving
                .iter()
                .map(|id| NewHistory {
                    withdrawal_id: id,
                    from_status: Some(from.as_str()),
                    to_status: to.as_str(),
                    reason,
                    actor,
                    at: now,
                })
                .collect();
            insert_rows!(conn, history::table, &history)?;
            if let Some(settle) = settle {
                let owed: Vec<_> = moving
                    .iter()
                    .map(|id| {
                        (
                            settlements::withdrawal_id.eq(*id),
                            settlements::action.eq(settle.as_str()),
                            settlements::from_status.eq(from.as_str()),
                            settlements::created_at.eq(now),
                        )
                    })
                    .collect();
                insert_rows!(conn, settlements::table, &owed)?;
            }
            for &i in chunk {
                // A withdrawal listed twice in one batch moves once, and only the entry that
                // moved it leaves an audit row.
                if movable.contains(batch[i].id.as_str()) && !chunk.iter().any(|&j| j < i && batch[j].id == batch[i].id) {
                    applied[i] = true;
                    if let Some(a) = &batch[i].audit {
                        insert_audit(conn, a, now)?;
                    }
                }
            }
        }
    }
    Ok(applied)
}

/// What a request whose (client, key) is already recorded gets: the same request again is
/// `Existing`, another request under the key is a `Conflict`.
fn existing(conn: &mut AnyConn, client_id: &str, key: &str, request_hash: &str) -> Result<Option<SubmitOutcome>, StoreError> {
    let row: Option<(String, String, String)> = withdrawals::table
        .filter(withdrawals::client_id.eq(client_id))
        .filter(withdrawals::idempotency_key.eq(key))
        .select((withdrawals::id, withdrawals::request_hash, withdrawals::status))
        .first(conn)
        .optional()?;
    let Some((id, hash, status)) = row else { return Ok(None) };
    let id = WithdrawalId::from_stored(id);
    if hash != request_hash {
        return Ok(Some(SubmitOutcome::Conflict { id }));
    }
    let status = status.parse().map_err(|_| StoreError::Corrupt(format!("status {status}")))?;
    Ok(Some(SubmitOutcome::Existing { id, status }))
}

pub(super) fn submit(conn: &mut AnyConn, batch: Vec<NewWithdrawal>, now: i64) -> Result<Vec<SubmitOutcome>, StoreError> {
    write_tx(conn, |conn| {
        // Keys are inserted in (client, key) order, whatever the batch's order: two replicas'
        // batches sharing keys then wait on each other's insert in one order and never
        // deadlock. Each outcome goes back to its request's place.
        let mut out: Vec<Option<SubmitOutcome>> = vec![None; batch.len()];
        let mut batch: Vec<(usize, NewWithdrawal)> = batch.into_iter().enumerate().collect();
        batch.sort_by(|(_, a), (_, b)| (&a.client_id, &a.idempotency_key).cmp(&(&b.client_id, &b.idempotency_key)));
        for (at, w) in batch {
            let out = &mut out[at];
            if let Some(seen) = existing(conn, &w.client_id, &w.idempotency_key, &w.request_hash)? {
                *out = Some(seen);
                continue;
            }
            // ON CONFLICT DO NOTHING: on PostgreSQL another replica may record the same key
            // between the read above and this insert; that is "the same request again",
            // answered from the row it committed, never an error that would refuse the batch.
            let row = WithdrawalRow {
                id: w.id.as_str().to_owned(),
                client_id: w.client_id,
                idempotency_key: w.idempotency_key,
                request_hash: w.request_hash,
                user_id: w.user_id,
                asset: w.asset,
                chain_id: w.chain_id as i64,
                to_address: hex_addr(&w.to),
                amount: w.amount.base_units(),
                status: Status::Received.as_str().to_owned(),
                reason: None,
                created_at: now,
                updated_at: now,
                nudged_at: None,
            };
            if insert_ignore!(conn, withdrawals::table, &row)? == 0 {
                let seen = existing(conn, &row.client_id, &row.idempotency_key, &row.request_hash)?
                    .ok_or_else(|| StoreError::Query(format!("withdrawal {} conflicts with a row that is not its key's", row.id)))?;
                *out = Some(seen);
                continue;
            }
            diesel::insert_into(history::table)
                .values(NewHistory {
                    withdrawal_id: w.id.as_str(),
                    from_status: None,
                    to_status: Status::Received.as_str(),
                    reason: None,
                    actor: "intake",
                    at: now,
                })
                .execute(conn)?;
            *out = Some(SubmitOutcome::Created { id: w.id });
        }
        Ok(out.into_iter().flatten().collect())
    })
}

pub(super) fn get(conn: &mut AnyConn, id: String) -> Result<Option<WithdrawalDetail>, StoreError> {
    let Some(row) = withdrawals::table.filter(withdrawals::id.eq(&id)).select(WithdrawalRow::as_select()).first(conn).optional()? else {
        return Ok(None);
    };
    let attempts = attempts::table
        .filter(attempts::withdrawal_id.eq(&id))
        .order(attempts::created_at.asc())
        .select(AttemptRow::as_select())
        .load(conn)?
        .into_iter()
        .map(AttemptRow::into_domain)
        .collect::<Result<Vec<_>, _>>()?;
    let history = history::table
        .filter(history::withdrawal_id.eq(&id))
        .order(history::id.asc())
        .select((history::from_status, history::to_status, history::reason, history::actor, history::at))
        .load::<(Option<String>, String, Option<String>, String, i64)>(conn)?
        .into_iter()
        .map(|(from, to, reason, actor, at)| {
            Ok(HistoryEntry {
                from: from.map(|f| f.parse()).transpose().map_err(|_| StoreError::Corrupt("history status".into()))?,
                to: to.parse().map_err(|_| StoreError::Corrupt("history status".into()))?,
                reason,
                actor,
                at_ms: at,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let inclusion = inclusions::table
        .filter(inclusions::withdrawal_id.eq(&id))
        .select(InclusionRow::as_select())
        .first(conn)
        .optional()?
        .map(InclusionRow::into_domain)
        .transpose()?;
    let cancel = cancel_requests::table
        .filter(cancel_requests::withdrawal_id.eq(&id))
        .select((cancel_requests::actor, cancel_requests::reason, cancel_requests::requested_at))
        .first::<(String, String, i64)>(conn)
        .optional()?
        .map(|(actor, reason, at)| CancelRequest {
            withdrawal_id: WithdrawalId::from_stored(id.clone()),
            actor,
            reason,
            requested_at_ms: at,
        });
    Ok(Some(WithdrawalDetail { withdrawal: row.into_domain()?, attempts, history, inclusion, cancel }))
}

pub(super) fn pending_settlements(
    conn: &mut AnyConn,
    older_than_ms: i64,
    ids: Option<Vec<WithdrawalId>>,
    limit: i64,
) -> Result<Vec<PendingSettlement>, StoreError> {
    let mut q = settlements::table
        .filter(settlements::created_at.lt(older_than_ms))
        .order(settlements::created_at.asc())
        .limit(limit)
        .select((settlements::withdrawal_id, settlements::action, settlements::from_status, settlements::created_at))
        .into_boxed();
    if let Some(ids) = &ids {
        q = q.filter(settlements::withdrawal_id.eq_any(ids.iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>()));
    }
    let rows: Vec<(String, String, String, i64)> = q.load(conn)?;
    rows.into_iter()
        .map(|(id, action, from, at)| {
            let settle = match action.as_str() {
                "commit" => Settle::Commit,
                "release" => Settle::Release,
                _ => return Err(StoreError::Corrupt(format!("settlement of {id}: action {action}"))),
            };
            let from = from.parse().map_err(|_| StoreError::Corrupt(format!("settlement of {id}: status {from}")))?;
            Ok(PendingSettlement { withdrawal_id: WithdrawalId::from_stored(id), settle, from, created_at_ms: at })
        })
        .collect()
}

pub(super) fn settled(conn: &mut AnyConn, ids: Vec<String>) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        diesel::delete(settlements::table.filter(settlements::withdrawal_id.eq_any(chunk))).execute(conn)?;
    }
    Ok(())
}

pub(super) fn take_stale(
    conn: &mut AnyConn,
    status: Status,
    older_than_ms: i64,
    limit: i64,
    now: i64,
) -> Result<Vec<Withdrawal>, StoreError> {
    write_tx(conn, |conn| {
        let rows: Vec<WithdrawalRow> = withdrawals::table
            .filter(withdrawals::status.eq(status.as_str()))
            .filter(withdrawals::updated_at.lt(older_than_ms))
            .filter(withdrawals::nudged_at.is_null().or(withdrawals::nudged_at.lt(older_than_ms)))
            .order(withdrawals::updated_at.asc())
            .limit(limit)
            .select(WithdrawalRow::as_select())
            .load(conn)?;
        // Claim them with the same condition: on PostgreSQL a concurrent caller that read the
        // same rows waits on their row locks, then re-checks the condition against the
        // winner's nudge and claims none of them, so each stale withdrawal goes to one caller.
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let claimed: std::collections::HashSet<String> = diesel::update(
            withdrawals::table
                .filter(withdrawals::id.eq_any(&ids))
                .filter(withdrawals::status.eq(status.as_str()))
                .filter(withdrawals::nudged_at.is_null().or(withdrawals::nudged_at.lt(older_than_ms))),
        )
        .set(withdrawals::nudged_at.eq(now))
        .returning(withdrawals::id)
        .get_results::<String>(conn)?
        .into_iter()
        .collect();
        rows.into_iter().filter(|r| claimed.contains(&r.id)).map(WithdrawalRow::into_domain).collect()
    })
}

pub(super) fn counts(conn: &mut AnyConn) -> Result<Vec<(Status, i64)>, StoreError> {
    let rows: Vec<(String, i64)> =
        withdrawals::table.group_by(withdrawals::status).select((withdrawals::status, diesel::dsl::count_star())).load(conn)?;
    rows.into_iter().map(|(s, n)| Ok((s.parse().map_err(|_| StoreError::Corrupt(format!("status {s}")))?, n))).collect()
}

pub(super) fn search(conn: &mut AnyConn, f: SearchFilter) -> Result<Vec<Withdrawal>, StoreError> {
    let mut q = withdrawals::table.into_boxed();
    if let Some(st) = f.status {
        q = q.filter(withdrawals::status.eq(st.as_str()));
    }
    if let Some(text) = f.query.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let lower = text.to_ascii_lowercase();
        if lower.len() == 66 && lower.starts_with("0x") {
            let ids = attempts::table.filter(attempts::tx_hash.eq(lower)).select(attempts::withdrawal_id);
            q = q.filter(withdrawals::id.eq_any(ids));
        } else if lower.len() == 42 && lower.starts_with("0x") {
            q = q.filter(withdrawals::to_address.eq(lower));
        } else if let Some((start, end)) = id_prefix_range(&lower) {
            // The start of an id (lists show its first 13 characters): a range on the primary
            // key, which any index answers, where LIKE would need a pattern-ops index.
            let in_range = withdrawals::id.ge(start).and(withdrawals::id.lt(end));
            q = q.filter(in_range.or(withdrawals::user_id.eq(text.to_owned())));
        } else {
            q = q.filter(withdrawals::id.eq(text.to_owned()).or(withdrawals::user_id.eq(text.to_owned())));
        }
    }
    if let Some(b) = &f.before {
        // Ids are time-ordered (UUIDv7), so "created before" is "id below".
        q = q.filter(withdrawals::id.lt(b.as_str().to_owned()));
    }
    let rows: Vec<WithdrawalRow> =
        q.order(withdrawals::id.desc()).limit(f.limit.clamp(1, 1000)).select(WithdrawalRow::as_select()).load(conn)?;
    rows.into_iter().map(WithdrawalRow::into_domain).collect()
}

/// For the start of a withdrawal id (8 to 36 characters of an id's lowercase hex and dashes),
/// the range of ids it starts: [prefix, prefix with its last character raised by one). A
/// trailing dash is dropped first (every id has its dashes at the same places), so neither
/// bound ends in punctuation, which a non-C collation would skip. None for anything else,
/// which is then matched exactly.
fn id_prefix_range(text: &str) -> Option<(String, String)> {
    let start = text.trim_end_matches('-');
    let ok = (8..=36).contains(&start.len()) && start.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    if !ok {
        return None;
    }
    let mut end = start.as_bytes().to_vec();
    let last = end.last_mut()?;
    // The next character of an id's alphabet: after '9' comes 'a' (not ':', punctuation a
    // non-C collation orders before the digits, which would make the range empty).
    *last = if *last == b'9' { b'a' } else { *last + 1 };
    Some((start.to_owned(), String::from_utf8(end).ok()?))
}

/// A client's status changes after `after`, oldest first. On PostgreSQL only rows of
/// transactions that ended before every transaction still running are served (the snapshot's
/// xmin): a row whose transaction is still open, or whose id was drawn before a committed
/// row's, waits, and is served after the rows it precedes in (tx, id) order, never skipped.
/// One withdrawal's changes stay in order: a trigger makes a row's tx at least its previous
/// change's (see the feed migration). An open transaction holds the feed back until it ends.
pub(super) fn changes(conn: &mut AnyConn, client: &str, after: FeedCursor, limit: i64) -> Result<Vec<Change>, StoreError> {
    let postgres = matches!(conn, AnyConn::Postgres(_));
    let mut q = history::table
        .inner_join(withdrawals::table.on(withdrawals::id.eq(history::withdrawal_id)))
        .filter(withdrawals::client_id.eq(client.to_owned()))
        // The first term bounds the (tx, id) index scan; the second is the exact order.
        .filter(history::tx.ge(after.tx))
        .filter(history::tx.gt(after.tx).or(history::tx.eq(after.tx).and(history::id.gt(after.id))))
        .into_boxed();
    if postgres {
        let horizon = diesel::dsl::sql::<diesel::sql_types::BigInt>("pg_snapshot_xmin(pg_current_snapshot())::text::bigint");
        q = q.filter(history::tx.lt(horizon));
    }
    let rows: Vec<(i64, i64, Option<String>, String, i64, WithdrawalRow)> = q
        .order((history::tx.asc(), history::id.asc()))
        .limit(limit.clamp(1, 1000))
        .select((history::tx, history::id, history::from_status, history::to_status, history::at, WithdrawalRow::as_select()))
        .load(conn)?;
    let status = |s: &str| s.parse::<Status>().map_err(|_| StoreError::Corrupt(format!("history status {s}")));
    rows.into_iter()
        .map(|(tx, id, from, to, at, w)| {
            Ok(Change {
                cursor: FeedCursor { tx, id },
                from: from.as_deref().map(status).transpose()?,
                to: status(&to)?,
                at_ms: at,
                withdrawal: w.into_domain()?,
            })
        })
        .collect()
}

pub(super) fn oldest_in(conn: &mut AnyConn, status: Status) -> Result<Option<i64>, StoreError> {
    // The (status, updated_at) index answers this with one seek.
    Ok(withdrawals::table
        .filter(withdrawals::status.eq(status.as_str()))
        .order(withdrawals::updated_at.asc())
        .select(withdrawals::updated_at)
        .first::<i64>(conn)
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::id_prefix_range;

    #[test]
    fn an_id_prefix_is_a_range_of_ids_bounded_by_letters_and_digits() {
        let r = |s: &str| id_prefix_range(s).map(|(a, b)| format!("{a}..{b}"));
        assert_eq!(r("0193a1f0-aaaa").as_deref(), Some("0193a1f0-aaaa..0193a1f0-aaab"));
        assert_eq!(r("0193a1f0-aaa9").as_deref(), Some("0193a1f0-aaa9..0193a1f0-aaaa"), "no ':' as a bound");
        assert_eq!(r("0193a1f0-aaaf").as_deref(), Some("0193a1f0-aaaf..0193a1f0-aaag"));
        assert_eq!(r("0193a1f0-").as_deref(), Some("0193a1f0..0193a1f1"), "no dash as a bound");
        assert_eq!(r("0193a1f"), None, "too short to be an id's start");
        assert_eq!(r("alice123"), None);
        assert_eq!(r("0193a1f0-aaaa-7000-8000-00000000aaaa0"), None, "longer than an id");
    }
}
