//! Signing on PostgreSQL: several writers, so the wallet's nonce row is locked first and the
//! plan, the signatures and the commit all happen under that lock. Replicas signing for one
//! wallet queue on the lock instead of re-planning against each other; other wallets and
//! other writers are not held up.

use super::Batch;
use crate::adapters::postgres::Postgres;
use crate::adapters::store::conn::{lock_wallet, lock_withdrawals, write_tx};
use crate::adapters::store::operations::brake_on;
use crate::adapters::store::withdrawals::load_rows;
use crate::ports::{SignFn, SignOutcome, StoreError};

pub(in crate::adapters::store) fn sign_first_attempts(db: &Postgres, b: &Batch, mut sign: SignFn) -> Result<Vec<SignOutcome>, StoreError> {
    let mut conn = db.conn()?;
    write_tx(&mut conn, |conn| {
        lock_wallet(conn, &b.wallet, b.chain_id)?;
        if brake_on(conn, b.chain_id)? {
            return Ok(b.paused());
        }
        lock_withdrawals(conn, &b.ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let start = b.read_start(conn)?;
        let loaded = load_rows(conn, &b.ids)?;
        let plan = b.plan(start, &loaded, &mut sign)?;
        if !plan.rows.is_empty() {
            b.record(conn, &plan)?;
        }
        Ok(plan.outcomes)
    })
}
