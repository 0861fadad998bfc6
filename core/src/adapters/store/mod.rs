//! The record store: one implementation of the `Store` port for both databases.
//!
//! - [`conn`]: the one connection type (diesel's `MultiConnection` over PostgreSQL and
//!   SQLite) and the few things the databases do differently: how a write transaction
//!   begins, row locks, `ON CONFLICT DO NOTHING`.
//! - Plain functions over that connection, per concern: [`withdrawals`], [`attempts`] (and
//!   nonces), [`tracking`], [`operations`], [`audit`]; [`rows`] maps the tables.
//! - [`signing`]: the first signature of a batch, where the databases keep two signers
//!   apart differently (a strategy per database, sharing the planning and the recording).
//! - This file: [`RecordStore`], whose `Store` methods say how each call reaches the
//!   database (a read on any connection, a write, a write a client waits on) and call one
//!   of those functions.
//!
//! Rules every query here follows, so that both backends give the same answers: portable
//! diesel DSL only (no `replace_into`, no raw SQL outside `conn`); read-then-write decisions
//! only inside a write transaction that first locks what it decides on.

pub(crate) mod conn;

mod attempts;
mod audit;
mod operations;
mod rows;
mod signing;
mod tracking;
mod withdrawals;

pub use conn::AnyConn;

use crate::adapters::postgres::Postgres;
use crate::adapters::sqlite::Sqlite;
use crate::domain::{Status, WithdrawalId};
use crate::ports::*;
use alloy::primitives::{Address, B256};
use conn::write_tx;
use rows::hex_hash;
use std::sync::Arc;

/// The database a store runs on, and how its calls reach it.
#[derive(Clone, Debug)]
pub enum Db {
    /// One file, one writer per process (writes queue on it, client-facing ones first),
    /// readers beside it.
    Sqlite(Sqlite),
    /// A pool whose every connection may write; row locks order the writers.
    Postgres(Postgres),
}

impl From<Sqlite> for Db {
    fn from(db: Sqlite) -> Db {
        Db::Sqlite(db)
    }
}

impl From<Postgres> for Db {
    fn from(db: Postgres) -> Db {
        Db::Postgres(db)
    }
}

impl Db {
    /// Runs blocking work that only reads, on any connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => db.read(f).await,
            Db::Postgres(db) => db.run(f).await,
        }
    }

    /// Runs blocking work that writes.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => db.write_any(false, f).await,
            Db::Postgres(db) => db.run(f).await,
        }
    }

    /// Runs a write a client is waiting on: on SQLite it goes ahead of queued background
    /// writes; on PostgreSQL every write has its own connection anyway.
    async fn write_urgent<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConn) -> Result<T, StoreError> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => db.write_any(true, f).await,
            Db::Postgres(db) => db.run(f).await,
        }
    }
}

/// The record of every withdrawal, its attempts, nonces and operations, on SQLite or
/// PostgreSQL.
#[derive(Clone)]
pub struct RecordStore {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl RecordStore {
    pub fn new(db: impl Into<Db>, clock: Arc<dyn Clock>) -> Self {
        Self { db: db.into(), clock }
    }
}

impl Store for RecordStore {
    async fn submit(&self, batch: Vec<NewWithdrawal>) -> Result<Vec<SubmitOutcome>, StoreError> {
        let now = self.clock.now_ms();

        self.db.write_urgent(move |conn| withdrawals::submit(conn, batch, now)).await
    }

    async fn get(&self, id: &WithdrawalId) -> Result<Option<WithdrawalDetail>, StoreError> {
        let id = id.as_str().to_owned();

        self.db.read(move |conn| withdrawals::get(conn, id)).await
    }

    async fn load(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Withdrawal>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db.read(move |conn| withdrawals::load_rows(conn, &ids)).await
    }

    async fn transition(&self, batch: Vec<Transition>) -> Result<Vec<bool>, StoreError> {
        let now = self.clock.now_ms();
        self.db.write(move |conn| write_tx(conn, |conn| withdrawals::transition(conn, &batch, now))).await
    }

    async fn pending_settlements(
        &self,
        older_than_ms: i64,
        ids: Option<Vec<WithdrawalId>>,
        limit: i64,
    ) -> Result<Vec<PendingSettlement>, StoreError> {
        self.db.read(move |conn| withdrawals::pending_settlements(conn, older_than_ms, ids, limit)).await
    }

    async fn settled(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();

        self.db.write(move |conn| withdrawals::settled(conn, ids)).await
    }

    async fn init_nonce(&self, wallet: Address, chain_id: u64, chain_next: u64) -> Result<u64, StoreError> {
        self.db.write(move |conn| attempts::init_nonce(conn, wallet, chain_id, chain_next)).await
    }

    async fn wallets(&self, chain_id: u64) -> Result<Vec<Address>, StoreError> {
        self.db.read(move |conn| attempts::wallets(conn, chain_id)).await
    }

