//! One connection type for both databases, and the few things the two do differently.
//!
//! Queries are written once against [`AnyConn`], diesel's `MultiConnection` over PostgreSQL
//! and SQLite: one type, so each query is a plain function the compiler checks once and an
//! IDE can follow. What the multi-backend cannot express, or what the databases must do
//! differently, lives here and nowhere else:
//! - `INSERT … ON CONFLICT DO NOTHING` (diesel's multi-backend declares no conflict clause)
//!   and multi-row `INSERT`s (which SQLite renders in its own way, without the `DEFAULT`
//!   keyword): [`insert_ignore!`] and [`insert_rows!`] write the statement once and compile
//!   it for each backend;
//! - how a write transaction begins ([`write_tx`]): `BEGIN IMMEDIATE` on SQLite, so the one
//!   writer holds the database from the first statement; a plain `BEGIN` (READ COMMITTED)
//!   on PostgreSQL;
//! - row locks ([`lock_wallet`], [`lock_withdrawals`], [`lock_brake`]): PostgreSQL has many
//!   writers, so a transaction that reads and then decides locks what it decides on first;
//!   SQLite's single writer already serialises every such transaction, so they do nothing.

use crate::ports::StoreError;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::sql_types::{Array, BigInt, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use std::marker::PhantomData;

/// A connection to either database; what every store query runs on.
#[derive(diesel::MultiConnection)]
pub enum AnyConn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl AnyConn {
    /// The SQLite connection inside. The SQLite adapter opens only `Sqlite` connections, so
    /// its queue and balance code (SQLite-only SQL) can reach the typed connection.
    pub(crate) fn sqlite(&mut self) -> &mut SqliteConnection {
        SqliteConnection::inside(self)
    }

    /// The PostgreSQL connection inside, for the PostgreSQL adapter's migrations.
    pub(crate) fn postgres(&mut self) -> &mut PgConnection {
        PgConnection::inside(self)
    }
}

/// One of [`AnyConn`]'s connection types.
pub(crate) trait Backend: Connection + R2D2Connection + 'static {
    fn wrap(self) -> AnyConn;
    /// The connection inside; a pool of one backend holds only that backend's connections.
    fn inside(conn: &mut AnyConn) -> &mut Self;
}

impl Backend for SqliteConnection {
    fn wrap(self) -> AnyConn {
        AnyConn::Sqlite(self)
    }
    fn inside(conn: &mut AnyConn) -> &mut Self {
        match conn {
            AnyConn::Sqlite(c) => c,
            // `Manager<SqliteConnection>` opens nothing else.
            AnyConn::Postgres(_) => unreachable!("a PostgreSQL connection in a SQLite pool"),
        }
    }
}

impl Backend for PgConnection {
    fn wrap(self) -> AnyConn {
        AnyConn::Postgres(self)
    }
    fn inside(conn: &mut AnyConn) -> &mut Self {
        match conn {
            AnyConn::Postgres(c) => c,
            // `Manager<PgConnection>` opens nothing else.
            AnyConn::Sqlite(_) => unreachable!("a SQLite connection in a PostgreSQL pool"),
        }
    }
}

/// Opens a pool's connections: of backend `C`, as the store's one connection type.
#[derive(Debug)]
pub(crate) struct Manager<C> {
    url: String,
    backend: PhantomData<fn() -> C>,
}

impl<C> Manager<C> {
    pub(crate) fn new(url: &str) -> Self {
        Manager { url: url.to_owned(), backend: PhantomData }
    }
}

impl<C: Backend> ManageConnection for Manager<C> {
    type Connection = AnyConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConn, Self::Error> {
        C::establish(&self.url).map(C::wrap).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConn) -> Result<(), Self::Error> {
        C::inside(conn).ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConn) -> bool {
        // As diesel's own manager: a connection handed back while its thread unwinds may be
        // mid-statement.
        std::thread::panicking() || C::inside(conn).is_broken()
    }
}

/// `INSERT … ON CONFLICT DO NOTHING`, written once and compiled for each backend (the
/// multi-backend has no conflict clause). Evaluates to the number of rows inserted.
macro_rules! insert_ignore {
    ($conn:expr, $table:expr, $values:expr) => {
        match $conn {
            $crate::adapters::store::conn::AnyConn::Postgres(c) => {
                diesel::RunQueryDsl::execute(diesel::insert_into($table).values($values).on_conflict_do_nothing(), c)
            }
            $crate::adapters::store::conn::AnyConn::Sqlite(c) => {
                diesel::RunQueryDsl::execute(diesel::insert_into($table).values($values).on_conflict_do_nothing(), c)
            }
        }
    };
}
pub(crate) use insert_ignore;

