//! User balances on SQLite. Every operation runs in one IMMEDIATE transaction, so the check
//! "available >= amount" and the update that follows cannot interleave with another
//! request's: concurrent withdrawals cannot overdraw (docs/design.md §5.2).

use super::Sqlite;
use crate::adapters::schema::{balance_credits, balances, reservations};
use crate::domain::{Amount, WithdrawalId};
use crate::ports::{Balance, BalanceError, Balances, Clock, Reservation, ReserveOutcome, StoreError};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct SqliteBalances {
    db: Sqlite,
    clock: Arc<dyn Clock>,
}

impl SqliteBalances {
    pub fn new(db: Sqlite, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

const RESERVED: &str = "reserved";
const COMMITTED: &str = "committed";
const RELEASED: &str = "released";

fn to_balance_err(e: StoreError) -> BalanceError {
    match e {
        StoreError::Unavailable(m) => BalanceError::Unavailable(m),
        other => BalanceError::Failed(other.to_string()),
    }
}

fn amount(s: &str) -> Result<Amount, StoreError> {
    Amount::from_base_units(s).ok_or_else(|| StoreError::Corrupt(format!("balance amount {s:?}")))
}

fn read(conn: &mut SqliteConnection, user: &str, asset: &str) -> Result<Balance, StoreError> {
    let row: Option<(String, String, String)> = balances::table
        .filter(balances::user_id.eq(user))
        .filter(balances::asset.eq(asset))
        .select((balances::credited, balances::reserved, balances::spent))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some((c, r, s)) => Balance { credited: amount(&c)?, reserved: amount(&r)?, spent: amount(&s)? },
        None => Balance::default(),
    })
}

fn write(conn: &mut SqliteConnection, user: &str, asset: &str, b: &Balance) -> Result<(), StoreError> {
    diesel::replace_into(balances::table)
        .values((
            balances::user_id.eq(user),
            balances::asset.eq(asset),
            balances::credited.eq(b.credited.base_units()),
            balances::reserved.eq(b.reserved.base_units()),
            balances::spent.eq(b.spent.base_units()),
        ))
        .execute(conn)?;
    Ok(())
}

fn overflow(user: &str) -> StoreError {
    StoreError::Corrupt(format!("balance arithmetic out of range for user {user}"))
}

/// Balance rows touched by one transaction, each read once and written back once.
struct Ledger {
    rows: HashMap<(String, String), (Balance, bool)>,
}

impl Ledger {
    fn new() -> Self {
        Ledger { rows: HashMap::new() }
    }

    fn get(&mut self, conn: &mut SqliteConnection, user: &str, asset: &str) -> Result<&mut Balance, StoreError> {
        let key = (user.to_owned(), asset.to_owned());
        if !self.rows.contains_key(&key) {
            let b = read(conn, user, asset)?;
            self.rows.insert(key.clone(), (b, false));
        }
        let entry = self.rows.get_mut(&key).expect("inserted above");
        entry.1 = true;
        Ok(&mut entry.0)
    }

    fn flush(self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        for ((user, asset), (b, dirty)) in self.rows {
            if dirty {
                write(conn, &user, &asset, &b)?;
            }
        }
        Ok(())
    }
}

type ReservationRow = (String, String, String, String, String);

fn load_reservations(conn: &mut SqliteConnection, ids: &[&str]) -> Result<HashMap<String, ReservationRow>, StoreError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<ReservationRow> = reservations::table
            .filter(reservations::withdrawal_id.eq_any(chunk))
            .select((reservations::withdrawal_id, reservations::user_id, reservations::asset, reservations::amount, reservations::state))
            .load(conn)?;
        out.extend(rows.into_iter().map(|r| (r.0.clone(), r)));
    }
    Ok(out)
}

