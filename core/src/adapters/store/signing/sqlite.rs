//! Signing on SQLite: one writer, and signing is the expensive part (ECDSA per transaction),
//! so it happens outside the write lock: plan on a reader (nonce, statuses), sign, then
//! commit only if the wallet's nonce and every status are still what the plan saw. A single
//! signer per wallet never conflicts; concurrent signers re-plan and re-sign.

use super::Batch;
use crate::adapters::schema::{wallet_nonces, withdrawals};
use crate::adapters::sqlite::Sqlite;
use crate::adapters::store::conn::{AnyConn, write_tx};
use crate::adapters::store::operations::brake_on;
use crate::adapters::store::rows::nonce_row;
use crate::adapters::store::withdrawals::load_rows;
use crate::domain::Status;
use crate::ports::{SignFn, SignOutcome, StoreError};
use diesel::prelude::*;

/// How often a batch is planned and signed again when another signer moved first.
const ROUNDS: usize = 8;

pub(in crate::adapters::store) fn sign_first_attempts(db: &Sqlite, b: &Batch, mut sign: SignFn) -> Result<Vec<SignOutcome>, StoreError> {
    for _round in 0..ROUNDS {
        let (start, loaded) = {
            let mut conn = db.conn()?;
            (b.read_start(&mut conn)?, load_rows(&mut conn, &b.ids)?)
        };
        let plan = b.plan(start, &loaded, &mut sign)?;
        if plan.rows.is_empty() {
            return Ok(plan.outcomes);
        }
        let moved: Vec<&str> = plan.rows.iter().map(|r| r.withdrawal_id.as_str()).collect();
        let started = std::time::Instant::now();
        // None: paused meanwhile (nothing recorded, the signatures are dropped).
        let committed = write_tx(&mut db.lock_writer(), |conn: &mut AnyConn| -> Result<Option<bool>, StoreError> {
            if brake_on(conn, b.chain_id)? {
                return Ok(None);
            }
            let cur: i64 = nonce_row(&b.wallet, b.chain_id).select(wallet_nonces::next_nonce).first(conn)?;
            let still: i64 = withdrawals::table
                .filter(withdrawals::id.eq_any(&moved))
                .filter(withdrawals::status.eq(Status::Received.as_str()))
                .count()
                .get_result(conn)?;
            if cur != start || still != moved.len() as i64 {
                return Ok(Some(false));
            }
            b.record(conn, &plan)?;
            Ok(Some(true))
        })?;
        Sqlite::record_write_hold(started.elapsed());
        match committed {
            Some(true) => return Ok(plan.outcomes),
            None => return Ok(b.paused()),
            Some(false) => {}
        }
        tracing::info!(wallet = %b.wallet, chain_id = b.chain_id, "nonce or statuses moved while signing; signing the batch again");
    }
    Err(StoreError::Unavailable("could not commit signed attempts: another signer keeps taking this wallet's nonces".into()))
}
