//! The embedded profile on one SQLite file: the record store, the durable queues and the
//! user balances, all through diesel. WAL mode lets readers run beside the single writer;
//! every write is an IMMEDIATE transaction so writers queue on the lock instead of failing
//! mid-transaction, and `synchronous=FULL` makes a commit durable before we answer 202.

mod balances;
mod queue;

pub use balances::SqliteBalances;
pub use queue::SqliteQueue;

use crate::adapters::store::AnyConn;
use crate::adapters::store::conn::Manager;
use crate::ports::StoreError;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

pub(crate) type Conn = PooledConnection<Manager<SqliteConnection>>;

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<AnyConn, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut AnyConn) -> Result<(), diesel::r2d2::Error> {
        conn.sqlite()
            .batch_execute("PRAGMA busy_timeout = 15000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32000;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A pool of connections to one SQLite database file, shared by the store, queue and
/// balances adapters. Cloning shares the pool.
#[derive(Clone)]
pub struct Sqlite {
    /// Readers: WAL lets them run beside the writer without blocking.
    pool: Pool<Manager<SqliteConnection>>,
    /// The one connection of this process that writes. Writers queue on this mutex instead
    /// of racing for SQLite's lock: a loser of that race gets SQLITE_BUSY and SQLite's busy
    /// handler sleeps (up to 100 ms a time), which is what makes tail latency explode.
    writer: Arc<Mutex<AnyConn>>,
    /// Who gets the writer next: client-facing writes (recording a request someone is
    /// waiting on) go before background stage writes.
    gate: Arc<WriteGate>,
    /// Every call runs on the calling task, after one yield, instead of on the blocking
    /// pool: what a deterministic simulation needs (one thread, the order of calls decided
    /// by its scheduler, a crash possible between any two calls). Never in a deployment: a
    /// call blocks its runtime thread for its whole duration.
    inline: bool,
}

/// Returns `Pending` once (waking itself at once), then `Ready`: an await point that a
/// simulation's scheduler can interleave or crash at.
#[derive(Debug, Default)]
pub struct YieldOnce(bool);

impl YieldOnce {
    pub fn new() -> Self {
        YieldOnce(false)
    }
}

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A two-level admission gate in front of the write connection. An urgent writer waits only
/// for the write in progress; background writers also wait while any urgent one is queued.
#[derive(Default)]
struct WriteGate {
    state: Mutex<GateState>,
    turn: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    busy: bool,
    urgent_waiting: usize,
}

impl WriteGate {
    fn enter(&self, urgent: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if urgent {
            st.urgent_waiting += 1;
        }
        while st.busy || (!urgent && st.urgent_waiting > 0) {
            st = self.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if urgent {
            st.urgent_waiting -= 1;
        }
        st.busy = true;
    }

    fn leave(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).busy = false;
        self.turn.notify_all();
    }
}

/// Holds the write connection; leaving the gate on drop, even on panic.
pub(crate) struct WriteGuard<'a> {
    conn: std::sync::MutexGuard<'a, AnyConn>,
    gate: &'a WriteGate,
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = AnyConn;
    fn deref(&self) -> &AnyConn {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut AnyConn {
        &mut self.conn
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        Self::open_with(path, false)
    }

    /// Opens the database for a deterministic simulation: every call runs inline on the
    /// caller's task after one yield (see the `inline` field), and no checkpoint thread runs.
    pub fn open_inline(path: &Path) -> Result<Sqlite, StoreError> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, inline: bool) -> Result<Sqlite, StoreError> {
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
        let manager = Manager::new(url);
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(Pragmas))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let writer = {
            use diesel::Connection;
            let c =
                SqliteConnection::establish(url).map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
            let mut c = AnyConn::Sqlite(c);
            Pragmas.on_acquire(&mut c).map_err(|e| StoreError::Unavailable(format!("cannot configure {}: {e}", path.display())))?;
            c
        };
        // Checkpoints copy the WAL into the database file and fsync it. Left to SQLite, that
        // happens inside whichever commit crosses 1000 WAL pages, stalling a client's
        // request; a background thread does it instead (the large auto-checkpoint is only a
        // safety net should that thread fall behind).
        let mut writer = writer;
        writer
            .sqlite()
            .batch_execute("PRAGMA wal_autocheckpoint = 20000;")
            .map_err(|e| StoreError::Unavailable(format!("cannot configure {}: {e}", path.display())))?;
        let writer = Arc::new(Mutex::new(writer));
        if !inline {
            spawn_checkpointer(pool.clone(), Arc::downgrade(&writer));
        }
        let db = Sqlite { pool, writer, gate: Arc::new(WriteGate::default()), inline };
        let mut conn = db.conn()?;
        conn.sqlite()
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| StoreError::Unavailable(format!("migrations failed on {}: {e}", path.display())))?;
        Ok(db)
    }

    /// A reader from the pool.
    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs blocking diesel work that writes, on the process's single write connection.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_as(operation::<F>(), false, move |conn| f(conn.sqlite())).await
    }

    /// Runs blocking diesel work that writes, on the process's single write connection;
    /// `urgent` puts it ahead of background writers (for writes a client waits on).
    pub(crate) async fn write_any<T, F>(&self, urgent: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_as(operation::<F>(), urgent, f).await
    }

    /// [`Sqlite::write_any`], naming the operation in slow-write logs.
    async fn write_as<T, F>(&self, op: &'static str, urgent: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        let work = move || {
            let asked = std::time::Instant::now();
            let mut conn = db.lock_writer_with(urgent);
            let got = std::time::Instant::now();
            let r = f(&mut conn);
            let held = got.elapsed();
            metrics::histogram!("withdraw_sqlite_write_wait_seconds").record((got - asked).as_secs_f64());
            metrics::histogram!("withdraw_sqlite_write_hold_seconds").record(held.as_secs_f64());
            if held > std::time::Duration::from_millis(50) {
                tracing::warn!(op, held_ms = held.as_millis() as u64, "slow database write");
            }
            r
        };
        if self.inline {
            YieldOnce::new().await;
            return work();
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }

    /// Runs blocking work that needs both a reader and the writer (plan on a reader, then
    /// commit briefly under the write lock).
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Sqlite) -> Result<T, StoreError> + Send + 'static,
    {
        if self.inline {
            YieldOnce::new().await;
            return f(self);
        }
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }

    /// The write connection, for use inside [`Sqlite::blocking`]; hold it briefly.
    pub(crate) fn lock_writer(&self) -> WriteGuard<'_> {
        self.lock_writer_with(false)
    }

    /// Records how long a write held the writer, when it was taken with [`Sqlite::lock_writer`].
    pub(crate) fn record_write_hold(held: Duration) {
        metrics::histogram!("withdraw_sqlite_write_hold_seconds").record(held.as_secs_f64());
    }

    fn lock_writer_with(&self, urgent: bool) -> WriteGuard<'_> {
        self.gate.enter(urgent);
        // A panic while holding the lock poisons it; the connection itself is still
        // consistent (`write_tx` rolls back before the panic goes on), so keep using it.
        WriteGuard { conn: self.writer.lock().unwrap_or_else(|p| p.into_inner()), gate: &self.gate }
    }

    /// Runs blocking diesel work that only reads, on a pooled connection.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.read(move |conn| f(conn.sqlite())).await
    }

    /// Runs blocking diesel work that only reads, on a pooled connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let work = move || {
            let mut conn = pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))?;
            f(&mut conn)
        };
        if self.inline {
            YieldOnce::new().await;
            return work();
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Unavailable(format!("database worker failed: {e}")))?
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        let retryable = match &e {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            // PostgreSQL chose this transaction as a deadlock's victim (SQLSTATE 40P01, which
            // diesel does not name) and rolled it back: running it again succeeds.
            Error::DatabaseError(_, info) if info.message().contains("deadlock detected") => true,
            Error::DatabaseError(_, info) => info.message().contains("locked") || info.message().contains("busy"),
            _ => false,
        };
        StoreError::Database { retryable, source: Box::new(e) }
    }
}

/// The adapter method a write closure came from, for slow-write logs.
fn operation<F>() -> &'static str {
    let name = std::any::type_name::<F>();
    let name = name.split("::{{closure}}").next().unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name)
}

/// Runs passive WAL checkpoints every second until the database is closed. Passive
/// checkpoints never block the writer or readers; they copy what they can.
fn spawn_checkpointer(pool: Pool<Manager<SqliteConnection>>, alive: std::sync::Weak<Mutex<AnyConn>>) {
    let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        while alive.strong_count() > 0 {
            std::thread::sleep(Duration::from_secs(1));
            let started = std::time::Instant::now();
            let result = pool
                .get()
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.sqlite().batch_execute("PRAGMA wal_checkpoint(PASSIVE);").map_err(|e| e.to_string()));
            if let Err(e) = result {
                tracing::warn!(error = %e, "WAL checkpoint failed; SQLite's own checkpoint remains as a fallback");
            }
            metrics::histogram!("withdraw_sqlite_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the WAL checkpoint thread; SQLite's own checkpoint remains as a fallback");
    }
}
