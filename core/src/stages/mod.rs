//! Pipeline stages: each reads its ports, runs the state machine, and applies the effects.
//! A stage carries one type parameter, the profile's `PortTypes` (see `crate::ports`).

mod bump;
mod intake;
mod nonces;
mod operator;
mod send;
mod sign;
mod track;

pub use bump::{Bumper, BumperConfig};
pub use intake::{FieldError, Intake, IntakeConfig, ValidRequest, WithdrawalRequest, request_hash, validate};
pub use nonces::{NonceKeeper, NonceKeeperConfig};
pub use operator::{
    ActionError, ActionOutcome, CreditAnswer, OperatorAction, apply_credits, approve, approve_credit, credit, discard, reject, reprocess,
    set_signing,
};
pub use send::{Sender, SenderConfig};
pub use sign::{Signer, SignerConfig};
pub use track::{Tracker, TrackerConfig};

use crate::domain::{Status, WithdrawalId};
use crate::machine::{self, Effect, Event};
use crate::ports::*;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Balance(#[from] BalanceError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("no chain {0} is configured")]
    UnknownChain(u64),
    #[error("signing failed: {0}")]
    Signing(String),
    /// The process is stopping (a stage's writer or receiver is gone): the work was not done.
    #[error("{0}")]
    Shutdown(&'static str),
    /// The stage was not set up to do this work (no hot-wallet key loaded, a wallet without a
    /// nonce lane): configuration or data to fix, not a wait.
    #[error("{0}")]
    Setup(&'static str),
    /// A bounded queue in front of a stage is full: try again shortly.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
}

impl StageError {
    /// Whether waiting and trying again can help (as opposed to an operator fixing
    /// configuration or data).
    pub fn is_retryable(&self) -> bool {
        match self {
            StageError::Store(e) => e.is_retryable(),
            StageError::Queue(_) | StageError::Overloaded(_) => true,
            StageError::Balance(e) => e.is_retryable(),
            StageError::Chain(e) => e.is_retryable(),
            StageError::UnknownChain(_) | StageError::Signing(_) | StageError::Shutdown(_) | StageError::Setup(_) => false,
        }
    }
}

/// A decided event for one withdrawal.
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: WithdrawalId,
    pub from: Status,
    pub event: Event,
    pub reason: Option<String>,
}

/// Runs decisions through the state machine and applies them: the conditional status
/// writes, each together with the balance change it owes (commit or release, in the same
/// transaction), then the effects of the writes that won: the owed balance changes carried
/// out at once (the reconciler's settler retries any that fail, so a crash or a balance
/// store outage between the two writes frees nothing twice and loses nothing), then the
/// queue sends. A lost race writes nothing, so it never settles funds a winner holds.
/// Returns the decisions that were applied, with the status they reached.
pub async fn apply<T: PortTypes>(
    ports: &Ports<T>,
    actor: &str,
    decisions: Vec<Decision>,
) -> Result<Vec<(WithdrawalId, Status)>, StageError> {
    apply_audited(ports, actor, decisions, None).await
}

/// The body prefix of a dead-letter notice: the pipeline announcing a withdrawal it moved
/// to a dead-letter status, as opposed to a message redriven there after failed deliveries.
/// The sweep only acknowledges notices.
pub const DLQ_NOTICE: &str = "notice:";

/// Builds an operator's audit row for a decision and the status it reaches.
pub(crate) type AuditOf<'a> = dyn Fn(&Decision, Status) -> AuditEntry + Sync + 'a;

/// `apply` for one operator's decisions, with the audit row written in the same
/// transaction as each status change that applies (DESIGN §6: audited with the change).
pub(crate) async fn apply_audited<T: PortTypes>(
    ports: &Ports<T>,
    actor: &str,
    decisions: Vec<Decision>,
    audit: Option<&AuditOf<'_>>,
) -> Result<Vec<(WithdrawalId, Status)>, StageError> {
    let mut steps = Vec::with_capacity(decisions.len());
    for d in decisions {
        match machine::step(d.from, d.event) {
            Ok(step) => steps.push((d, step)),
            Err(forbidden) => tracing::warn!(withdrawal.id = %d.id, error = %forbidden, "transition refused"),
        }
    }
    let settle_of = |s: &machine::Step| {
        if s.effects.contains(&Effect::CommitReservation) {
            Some(Settle::Commit)
        } else if s.effects.contains(&Effect::ReleaseReservation) {
            Some(Settle::Release)
        } else {
            None
        }
    };
    let transitions = steps
        .iter()
        .filter(|(d, s)| s.to != d.from)
        .map(|(d, s)| Transition {
            id: d.id.clone(),
            from: d.from,
            to: s.to,
            reason: d.reason.clone(),
            actor: actor.to_owned(),
            settle: settle_of(s),
            audit: audit.map(|f| f(d, s.to)),
        })
        .collect();
    let applied = ports.store.transition(transitions).await?;
    let mut applied = applied.into_iter();
    let mut won = Vec::new();
    // The balance changes owed by the writes that won, and only by those: two decisions for
    // one withdrawal in a batch move it once, and only the winner's settlement is carried out.
    let mut owed: Vec<PendingSettlement> = Vec::new();
    for (d, s) in &steps {
        // Self-transitions write nothing and always "win".
        let ok = if s.to == d.from { true } else { applied.next().unwrap_or(false) };
        if ok {
            if s.to != d.from
                && let Some(settle) = settle_of(s)
            {
                owed.push(PendingSettlement { withdrawal_id: d.id.clone(), settle, from: d.from, created_at_ms: 0 });
            }
            won.push((d.id.clone(), s));
        } else {
            tracing::debug!(withdrawal.id = %d.id, from = %d.from, "status moved on meanwhile; decision dropped");
        }
    }
    let ids_with =
        |e: Effect| -> Vec<WithdrawalId> { won.iter().filter(|(_, s)| s.effects.contains(&e)).map(|(id, _)| id.clone()).collect() };
    if let Err(e) = settle(ports, owed).await {
        // Written with the status: the reconciler's settler carries it out later.
        tracing::warn!(error = %e, "settling balances after a status change failed; the settler will retry");
    }
    for (effect, queue) in [
        (Effect::EnqueueRequest, QueueName::Requests),
        (Effect::EnqueueSigned, QueueName::Signed),
        (Effect::ToInvalidDlq, QueueName::InvalidDlq),
        (Effect::ToTxDlq, QueueName::TxDlq),
    ] {
        let ids = ids_with(effect);
        if !ids.is_empty() {
            // Into a dead-letter queue goes a notice, told apart from a redriven message: sent
            // after the commit, it can land after an operator has already reprocessed the
            // withdrawal, and the sweep must not take it for a poison message then.
            let bodies = match queue {
                QueueName::InvalidDlq | QueueName::TxDlq => ids.iter().map(|i| format!("{DLQ_NOTICE}{i}")).collect(),
                _ => ids.iter().map(|i| i.to_string()).collect(),
            };
            // A lost send is recovered by the reconciler (the status is already written).
            if let Err(e) = ports.queue.send(queue, bodies).await {
                tracing::warn!(queue = queue.as_str(), error = %e, "enqueue after transition failed; reconciler will retry");
            }
        }
    }
    // SignCancel is carried by a cancel request the operator action records (it needs the
    // operator's name and reason); the signer's bumper signs it.
    for (id, s) in &won {
        metrics::counter!("withdraw_transitions_total", "to" => s.to.as_str()).increment(1);
        tracing::info!(withdrawal.id = %id, status = %s.to, actor, "withdrawal status changed");
    }
    Ok(won.into_iter().map(|(id, s)| (id, s.to)).collect())
}

/// Carries out owed balance changes (commits, releases; idempotent) and marks them done.
/// A reservation that should exist and does not (a balance store that lost writes) is
/// counted, logged at error and alerted on: the books no longer match the record, and
/// `withdrawd balances reconcile` rebuilds them.
pub async fn settle<T: PortTypes>(ports: &Ports<T>, owed: Vec<PendingSettlement>) -> Result<usize, StageError> {
    if owed.is_empty() {
        return Ok(0);
    }
    // A withdrawal does not move while it owes a settlement, so one whose status no longer
    // owes this one was settled by someone else (an operator's reprocess settles first) and
    // has moved on: its row is gone, and a release now could free a newer reservation.
    let current: HashMap<WithdrawalId, Status> =
        ports.store.load(owed.iter().map(|o| o.withdrawal_id.clone()).collect()).await?.into_iter().map(|w| (w.id, w.status)).collect();
    let still_owed = |o: &PendingSettlement| match (o.settle, current.get(&o.withdrawal_id)) {
        (Settle::Commit, Some(Status::Completed)) => true,
        (Settle::Release, Some(s)) => matches!(s, Status::Invalid | Status::Rejected | Status::Failed | Status::Cancelled),
        _ => false,
    };
    let mut done = Vec::with_capacity(owed.len());
    for kind in [Settle::Commit, Settle::Release] {
        let items: Vec<&PendingSettlement> = owed.iter().filter(|o| o.settle == kind && still_owed(o)).collect();
        if items.is_empty() {
            continue;
        }
        let ids: Vec<WithdrawalId> = items.iter().map(|o| o.withdrawal_id.clone()).collect();
        let missing = match kind {
            Settle::Commit => ports.balances.commit(ids.clone()).await?,
            Settle::Release => ports.balances.release(ids.clone()).await?,
        };
        for o in items.iter().filter(|o| missing.contains(&o.withdrawal_id)) {
            // Refused before a reservation was taken (insufficient balance, unknown asset),
            // or rejected from the invalid DLQ after that: nothing to release, as expected.
            if o.settle == Settle::Release && matches!(o.from, Status::Received | Status::Invalid) {
                continue;
            }
            metrics::counter!("withdraw_reservation_missing_total", "action" => kind.as_str()).increment(1);
            tracing::error!(withdrawal.id = %o.withdrawal_id, action = kind.as_str(), from = %o.from, "reservation missing on settle: the balance store lost it; run `withdrawd balances reconcile`");
        }
        done.extend(ids);
    }
    let n = done.len();
    ports.store.settled(done).await?;
    metrics::counter!("withdraw_settlements_total").increment(n as u64);
    Ok(n)
}

/// Runs `work` on received messages while keeping them hidden: every third of the
/// visibility timeout their visibility is extended, so a slow batch (a database under load,
/// RPC failover) is not redelivered to another replica while it is still being worked.
pub(crate) async fn with_heartbeat<T: PortTypes, F: std::future::Future>(
    ports: &Ports<T>,
    queue: QueueName,
    receipts: Vec<String>,
    visibility: std::time::Duration,
    work: F,
) -> F::Output {
    let every = (visibility / 3).max(std::time::Duration::from_millis(100));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = beat.tick() => {
                match ports.queue.extend(queue, receipts.clone(), visibility).await {
                    Ok(()) => tracing::debug!(queue = queue.as_str(), messages = receipts.len(), "visibility extended"),
                    Err(e) => tracing::warn!(queue = queue.as_str(), error = %e, "extending visibility failed; messages may be redelivered"),
                }
            }
        }
    }
}