/// A multi-row `INSERT`, written once and compiled for each backend (the multi-backend
/// cannot render SQLite's form of it). Evaluates to the number of rows inserted.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $values:expr) => {
        match $conn {
            $crate::adapters::store::conn::AnyConn::Postgres(c) => {
                diesel::RunQueryDsl::execute(diesel::insert_into($table).values($values), c)
            }
            $crate::adapters::store::conn::AnyConn::Sqlite(c) => {
                diesel::RunQueryDsl::execute(diesel::insert_into($table).values($values), c)
            }
        }
    };
}
pub(crate) use insert_rows;

/// Runs `f` in a transaction that may write, committing if it returns `Ok` and rolling
/// back otherwise.
pub(crate) fn write_tx<T, F>(conn: &mut AnyConn, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&mut AnyConn) -> Result<T, StoreError>,
{
    match conn {
        // IMMEDIATE takes the write lock at BEGIN: the transaction's reads and its writes see
        // one state, and a second process's writer waits (busy_timeout) rather than failing
        // mid-transaction on a lock upgrade.
        AnyConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        AnyConn::Postgres(_) => <AnyConn as Connection>::TransactionManager::begin_transaction(conn)?,
    }
    // A panic inside `f` (a signing closure, say) rolls back too before it goes on: SQLite's
    // one writer connection outlives the panic, and left inside an open IMMEDIATE
    // transaction it would refuse every later write and hold the file's lock.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))) {
        Ok(Ok(v)) => {
            <AnyConn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(v)
        }
        Ok(Err(e)) => {
            // The caller's error is the one that matters; a failed rollback leaves the
            // connection marked broken, and the pool discards it.
            let _ = <AnyConn as Connection>::TransactionManager::rollback_transaction(conn);
            Err(e)
        }
        Err(panic) => {
            let _ = <AnyConn as Connection>::TransactionManager::rollback_transaction(conn);
            std::panic::resume_unwind(panic)
        }
    }
}

/// Locks a wallet's nonce row until the transaction ends.
pub(crate) fn lock_wallet(conn: &mut AnyConn, wallet: &str, chain_id: u64) -> Result<(), StoreError> {
    if let AnyConn::Postgres(c) = conn {
        diesel::sql_query("SELECT 1 FROM wallet_nonces WHERE chain_id = $1 AND wallet = $2 FOR UPDATE")
            .bind::<BigInt, _>(chain_id as i64)
            .bind::<Text, _>(wallet)
            .execute(c)?;
    }
    Ok(())
}

/// Locks withdrawal rows until the transaction ends, in id order, so two transactions
/// locking overlapping sets cannot deadlock.
pub(crate) fn lock_withdrawals(conn: &mut AnyConn, ids: &[&str]) -> Result<(), StoreError> {
    let AnyConn::Postgres(c) = conn else { return Ok(()) };
    if ids.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    diesel::sql_query("SELECT 1 FROM withdrawals WHERE id = ANY($1) ORDER BY id FOR UPDATE").bind::<Array<Text>, _>(sorted).execute(c)?;
    Ok(())
}

/// The advisory lock key of the signing brake ("wdbrake" in ASCII); the migration lock uses
/// another.
const BRAKE_LOCK_KEY: i64 = 0x0077_6462_7261_6b65;

/// Takes the signing brake's lock until the transaction ends: shared by every transaction
/// that records a signature, exclusive for a pause change. A pause therefore commits only
/// after every signing transaction that read "not paused" has committed, and every signing
/// transaction after it reads the pause (docs/design.md §5, invariant 8). On SQLite the one
/// writer (an IMMEDIATE transaction) already orders them.
pub(crate) fn lock_brake(conn: &mut AnyConn, exclusive: bool) -> Result<(), StoreError> {
    if let AnyConn::Postgres(c) = conn {
        // One transaction-scoped advisory lock stands for the brake (released at commit or
        // rollback).
        let q = if exclusive { "SELECT pg_advisory_xact_lock($1)" } else { "SELECT pg_advisory_xact_lock_shared($1)" };
        diesel::sql_query(q).bind::<BigInt, _>(BRAKE_LOCK_KEY).execute(c)?;
    }
    Ok(())
}
