//! User balances on SQLite. Every operation runs in one IMMEDIATE transaction, so the check
//! "available >= amount" and the update that follows cannot interleave with another
//! request's: concurrent withdrawals cannot overdraw (DESIGN.md §5.2).

use super::Sqlite;
use super::schema::{balances, reservations};
use crate::domain::{Amount, WithdrawalId};
use crate::ports::{Balance, BalanceError, Balances, Clock, Reservation, ReserveOutcome, StoreError};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
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

/// Settles reservations that are still `reserved`: commit moves them to spent, release back
/// to available. Anything else (already settled, or never reserved) is left alone.
fn settle(conn: &mut SqliteConnection, ids: &[WithdrawalId], commit: bool, now: i64) -> Result<(), StoreError> {
    for id in ids {
        let row: Option<(String, String, String, String)> = reservations::table
            .filter(reservations::withdrawal_id.eq(id.as_str()))
            .select((reservations::user_id, reservations::asset, reservations::amount, reservations::state))
            .first(conn)
            .optional()?;
        let Some((user, asset, amt, state)) = row else { continue };
        if state != RESERVED {
            continue;
        }
        let amt = amount(&amt)?;
        let mut b = read(conn, &user, &asset)?;
        b.reserved = b.reserved.checked_sub(amt).ok_or_else(|| overflow(&user))?;
        if commit {
            b.spent = b.spent.checked_add(amt).ok_or_else(|| overflow(&user))?;
        }
        write(conn, &user, &asset, &b)?;
        diesel::update(reservations::table.filter(reservations::withdrawal_id.eq(id.as_str())))
            .set((reservations::state.eq(if commit { COMMITTED } else { RELEASED }), reservations::updated_at.eq(now)))
            .execute(conn)?;
    }
    Ok(())
}

impl Balances for SqliteBalances {
    async fn credit(&self, user_id: &str, asset: &str, amount: Amount) -> Result<Balance, BalanceError> {
        let (user, asset) = (user_id.to_owned(), asset.to_owned());
        self.db
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    let mut b = read(conn, &user, &asset)?;
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
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    let mut out = Vec::with_capacity(batch.len());
                    for r in &batch {
                        let state: Option<String> = reservations::table
                            .filter(reservations::withdrawal_id.eq(r.withdrawal_id.as_str()))
                            .select(reservations::state)
                            .first(conn)
                            .optional()?;
                        if matches!(state.as_deref(), Some(RESERVED) | Some(COMMITTED)) {
                            out.push(ReserveOutcome::AlreadyReserved);
                            continue;
                        }
                        let mut b = read(conn, &r.user_id, &r.asset)?;
                        let available = b.available();
                        if available < r.amount {
                            out.push(ReserveOutcome::Insufficient { available });
                            continue;
                        }
                        b.reserved = b.reserved.checked_add(r.amount).ok_or_else(|| overflow(&r.user_id))?;
                        write(conn, &r.user_id, &r.asset, &b)?;
                        diesel::replace_into(reservations::table)
                            .values((
                                reservations::withdrawal_id.eq(r.withdrawal_id.as_str()),
                                reservations::user_id.eq(&r.user_id),
                                reservations::asset.eq(&r.asset),
                                reservations::amount.eq(r.amount.base_units()),
                                reservations::state.eq(RESERVED),
                                reservations::updated_at.eq(now),
                            ))
                            .execute(conn)?;
                        out.push(ReserveOutcome::Reserved);
                    }
                    Ok(out)
                })
            })
            .await
            .map_err(to_balance_err)
    }

    async fn commit(&self, ids: Vec<WithdrawalId>) -> Result<(), BalanceError> {
        let now = self.clock.now_ms();
        self.db.run(move |conn| conn.immediate_transaction(|conn| settle(conn, &ids, true, now))).await.map_err(to_balance_err)
    }

    async fn release(&self, ids: Vec<WithdrawalId>) -> Result<(), BalanceError> {
        let now = self.clock.now_ms();
        self.db.run(move |conn| conn.immediate_transaction(|conn| settle(conn, &ids, false, now))).await.map_err(to_balance_err)
    }

    async fn get(&self, user_id: &str, asset: &str) -> Result<Balance, BalanceError> {
        let (user, asset) = (user_id.to_owned(), asset.to_owned());
        self.db.run(move |conn| read(conn, &user, &asset)).await.map_err(to_balance_err)
    }
}