    async fn sign_first_attempts(
        &self,
        wallet: Address,
        chain_id: u64,
        batch: Vec<WithdrawalId>,
        sign: SignFn,
    ) -> Result<Vec<SignOutcome>, StoreError> {
        let b = signing::Batch::new(wallet, chain_id, batch, self.clock.now_ms());
        match &self.db {
            Db::Sqlite(db) => db.blocking(move |db| signing::sqlite::sign_first_attempts(db, &b, sign)).await,
            Db::Postgres(db) => db.blocking(move |db| signing::postgres::sign_first_attempts(db, &b, sign)).await,
        }
    }

    async fn latest_attempts(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Attempt>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
        self.db.read(move |conn| attempts::latest_attempts(conn, &ids)).await
    }

    async fn stuck(&self, chain_id: u64, older_than_ms: i64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
        self.db.read(move |conn| tracking::stuck(conn, chain_id, older_than_ms, limit)).await
    }

    async fn record_replacements(&self, batch: Vec<Replacement>) -> Result<Vec<bool>, StoreError> {
        self.db.write(move |conn| attempts::record_replacements(conn, batch)).await
    }

    async fn find_attempts(&self, hashes: Vec<B256>) -> Result<Vec<Attempt>, StoreError> {
        let hashes: Vec<String> = hashes.iter().map(hex_hash).collect();

        self.db.read(move |conn| attempts::find_attempts(conn, hashes)).await
    }

    async fn record_inclusions(&self, chain_id: u64, batch: Vec<Inclusion>) -> Result<(), StoreError> {
        self.db.write(move |conn| tracking::record_inclusions(conn, chain_id, batch)).await
    }

    async fn forget_inclusions(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();

        self.db.write(move |conn| tracking::forget_inclusions(conn, ids)).await
    }

    async fn included_up_to(&self, chain_id: u64, max_block: u64) -> Result<Vec<IncludedWithdrawal>, StoreError> {
        // Driven from the status index: only withdrawals that can still finish, so the cost
        // follows what is in flight, not every inclusion ever recorded.
        let open: Vec<&'static str> = [Status::Signed, Status::Sent, Status::SendFailed].into_iter().map(Status::as_str).collect();

        self.db.read(move |conn| tracking::included_up_to(conn, chain_id, max_block, open)).await
    }

    async fn take_stale(&self, status: Status, older_than_ms: i64, limit: i64) -> Result<Vec<Withdrawal>, StoreError> {
        let now = self.clock.now_ms();

        self.db.write(move |conn| withdrawals::take_stale(conn, status, older_than_ms, limit, now)).await
    }

    async fn cursor(&self, chain_id: u64) -> Result<Option<u64>, StoreError> {
        self.db.read(move |conn| tracking::cursor(conn, chain_id)).await
    }

    async fn set_cursor(&self, chain_id: u64, expected: Option<u64>, block: u64) -> Result<bool, StoreError> {
        // One statement each way, so the compare and the set cannot be split by another
        // writer on either backend.

        self.db.write(move |conn| tracking::set_cursor(conn, chain_id, expected, block)).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = self.clock.now_ms();

        self.db.write(move |conn| tracking::acquire_lease(conn, name, holder, ttl_ms, now)).await
    }

    async fn counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        self.db.read(withdrawals::counts).await
    }

    async fn next_nonce(&self, wallet: Address, chain_id: u64) -> Result<Option<u64>, StoreError> {
        self.db.read(move |conn| attempts::next_nonce(conn, wallet, chain_id)).await
    }

    async fn in_flight(&self, chain_id: u64, wallet: Address) -> Result<Vec<InFlight>, StoreError> {
        self.db.read(move |conn| attempts::in_flight(conn, chain_id, wallet)).await
    }

    async fn record_wallet_funds(&self, funds: Vec<WalletFunds>) -> Result<(), StoreError> {
        self.db.write(move |conn| attempts::record_wallet_funds(conn, funds)).await
    }

    async fn wallet_funds(&self) -> Result<Vec<WalletFunds>, StoreError> {
        self.db.read(attempts::wallet_funds).await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.db.write(move |conn| audit::insert_audit(conn, &entry, now)).await
    }

    async fn record_credit(&self, c: CreditRecord, audit: AuditEntry) -> Result<CreditOutcome, StoreError> {
        let now = self.clock.now_ms();

        self.db.write(move |conn| operations::record_credit(conn, c, audit, now)).await
    }

    async fn approve_credit(&self, key: &str, approver: &str, audit: AuditEntry) -> Result<ApproveCreditOutcome, StoreError> {
        let (key, approver) = (key.to_owned(), approver.to_owned());
        let now = self.clock.now_ms();

        self.db.write(move |conn| operations::approve_credit(conn, key, approver, audit, now)).await
    }

    async fn credits_to_apply(&self, limit: i64) -> Result<Vec<CreditRecord>, StoreError> {
        self.db.read(move |conn| operations::credits_to_apply(conn, limit)).await
    }

