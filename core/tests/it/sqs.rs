//! The SQS adapter against moto's server: queue creation with redrive policies, batching,
//! visibility expiry and redelivery, redrive to the DLQ, and the visibility heartbeat.

use std::time::Duration;
use withdraw_core::adapters::sqs::{SqsQueue, SqsQueueUrls};
use withdraw_core::ports::{Queue, QueueError, QueueName};
use withdraw_core::testing::servers::Moto;

async fn setup(max_receives: u32) -> (Moto, aws_sdk_sqs::Client, SqsQueue, SqsQueueUrls) {
    let moto = Moto::start();
    let client = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let urls = SqsQueue::ensure(&client, "t", max_receives, Duration::from_secs(30)).await.expect("ensure");
    let q = SqsQueue::connect(client.clone(), urls.clone()).await.expect("connect");
    (moto, client, q, urls)
}

fn bodies(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i:03}")).collect()
}

async fn drain(q: &SqsQueue, queue: QueueName, want: usize, vis: Duration) -> Vec<withdraw_core::ports::Delivery> {
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(q.receive(queue, 100, vis, Duration::from_secs(1)).await.expect("receive"));
        if got.len() >= want {
            break;
        }
    }
    got
}

#[tokio::test]
async fn batches_round_trip_and_acked_messages_are_gone() {
    let (_moto, _c, q, _) = setup(5).await;
    q.send(QueueName::Requests, bodies(35)).await.expect("send 35 in batches of 10");
    // A long visibility: under load the drain can take seconds, and a message whose
    // visibility ran out meanwhile would rightly be delivered again.
    let got = drain(&q, QueueName::Requests, 35, Duration::from_secs(30)).await;
    let mut seen: Vec<String> = got.iter().map(|d| d.body.clone()).collect();
    seen.sort();
    assert_eq!(seen, bodies(35), "every message exactly once");
    assert!(got.iter().all(|d| d.receive_count == 1));
    let st = q.stats(QueueName::Requests).await.expect("stats");
    assert_eq!(st.visible, 0, "all 35 are being worked");
    let receipts: Vec<String> = got.iter().map(|d| d.receipt.clone()).collect();
    q.ack(QueueName::Requests, receipts.clone()).await.expect("ack");
    // Had a delete not taken, shortening the visibility would bring that message back in a
    // second; deleted ones stay gone. (SQS's counts are approximate and lag; redelivery is
    // what matters.)
    q.extend(QueueName::Requests, receipts, Duration::from_secs(1)).await.expect("extend");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = q.receive(QueueName::Requests, 100, Duration::from_secs(30), Duration::from_secs(1)).await.unwrap();
    assert!(again.is_empty(), "acked messages were redelivered: {:?}", again.iter().map(|d| &d.body).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_unacked_message_comes_back_after_its_visibility_with_a_higher_count() {
    let (_moto, _c, q, _) = setup(5).await;
    q.send(QueueName::Signed, vec!["a".into()]).await.unwrap();
    let first = q.receive(QueueName::Signed, 10, Duration::from_secs(1), Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(q.receive(QueueName::Signed, 10, Duration::from_secs(1), Duration::ZERO).await.unwrap().is_empty(), "hidden while worked");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = q.receive(QueueName::Signed, 10, Duration::from_secs(30), Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1, "redelivered after the visibility timeout");
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("a", 2));
}

#[tokio::test]
async fn a_message_received_too_often_is_redriven_to_its_dead_letter_queue() {
    let (_moto, _c, q, _) = setup(2).await;
    q.send(QueueName::Requests, vec!["poison".into()]).await.unwrap();
    for n in 1..=2 {
        let got = q.receive(QueueName::Requests, 10, Duration::from_secs(1), Duration::from_secs(2)).await.unwrap();
        assert_eq!(got.len(), 1, "delivery {n}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert!(
        q.receive(QueueName::Requests, 10, Duration::from_secs(1), Duration::from_secs(1)).await.unwrap().is_empty(),
        "not delivered a third time"
    );
    let dlq = q.receive(QueueName::InvalidDlq, 10, Duration::from_secs(30), Duration::from_secs(2)).await.unwrap();
    assert_eq!(dlq.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), vec!["poison"]);
    assert!(q.receive(QueueName::TxDlq, 10, Duration::from_secs(30), Duration::ZERO).await.unwrap().is_empty(), "the other DLQ");
}

#[tokio::test]
async fn the_heartbeat_keeps_a_slow_message_hidden() {
    let (_moto, _c, q, _) = setup(5).await;
    q.send(QueueName::Requests, vec!["slow".into()]).await.unwrap();
    let got = q.receive(QueueName::Requests, 10, Duration::from_secs(2), Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1);
    let receipts: Vec<String> = got.iter().map(|d| d.receipt.clone()).collect();
    // Work three times longer than the visibility timeout, beating every 0.7 s.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        q.extend(QueueName::Requests, receipts.clone(), Duration::from_secs(2)).await.expect("extend");
        assert!(
            q.receive(QueueName::Requests, 10, Duration::from_secs(2), Duration::ZERO).await.unwrap().is_empty(),
            "still hidden while the heartbeat runs"
        );
    }
    // The heartbeat stops (a crashed worker): the message comes back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let back = q.receive(QueueName::Requests, 10, Duration::from_secs(30), Duration::from_secs(2)).await.unwrap();
    assert_eq!(back.len(), 1, "redelivered once the heartbeat stopped");
}

#[tokio::test]
async fn a_wrong_url_or_a_missing_redrive_policy_fails_connect_with_a_clear_message() {
    let (moto, client, _q, urls) = setup(5).await;
    let wrong = SqsQueueUrls { signed: format!("{}/123456789012/nope", moto.endpoint), ..urls.clone() };
    let err = SqsQueue::connect(client.clone(), wrong).await.expect_err("unknown queue");
    let msg = err.to_string();
    assert!(msg.contains("signed") && msg.contains("nope"), "{msg}");

    // A requests queue without a redrive policy would loop a poison message forever.
    let bare = client.create_queue().queue_name("bare").send().await.unwrap().queue_url().unwrap().to_owned();
    let err = SqsQueue::connect(client.clone(), SqsQueueUrls { requests: bare, ..urls }).await.expect_err("no redrive");
    let msg = err.to_string();
    assert!(matches!(err, QueueError::Failed(_)));
    assert!(msg.contains("does not redrive") && msg.contains("queues ensure"), "{msg}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_not_a_hang() {
    let port = withdraw_core::testing::servers::free_port();
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("t", "t", None, None, "test"))
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&cfg);
    let urls = SqsQueueUrls {
        requests: format!("http://127.0.0.1:{port}/1/a"),
        signed: format!("http://127.0.0.1:{port}/1/b"),
        invalid_dlq: format!("http://127.0.0.1:{port}/1/c"),
        tx_dlq: format!("http://127.0.0.1:{port}/1/d"),
    };
    let started = std::time::Instant::now();
    let err = SqsQueue::connect(client, urls).await.expect_err("nothing listens");
    assert!(err.is_unavailable(), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "the SDK's error is kept as the source");
    assert!(started.elapsed() < Duration::from_secs(30));
}
