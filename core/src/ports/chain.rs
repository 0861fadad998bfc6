//! The chain port: what the stages ask of an EVM node, batched, plus the keys port that
//! signs. Send errors are classified here once, because the sender's choice between "done",
//! "retry" and "dead-letter" depends on nothing else.

use alloy::primitives::{Address, B256, Bytes, U256};
use std::future::Future;

/// What a transaction offers for gas, in wei per unit. An EIP-1559 transaction offers a
/// max fee and a priority fee; a legacy one (a chain without EIP-1559, configured so) pays
/// `max_fee_per_gas` as its gas price and carries the same value as its priority fee, so
/// the replacement rule (+10% on both fields) and the cap read it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// Signed as a legacy (type 0, EIP-155) transaction with gas price `max_fee_per_gas`.
    pub legacy: bool,
}

impl Fees {
    pub fn eip1559(max_fee_per_gas: u128, max_priority_fee_per_gas: u128) -> Fees {
        Fees { max_fee_per_gas, max_priority_fee_per_gas, legacy: false }
    }

    pub fn legacy(gas_price: u128) -> Fees {
        Fees { max_fee_per_gas: gas_price, max_priority_fee_per_gas: gas_price, legacy: true }
    }
}

/// When a mined transaction counts as final on a chain: a number of blocks (1 = mined), or
/// the chain's own `finalized` block, which is what proof-of-stake Ethereum and the rollups
/// promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    Confirmations(u64),
    Finalized,
}

#[derive(Debug, Clone)]
pub struct TxReceipt {
    pub tx_hash: B256,
    pub from: Address,
    pub block_number: u64,
    pub block_hash: B256,
    pub success: bool,
    /// The receipt's ERC-20 `Transfer` logs: a token payment is proven by one of these,
    /// never by `success` alone (a token may return false without reverting).
    pub transfers: Vec<TransferLog>,
}

/// One `Transfer(from, to, amount)` log, with the contract that emitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLog {
    pub token: Address,
    pub from: Address,
    pub to: Address,
    pub amount: U256,
}

/// `keccak256("Transfer(address,address,uint256)")`, the ERC-20 event's topic.
pub const TRANSFER_TOPIC: B256 = alloy::primitives::b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

#[derive(Debug, Clone)]
pub struct BlockReceipts {
    pub number: u64,
    pub hash: B256,
    pub receipts: Vec<TxReceipt>,
}

/// Why a node refused or failed a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// Connection refused, reset, timed out, 5xx, 429: the call may or may not have landed.
    #[error("rpc transport error: {1}")]
    Transport(TransportKind, String),
    #[error("node returned a malformed answer: {0}")]
    Malformed(String),
    #[error("node rejected the call: {code} {message}")]
    Rpc { code: i64, message: String },
}

/// What kind of transport failure, decided where it happens (the HTTP client), so health
/// accounting never parses messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP 429: the provider is rate-limiting us.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    Timeout,
    /// Refused, reset, unreadable answers, no endpoint to ask.
    Other,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::RateLimited => "rate_limited",
            TransportKind::ServerError => "http_5xx",
            TransportKind::Timeout => "timeout",
            TransportKind::Other => "transport",
        }
    }
}

impl ChainError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ChainError::Malformed(_))
    }
}

/// Fragments of node answers that mean the transaction itself can never be accepted as
/// signed: retrying the same bytes cannot help, so it goes to the tx dead-letter queue.
const PERMANENT_REFUSALS: &[&str] = &[
    "invalid sender",
    "invalid signature",
    "invalid chain id",
    "chain id mismatch",
    "intrinsic gas too low",
    "exceeds block gas limit",
    "gas limit reached",
    "oversized data",
    "transaction type not supported",
    "tx type not supported",
    "max priority fee per gas higher than max fee per gas",
    "tip higher than fee cap",
    "only replay-protected",
];

/// The sender's view of one `eth_sendRawTransaction` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    Accepted,
    /// The node already has it: as good as accepted.
    AlreadyKnown,
    /// The nonce is used on chain. Classified from the node's answer; the sender then
    /// looks for our own attempts' receipts and, finding none, makes it
    /// `NonceTakenElsewhere`.
    NonceTooLow,
    /// The nonce was used by a transaction that is not one of this withdrawal's attempts.
    NonceTakenElsewhere,
    ReplacementUnderpriced,
    InsufficientFunds,
    FeeCapExceeded,
    /// Transport failure or timeout: unknown whether it landed; retry the same bytes.
    Unknown(String),
    /// Any other refusal by the node.
    Rejected(String),
}

