//! Records exchanged with the store. These are the stages' view of a withdrawal, not the
//! storage rows (adapters map) nor the HTTP shapes (`wire.rs`).

use crate::domain::{Amount, Status, WithdrawalId};
use alloy::primitives::{Address, B256, Bytes};

#[derive(Debug, Clone)]
pub struct NewWithdrawal {
    pub id: WithdrawalId,
    pub client_id: String,
    pub idempotency_key: String,
    /// Hash of the canonical request; equal hashes mean "the same request again".
    pub request_hash: String,
    pub user_id: String,
    pub asset: String,
    pub chain_id: u64,
    pub to: Address,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Created {
        id: WithdrawalId,
    },
    Existing {
        id: WithdrawalId,
        status: Status,
    },
    /// Same idempotency key, different request.
    Conflict {
        id: WithdrawalId,
    },
}

#[derive(Debug, Clone)]
pub struct Withdrawal {
    pub id: WithdrawalId,
    pub client_id: String,
    pub user_id: String,
    pub asset: String,
    pub chain_id: u64,
    pub to: Address,
    pub amount: Amount,
    pub status: Status,
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Transition {
    pub id: WithdrawalId,
    pub from: Status,
    pub to: Status,
    pub reason: Option<String>,
    /// Who caused it: a stage name, or `operator:<name>`.
    pub actor: String,
    /// The balance change this status owes, recorded in the same transaction (so a crash
    /// after the status write cannot lose it) and carried out by the settler.
    pub settle: Option<Settle>,
    /// An operator's audit row, written in the same transaction if the change applies.
    pub audit: Option<AuditEntry>,
}

/// What a status change does to the withdrawal's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Settle {
    /// The reservation becomes spent (COMPLETED).
    Commit,
    /// The reservation returns to available (INVALID, REJECTED, FAILED, CANCELLED).
    Release,
}

impl Settle {
    pub fn as_str(self) -> &'static str {
        match self {
            Settle::Commit => "commit",
            Settle::Release => "release",
        }
    }
}

/// A balance change owed by a status change and not yet carried out.
#[derive(Debug, Clone)]
pub struct PendingSettlement {
    pub withdrawal_id: WithdrawalId,
    pub settle: Settle,
    /// The status the withdrawal left: from RECEIVED a release may find no reservation
    /// (refused before one was taken); from anywhere later one must exist.
    pub from: Status,
    pub created_at_ms: i64,
}

/// A signed transaction as produced by the keys port.
#[derive(Clone)]
pub struct SignedTx {
    pub hash: B256,
    pub raw: Bytes,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub gas_limit: u64,
}

impl std::fmt::Debug for SignedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedTx").field("hash", &self.hash).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum SignOutcome {
    Signed {
        id: WithdrawalId,
        hash: B256,
        raw: Bytes,
        nonce: u64,
    },
    /// Not RECEIVED any more (a redelivery, or another signer won): nothing taken.
    Skipped {
        id: WithdrawalId,
        status: Status,
    },
    /// Signing is paused for its chain, read inside the write transaction: nothing was
    /// signed or recorded, no nonce taken; hold it until resumed.
    Paused {
        id: WithdrawalId,
    },
    /// The key refused to sign; no nonce was consumed.
    SignError {
        id: WithdrawalId,
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    Transfer,
    Cancel,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Transfer => "transfer",
            AttemptKind::Cancel => "cancel",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub withdrawal_id: WithdrawalId,
    pub tx_hash: B256,
    pub wallet: Address,
    pub chain_id: u64,
    pub nonce: u64,
    pub kind: AttemptKind,
    pub raw: Bytes,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub gas_limit: u64,
    pub created_at_ms: i64,
    /// When a node first accepted it; None until then.
    pub sent_at_ms: Option<i64>,
}

/// A new attempt at the same nonce as `replaces`, with higher fees.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub replaces: B256,
    pub attempt: Attempt,
}

/// Where an attempt was mined.
#[derive(Debug, Clone)]
pub struct Inclusion {
    pub withdrawal_id: WithdrawalId,
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
    /// The receipt succeeded *and* proves the payment (for a token, its `Transfer` log).
    pub success: bool,
    /// Why a mined transfer does not count as paid, when it does not.
    pub failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IncludedWithdrawal {
    pub withdrawal: Withdrawal,
    pub inclusion: Inclusion,
    pub kind: AttemptKind,
}

#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub from: Option<Status>,
    pub to: Status,
    pub reason: Option<String>,
    pub actor: String,
    pub at_ms: i64,
}

/// A position in a change feed: after the history row `id` written by transaction `tx`.
/// Rows are served in (tx, id) order and only once every transaction before them has ended,
/// so no row can later appear before a cursor already handed out. On SQLite `tx` is 0 (one
/// writer: ids are in commit order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct FeedCursor {
    pub tx: i64,
    pub id: i64,
}

impl FeedCursor {
    /// The opaque form clients hand back: `c1.<tx>.<id>`.
    pub fn encode(self) -> String {
        format!("c1.{}.{}", self.tx, self.id)
    }

    pub fn decode(s: &str) -> Option<FeedCursor> {
        let mut parts = s.strip_prefix("c1.")?.split('.');
        let tx = parts.next()?.parse().ok().filter(|t: &i64| *t >= 0)?;
        let id = parts.next()?.parse().ok().filter(|i: &i64| *i >= 0)?;
        parts.next().is_none().then_some(FeedCursor { tx, id })
    }
}

