//! Adapters: the ports implemented over real systems. The embedded profile is SQLite for
//! store, queues and balances, local keys, and any JSON-RPC node.

pub mod aws;
pub mod evm;
pub mod pool;
pub mod postgres;
mod record_store;
pub mod redis_balances;
pub mod rpc;
pub(crate) mod schema;
pub mod secrets;
pub mod sqlite;
pub mod sqs;

use crate::ports::PortTypes;

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

/// The database a deployment chose: one SQLite file or PostgreSQL.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
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

/// A deployment whose database, queue and balance backends are chosen in configuration,
/// each on its own (docs/design.md §3).
#[derive(Debug)]
pub struct Configured;

impl PortTypes for Configured {
    type Store = AnyStore;
    type Queue = AnyQueue;
    type Balances = AnyBalances;
    type Chain = evm::EvmChain;
}

mod dispatch {
    use super::*;

    /// The same call on whichever backend the enum holds.
    macro_rules! dispatch {
        ($self:ident, $a:path | $b:path, $x:ident => $call:expr) => {
            match $self {
                $a($x) => $call,
                $b($x) => $call,
            }
        };
    }
    use crate::domain::{Amount, WithdrawalId};
    use crate::ports::*;
    use alloy::primitives::Address;
    use std::time::Duration;