impl SendResult {
    /// Classifies a node's JSON-RPC error message. Node implementations word these
    /// differently (geth, anvil, erigon, nethermind); match on the stable fragments.
    pub fn classify(message: &str) -> SendResult {
        // Lower case, and "NONCE_TOO_LOW" (Besu) read as "nonce too low".
        let m = message.to_ascii_lowercase().replace('_', " ");
        if m.contains("already known") || m.contains("already imported") || m.contains("known transaction") || m.contains("already exists")
        {
            SendResult::AlreadyKnown
        } else if m.contains("nonce too low") || m.contains("nonce is too low") || m.contains("oldnonce") {
            SendResult::NonceTooLow
        } else if m.contains("replacement transaction underpriced") || m.contains("underpriced") {
            SendResult::ReplacementUnderpriced
        } else if m.contains("insufficient funds") {
            SendResult::InsufficientFunds
        } else if m.contains("fee cap")
            || m.contains("exceeds the configured cap")
            || m.contains("max fee per gas less than block base fee")
        {
            SendResult::FeeCapExceeded
        } else if PERMANENT_REFUSALS.iter().any(|f| m.contains(f)) {
            SendResult::Rejected(message.to_owned())
        } else {
            // Not a refusal we know to be final ("txpool is full", a provider's -32005 rate
            // limit inside HTTP 200, a proxy's hiccup): the node may take it later, and a
            // dead-letter would block the wallet's lane until an operator acts. Retried with
            // the queue's back-off; only repeated failure redrives it to the tx DLQ.
            SendResult::Unknown(message.to_owned())
        }
    }

    /// The broadcast did its job (the node has the transaction, or its nonce is used, by
    /// one of our attempts once the sender has checked).
    pub fn is_sent(&self) -> bool {
        matches!(self, SendResult::Accepted | SendResult::AlreadyKnown | SendResult::NonceTooLow)
    }

    /// Worth trying again later with the same bytes.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendResult::Unknown(_) | SendResult::InsufficientFunds | SendResult::FeeCapExceeded)
    }
}

/// An RPC endpoint's tier: primaries serve reads first; backups take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointTier {
    Primary,
    Backup,
}

impl EndpointTier {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointTier::Primary => "primary",
            EndpointTier::Backup => "backup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointState {
    /// Answers, serves our chain, within the allowed lag: serves reads and broadcasts.
    Healthy,
    /// Answers but behind (or ahead of) the corroborated head: broadcasts only.
    Lagging,
    /// Failing: its circuit is open until a half-open probe succeeds.
    Down,
    /// Serves another chain id: never used until it serves ours again.
    Quarantined,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Lagging => "lagging",
            EndpointState::Down => "down",
            EndpointState::Quarantined => "quarantined",
        }
    }
}

/// One endpoint's health as the pool sees it.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    pub name: String,
    pub tier: EndpointTier,
    pub weight: u32,
    pub state: EndpointState,
    pub head: Option<u64>,
    /// Corroborated head minus this endpoint's head (negative: ahead).
    pub lag: i64,
    pub latency_ms: Option<f64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub since_ms: i64,
    /// The endpoint reads go to now.
    pub serving_reads: bool,
}

