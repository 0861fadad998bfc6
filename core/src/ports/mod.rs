//! Ports: one trait per capability the stages need (store, queue, balances, keys, chain,
//! clock). Stages see only these; adapters implement them. Calls are batched by design:
//! a stage works on up to hundreds of withdrawals per call, which is what makes the embedded
//! profile reach thousands of withdrawals per second on one SQLite file.

mod chain;
mod records;

pub use chain::*;
pub use records::*;

use crate::domain::{Amount, WithdrawalId};
use alloy::primitives::Address;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The adapter types of one deployment profile.
pub trait PortTypes: Send + Sync + 'static {
    type Store: Store;
    type Queue: Queue;
    type Balances: Balances;
    type Chain: Chain;
}

/// One deployment's adapters, shared by every stage in the process.
pub struct Ports<T: PortTypes> {
    pub store: T::Store,
    pub queue: T::Queue,
    pub balances: T::Balances,
    /// One entry per configured chain id.
    pub chains: HashMap<u64, T::Chain>,
    pub clock: Arc<dyn Clock>,
}

/// The error of a library below an adapter (the database driver, the Redis client, the AWS
/// SDK), kept whole as the source of the port's error so it can be walked and downcast.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failures of the record store. Any of them means "not written": callers retry or leave
/// the queue message for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database or its driver failed; `retryable` is the adapter's reading of it (a
    /// lock, a serialization failure, a lost connection).
    #[error("{}: {source}", if *retryable { "database unavailable" } else { "database query failed" })]
    Database {
        retryable: bool,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Transient failures clear by themselves (a locked or restarting database).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Database { retryable: true, .. })
    }
}

/// Signs withdrawals' transfers at the nonces the store allocated, answering per item in
/// order; errors are messages (never key material). A batch, so that keys held elsewhere
/// (KMS) can sign it concurrently rather than one round trip after another.
pub type SignFn = Box<dyn FnMut(&[(&Withdrawal, u64)]) -> Vec<Result<SignedTx, String>> + Send>;

/// A [`SignFn`] from a function that signs one transfer at a time.
pub fn sign_each(mut f: impl FnMut(&Withdrawal, u64) -> Result<SignedTx, String> + Send + 'static) -> SignFn {
    Box::new(move |items: &[(&Withdrawal, u64)]| items.iter().map(|(w, nonce)| f(w, *nonce)).collect())
}

/// Signs one transfer with a batch signer.
pub fn sign_one(sign: &mut SignFn, w: &Withdrawal, nonce: u64) -> Result<SignedTx, String> {
    sign(&[(w, nonce)]).pop().unwrap_or_else(|| Err("the signer answered nothing".into()))
}

