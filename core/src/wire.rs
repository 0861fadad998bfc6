//! Versioned JSON shapes of the HTTP APIs, shared by the daemon and the console. These are
//! not domain types: renaming a field here is a breaking API change, so they change only
//! with a new version.

use serde::{Deserialize, Serialize};

/// `POST /v1/withdrawals` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequestV1 {
    pub user_id: String,
    pub asset: String,
    pub chain_id: u64,
    pub to: String,
    /// Decimal string in whole units, e.g. "0.25".
    pub amount: String,
}

/// 202 answer to a submission.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcceptedV1 {
    pub id: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptV1 {
    pub tx_hash: String,
    pub kind: String,
    pub wallet: String,
    pub nonce: u64,
    pub max_fee_per_gas: String,
    pub max_priority_fee_per_gas: String,
    pub gas_limit: u64,
    pub created_at_ms: i64,
    /// When a node first accepted it.
    pub sent_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryV1 {
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
    pub actor: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionV1 {
    pub tx_hash: String,
    pub block_number: u64,
    pub block_hash: String,
    pub success: bool,
}

/// `GET /v1/withdrawals/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawalV1 {
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub user_id: String,
    pub asset: String,
    pub chain_id: u64,
    pub to: String,
    /// Whole units, as submitted (normalised).
    pub amount: String,
    pub amount_base_units: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub attempts: Vec<AttemptV1>,
    pub inclusion: Option<InclusionV1>,
    /// Blocks on top of and including the inclusion block, as last seen by the tracker.
    pub confirmations: u64,
    pub history: Vec<HistoryV1>,
    /// An operator's discard being carried out by a cancel transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelV1>,
}

/// `POST /admin/v1/balances/credit` answered 202: the credit waits for a second person
/// (`POST /admin/v1/credits/{key}/approve`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreditPendingV1 {
    pub credit: String,
    pub state: String,
    pub requested_by: String,
}

/// `POST /admin/v1/balances/credit` body (with an `Idempotency-Key` header).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditRequestV1 {
    pub user_id: String,
    pub asset: String,
    pub amount: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalanceV1 {
    pub user_id: String,
    pub asset: String,
    pub credited: String,
    pub reserved: String,
    pub spent: String,
    pub available: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueStatsV1 {
    pub name: String,
    pub visible: i64,
    pub in_flight: i64,
    pub oldest_age_seconds: Option<f64>,
}

/// `GET /admin/v1/stats`: counts by status and queue depths.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsV1 {
    pub statuses: std::collections::BTreeMap<String, i64>,
    pub queues: Vec<QueueStatsV1>,
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProblemV1 {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldErrorV1>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldErrorV1 {
    pub field: String,
    pub message: String,
}

/// `GET /admin/v1/hot-wallets`: one entry per wallet and chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotWalletV1 {
    pub chain_id: u64,
    pub wallet: String,
    /// Next nonce the store will allocate.
    pub next_nonce: Option<u64>,
    /// The nonce check's last view; None until the signer has checked once.
    pub nonces: Option<NonceLaneV1>,
    /// What the signer last saw of the wallet's funds, per asset.
    pub funds: Vec<WalletAssetV1>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NonceLaneV1 {
    pub chain_latest: u64,
    pub chain_pending: u64,
    /// Signed and not yet mined: next_nonce - chain_latest.
    pub in_flight: u64,
    /// Nonces nothing of ours will fill, being filled by 0-value self-transfers.
    pub gaps: Vec<u64>,
    /// Nonces held by withdrawals in the tx dead-letter queue: later ones wait on them.
    pub blocked: Vec<u64>,
    pub checked_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletAssetV1 {
    pub asset: String,
    /// Whole units.
    pub balance: String,
    pub in_flight: String,
    /// Non-zero while withdrawals are held for lack of funds.
    pub short_by: String,
    pub held: u64,
    pub updated_at_ms: i64,
}

/// `POST /admin/v1/withdrawals/{id}/reprocess|discard`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequestV1 {
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResultV1 {
    pub id: String,
    /// `moved`, `cancel_requested` or `already_cancelling`.
    pub outcome: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelV1 {
    pub actor: String,
    pub reason: String,
    pub requested_at_ms: i64,
}

/// `GET /admin/v1/rpc`: every chain's endpoints and their health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcEndpointV1 {
    pub chain_id: u64,
    pub name: String,
    /// `primary` or `backup`.
    pub tier: String,
    pub weight: u32,
    /// `healthy`, `lagging`, `down` or `quarantined`.
    pub state: String,
    pub head: Option<u64>,
    /// Corroborated head minus this endpoint's head (negative: ahead).
    pub lag: i64,
    pub latency_ms: Option<f64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Since when it is in this state.
    pub since_ms: i64,
    pub serving_reads: bool,
}

/// `GET /v1/withdrawals?updated_after=<cursor>&limit=`: a client's status changes in the
/// order they were committed. `next` is the cursor to ask with next (the one given, when
/// nothing changed since).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedV1 {
    pub changes: Vec<ChangeV1>,
    pub next: String,
}

/// One status change, and the withdrawal as it is now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeV1 {
    /// This change's place in the feed: asking with it as `updated_after` resumes after it.
    pub cursor: String,
    pub previous_status: Option<String>,
    pub status: String,
    pub at_ms: i64,
    pub withdrawal: WithdrawalSummaryV1,
}

/// A withdrawal in a list (search, dead-letter queues, approvals).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawalSummaryV1 {
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub user_id: String,
    pub asset: String,
    pub chain_id: u64,
    pub to: String,
    pub amount: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `POST /admin/v1/dlq/{invalid|tx}/{reprocess|discard}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkActionRequestV1 {
    pub ids: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkItemV1 {
    pub id: String,
    /// `moved`, `cancel_requested`, `already_cancelling`, or absent on error.
    pub outcome: Option<String>,
    pub status: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkActionResultV1 {
    pub results: Vec<BulkItemV1>,
}

/// `POST /admin/v1/signing/{pause|resume}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequestV1 {
    pub reason: String,
    /// One chain; absent for every chain.
    #[serde(default)]
    pub chain_id: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningControlV1 {
    /// `all` or a chain id.
    pub scope: String,
    pub paused: bool,
    pub actor: String,
    pub reason: String,
    pub updated_at_ms: i64,
}

/// `GET /admin/v1/signing`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningStateV1 {
    pub paused_all: bool,
    pub paused_chains: Vec<u64>,
    pub controls: Vec<SigningControlV1>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntryV1 {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertV1 {
    pub fingerprint: String,
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

/// `GET /admin/v1/me`: who the token is, so the console can hide what it may not do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeV1 {
    pub name: String,
    pub roles: Vec<String>,
}

/// Alertmanager's webhook payload (version 4), as far as we read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerWebhookV4 {
    pub version: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<AlertmanagerAlertV4>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlertV4 {
    pub status: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub generator_url: Option<String>,
    pub fingerprint: String,
}