/// The newest block whose transactions count as final on `chain`, given a head read just
/// before: `head - (n - 1)` for n confirmations (None while the chain is shorter), or the
/// node's `finalized` block, never above that head. The tracker finishes withdrawals by
/// it and the nonce check settles foreign nonce use by it: one notion of settled.
pub async fn final_block<C: Chain>(chain: &C, head: u64) -> Result<Option<u64>, ChainError> {
    match chain.finality() {
        Finality::Confirmations(n) => Ok((head + 1).checked_sub(n.max(1))),
        Finality::Finalized => Ok(Some(chain.finalized().await?.min(head))),
    }
}

/// Notes that a stage finished a unit of work now: "no progress" alerts watch this.
pub fn mark_processed(stage: &'static str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    metrics::gauge!("withdraw_stage_last_processed_timestamp_seconds", "stage" => stage).set(now);
}

/// Parses queue bodies (withdrawal ids), dropping duplicates within a batch; returns the
/// ids with every receipt that carried them, and the receipts of unreadable bodies.
fn parse_deliveries(deliveries: Vec<Delivery>) -> (Vec<(WithdrawalId, Vec<String>)>, Vec<String>) {
    let mut out: Vec<(WithdrawalId, Vec<String>)> = Vec::new();
    let mut index: HashMap<WithdrawalId, usize> = HashMap::new();
    let mut junk = Vec::new();
    for d in deliveries {
        match WithdrawalId::parse(d.body.trim()) {
            Some(id) => match index.get(&id) {
                Some(&i) => out[i].1.push(d.receipt),
                None => {
                    index.insert(id.clone(), out.len());
                    out.push((id, vec![d.receipt]));
                }
            },
            None => {
                tracing::error!(body_len = d.body.len(), "unreadable queue message dropped");
                junk.push(d.receipt);
            }
        }
    }
    (out, junk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Embedded;
    use crate::adapters::sqlite::{Sqlite, SqliteBalances, SqliteQueue};
    use crate::adapters::store::RecordStore;
    use std::sync::Arc;
    use std::time::Duration;

    /// A batch that takes longer than its messages' visibility timeout: while the heartbeat
    /// runs no other consumer receives them; once the work ends (here: a worker that never
    /// acks), they come back.
    #[tokio::test]
    async fn the_heartbeat_keeps_a_slow_batch_from_a_second_consumer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("t.db")).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ports = Ports::<Embedded> {
            store: RecordStore::new(db.clone(), clock.clone()),
            queue: SqliteQueue::new(db.clone(), clock.clone(), 5),
            balances: SqliteBalances::new(db, clock.clone()),
            chains: HashMap::new(),
            clock,
        };
        let vis = Duration::from_millis(300);
        ports.queue.send(QueueName::Requests, vec!["slow".into()]).await.unwrap();
        let got = ports.queue.receive(QueueName::Requests, 10, vis, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        let receipts = got.iter().map(|d| d.receipt.clone()).collect();
        let other_consumer = &ports.queue;
        let work = async {
            // Three times the visibility timeout, looking as a second consumer would.
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let stolen = other_consumer.receive(QueueName::Requests, 10, vis, Duration::ZERO).await.unwrap();
                assert!(stolen.is_empty(), "redelivered while still being worked");
            }
            "worked"
        };
        assert_eq!(with_heartbeat(&ports, QueueName::Requests, receipts, vis, work).await, "worked");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let back = ports.queue.receive(QueueName::Requests, 10, vis, Duration::ZERO).await.unwrap();
        assert_eq!(back.len(), 1, "an unacked message comes back once its heartbeat stops");
    }
}