/// The database: the record of every withdrawal, attempt and transition.
pub trait Store: Send + Sync + 'static {
    /// Records new requests, idempotently per (client, idempotency key): a repeat with the
    /// same request hash returns the existing id, a different hash is a conflict.
    fn submit(&self, batch: Vec<NewWithdrawal>) -> impl Future<Output = Result<Vec<SubmitOutcome>, StoreError>> + Send;

    fn get(&self, id: &WithdrawalId) -> impl Future<Output = Result<Option<WithdrawalDetail>, StoreError>> + Send;

    fn load(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<Vec<Withdrawal>, StoreError>> + Send;

    /// Applies status changes, each only if the withdrawal is still in `from`; returns
    /// for each whether it applied. Every applied change appends a history row.
    fn transition(&self, batch: Vec<Transition>) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Balance changes owed by status changes and not carried out yet: created before
    /// `older_than_ms` and, if `ids` is given, of those withdrawals only.
    fn pending_settlements(
        &self,
        older_than_ms: i64,
        ids: Option<Vec<WithdrawalId>>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<PendingSettlement>, StoreError>> + Send;

    /// Marks these withdrawals' owed balance changes as carried out.
    fn settled(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes sure the store tracks `wallet` on `chain_id`, starting at `chain_next` if it
    /// is new, and returns the store's next nonce for it.
    fn init_nonce(&self, wallet: Address, chain_id: u64, chain_next: u64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Hot wallets the store allocates nonces for on `chain_id`.
    fn wallets(&self, chain_id: u64) -> impl Future<Output = Result<Vec<Address>, StoreError>> + Send;

    /// Allocates the wallet's next nonces and records signed first attempts, moving each
    /// withdrawal RECEIVED -> SIGNED, all in one transaction. `sign` is called with each
    /// allocated nonce; a withdrawal no longer RECEIVED is skipped without taking a nonce,
    /// so a redelivered message can never produce a second transfer.
    fn sign_first_attempts(
        &self,
        wallet: Address,
        chain_id: u64,
        batch: Vec<WithdrawalId>,
        sign: SignFn,
    ) -> impl Future<Output = Result<Vec<SignOutcome>, StoreError>> + Send;

    /// The newest attempt of each withdrawal.
    fn latest_attempts(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;

    /// SENT withdrawals on `chain_id` with no recorded inclusion whose newest attempt was
    /// signed before `older_than_ms`: candidates for a fee bump.
    fn stuck(
        &self,
        chain_id: u64,
        older_than_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Withdrawal, Attempt)>, StoreError>> + Send;

    /// Records replacement attempts (same nonce, higher fees). Each applies only if its
    /// withdrawal is still open with no inclusion and its newest attempt is still the one
    /// replaced; returns for each whether it applied.
    fn record_replacements(&self, batch: Vec<Replacement>) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Of these transaction hashes, the ones that are our attempts.
    fn find_attempts(&self, hashes: Vec<alloy::primitives::B256>) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;

    /// Records where an attempt was mined (idempotent).
    fn record_inclusions(&self, chain_id: u64, batch: Vec<Inclusion>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops recorded inclusions whose block is no longer canonical.
    fn forget_inclusions(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Withdrawals with a recorded inclusion at or below `max_block`, not yet terminal.
    fn included_up_to(&self, chain_id: u64, max_block: u64) -> impl Future<Output = Result<Vec<IncludedWithdrawal>, StoreError>> + Send;

    /// Withdrawals sitting in `status` since before `older_than_ms` (and not nudged since),
    /// marked as nudged now; the reconciler re-enqueues their work.
    fn take_stale(
        &self,
        status: crate::domain::Status,
        older_than_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Withdrawal>, StoreError>> + Send;

    fn cursor(&self, chain_id: u64) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// Moves the chain's cursor to `block` only if it is still `expected` (None: no cursor
    /// yet); false if it moved meanwhile (another tracker, or a rewind after a reorg), so a
    /// stale forward write can never undo a rewind.
    fn set_cursor(&self, chain_id: u64, expected: Option<u64>, block: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes or renews the lease `name` for `holder` until `ttl_ms` from now: true if
    /// `holder` holds it now (it was free, expired, or already its own).
    fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Counts by status, for stats and the bench.
    fn counts(&self) -> impl Future<Output = Result<Vec<(crate::domain::Status, i64)>, StoreError>> + Send;

    /// The wallet's next nonce as the store sees it.
    fn next_nonce(&self, wallet: Address, chain_id: u64) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Transfers signed from `wallet` on `chain_id` that are not mined yet (signed, sent or
    /// dead-lettered without an inclusion): what the wallet's balance must still cover.
    fn in_flight(&self, chain_id: u64, wallet: Address) -> impl Future<Output = Result<Vec<InFlight>, StoreError>> + Send;

    /// Records what the signer saw of a hot wallet's funds.
    fn record_wallet_funds(&self, funds: Vec<WalletFunds>) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn wallet_funds(&self) -> impl Future<Output = Result<Vec<WalletFunds>, StoreError>> + Send;

    fn audit(&self, entry: AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Journals a credit with its audit row in one transaction, idempotently per key.
    fn record_credit(&self, credit: CreditRecord, audit: AuditEntry) -> impl Future<Output = Result<CreditOutcome, StoreError>> + Send;

    /// A second person approves a pending credit (audit row in the same transaction).
    fn approve_credit(
        &self,
        key: &str,
        approver: &str,
        audit: AuditEntry,
    ) -> impl Future<Output = Result<ApproveCreditOutcome, StoreError>> + Send;

    /// Approved credits not yet in the balance store.
    fn credits_to_apply(&self, limit: i64) -> impl Future<Output = Result<Vec<CreditRecord>, StoreError>> + Send;

    /// Marks a credit as applied to the balance store.
    fn credit_applied(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every attempt of these withdrawals.
    fn attempts_of(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;

    /// Notes that a node accepted these attempts (the first time counts).
    fn mark_sent(&self, hashes: Vec<alloy::primitives::B256>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Raises the wallet's next nonce to at least `at_least` (never lowers it); returns
    /// the next nonce before and after.
    fn advance_nonce(&self, wallet: Address, chain_id: u64, at_least: u64) -> impl Future<Output = Result<(u64, u64), StoreError>> + Send;

    /// Open withdrawals (SIGNED, SENT, SEND_FAILED, mined or not: a reorg can unmine
    /// them) whose newest attempt is from `wallet` on `chain_id`: who owns each nonce that
    /// is not final.
    fn nonce_owners(&self, chain_id: u64, wallet: Address) -> impl Future<Output = Result<Vec<NonceOwner>, StoreError>> + Send;

    /// Re-signs transfers whose nonce was consumed on chain by a transaction that is not
    /// ours, at newly allocated nonces, in one transaction. Each `(id, old_nonce)` applies
    /// only if the withdrawal is still SIGNED or SENT, unmined, without a cancel request,
    /// and its newest attempt is still the transfer at `old_nonce` from `wallet`.
    fn resign_displaced(
        &self,
        wallet: Address,
        chain_id: u64,
        batch: Vec<(WithdrawalId, u64)>,
        sign: SignFn,
    ) -> impl Future<Output = Result<Vec<SignOutcome>, StoreError>> + Send;

    /// Records a signed fill; false (nothing recorded) when signing is paused for its chain.
    fn record_fill(&self, fill: NonceFill) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Fills of `wallet` at or above `from_nonce`.
    fn fills(&self, chain_id: u64, wallet: Address, from_nonce: u64) -> impl Future<Output = Result<Vec<NonceFill>, StoreError>> + Send;

    fn record_nonce_check(&self, check: NonceCheck) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The last nonce check of every wallet (wallets never checked have none).
    fn nonce_checks(&self) -> impl Future<Output = Result<Vec<NonceCheck>, StoreError>> + Send;

    /// Records an operator's discard of a signed withdrawal. Returns false if one was
    /// already recorded (the first stands).
    fn request_cancel(&self, req: CancelRequest, audit: AuditEntry) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Withdrawals on `chain_id` with a cancel request, still open and unmined, whose
    /// newest attempt is still a transfer: the cancels to sign.
    fn pending_cancels(&self, chain_id: u64, limit: i64) -> impl Future<Output = Result<Vec<(Withdrawal, Attempt)>, StoreError>> + Send;

    /// Withdrawals matching the filter, newest first.
    fn search(&self, filter: SearchFilter) -> impl Future<Output = Result<Vec<Withdrawal>, StoreError>> + Send;

    /// A client's change feed: its withdrawals' status changes after `after`, in the order
    /// they were committed, at most `limit`. A change committed later is never placed before
    /// a cursor already handed out (see `FeedCursor`).
    fn changes(&self, client_id: String, after: FeedCursor, limit: i64) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;

    /// Records an approval; false if the withdrawal was approved before (the first stands).
    fn record_approval(&self, approval: Approval) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Voids approvals: a withdrawal that went to the invalid DLQ needs a new one if it is
    /// ever reprocessed (what was approved may no longer hold).
    fn revoke_approvals(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Of these withdrawals, the ones approved.
    fn approved(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<Vec<WithdrawalId>, StoreError>> + Send;

    fn signing_controls(&self) -> impl Future<Output = Result<Vec<SigningControl>, StoreError>> + Send;

    /// Sets a pause or resume, with its audit row, in one transaction.
    fn set_signing_control(&self, control: SigningControl, audit: AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The audit log, newest first, before entry `before` if given.
    fn audit_log(&self, limit: i64, before: Option<i64>) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;

    /// Records alerts (deduplicated by fingerprint, the latest state wins); returns how many
    /// were new.
    fn record_alerts(&self, alerts: Vec<AlertRecord>) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// When the withdrawal longest in `status` entered it (ms), if any is: how old the
    /// oldest unmined transfer is, for the "stuck transaction" alert.
    fn oldest_in(&self, status: crate::domain::Status) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Every attempt of `wallet` at these nonces, whatever its withdrawal's status.
    fn attempts_at(
        &self,
        chain_id: u64,
        wallet: Address,
        nonces: Vec<u64>,
    ) -> impl Future<Output = Result<Vec<AttemptAtNonce>, StoreError>> + Send;

    /// Alerts, newest first; only those in `status` if given.
    fn alerts(&self, status: Option<String>, limit: i64) -> impl Future<Output = Result<Vec<AlertRecord>, StoreError>> + Send;
}

/// The four queues of docs/design.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    Requests,
    Signed,
    InvalidDlq,
    TxDlq,
}

impl QueueName {
    pub const ALL: [QueueName; 4] = [QueueName::Requests, QueueName::Signed, QueueName::InvalidDlq, QueueName::TxDlq];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Requests => "requests",
            QueueName::Signed => "signed",
            QueueName::InvalidDlq => "invalid-dlq",
            QueueName::TxDlq => "tx-dlq",
        }
    }

    /// Where a message goes after too many receives (SQS redrive policy).
    pub fn dead_letter(self) -> Option<QueueName> {
        match self {
            QueueName::Requests => Some(QueueName::InvalidDlq),
            QueueName::Signed => Some(QueueName::TxDlq),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
    /// When the message was first sent (ms), kept across a redrive to a dead-letter queue:
    /// what the dead-letter sweep compares with the withdrawal's last change.
    pub sent_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub visible: i64,
    pub in_flight: i64,
    pub oldest_age_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue operation failed: {0}")]
    Failed(String),
    /// The queue service refused or could not be reached: `what` names the call and says
    /// what the service answered, and the service's own error is the source.
    #[error("{}: {what}", if *retryable { "queue unavailable" } else { "queue operation failed" })]
    Service {
        what: String,
        retryable: bool,
        #[source]
        source: BoxError,
    },
}

impl QueueError {
    /// A failure of reaching the queue (as opposed to one of the request itself).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_) | QueueError::Service { retryable: true, .. })
    }
}

/// A durable queue with SQS semantics: a received message is invisible for the visibility
/// timeout and comes back unless deleted; after `max_receives` it is redriven to its DLQ.
pub trait Queue: Send + Sync + 'static {
    fn send(&self, queue: QueueName, bodies: Vec<String>) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Up to `max` messages, waiting up to `wait` for the first one (long polling).
    fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, QueueError>> + Send;

    /// Deletes processed messages. Called only after the database commit they depend on.
    fn ack(&self, queue: QueueName, receipts: Vec<String>) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Keeps received messages hidden for `visibility` from now: the heartbeat of work that
    /// may outlast the visibility timeout. A receipt of an older delivery does nothing.
    fn extend(&self, queue: QueueName, receipts: Vec<String>, visibility: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;

    fn stats(&self, queue: QueueName) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    /// This withdrawal already holds (or held) its reservation: a redelivery.
    AlreadyReserved,
    Insufficient {
        available: Amount,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Balance {
    pub credited: Amount,
    pub reserved: Amount,
    pub spent: Amount,
}

impl Balance {
    pub fn available(&self) -> Amount {
        self.credited.checked_sub(self.reserved).and_then(|a| a.checked_sub(self.spent)).unwrap_or(Amount::ZERO)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("balance store unavailable: {0}")]
    Unavailable(String),
    #[error("balance operation failed: {0}")]
    Failed(String),
    #[error("balance arithmetic overflow for user {0}")]
    Overflow(String),
    /// The balance store's server or client failed: `what` names the call, and the
    /// client's own error is the source.
    #[error("{}: {what}: {source}", if *retryable { "balance store unavailable" } else { "balance operation failed" })]
    Backend {
        what: String,
        retryable: bool,
        #[source]
        source: BoxError,
    },
}

impl BalanceError {
    /// Transient failures clear by themselves (the store down or restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, BalanceError::Unavailable(_) | BalanceError::Backend { retryable: true, .. })
    }
}

/// User balances: credited, reserved and spent per (user, asset). Reserve, commit and
/// release are atomic and idempotent per withdrawal id, so redeliveries never double-count.
pub trait Balances: Send + Sync + 'static {
    /// Adds `amount` to the user's credited total, once per `credit_id`: a repeat of the
    /// same id changes nothing and returns the balance.
    fn credit(
        &self,
        credit_id: &str,
        user_id: &str,
        asset: &str,
        amount: Amount,
    ) -> impl Future<Output = Result<Balance, BalanceError>> + Send;
    fn reserve(&self, batch: Vec<Reservation>) -> impl Future<Output = Result<Vec<ReserveOutcome>, BalanceError>> + Send;
    /// Commits reservations (reserved -> spent); idempotent. Returns the ids that have no
    /// reservation at all (never taken, or lost by the store).
    fn commit(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<Vec<WithdrawalId>, BalanceError>> + Send;
    /// Releases reservations (reserved -> available); idempotent. Returns the ids that have
    /// no reservation at all.
    fn release(&self, ids: Vec<WithdrawalId>) -> impl Future<Output = Result<Vec<WithdrawalId>, BalanceError>> + Send;
    fn get(&self, user_id: &str, asset: &str) -> impl Future<Output = Result<Balance, BalanceError>> + Send;
}

#[derive(Debug, Clone)]
pub struct Reservation {
    pub withdrawal_id: WithdrawalId,
    pub user_id: String,
    pub asset: String,
    pub amount: Amount,
}

/// Milliseconds since the Unix epoch; a port so tests can move time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}
