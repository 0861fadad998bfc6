//! The SQLite queue: visibility, redelivery by delivery, dead-lettering and long polls. The
//! store's promises, shared with PostgreSQL, are in `store_contract.rs`.

use super::ManualClock;
use std::sync::Arc;
use std::time::Duration;
use withdraw_core::adapters::sqlite::{Sqlite, SqliteQueue};
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