/// Settles reservations that are still `reserved`: commit moves them to spent, release back
/// to available. Anything else (already settled, or never reserved) is left alone.
/// Settles reservations still reserved; returns the ids with no reservation at all.
fn settle(conn: &mut SqliteConnection, ids: &[WithdrawalId], commit: bool, now: i64) -> Result<Vec<WithdrawalId>, StoreError> {
    let keys: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
    let found = load_reservations(conn, &keys)?;
    let mut ledger = Ledger::new();
    let mut settled: Vec<&str> = Vec::new();
    let mut missing = Vec::new();
    for (i, id) in keys.iter().enumerate() {
        let Some((_, user, asset, amt, state)) = found.get(*id) else {
            missing.push(ids[i].clone());
            continue;
        };
        if state != RESERVED || settled.contains(id) {
            continue;
        }
        let amt = amount(amt)?;
        let b = ledger.get(conn, user, asset)?;
        b.reserved = b.reserved.checked_sub(amt).ok_or_else(|| overflow(user))?;
        if commit {
            b.spent = b.spent.checked_add(amt).ok_or_else(|| overflow(user))?;
        }
        settled.push(id);
    }
    ledger.flush(conn)?;
    for chunk in settled.chunks(500) {
        diesel::update(reservations::table.filter(reservations::withdrawal_id.eq_any(chunk)))
            .set((reservations::state.eq(if commit { COMMITTED } else { RELEASED }), reservations::updated_at.eq(now)))
            .execute(conn)?;
    }
    Ok(missing)
}

impl Balances for SqliteBalances {
    async fn credit(&self, credit_id: &str, user_id: &str, asset: &str, amount: Amount) -> Result<Balance, BalanceError> {
        let (id, user, asset) = (credit_id.to_owned(), user_id.to_owned(), asset.to_owned());
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let mut b = read(conn, &user, &asset)?;
                    let fresh = diesel::insert_into(balance_credits::table)
                        .values((balance_credits::credit_id.eq(&id), balance_credits::applied_at.eq(now)))
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                    if fresh == 0 {
                        return Ok(b);
                    }
                    b.credited = b.credited.checked_add(amount).ok_or_else(|| overflow(&user))?;
                    write(conn, &user, &asset, &b)?;
                    Ok(b)
                })
            })
            .await
            .map_err(to_balance_err)
    }

    async fn reserve(&self, batch: Vec<Reservation>) -> Result<Vec<ReserveOutcome>, BalanceError> {
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let keys: Vec<&str> = batch.iter().map(|r| r.withdrawal_id.as_str()).collect();
                    let mut known: HashMap<String, String> = load_reservations(conn, &keys)?.into_iter().map(|(k, r)| (k, r.4)).collect();
                    let mut ledger = Ledger::new();
                    let mut out = Vec::with_capacity(batch.len());
                    let mut rows = Vec::new();
                    for r in &batch {
                        if matches!(known.get(r.withdrawal_id.as_str()).map(String::as_str), Some(RESERVED) | Some(COMMITTED)) {
                            out.push(ReserveOutcome::AlreadyReserved);
                            continue;
                        }
                        let b = ledger.get(conn, &r.user_id, &r.asset)?;
                        let available = b.available();
                        if available < r.amount {
                            out.push(ReserveOutcome::Insufficient { available });
                            continue;
                        }
                        b.reserved = b.reserved.checked_add(r.amount).ok_or_else(|| overflow(&r.user_id))?;
                        known.insert(r.withdrawal_id.as_str().to_owned(), RESERVED.to_owned());
                        rows.push((
                            reservations::withdrawal_id.eq(r.withdrawal_id.as_str()),
                            reservations::user_id.eq(r.user_id.as_str()),
                            reservations::asset.eq(r.asset.as_str()),
                            reservations::amount.eq(r.amount.base_units()),
                            reservations::state.eq(RESERVED),
                            reservations::updated_at.eq(now),
                        ));
                        out.push(ReserveOutcome::Reserved);
                    }
                    ledger.flush(conn)?;
                    for chunk in rows.chunks(200) {
                        diesel::replace_into(reservations::table).values(chunk).execute(conn)?;
                    }
                    Ok(out)
                })
            })
            .await
            .map_err(to_balance_err)
    }

    async fn commit(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
        let now = self.clock.now_ms();
        self.db.write(move |conn| conn.immediate_transaction(|conn| settle(conn, &ids, true, now))).await.map_err(to_balance_err)
    }

    async fn release(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
        let now = self.clock.now_ms();
        self.db.write(move |conn| conn.immediate_transaction(|conn| settle(conn, &ids, false, now))).await.map_err(to_balance_err)
    }

    async fn get(&self, user_id: &str, asset: &str) -> Result<Balance, BalanceError> {
        let (user, asset) = (user_id.to_owned(), asset.to_owned());
        self.db.run(move |conn| read(conn, &user, &asset)).await.map_err(to_balance_err)
    }
}
