//! The SQLite adapters: queue semantics, balance atomicity, idempotent submission.

use super::ManualClock;
use alloy::primitives::{Address, B256, U256};
use std::sync::Arc;
use std::time::Duration;
use withdraw_core::adapters::sqlite::{Sqlite, SqliteQueue};
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::domain::{Amount, WithdrawalId};
use withdraw_core::ports::*;

fn db() -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("t.db")).unwrap();
    (dir, db)
}

const VIS: Duration = Duration::from_secs(30);

#[tokio::test]
async fn queue_hides_redelivers_and_acks_by_delivery() {
    let (_d, db) = db();
    let clock = ManualClock::new(1_000_000);
    let q = SqliteQueue::new(db, clock.clone(), 5);
    q.send(QueueName::Requests, vec!["a".into(), "b".into(), "c".into()]).await.unwrap();

    let first = q.receive(QueueName::Requests, 2, VIS, Duration::ZERO).await.unwrap();
    assert_eq!(first.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(first.iter().all(|d| d.receive_count == 1));
    let second = q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap();
    assert_eq!(second.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["c"]);
    assert!(q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap().is_empty(), "in-flight messages stay hidden");
    let st = q.stats(QueueName::Requests).await.unwrap();
    assert_eq!((st.visible, st.in_flight), (0, 3));

    q.ack(QueueName::Requests, vec![second[0].receipt.clone()]).await.unwrap();
    clock.advance_ms(30_001);
    let again = q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap();
    assert_eq!(again.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["a", "b"], "unacked messages come back");
    assert!(again.iter().all(|d| d.receive_count == 2));

    // The first delivery's receipt is stale now: acking with it must not delete the message
    // another consumer is working on.
    q.ack(QueueName::Requests, vec![first[0].receipt.clone()]).await.unwrap();
    clock.advance_ms(30_001);
    let third = q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap();
    assert_eq!(third.len(), 2);
    q.ack(QueueName::Requests, third.iter().map(|d| d.receipt.clone()).collect()).await.unwrap();
    clock.advance_ms(60_000);
    assert!(q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(q.stats(QueueName::Requests).await.unwrap(), QueueStats { visible: 0, in_flight: 0, oldest_age_ms: None });
}

#[tokio::test]
async fn queue_heartbeat_keeps_a_message_hidden_and_ignores_stale_receipts() {
    let (_d, db) = db();
    let clock = ManualClock::new(1_000_000);
    let q = SqliteQueue::new(db, clock.clone(), 5);
    q.send(QueueName::Requests, vec!["slow".into()]).await.unwrap();
    let got = q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap();
    for _ in 0..4 {
        clock.advance_ms(20_000);
        q.extend(QueueName::Requests, vec![got[0].receipt.clone()], VIS).await.unwrap();
        assert!(q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap().is_empty(), "hidden while beating");
    }
    clock.advance_ms(30_001);
    let again = q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1, "back once the heartbeat stops");
    // The first delivery's receipt must not extend the second delivery.
    q.extend(QueueName::Requests, vec![got[0].receipt.clone()], Duration::from_secs(3600)).await.unwrap();
    clock.advance_ms(30_001);
    assert_eq!(q.receive(QueueName::Requests, 10, VIS, Duration::ZERO).await.unwrap().len(), 1, "a stale receipt extended nothing");
}

#[tokio::test]
async fn queue_redrives_to_dead_letter_after_max_receives() {
    let (_d, db) = db();
    let clock = ManualClock::new(1_000_000);
    let q = SqliteQueue::new(db, clock.clone(), 2);
    q.send(QueueName::Signed, vec!["poison".into()]).await.unwrap();
    for n in 1..=2 {
        let d = q.receive(QueueName::Signed, 10, VIS, Duration::ZERO).await.unwrap();
        assert_eq!(d.len(), 1, "delivery {n}");
        clock.advance_ms(31_000);
    }
    assert!(q.receive(QueueName::Signed, 10, VIS, Duration::ZERO).await.unwrap().is_empty(), "third delivery is redriven instead");
    let dlq = q.receive(QueueName::TxDlq, 10, VIS, Duration::ZERO).await.unwrap();
    assert_eq!(dlq.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["poison"]);
    assert_eq!(dlq[0].receive_count, 1, "receive count restarts in the DLQ");
}

#[tokio::test]
async fn queue_long_poll_wakes_on_send() {
    let (_d, db) = db();
    let q = SqliteQueue::new(db, Arc::new(SystemClock), 5);
    let q2 = q.clone();
    let waiter = tokio::spawn(async move { q2.receive(QueueName::Requests, 10, VIS, Duration::from_secs(20)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = std::time::Instant::now();
    q.send(QueueName::Requests, vec!["x".into()]).await.unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(t.elapsed() < Duration::from_secs(5), "receiver should wake on send, not wait out the poll");
}

pub fn wid(n: u32) -> WithdrawalId {
    WithdrawalId::parse(&format!("00000000-0000-7000-8000-{n:012}")).unwrap()
}

pub fn new_w(n: u32, key: &str, hash: &str) -> NewWithdrawal {
    NewWithdrawal {
        id: wid(n),
        client_id: "c".into(),
        idempotency_key: key.into(),
        request_hash: hash.into(),
        user_id: "u".into(),
        asset: "ETH".into(),
        chain_id: 31337,
        to: Address::repeat_byte(7),
        amount: Amount(U256::from(5)),
    }
}

/// Part of the store contract: run on SQLite here and on PostgreSQL in `postgres.rs`.
pub async fn submit_is_idempotent_per_client_key<S: Store>(s: S) {
    let out = s.submit(vec![new_w(1, "k1", "h1"), new_w(2, "k1", "h1"), new_w(3, "k1", "h2"), new_w(4, "k2", "h1")]).await.unwrap();
    assert_eq!(
        out,
        [
            SubmitOutcome::Created { id: wid(1) },
            SubmitOutcome::Existing { id: wid(1), status: withdraw_core::domain::Status::Received },
            SubmitOutcome::Conflict { id: wid(1) },
            SubmitOutcome::Created { id: wid(4) },
        ]
    );
    let again = s.submit(vec![new_w(5, "k2", "h1")]).await.unwrap();
    assert_eq!(again, [SubmitOutcome::Existing { id: wid(4), status: withdraw_core::domain::Status::Received }]);
    let d = s.get(&wid(1)).await.unwrap().unwrap();
    assert_eq!(d.history.len(), 1);
    assert!(s.get(&wid(2)).await.unwrap().is_none(), "a duplicate creates nothing");
}

/// A stand-in for the keys port: a distinct, reproducible hash per (withdrawal, nonce).
pub fn fake_sign() -> SignFn {
    Box::new(|w: &Withdrawal, nonce: u64| {
        let hash = alloy::primitives::keccak256(format!("{}/{nonce}", w.id));
        Ok(SignedTx {
            hash,
            raw: alloy::primitives::Bytes::from(hash.to_vec()),
            max_fee_per_gas: 10,
            max_priority_fee_per_gas: 1,
            gas_limit: 21_000,
        })
    })
}

/// Part of the store contract: run on SQLite here and on PostgreSQL in `postgres.rs`.
pub async fn nonce_lane_repairs_are_guarded<S: Store>(s: S) {
    use withdraw_core::domain::Status;
    let wallet = Address::repeat_byte(0xaa);
    s.submit(vec![new_w(1, "a", "h1"), new_w(2, "b", "h2"), new_w(3, "c", "h3")]).await.unwrap();
    assert_eq!(s.init_nonce(wallet, 31337, 10).await.unwrap(), 10);
    let signed = s.sign_first_attempts(wallet, 31337, vec![wid(1), wid(2), wid(3)], fake_sign()).await.unwrap();
    assert!(signed.iter().all(|o| matches!(o, SignOutcome::Signed { .. })), "{signed:?}");

    // The next nonce only ever moves forward.
    assert_eq!(s.advance_nonce(wallet, 31337, 5).await.unwrap(), (13, 13));
    assert_eq!(s.advance_nonce(wallet, 31337, 20).await.unwrap(), (13, 20));

    let mut owners = s.nonce_owners(31337, wallet).await.unwrap();
    owners.sort_by_key(|o| o.nonce);
    assert_eq!(
        owners.iter().map(|o| (o.nonce, o.hashes.len(), o.mined)).collect::<Vec<_>>(),
        [(10, 1, false), (11, 1, false), (12, 1, false)]
    );
    assert!(s.nonce_owners(31337, Address::repeat_byte(0xbb)).await.unwrap().is_empty(), "other wallets own nothing here");

    // One cancel request per withdrawal; the first stands.
    let cancel = |actor: &str| CancelRequest { withdrawal_id: wid(2), actor: actor.into(), reason: "r".into(), requested_at_ms: 1 };
    let audit = |actor: &str| AuditEntry {
        actor: actor.into(),
        action: "withdrawal.discard".into(),
        target: "withdrawal/2".into(),
        reason: Some("r".into()),
        detail: "d".into(),
    };
    assert!(s.request_cancel(cancel("ann"), audit("ann")).await.unwrap());
    assert!(!s.request_cancel(cancel("bob"), audit("bob")).await.unwrap());
    let log = s.audit_log(10, None).await.unwrap();
    assert_eq!(
        log.iter().filter(|a| a.action == "withdrawal.discard").map(|a| a.actor.as_str()).collect::<Vec<_>>(),
        ["ann"],
        "audited with the change, once"
    );
    assert_eq!(s.get(&wid(2)).await.unwrap().unwrap().cancel.unwrap().actor, "ann");
    let pending = s.pending_cancels(31337, 10).await.unwrap();
    assert_eq!(pending.iter().map(|(w, a)| (w.id.clone(), a.nonce)).collect::<Vec<_>>(), [(wid(2), 11)]);

    // 3 is mined; re-signing must skip it, the cancelling 2, and a stale nonce for 1.
    let h3 = s.latest_attempts(vec![wid(3)]).await.unwrap()[0].tx_hash;
    let inc = Inclusion { withdrawal_id: wid(3), tx_hash: h3, block_number: 1, block_hash: h3, success: true, failure: None };
    s.record_inclusions(31337, vec![inc]).await.unwrap();
    let out = s.resign_displaced(wallet, 31337, vec![(wid(1), 10), (wid(2), 11), (wid(3), 12), (wid(1), 10)], fake_sign()).await.unwrap();
    assert!(matches!(&out[0], SignOutcome::Signed { id, nonce: 20, .. } if *id == wid(1)), "{out:?}");
    for o in &out[1..] {
        assert!(matches!(o, SignOutcome::Skipped { status: Status::Signed, .. }), "{o:?}");
    }
    assert_eq!(s.next_nonce(wallet, 31337).await.unwrap(), Some(21), "one nonce taken, for the one re-signed");
    let latest = s.latest_attempts(vec![wid(1)]).await.unwrap().remove(0);
    assert_eq!((latest.nonce, latest.kind), (20, AttemptKind::Transfer), "the re-signed attempt is the one to send");
    let mut owners = s.nonce_owners(31337, wallet).await.unwrap();
    owners.sort_by_key(|o| o.nonce);
    assert_eq!(
        owners.iter().map(|o| (o.nonce, o.hashes.len(), o.mined)).collect::<Vec<_>>(),
        [(11, 1, false), (12, 1, true), (20, 2, false)]
    );

    // Once the cancel is signed it is no longer pending.
    let old = s.latest_attempts(vec![wid(2)]).await.unwrap().remove(0);
    let mut c = old.clone();
    (c.tx_hash, c.kind, c.created_at_ms) = (alloy::primitives::B256::repeat_byte(2), AttemptKind::Cancel, old.created_at_ms + 1);
    assert_eq!(s.record_replacements(vec![Replacement { replaces: old.tx_hash, attempt: c.clone() }]).await.unwrap(), [true]);
    assert!(s.pending_cancels(31337, 10).await.unwrap().is_empty());
    // A second replacement of the same attempt loses, even within one batch.
    let mut c2 = c.clone();
    c2.tx_hash = alloy::primitives::B256::repeat_byte(3);
    let mut c3 = c.clone();
    c3.tx_hash = alloy::primitives::B256::repeat_byte(4);
    assert_eq!(
        s.record_replacements(vec![Replacement { replaces: c.tx_hash, attempt: c2 }, Replacement { replaces: c.tx_hash, attempt: c3 }])
            .await
            .unwrap(),
        [true, false]
    );

    // Broadcast time is kept from the first acceptance.
    s.mark_sent(vec![c.tx_hash]).await.unwrap();
    let first = s.attempts_of(vec![wid(2)]).await.unwrap().into_iter().find(|a| a.tx_hash == c.tx_hash).unwrap().sent_at_ms;
    assert!(first.is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.mark_sent(vec![c.tx_hash]).await.unwrap();
    let again = s.attempts_of(vec![wid(2)]).await.unwrap().into_iter().find(|a| a.tx_hash == c.tx_hash).unwrap().sent_at_ms;
    assert_eq!(first, again);
}

/// Part of the store contract: run on SQLite here and on PostgreSQL in `postgres.rs`.
pub async fn approvals_stand_once_and_can_be_revoked<S: Store>(s: S) {
    s.submit(vec![new_w(1, "a", "h1"), new_w(2, "b", "h2")]).await.unwrap();
    let approval = |who: &str| Approval { withdrawal_id: wid(1), approver: who.into(), reason: "ok".into(), approved_at_ms: 1 };
    assert!(s.record_approval(approval("bob")).await.unwrap());
    assert!(!s.record_approval(approval("eve")).await.unwrap(), "the first approval stands");
    assert_eq!(s.approved(vec![wid(1), wid(2)]).await.unwrap(), [wid(1)]);
    s.revoke_approvals(vec![wid(1)]).await.unwrap();
    assert!(s.approved(vec![wid(1)]).await.unwrap().is_empty(), "a revoked approval no longer counts");
    assert!(s.record_approval(approval("eve")).await.unwrap(), "and a new one can be given");
}

/// Part of the store contract: the brake read inside every signing write, the cursor's
/// compare-and-set, the tracker lease, and the credit journal.
pub async fn brake_cursor_lease_and_credits_hold<S: Store>(s: S) {
    use withdraw_core::domain::{Amount, Status};
    let wallet = Address::repeat_byte(0xcc);
    s.submit(vec![new_w(1, "a", "h1"), new_w(2, "b", "h2")]).await.unwrap();
    s.init_nonce(wallet, 31337, 0).await.unwrap();
    let audit = |action: &str| AuditEntry {
        actor: "ann".into(),
        action: action.into(),
        target: "t".into(),
        reason: Some("r".into()),
        detail: "d".into(),
    };
    let pause = |paused: bool| SigningControl { chain_id: None, paused, actor: "ann".into(), reason: "r".into(), updated_at_ms: 1 };
    s.set_signing_control(pause(true), audit("signing.pause")).await.unwrap();
    let out = s.sign_first_attempts(wallet, 31337, vec![wid(1)], fake_sign()).await.unwrap();
    assert!(matches!(&out[0], SignOutcome::Paused { .. }), "paused: nothing signed: {out:?}");
    assert_eq!(s.next_nonce(wallet, 31337).await.unwrap(), Some(0), "no nonce taken while paused");
    let fill = NonceFill {
        chain_id: 31337,
        wallet,
        nonce: 0,
        tx_hash: B256::repeat_byte(1),
        raw: Default::default(),
        max_fee_per_gas: 1,
        created_at_ms: 1,
    };
    assert!(!s.record_fill(fill.clone()).await.unwrap(), "no fill recorded while paused");
    assert!(matches!(&s.resign_displaced(wallet, 31337, vec![(wid(1), 0)], fake_sign()).await.unwrap()[0], SignOutcome::Paused { .. }));
    s.set_signing_control(pause(false), audit("signing.resume")).await.unwrap();
    assert!(matches!(
        &s.sign_first_attempts(wallet, 31337, vec![wid(1)], fake_sign()).await.unwrap()[0],
        SignOutcome::Signed { nonce: 0, .. }
    ));
    assert_eq!(s.get(&wid(1)).await.unwrap().unwrap().withdrawal.status, Status::Signed);
    let actions: Vec<String> = s.audit_log(10, None).await.unwrap().into_iter().map(|a| a.action).collect();
    assert!(actions.contains(&"signing.pause".to_owned()) && actions.contains(&"signing.resume".to_owned()), "{actions:?}");

    // The cursor moves only from where the writer saw it: a stale forward write loses.
    assert!(s.set_cursor(31337, None, 100).await.unwrap());
    assert!(!s.set_cursor(31337, None, 5).await.unwrap(), "already set");
    assert!(s.set_cursor(31337, Some(100), 90).await.unwrap(), "a rewind");
    assert!(!s.set_cursor(31337, Some(100), 150).await.unwrap(), "a forward write over the rewind loses");
    assert_eq!(s.cursor(31337).await.unwrap(), Some(90));

    // One lease holder at a time; it expires.
    assert!(s.acquire_lease("tracker", "a", 60_000).await.unwrap());
    assert!(!s.acquire_lease("tracker", "b", 60_000).await.unwrap());
    assert!(s.acquire_lease("tracker", "a", 1).await.unwrap(), "renewed by its holder");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(s.acquire_lease("tracker", "b", 60_000).await.unwrap(), "expired: taken over");
    assert!(!s.acquire_lease("tracker", "a", 60_000).await.unwrap());

    // Settlements are owed with the status, and block the next move until settled.
    let t = |from, to, settle| Transition { id: wid(2), from, to, reason: None, actor: "t".into(), settle, audit: None };
    assert_eq!(s.transition(vec![t(Status::Received, Status::Invalid, Some(Settle::Release))]).await.unwrap(), [true]);
    assert_eq!(s.transition(vec![t(Status::Invalid, Status::Received, None)]).await.unwrap(), [false], "a release is owed");
    let owed = s.pending_settlements(i64::MAX, Some(vec![wid(2)]), 10).await.unwrap();
    assert_eq!(owed.iter().map(|o| (o.settle, o.from)).collect::<Vec<_>>(), [(Settle::Release, Status::Received)]);
    s.settled(vec![wid(2)]).await.unwrap();
    assert_eq!(s.transition(vec![t(Status::Invalid, Status::Received, None)]).await.unwrap(), [true]);

    // Credits: journaled once per key, a second person to approve, audited with each step.
    let credit = |amount: &str, hash: &str, state| CreditRecord {
        idempotency_key: "k".into(),
        request_hash: hash.into(),
        user_id: "u".into(),
        asset: "ETH".into(),
        amount: Amount::from_base_units(amount).unwrap(),
        reason: "r".into(),
        requested_by: "ann".into(),
        approved_by: None,
        state,
        created_at_ms: 1,
    };
    assert!(matches!(
        s.record_credit(credit("5", "h", CreditState::PendingApproval), audit("balance.credit.request")).await.unwrap(),
        CreditOutcome::Created(_)
    ));
    assert!(matches!(
        s.record_credit(credit("5", "h", CreditState::PendingApproval), audit("x")).await.unwrap(),
        CreditOutcome::Existing(_)
    ));
    assert!(matches!(
        s.record_credit(credit("6", "h2", CreditState::PendingApproval), audit("x")).await.unwrap(),
        CreditOutcome::Conflict(_)
    ));
    assert!(s.credits_to_apply(10).await.unwrap().is_empty(), "pending is not to apply");
    assert_eq!(s.approve_credit("k", "ann", audit("x")).await.unwrap(), ApproveCreditOutcome::SamePerson);
    assert!(
        matches!(s.approve_credit("k", "bob", audit("balance.credit.approve")).await.unwrap(), ApproveCreditOutcome::Approved(c) if c.approved_by.as_deref() == Some("bob"))
    );
    assert!(matches!(s.approve_credit("k", "eve", audit("x")).await.unwrap(), ApproveCreditOutcome::NotPending(_)));
    assert_eq!(s.credits_to_apply(10).await.unwrap().len(), 1);
    s.credit_applied("k").await.unwrap();
    assert!(s.credits_to_apply(10).await.unwrap().is_empty());
    let log = s.audit_log(50, None).await.unwrap();
    assert!(!log.iter().any(|a| a.action == "x"), "refused steps leave no audit row");
}

fn store() -> (tempfile::TempDir, RecordStore) {
    let (d, db) = db();
    (d, RecordStore::new(db, Arc::new(SystemClock)))
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (_a, s) = store();
    submit_is_idempotent_per_client_key(s).await;
    let (_b, s) = store();
    nonce_lane_repairs_are_guarded(s).await;
    let (_c, s) = store();
    approvals_stand_once_and_can_be_revoked(s).await;
    let (_d, s) = store();
    brake_cursor_lease_and_credits_hold(s).await;
}