/// One chain's nodes, as the stages see them.
pub trait Chain: Send + Sync + 'static {
    fn chain_id(&self) -> u64;
    /// Whether any endpoint can serve reads now; while not, stages hold this chain's work
    /// (no dead-letter churn, no nonces taken) and it resumes by itself.
    fn available(&self) -> bool;
    /// Every endpoint's health, for metrics and the admin API.
    fn endpoints(&self) -> Vec<EndpointHealth>;
    /// The highest max_fee_per_gas we may ever sign on this chain, in wei.
    fn max_fee_cap(&self) -> u128;
    /// When this chain's transactions count as final.
    fn finality(&self) -> Finality;
    fn head(&self) -> impl Future<Output = Result<u64, ChainError>> + Send;
    /// The number of the block the node calls `finalized`.
    fn finalized(&self) -> impl Future<Output = Result<u64, ChainError>> + Send;
    fn fees(&self) -> impl Future<Output = Result<Fees, ChainError>> + Send;
    /// Broadcasts raw transactions in one batch, in the given order.
    fn send_raw(&self, raws: Vec<Bytes>) -> impl Future<Output = Result<Vec<SendResult>, ChainError>> + Send;
    /// All receipts of each block in `from..=to`.
    fn block_receipts(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<BlockReceipts>, ChainError>> + Send;
    /// Canonical hashes of these block numbers (None past the head).
    fn block_hashes(&self, numbers: Vec<u64>) -> impl Future<Output = Result<Vec<Option<B256>>, ChainError>> + Send;
    /// As [`block_hashes`](Chain::block_hashes), with the number of the block the node
    /// calls `finalized`, both from one node in one request: a hash and a finality that
    /// agree, never one node's hash paired with another node's finalized block.
    fn block_hashes_and_finalized(&self, numbers: Vec<u64>) -> impl Future<Output = Result<(Vec<Option<B256>>, u64), ChainError>> + Send;
    fn receipts(&self, hashes: Vec<B256>) -> impl Future<Output = Result<Vec<Option<TxReceipt>>, ChainError>> + Send;
    fn nonce(&self, address: Address, pending: bool) -> impl Future<Output = Result<u64, ChainError>> + Send;
    /// The account's transaction count as of block `block` (what was mined up to it).
    fn nonce_at(&self, address: Address, block: u64) -> impl Future<Output = Result<u64, ChainError>> + Send;
    fn balance(&self, address: Address) -> impl Future<Output = Result<U256, ChainError>> + Send;
    /// ERC-20 `balanceOf(holder)` at the latest block.
    fn token_balance(&self, token: Address, holder: Address) -> impl Future<Output = Result<U256, ChainError>> + Send;
}

/// A request to sign, built by the signer stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedTransfer {
    pub chain_id: u64,
    pub nonce: u64,
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub gas_limit: u64,
    pub fees: Fees,
}

impl UnsignedTransfer {
    /// Gas of a 0-value transfer to an externally owned account.
    pub const SELF_TRANSFER_GAS: u64 = 21_000;

    /// A 0-value transfer from `wallet` to itself: it moves nothing but takes the nonce.
    /// Cancels and nonce fills are this.
    pub fn self_transfer(chain_id: u64, wallet: Address, nonce: u64, fees: Fees) -> UnsignedTransfer {
        UnsignedTransfer { chain_id, nonce, to: wallet, value: U256::ZERO, input: Bytes::new(), gas_limit: Self::SELF_TRANSFER_GAS, fees }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no hot-wallet key for {0}")]
    UnknownWallet(Address),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("could not load hot-wallet key: {0}")]
    Load(String),
}

/// Hot-wallet keys. Only the signer role constructs an implementation; the key material
/// never leaves it.
pub trait Keys: Send + Sync + 'static {
    fn wallets(&self) -> Vec<Address>;
    fn sign(&self, wallet: Address, tx: &UnsignedTransfer) -> Result<super::SignedTx, KeyError>;
    /// Signs several transfers of one wallet, answering per transfer in order. Keys held in
    /// this process sign one after another (ECDSA here is microseconds); keys held by a
    /// service (KMS) sign them concurrently.
    fn sign_many(&self, wallet: Address, txs: &[UnsignedTransfer]) -> Vec<Result<super::SignedTx, KeyError>> {
        txs.iter().map(|t| self.sign(wallet, t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(msg: &str, expect: SendResult) {
        assert_eq!(SendResult::classify(msg), expect, "{msg}");
    }

    #[test]
    fn classifies_node_errors() {
        check("already known", SendResult::AlreadyKnown);
        check("transaction already imported", SendResult::AlreadyKnown);
        check("nonce too low: next nonce 5, tx nonce 3", SendResult::NonceTooLow);
        check("replacement transaction underpriced", SendResult::ReplacementUnderpriced);
        check("insufficient funds for gas * price + value", SendResult::InsufficientFunds);
        check("tx fee (1.20 ether) exceeds the configured cap (1.00 ether)", SendResult::FeeCapExceeded);
        check("invalid sender", SendResult::Rejected("invalid sender".into()));
        check("intrinsic gas too low", SendResult::Rejected("intrinsic gas too low".into()));
        // Unknown refusals are retried, never dead-lettered on first sight.
        check("txpool is full", SendResult::Unknown("txpool is full".into()));
        check("NONCE_TOO_LOW", SendResult::NonceTooLow);
        check("invalid transaction: nonce too high", SendResult::Unknown("invalid transaction: nonce too high".into()));
        check("limit exceeded", SendResult::Unknown("limit exceeded".into()));
        assert!(SendResult::classify("txpool is full").is_retryable());
        assert!(SendResult::NonceTooLow.is_sent());
        assert!(!SendResult::Rejected("x".into()).is_sent());
        assert!(SendResult::Unknown("timeout".into()).is_retryable());
    }
}