    impl Store for AnyStore {
        async fn submit(&self, batch: Vec<NewWithdrawal>) -> Result<Vec<SubmitOutcome>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.submit(batch).await)
        }

        async fn get(&self, id: &WithdrawalId) -> Result<Option<WithdrawalDetail>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.get(id).await)
        }

        async fn load(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Withdrawal>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.load(ids).await)
        }

        async fn transition(&self, batch: Vec<Transition>) -> Result<Vec<bool>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.transition(batch).await)
        }

        async fn pending_settlements(
            &self,
            older_than_ms: i64,
            ids: Option<Vec<WithdrawalId>>,
            limit: i64,
        ) -> Result<Vec<PendingSettlement>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.pending_settlements(older_than_ms, ids, limit).await)
        }

        async fn settled(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.settled(ids).await)
        }

        async fn init_nonce(&self, wallet: Address, chain_id: u64, chain_next: u64) -> Result<u64, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.init_nonce(wallet, chain_id, chain_next).await)
        }

        async fn wallets(&self, chain_id: u64) -> Result<Vec<Address>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.wallets(chain_id).await)
        }

        async fn sign_first_attempts(
            &self,
            wallet: Address,
            chain_id: u64,
            batch: Vec<WithdrawalId>,
            sign: SignFn,
        ) -> Result<Vec<SignOutcome>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.sign_first_attempts(wallet, chain_id, batch, sign).await)
        }

        async fn latest_attempts(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Attempt>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.latest_attempts(ids).await)
        }

        async fn stuck(&self, chain_id: u64, older_than_ms: i64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.stuck(chain_id, older_than_ms, limit).await)
        }

        async fn record_replacements(&self, batch: Vec<Replacement>) -> Result<Vec<bool>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_replacements(batch).await)
        }

        async fn find_attempts(&self, hashes: Vec<alloy::primitives::B256>) -> Result<Vec<Attempt>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.find_attempts(hashes).await)
        }

        async fn record_inclusions(&self, chain_id: u64, batch: Vec<Inclusion>) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_inclusions(chain_id, batch).await)
        }

        async fn forget_inclusions(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.forget_inclusions(ids).await)
        }

        async fn included_up_to(&self, chain_id: u64, max_block: u64) -> Result<Vec<IncludedWithdrawal>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.included_up_to(chain_id, max_block).await)
        }

        async fn take_stale(&self, status: crate::domain::Status, older_than_ms: i64, limit: i64) -> Result<Vec<Withdrawal>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.take_stale(status, older_than_ms, limit).await)
        }

        async fn cursor(&self, chain_id: u64) -> Result<Option<u64>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.cursor(chain_id).await)
        }

        async fn set_cursor(&self, chain_id: u64, expected: Option<u64>, block: u64) -> Result<bool, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.set_cursor(chain_id, expected, block).await)
        }

        async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.acquire_lease(name, holder, ttl_ms).await)
        }

        async fn counts(&self) -> Result<Vec<(crate::domain::Status, i64)>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.counts().await)
        }

        async fn next_nonce(&self, wallet: Address, chain_id: u64) -> Result<Option<u64>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.next_nonce(wallet, chain_id).await)
        }

        async fn in_flight(&self, chain_id: u64, wallet: Address) -> Result<Vec<InFlight>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.in_flight(chain_id, wallet).await)
        }

        async fn record_wallet_funds(&self, funds: Vec<WalletFunds>) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_wallet_funds(funds).await)
        }

        async fn wallet_funds(&self) -> Result<Vec<WalletFunds>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.wallet_funds().await)
        }

        async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.audit(entry).await)
        }

        async fn record_credit(&self, credit: CreditRecord, audit: AuditEntry) -> Result<CreditOutcome, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_credit(credit, audit).await)
        }

        async fn approve_credit(&self, key: &str, approver: &str, audit: AuditEntry) -> Result<ApproveCreditOutcome, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.approve_credit(key, approver, audit).await)
        }

        async fn credits_to_apply(&self, limit: i64) -> Result<Vec<CreditRecord>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.credits_to_apply(limit).await)
        }

        async fn credit_applied(&self, key: &str) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.credit_applied(key).await)
        }

        async fn attempts_of(&self, ids: Vec<WithdrawalId>) -> Result<Vec<Attempt>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.attempts_of(ids).await)
        }

        async fn mark_sent(&self, hashes: Vec<alloy::primitives::B256>) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.mark_sent(hashes).await)
        }

        async fn advance_nonce(&self, wallet: Address, chain_id: u64, at_least: u64) -> Result<(u64, u64), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.advance_nonce(wallet, chain_id, at_least).await)
        }

        async fn nonce_owners(&self, chain_id: u64, wallet: Address) -> Result<Vec<NonceOwner>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.nonce_owners(chain_id, wallet).await)
        }

        async fn resign_displaced(
            &self,
            wallet: Address,
            chain_id: u64,
            batch: Vec<(WithdrawalId, u64)>,
            sign: SignFn,
        ) -> Result<Vec<SignOutcome>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.resign_displaced(wallet, chain_id, batch, sign).await)
        }

        async fn record_fill(&self, fill: NonceFill) -> Result<bool, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_fill(fill).await)
        }

        async fn fills(&self, chain_id: u64, wallet: Address, from_nonce: u64) -> Result<Vec<NonceFill>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.fills(chain_id, wallet, from_nonce).await)
        }

        async fn record_nonce_check(&self, check: NonceCheck) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_nonce_check(check).await)
        }

        async fn nonce_checks(&self) -> Result<Vec<NonceCheck>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.nonce_checks().await)
        }

        async fn request_cancel(&self, req: CancelRequest, audit: AuditEntry) -> Result<bool, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.request_cancel(req, audit).await)
        }

        async fn pending_cancels(&self, chain_id: u64, limit: i64) -> Result<Vec<(Withdrawal, Attempt)>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.pending_cancels(chain_id, limit).await)
        }

        async fn search(&self, filter: SearchFilter) -> Result<Vec<Withdrawal>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.search(filter).await)
        }

        async fn record_approval(&self, approval: Approval) -> Result<bool, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_approval(approval).await)
        }

        async fn revoke_approvals(&self, ids: Vec<WithdrawalId>) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.revoke_approvals(ids).await)
        }

        async fn approved(&self, ids: Vec<WithdrawalId>) -> Result<Vec<WithdrawalId>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.approved(ids).await)
        }

        async fn signing_controls(&self) -> Result<Vec<SigningControl>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.signing_controls().await)
        }

        async fn set_signing_control(&self, control: SigningControl, audit: AuditEntry) -> Result<(), StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.set_signing_control(control, audit).await)
        }

        async fn audit_log(&self, limit: i64, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.audit_log(limit, before).await)
        }

        async fn record_alerts(&self, alerts: Vec<AlertRecord>) -> Result<usize, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.record_alerts(alerts).await)
        }

        async fn oldest_in(&self, status: crate::domain::Status) -> Result<Option<i64>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.oldest_in(status).await)
        }

        async fn attempts_at(&self, chain_id: u64, wallet: Address, nonces: Vec<u64>) -> Result<Vec<AttemptAtNonce>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.attempts_at(chain_id, wallet, nonces).await)
        }

        async fn alerts(&self, status: Option<String>, limit: i64) -> Result<Vec<AlertRecord>, StoreError> {
            dispatch!(self, AnyStore::Sqlite | AnyStore::Postgres, s => s.alerts(status, limit).await)
        }
    }

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

    impl Keys for AnyKeys {
        fn wallets(&self) -> Vec<Address> {
            dispatch!(self, AnyKeys::Local | AnyKeys::SecretsManager, k => k.wallets())
        }
        fn sign(&self, wallet: Address, tx: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
            dispatch!(self, AnyKeys::Local | AnyKeys::SecretsManager, k => k.sign(wallet, tx))
        }
    }
}