    async fn credit_applied(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        let now = self.clock.now_ms();

        self.db.write(move |conn| operations::credit_applied(conn, key, now)).await
    }

    async fn attempts_of(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Attempt>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();

        self.db.read(move |conn| attempts::attempts_of(conn, ids)).await
    }

    async fn mark_sent(&self, hashes: Vec<B256>) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let hashes: Vec<String> = hashes.iter().map(hex_hash).collect();

        self.db.write(move |conn| attempts::mark_sent(conn, hashes, now)).await
    }

    async fn advance_nonce(&self, wallet: Address, chain_id: u64, at_least: u64) -> Result<(u64, u64), StoreError> {
        self.db.write(move |conn| attempts::advance_nonce(conn, wallet, chain_id, at_least)).await
    }

    async fn nonce_owners(&self, chain_id: u64, wallet: Address) -> Result<Vec<NonceOwner>, StoreError> {
        self.db.read(move |conn| attempts::nonce_owners(conn, chain_id, wallet)).await
    }

    async fn resign_displaced(
        &self,
        wallet: Address,
        chain_id: u64,
        batch: Vec<(WithdrawalId, u64)>,
        sign: SignFn,
    ) -> Result<Vec<SignOutcome>, StoreError> {
        let now = self.clock.now_ms();
        // Rare (a nonce taken behind our back), so it signs inside the write transaction:
        // the checks, the new nonces and the attempts commit together or not at all.

        self.db.write(move |conn| attempts::resign_displaced(conn, wallet, chain_id, batch, sign, now)).await
    }

    async fn record_fill(&self, fill: NonceFill) -> Result<bool, StoreError> {
        self.db.write(move |conn| attempts::record_fill(conn, fill)).await
    }

    async fn fills(&self, chain_id: u64, wallet: Address, from_nonce: u64) -> Result<Vec<NonceFill>, StoreError> {
        self.db.read(move |conn| attempts::fills(conn, chain_id, wallet, from_nonce)).await
    }

    async fn record_nonce_check(&self, c: NonceCheck) -> Result<(), StoreError> {
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let (gaps, blocked) = (list(&c.gaps), list(&c.blocked));

        self.db.write(move |conn| attempts::record_nonce_check(conn, c, gaps, blocked)).await
    }

    async fn nonce_checks(&self) -> Result<Vec<NonceCheck>, StoreError> {
        self.db.read(attempts::nonce_checks).await
    }

    async fn request_cancel(&self, req: CancelRequest, audit: AuditEntry) -> Result<bool, StoreError> {
        self.db.write(move |conn| operations::request_cancel(conn, req, audit)).await
    }

    async fn pending_cancels(&self, chain_id: u64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
        self.db.read(move |conn| tracking::pending_cancels(conn, chain_id, limit)).await
    }

    async fn search(&self, f: SearchFilter) -> Result<Vec<Withdrawal>, StoreError> {
        self.db.read(move |conn| withdrawals::search(conn, f)).await
    }

    async fn changes(&self, client_id: String, after: FeedCursor, limit: i64) -> Result<Vec<Change>, StoreError> {
        self.db.read(move |conn| withdrawals::changes(conn, &client_id, after, limit)).await
    }

    async fn record_approval(&self, a: Approval) -> Result<bool, StoreError> {
        self.db.write(move |conn| operations::record_approval(conn, a)).await
    }

    async fn revoke_approvals(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();

        self.db.write(move |conn| operations::revoke_approvals(conn, ids)).await
    }

    async fn approved(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, StoreError> {
        let ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();

        self.db.read(move |conn| operations::approved(conn, ids)).await
    }

    async fn signing_controls(&self) -> Result<Vec<SigningControl>, StoreError> {
        self.db.read(operations::signing_controls).await
    }

    async fn set_signing_control(&self, c: SigningControl, audit: AuditEntry) -> Result<(), StoreError> {
        self.db.write(move |conn| operations::set_signing_control(conn, c, audit)).await
    }

    async fn audit_log(&self, limit: i64, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
        self.db.read(move |conn| audit::audit_log(conn, limit, before)).await
    }

    async fn record_alerts(&self, batch: Vec<AlertRecord>) -> Result<usize, StoreError> {
        self.db.write(move |conn| operations::record_alerts(conn, batch)).await
    }

    async fn alerts(&self, status: Option<String>, limit: i64) -> Result<Vec<AlertRecord>, StoreError> {
        self.db.read(move |conn| operations::alerts(conn, status, limit)).await
    }

    async fn oldest_in(&self, status: Status) -> Result<Option<i64>, StoreError> {
        self.db.read(move |conn| withdrawals::oldest_in(conn, status)).await
    }

    async fn attempts_at(&self, chain_id: u64, wallet: Address, nonces: Vec<u64>) -> Result<Vec<AttemptAtNonce>, StoreError> {
        self.db.read(move |conn| attempts::attempts_at(conn, chain_id, wallet, nonces)).await
    }
}
