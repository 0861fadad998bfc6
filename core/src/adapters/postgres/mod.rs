//! The record on PostgreSQL (RDS / Aurora), for deployments with several replicas of each
//! role. The store's queries are the SQLite store's (see `record_store.rs`); what differs is
//! concurrency: every connection of the pool may write, so decisions that read and then
//! write lock their rows first (`SELECT … FOR UPDATE`): a wallet's nonce row for the
//! transaction that allocates nonces from it, and the withdrawal rows a transaction moves.
//! Under PostgreSQL's default READ COMMITTED isolation, a transaction that waited on such a
//! lock then reads the winner's committed rows and decides again.

mod store;

pub use store::PgStore;

use crate::ports::StoreError;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::sql_types::{Array, BigInt, Text};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// A pool of connections to one PostgreSQL database. Cloning shares the pool.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool<ConnectionManager<PgConnection>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

/// What the pool's errors say, without the URL (it may carry a password).
fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL {what}: {e}"))
}

impl Postgres {
    /// Connects a pool of `max_size` connections; fails within seconds, naming the cause,
    /// if the database does not answer.
    pub fn connect(url: &str, max_size: u32) -> Result<Postgres, StoreError> {
        // One direct attempt first: r2d2's own error after its timeout says only "timed out".
        PgConnection::establish(url).map_err(|e| unavailable("connection failed", e))?;
        let pool = Pool::builder()
            .max_size(max_size.max(2))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .build(ConnectionManager::<PgConnection>::new(url))
            .map_err(|e| unavailable("connection pool", e))?;
        Ok(Postgres { pool })
    }

    /// Creates or upgrades the schema. Concurrent runs (several pods starting) are
    /// serialised by an advisory lock.
    pub fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        diesel::sql_query("SELECT pg_advisory_lock(7305120001)").execute(&mut conn)?;
        let r = conn.run_pending_migrations(MIGRATIONS).map(|_| ()).map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")));
        diesel::sql_query("SELECT pg_advisory_unlock(7305120001)").execute(&mut conn)?;
        r
    }

    /// Fails unless every migration this build knows has been applied.
    pub fn check_schema(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        match conn.has_pending_migration(MIGRATIONS) {
            Ok(false) => Ok(()),
            Ok(true) => Err(StoreError::Unavailable("the PostgreSQL schema is older than this withdrawd; run `withdrawd migrate`".into())),
            Err(e) => Err(StoreError::Unavailable(format!("cannot read the PostgreSQL schema version: {e}"))),
        }
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| unavailable("no connection", e))
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(f).await
    }

    async fn write_urgent<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(f).await
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| unavailable("no connection", e))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Postgres) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }

    /// Any pooled connection writes; the row locks order the writers.
    fn lock_writer(&self) -> Result<Conn, StoreError> {
        self.conn()
    }

    fn record_write_hold(_held: Duration) {}
}

/// The advisory lock key of the signing brake ("wdbrake" in ASCII); the migration lock uses
/// another.
const BRAKE_LOCK_KEY: i64 = 0x0077_6462_7261_6b65;

impl crate::adapters::record_store::WriteTx for PgConnection {
    const LOCKS_ROWS: bool = true;

    fn write_tx<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>,
    {
        self.transaction(f)
    }

    fn lock_wallet(&mut self, wallet: &str, chain_id: u64) -> Result<(), StoreError> {
        diesel::sql_query("SELECT 1 FROM wallet_nonces WHERE chain_id = $1 AND wallet = $2 FOR UPDATE")
            .bind::<BigInt, _>(chain_id as i64)
            .bind::<Text, _>(wallet)
            .execute(self)?;
        Ok(())
    }

    fn lock_brake(&mut self, exclusive: bool) -> Result<(), StoreError> {
        // One transaction-scoped advisory lock stands for the brake: every signing write
        // holds it shared, a pause change exclusively (released at commit or rollback).
        let q = if exclusive { "SELECT pg_advisory_xact_lock($1)" } else { "SELECT pg_advisory_xact_lock_shared($1)" };
        diesel::sql_query(q).bind::<BigInt, _>(BRAKE_LOCK_KEY).execute(self)?;
        Ok(())
    }

    fn lock_withdrawals(&mut self, ids: &[&str]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&str> = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        diesel::sql_query("SELECT 1 FROM withdrawals WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind::<Array<Text>, _>(sorted)
            .execute(self)?;
        Ok(())
    }
}