/// One status change of a withdrawal, as the feed serves it, with the withdrawal as it is now.
#[derive(Debug, Clone)]
pub struct Change {
    pub cursor: FeedCursor,
    pub withdrawal: Withdrawal,
    pub from: Option<Status>,
    pub to: Status,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct WithdrawalDetail {
    pub withdrawal: Withdrawal,
    pub attempts: Vec<Attempt>,
    pub history: Vec<HistoryEntry>,
    pub inclusion: Option<Inclusion>,
    /// An operator's discard waiting on (or decided by) a cancel transaction.
    pub cancel: Option<CancelRequest>,
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub detail: String,
}

/// An operator's credit of a user's balance, journaled in the database (with its audit row,
/// in one transaction) before the balance store is changed; idempotent per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditRecord {
    pub idempotency_key: String,
    /// Hash of (user, asset, amount, reason): the same key with another request conflicts.
    pub request_hash: String,
    pub user_id: String,
    pub asset: String,
    pub amount: Amount,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub state: CreditState,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditState {
    /// Above the asset's credit threshold: waits for a second person.
    PendingApproval,
    /// To be applied to the balance store (the settler retries until it is).
    Approved,
    /// In the balance store.
    Applied,
}

impl CreditState {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditState::PendingApproval => "pending_approval",
            CreditState::Approved => "approved",
            CreditState::Applied => "applied",
        }
    }

    pub fn parse(s: &str) -> Option<CreditState> {
        Some(match s {
            "pending_approval" => CreditState::PendingApproval,
            "approved" => CreditState::Approved,
            "applied" => CreditState::Applied,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutcome {
    Created(CreditRecord),
    /// The same key and request again: the first one, as it stands now.
    Existing(CreditRecord),
    /// The same key with another request.
    Conflict(CreditRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveCreditOutcome {
    Approved(CreditRecord),
    /// Not waiting for approval (already approved or applied).
    NotPending(CreditRecord),
    /// The approver is the one who asked for it.
    SamePerson,
    NotFound,
}

/// One unmined transfer's claim on its wallet: the asset amount and the worst-case gas.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub asset: String,
    pub amount: Amount,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
}

/// A hot wallet's funds in one asset as the signer last saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletFunds {
    pub chain_id: u64,
    pub wallet: Address,
    pub asset: String,
    pub balance: Amount,
    pub in_flight: Amount,
    /// Zero unless withdrawals are held for lack of funds.
    pub short_by: Amount,
    /// Withdrawals held for lack of funds.
    pub held: u64,
    pub updated_at_ms: i64,
}

/// An operator's request to give up on a signed withdrawal: its nonce is taken over by a
/// 0-value self-transfer, and whichever of the two is mined decides.
#[derive(Debug, Clone)]
pub struct CancelRequest {
    pub withdrawal_id: WithdrawalId,
    pub actor: String,
    pub reason: String,
    pub requested_at_ms: i64,
}

/// A 0-value self-transfer filling a nonce that no open withdrawal owns.
#[derive(Debug, Clone)]
pub struct NonceFill {
    pub chain_id: u64,
    pub wallet: Address,
    pub nonce: u64,
    pub tx_hash: B256,
    pub raw: Bytes,
    pub max_fee_per_gas: u128,
    pub created_at_ms: i64,
}

/// What the nonce check saw of one wallet's nonce lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceCheck {
    pub chain_id: u64,
    pub wallet: Address,
    /// The store's next nonce (after any correction).
    pub next_nonce: u64,
    pub chain_latest: u64,
    pub chain_pending: u64,
    /// Nonces below `next_nonce`, not mined, that no open withdrawal owns (being filled).
    pub gaps: Vec<u64>,
    /// Nonces held by withdrawals in the tx dead-letter queue: every later nonce waits on
    /// an operator's reprocess or discard.
    pub blocked: Vec<u64>,
    pub checked_at_ms: i64,
}

/// An open withdrawal's claim on a nonce, for the nonce check.
#[derive(Debug, Clone)]
pub struct NonceOwner {
    pub withdrawal_id: WithdrawalId,
    pub status: Status,
    pub nonce: u64,
    /// The newest attempt's kind: a cancel means an operator already gave up on it.
    pub kind: AttemptKind,
    /// The tracker has recorded one of its attempts mined (not final yet).
    pub mined: bool,
    /// When its newest attempt was signed.
    pub signed_at_ms: i64,
    /// Every attempt's hash (bumps and cancels): any of them mined settles the nonce.
    pub hashes: Vec<B256>,
}

/// What operators search withdrawals by. `query` matches a withdrawal id, a user id, a
/// destination address or any attempt's transaction hash exactly.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub status: Option<Status>,
    pub query: Option<String>,
    /// Only withdrawals created before this one (paging, newest first).
    pub before: Option<WithdrawalId>,
    pub limit: i64,
}

/// A pause of signing: for every chain (`chain_id` None) or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningControl {
    pub chain_id: Option<u64>,
    pub paused: bool,
    pub actor: String,
    pub reason: String,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Approval {
    pub withdrawal_id: WithdrawalId,
    pub approver: String,
    pub reason: String,
    pub approved_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub detail: String,
}

/// An alert as received from Alertmanager (latest state per fingerprint).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub name: String,
    pub severity: Option<String>,
    pub summary: Option<String>,
    /// The `withdraw-console --goto …` command that opens the right view.
    pub console: Option<String>,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub received_at_ms: i64,
}

/// A signed attempt at a given nonce, with its withdrawal's status and, if the tracker
/// recorded one, the hash it saw mined for that withdrawal.
#[derive(Debug, Clone)]
pub struct AttemptAtNonce {
    pub attempt: Attempt,
    pub status: Status,
    pub mined_hash: Option<B256>,
}
