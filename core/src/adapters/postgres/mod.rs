//! The record on PostgreSQL (RDS / Aurora), for deployments with several replicas of each
//! role. The store's queries are the SQLite store's (`adapters/store`); what differs is
//! concurrency: every connection of the pool may write, so decisions that read and then
//! write lock their rows first (`SELECT … FOR UPDATE`): a wallet's nonce row for the
//! transaction that allocates nonces from it, and the withdrawal rows a transaction moves.
//! Under PostgreSQL's default READ COMMITTED isolation, a transaction that waited on such a
//! lock then reads the winner's committed rows and decides again.

use crate::adapters::store::AnyConn;
use crate::adapters::store::conn::Manager;
use crate::ports::StoreError;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::PgConnection;
use diesel::r2d2::{Pool, PooledConnection};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

pub(crate) type Conn = PooledConnection<Manager<PgConnection>>;

/// A pool of connections to one PostgreSQL database. Cloning shares the pool.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool<Manager<PgConnection>>,
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
            .build(Manager::new(url))
            .map_err(|e| unavailable("connection pool", e))?;
        Ok(Postgres { pool })
    }

    /// Creates or upgrades the schema. Concurrent runs (several pods starting) are
    /// serialised by an advisory lock.
    pub fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let conn = conn.postgres();
        diesel::sql_query("SELECT pg_advisory_lock(7305120001)").execute(conn)?;
        let r = conn.run_pending_migrations(MIGRATIONS).map(|_| ()).map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")));
        diesel::sql_query("SELECT pg_advisory_unlock(7305120001)").execute(conn)?;
        r
    }

    /// Fails unless every migration this build knows has been applied. Reads diesel's
    /// migrations table with a plain SELECT: the roles' database user may not change the
    /// schema, and diesel's own check first creates that table (`CREATE TABLE IF NOT
    /// EXISTS`), which PostgreSQL refuses such a user even when the table exists.
    pub fn check_schema(&self) -> Result<(), StoreError> {
        #[derive(diesel::QueryableByName)]
        struct Applied {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
        }
        let mut conn = self.conn()?;
        let older = || StoreError::Unavailable("the PostgreSQL schema is older than this withdrawd; run `withdrawd migrate`".into());
        let applied: Vec<Applied> = match diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(conn.postgres()) {
            Ok(rows) => rows,
            Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("does not exist") => return Err(older()),
            Err(e) => return Err(StoreError::Unavailable(format!("cannot read the PostgreSQL schema version: {e}"))),
        };
        let applied: std::collections::HashSet<String> = applied.into_iter().map(|a| a.version).collect();
        let known = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
            .map_err(|e| StoreError::Unavailable(format!("cannot list this build's migrations: {e}")))?;
        if known.iter().all(|m| applied.contains(&m.name().version().to_string())) { Ok(()) } else { Err(older()) }
    }

    /// A connection from the pool.
    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| unavailable("no connection", e))
    }

    /// Runs blocking diesel work on a pooled connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| unavailable("no connection", e))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }

    /// Runs blocking work that takes its own connections.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Postgres) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }
}
