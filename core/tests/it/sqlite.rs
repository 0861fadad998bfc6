//! The SQLite adapters: queue semantics, balance atomicity, idempotent submission.

use super::ManualClock;
use alloy::primitives::{Address, U256};
use std::sync::Arc;
use std::time::Duration;
use withdraw_core::adapters::sqlite::{Sqlite, SqliteQueue, SqliteStore};
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
    assert!(s.request_cancel(cancel("ann")).await.unwrap());
    assert!(!s.request_cancel(cancel("bob")).await.unwrap());
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

fn store() -> (tempfile::TempDir, SqliteStore) {
    let (d, db) = db();
    (d, SqliteStore::new(db, Arc::new(SystemClock)))
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (_a, s) = store();
    submit_is_idempotent_per_client_key(s).await;
    let (_b, s) = store();
    nonce_lane_repairs_are_guarded(s).await;
    let (_c, s) = store();
    approvals_stand_once_and_can_be_revoked(s).await;
}
