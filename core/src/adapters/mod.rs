//! Adapters: the ports implemented over real systems. The embedded profile is SQLite for
//! store, queues and balances, local keys, and any JSON-RPC node.

pub mod aws;
pub mod evm;
pub mod pool;
pub mod redis_balances;
pub mod rpc;
pub mod secrets;
pub mod sqlite;
pub mod sqs;

use crate::stages::PortTypes;

/// The embedded profile: one SQLite file for the record, the queues and the balances, and
/// JSON-RPC nodes for the chain.
#[derive(Debug)]
pub struct Embedded;

impl PortTypes for Embedded {
    type Store = sqlite::SqliteStore;
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

/// Hot-wallet keys: local (keystore, environment, file) or from Secrets Manager.
#[derive(Debug)]
pub enum AnyKeys {
    Local(evm::LocalKeys),
    SecretsManager(secrets::SecretsManagerKeys),
}

/// A deployment whose queue and balance backends are chosen in configuration, each on its
/// own (DESIGN.md §3); the record is on SQLite.
#[derive(Debug)]
pub struct Configured;

impl PortTypes for Configured {
    type Store = sqlite::SqliteStore;
    type Queue = AnyQueue;
    type Balances = AnyBalances;
    type Chain = evm::EvmChain;
}

mod dispatch {
    use super::*;
    use crate::domain::{Amount, WithdrawalId};
    use crate::ports::*;
    use alloy::primitives::Address;
    use std::time::Duration;

    impl Queue for AnyQueue {
        async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
            match self {
                AnyQueue::Sqlite(q) => q.send(queue, bodies).await,
                AnyQueue::Sqs(q) => q.send(queue, bodies).await,
            }
        }
        async fn receive(&self, queue: QueueName, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
            match self {
                AnyQueue::Sqlite(q) => q.receive(queue, max, visibility, wait).await,
                AnyQueue::Sqs(q) => q.receive(queue, max, visibility, wait).await,
            }
        }
        async fn ack(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
            match self {
                AnyQueue::Sqlite(q) => q.ack(queue, receipts).await,
                AnyQueue::Sqs(q) => q.ack(queue, receipts).await,
            }
        }
        async fn extend(&self, queue: QueueName, receipts: Vec<String>, visibility: Duration) -> Result<(), QueueError> {
            match self {
                AnyQueue::Sqlite(q) => q.extend(queue, receipts, visibility).await,
                AnyQueue::Sqs(q) => q.extend(queue, receipts, visibility).await,
            }
        }
        async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
            match self {
                AnyQueue::Sqlite(q) => q.stats(queue).await,
                AnyQueue::Sqs(q) => q.stats(queue).await,
            }
        }
    }

    impl Balances for AnyBalances {
        async fn credit(&self, user_id: &str, asset: &str, amount: Amount) -> Result<Balance, BalanceError> {
            match self {
                AnyBalances::Sqlite(b) => b.credit(user_id, asset, amount).await,
                AnyBalances::Redis(b) => b.credit(user_id, asset, amount).await,
            }
        }
        async fn reserve(&self, batch: Vec<Reservation>) -> Result<Vec<ReserveOutcome>, BalanceError> {
            match self {
                AnyBalances::Sqlite(b) => b.reserve(batch).await,
                AnyBalances::Redis(b) => b.reserve(batch).await,
            }
        }
        async fn commit(&self, ids: Vec<WithdrawalId>) -> Result<(), BalanceError> {
            match self {
                AnyBalances::Sqlite(b) => b.commit(ids).await,
                AnyBalances::Redis(b) => b.commit(ids).await,
            }
        }
        async fn release(&self, ids: Vec<WithdrawalId>) -> Result<(), BalanceError> {
            match self {
                AnyBalances::Sqlite(b) => b.release(ids).await,
                AnyBalances::Redis(b) => b.release(ids).await,
            }
        }
        async fn get(&self, user_id: &str, asset: &str) -> Result<Balance, BalanceError> {
            match self {
                AnyBalances::Sqlite(b) => b.get(user_id, asset).await,
                AnyBalances::Redis(b) => b.get(user_id, asset).await,
            }
        }
    }

    impl Keys for AnyKeys {
        fn wallets(&self) -> Vec<Address> {
            match self {
                AnyKeys::Local(k) => k.wallets(),
                AnyKeys::SecretsManager(k) => k.wallets(),
            }
        }
        fn sign(&self, wallet: Address, tx: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
            match self {
                AnyKeys::Local(k) => k.sign(wallet, tx),
                AnyKeys::SecretsManager(k) => k.sign(wallet, tx),
            }
        }
    }
}
