//! Adapters: the ports implemented over real systems. The embedded profile is SQLite for
//! store, queues and balances, local keys, and any JSON-RPC node.

pub mod aws;
pub mod evm;
pub mod kms;
pub mod pool;
pub mod postgres;
pub mod redis_balances;
pub mod rpc;
pub(crate) mod schema;
pub mod secrets;
pub mod sqlite;
pub mod sqs;
pub mod store;

use crate::ports::PortTypes;

/// The embedded profile: one SQLite file for the record, the queues and the balances, and
/// JSON-RPC nodes for the chain.
#[derive(Debug)]
pub struct Embedded;

impl PortTypes for Embedded {
    type Store = store::RecordStore;
    type Queue = sqlite::SqliteQueue;
    type Balances = sqlite::SqliteBalances;
    type Chain = evm::EvmChain;
}

/// The queues a deployment chose: the SQLite file's tables or Amazon SQS.
#[derive(Clone)]
pub enum AnyQueue {
    Sqlite(sqlite::SqliteQueue),
    Sqs(sqs::SqsQueue),
}

/// The balance store a deployment chose: the SQLite file's tables or Redis.
#[derive(Clone)]
pub enum AnyBalances {
    Sqlite(sqlite::SqliteBalances),
    Redis(redis_balances::RedisBalances),
}

/// Where one group of hot-wallet keys lives: this process (keystore, environment, file),
/// Secrets Manager, or KMS (never in this process).
#[derive(Debug)]
pub enum KeySource {
    Local(evm::LocalKeys),
    SecretsManager(secrets::SecretsManagerKeys),
    Kms(kms::KmsKeys),
}

/// The signer's wallets, each from the source configured for it; KMS wallets sit beside
/// local or Secrets Manager ones.
#[derive(Debug)]
pub struct AnyKeys {
    sources: Vec<KeySource>,
}

impl AnyKeys {
    /// Refuses a wallet held by two sources: which key signs must never be ambiguous.
    pub fn new(sources: Vec<KeySource>) -> Result<AnyKeys, crate::ports::KeyError> {
        use crate::ports::Keys;
        let keys = AnyKeys { sources };
        let mut seen = std::collections::HashSet::new();
        for w in keys.wallets() {
            if !seen.insert(w) {
                return Err(crate::ports::KeyError::Load(format!("wallet {} is configured in two key sources", w.to_checksum(None))));
            }
        }
        if seen.is_empty() {
            return Err(crate::ports::KeyError::Load("no hot-wallet key is configured".into()));
        }
        Ok(keys)
    }

    fn source_of(&self, wallet: alloy::primitives::Address) -> Option<&KeySource> {
        use crate::ports::Keys;
        self.sources.iter().find(|s| s.wallets().contains(&wallet))
    }
}

/// A deployment whose database, queue and balance backends are chosen in configuration,
/// each on its own (docs/design.md §3).
#[derive(Debug)]
pub struct Configured;

impl PortTypes for Configured {
    type Store = store::RecordStore;
    type Queue = AnyQueue;
    type Balances = AnyBalances;
    type Chain = evm::EvmChain;
}

mod dispatch {
    use super::*;

    /// The same call on whichever backend the enum holds.
    macro_rules! dispatch {
        ($self:ident, $($variant:path)|+, $x:ident => $call:expr) => {
            match $self {
                $($variant($x) => $call,)+
            }
        };
    }
    use crate::domain::{Amount, WithdrawalId};
    use crate::ports::*;
    use alloy::primitives::Address;
    use std::time::Duration;

    impl Queue for AnyQueue {
        async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
            dispatch!(self, AnyQueue::Sqlite | AnyQueue::Sqs, q => q.send(queue, bodies).await)
        }
        async fn receive(&self, queue: QueueName, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
            dispatch!(self, AnyQueue::Sqlite | AnyQueue::Sqs, q => q.receive(queue, max, visibility, wait).await)
        }
        async fn ack(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
            dispatch!(self, AnyQueue::Sqlite | AnyQueue::Sqs, q => q.ack(queue, receipts).await)
        }
        async fn extend(&self, queue: QueueName, receipts: Vec<String>, visibility: Duration) -> Result<(), QueueError> {
            dispatch!(self, AnyQueue::Sqlite | AnyQueue::Sqs, q => q.extend(queue, receipts, visibility).await)
        }
        async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
            dispatch!(self, AnyQueue::Sqlite | AnyQueue::Sqs, q => q.stats(queue).await)
        }
    }

    impl Balances for AnyBalances {
        async fn credit(&self, credit_id: &str, user_id: &str, asset: &str, amount: Amount) -> Result<Balance, BalanceError> {
            dispatch!(self, AnyBalances::Sqlite | AnyBalances::Redis, b => b.credit(credit_id, user_id, asset, amount).await)
        }
        async fn reserve(&self, batch: Vec<Reservation>) -> Result<Vec<ReserveOutcome>, BalanceError> {
            dispatch!(self, AnyBalances::Sqlite | AnyBalances::Redis, b => b.reserve(batch).await)
        }
        async fn commit(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
            dispatch!(self, AnyBalances::Sqlite | AnyBalances::Redis, b => b.commit(ids).await)
        }
        async fn release(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, BalanceError> {
            dispatch!(self, AnyBalances::Sqlite | AnyBalances::Redis, b => b.release(ids).await)
        }
        async fn get(&self, user_id: &str, asset: &str) -> Result<Balance, BalanceError> {
            dispatch!(self, AnyBalances::Sqlite | AnyBalances::Redis, b => b.get(user_id, asset).await)
        }
    }

    impl Keys for KeySource {
        fn wallets(&self) -> Vec<Address> {
            dispatch!(self, KeySource::Local | KeySource::SecretsManager | KeySource::Kms, k => k.wallets())
        }
        fn sign(&self, wallet: Address, tx: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
            dispatch!(self, KeySource::Local | KeySource::SecretsManager | KeySource::Kms, k => k.sign(wallet, tx))
        }
        fn sign_many(&self, wallet: Address, txs: &[UnsignedTransfer]) -> Vec<Result<SignedTx, KeyError>> {
            dispatch!(self, KeySource::Local | KeySource::SecretsManager | KeySource::Kms, k => k.sign_many(wallet, txs))
        }
    }

    impl Keys for AnyKeys {
        fn wallets(&self) -> Vec<Address> {
            self.sources.iter().flat_map(|s| s.wallets()).collect()
        }
        fn sign(&self, wallet: Address, tx: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
            self.source_of(wallet).ok_or(KeyError::UnknownWallet(wallet))?.sign(wallet, tx)
        }
        fn sign_many(&self, wallet: Address, txs: &[UnsignedTransfer]) -> Vec<Result<SignedTx, KeyError>> {
            match self.source_of(wallet) {
                Some(s) => s.sign_many(wallet, txs),
                None => txs.iter().map(|_| Err(KeyError::UnknownWallet(wallet))).collect(),
            }
        }
    }
}
