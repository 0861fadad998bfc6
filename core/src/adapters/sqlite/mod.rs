//! The embedded profile on one SQLite file: the record store, the durable queues and the
//! user balances, all through diesel. WAL mode lets readers run beside the single writer;
//! every write is an IMMEDIATE transaction so writers queue on the lock instead of failing
//! mid-transaction, and `synchronous=FULL` makes a commit durable before we answer 202.

mod balances;
mod queue;
mod schema;
mod store;

pub use balances::SqliteBalances;
pub use queue::SqliteQueue;
pub use store::SqliteStore;

use crate::ports::StoreError;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::path::Path;
use std::time::Duration;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

type Conn = PooledConnection<ConnectionManager<SqliteConnection>>;

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32000;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A pool of connections to one SQLite database file, shared by the store, queue and
/// balances adapters. Cloning shares the pool.
#[derive(Clone)]
pub struct Sqlite {
    pool: Pool<ConnectionManager<SqliteConnection>>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let url = path.to_str().ok_or_else(|| StoreError::Unavailable(format!("non-UTF-8 path {}", path.display())))?;
        // WAL is a property of the file: switch it once, on one connection, before the pool
        // opens several at once (concurrent switches fail with "database is locked").
        {
            use diesel::Connection;
            let mut c =
                SqliteConnection::establish(url).map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
            c.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL;")
                .map_err(|e| StoreError::Unavailable(format!("cannot enable WAL on {}: {e}", path.display())))?;
        }
        let manager = ConnectionManager::<SqliteConnection>::new(url);
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(Pragmas))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let db = Sqlite { pool };
        let mut conn = db.conn()?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| StoreError::Unavailable(format!("migrations failed on {}: {e}", path.display())))?;
        Ok(db)
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs blocking diesel work off the async runtime.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => StoreError::Unavailable(e.to_string()),
            Error::DatabaseError(_, info) if info.message().contains("locked") || info.message().contains("busy") => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Query(e.to_string()),
        }
    }
}
