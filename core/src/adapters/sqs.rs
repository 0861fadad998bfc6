//! The four queues on Amazon SQS.
//!
//! SQS gives the semantics the stages are written for: a received message is hidden for
//! the visibility timeout and comes back unless deleted, `ApproximateReceiveCount` counts
//! deliveries, and a redrive policy moves a message that was received too often to its
//! dead-letter queue. Messages are deleted only after the database commit they depend on
//! (the stages ack after writing), and a long piece of work keeps its messages hidden with
//! [`Queue::extend`] (ChangeMessageVisibility).
//!
//! Calls are batched as SQS allows (10 per request) and run concurrently, since a stage
//! works on hundreds of messages at once.

use super::aws::describe;
use crate::ports::{Delivery, Queue, QueueError, QueueName, QueueStats};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use futures::future::try_join_all;
use std::collections::HashMap;
use std::time::Duration;

/// SQS's limits: messages per batch call, and the longest long poll.
const BATCH: usize = 10;
const MAX_WAIT: Duration = Duration::from_secs(20);
/// At most this many receive calls run at once for one `receive` (100 messages).
const PARALLEL_RECEIVES: usize = 10;

/// The queue URLs of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsQueueUrls {
    pub requests: String,
    pub signed: String,
    pub invalid_dlq: String,
    pub tx_dlq: String,
}

impl SqsQueueUrls {
    pub fn get(&self, q: QueueName) -> &str {
        match q {
            QueueName::Requests => &self.requests,
            QueueName::Signed => &self.signed,
            QueueName::InvalidDlq => &self.invalid_dlq,
            QueueName::TxDlq => &self.tx_dlq,
        }
    }
}

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: SqsQueueUrls,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue").field("urls", &self.urls).finish_non_exhaustive()
    }
}

/// A failed SDK call: transport trouble (no answer, timeout) is `Unavailable`; an answer
/// that refuses the call is `Failed`.
fn sdk_err<E, R>(what: &str, q: QueueName, e: SdkError<E, R>) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let what = format!("SQS {what} on queue {}: {}", q.as_str(), describe(&e));
    let retryable = !matches!(e, SdkError::ServiceError(_) | SdkError::ConstructionFailure(_));
    QueueError::Service { what, retryable, source: Box::new(e) }
}

fn build_err(e: aws_sdk_sqs::error::BuildError) -> QueueError {
    QueueError::Service { what: format!("SQS request could not be built: {e}"), retryable: false, source: Box::new(e) }
}

impl SqsQueue {
    /// Checks that every queue exists and that the two work queues redrive to their
    /// dead-letter queues; a queue without that policy would redeliver a poison message
    /// forever instead of showing it to an operator.
    pub async fn connect(client: Client, urls: SqsQueueUrls) -> Result<Self, QueueError> {
        let mut arns = HashMap::new();
        for q in QueueName::ALL {
            let url = urls.get(q);
            let out = client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| {
                    let base = sdk_err("GetQueueAttributes", q, e);
                    match base {
                        QueueError::Service { what, retryable: false, source } => {
                            QueueError::Service { what: format!("{what} (is the queue URL {url} right?)"), retryable: false, source }
                        }
                        other => other,
                    }
                })?;
            let attrs = out.attributes().cloned().unwrap_or_default();
            let arn = attrs.get(&QueueAttributeName::QueueArn).cloned().unwrap_or_default();
            arns.insert(q, (arn, attrs.get(&QueueAttributeName::RedrivePolicy).cloned()));
        }
        for q in [QueueName::Requests, QueueName::Signed] {
            let Some(dlq) = q.dead_letter() else { continue };
            let want = &arns[&dlq].0;
            let policy = arns[&q].1.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok());
            let target = policy.as_ref().and_then(|p| p.get("deadLetterTargetArn")).and_then(|v| v.as_str());
            if target != Some(want.as_str()) {
                return Err(QueueError::Failed(format!(
                    "SQS queue {} ({}) does not redrive to the {} queue ({want}); run `withdrawd queues ensure` or fix its redrive policy",
                    q.as_str(),
                    urls.get(q),
                    dlq.as_str()
                )));
            }
        }
        Ok(Self { client, urls })
    }

    /// Creates the four queues (dead-letter queues first) with their redrive policies, or
    /// updates the policies of queues that exist. Returns their URLs.
    pub async fn ensure(client: &Client, prefix: &str, max_receives: u32, visibility: Duration) -> Result<SqsQueueUrls, QueueError> {
        // 14 days, SQS's maximum: a request is never dropped by retention while an operator
        // is away; the reconciler re-enqueues from the database in any case.
        let retention = (14 * 24 * 3600).to_string();
        let mut urls = HashMap::new();
        for q in [QueueName::InvalidDlq, QueueName::TxDlq, QueueName::Requests, QueueName::Signed] {
            let mut attrs = HashMap::from([
                (QueueAttributeName::MessageRetentionPeriod, retention.clone()),
                (QueueAttributeName::VisibilityTimeout, visibility.as_secs().to_string()),
            ]);
            if let Some(dlq) = q.dead_letter() {
                let dlq_url: &String = &urls[&dlq];
                let arn = client
                    .get_queue_attributes()
                    .queue_url(dlq_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .map_err(|e| sdk_err("GetQueueAttributes", dlq, e))?
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                    .ok_or_else(|| QueueError::Failed(format!("SQS queue {} has no ARN", dlq.as_str())))?;
                let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives.max(1) });
                attrs.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
            }
            let name = format!("{prefix}-{}", q.as_str());
            let url = client
                .create_queue()
                .queue_name(&name)
                .set_attributes(Some(attrs.clone()))
                .send()
                .await
                .map_err(|e| sdk_err("CreateQueue", q, e))?
                .queue_url()
                .map(str::to_owned)
                .ok_or_else(|| QueueError::Failed(format!("SQS CreateQueue {name} returned no URL")))?;
            // CreateQueue on an existing queue with other attributes fails on AWS and is a
            // no-op elsewhere: set them explicitly so a changed policy is applied.
            client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attrs))
                .send()
                .await
                .map_err(|e| sdk_err("SetQueueAttributes", q, e))?;
            urls.insert(q, url);
        }
        let mut take = |q| urls.remove(&q).unwrap_or_default();
        Ok(SqsQueueUrls {
            requests: take(QueueName::Requests),
            signed: take(QueueName::Signed),
            invalid_dlq: take(QueueName::InvalidDlq),
            tx_dlq: take(QueueName::TxDlq),
        })
    }

    /// One ReceiveMessage call: each delivery with its SQS message id.
    async fn receive_once(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<(String, Delivery)>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(self.urls.get(queue))
            .max_number_of_messages(max.clamp(1, BATCH) as i32)
            .visibility_timeout(visibility.as_secs().clamp(1, 12 * 3600) as i32)
            .wait_time_seconds(wait.min(MAX_WAIT).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| sdk_err("ReceiveMessage", queue, e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                // SentTimestamp survives a redrive to the dead-letter queue (epoch ms). A
                // message without one counts as sent at the epoch: the sweep then never acts
                // on it, which leaves the withdrawal to the operator rather than undoing one.
                let sent_at_ms = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let delivery = Delivery {
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count,
                    sent_at_ms,
                };
                Some((m.message_id().unwrap_or_default().to_owned(), delivery))
            })
            .collect())
    }
}

/// Names a batch entry by its index; SQS reports failures per entry id.
fn entry_id(i: usize) -> String {
    i.to_string()
}

impl Queue for SqsQueue {
    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
        let url = self.urls.get(queue);
        let calls = bodies.chunks(BATCH).map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| SendMessageBatchRequestEntry::builder().id(entry_id(i)).message_body(b).build().map_err(build_err))
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_err("SendMessageBatch", queue, e))?;
            match out.failed().first() {
                None => Ok(()),
                Some(f) => Err(QueueError::Failed(format!(
                    "SQS SendMessageBatch on queue {}: {} of {} messages refused ({}: {})",
                    queue.as_str(),
                    out.failed().len(),
                    chunk.len(),
                    f.code(),
                    f.message().unwrap_or("no message")
                ))),
            }
        });
        try_join_all(calls).await.map(|_| ())
    }

    async fn receive(&self, queue: QueueName, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        // The first call long-polls; if it comes back full there is a backlog, and more
        // calls fetch the rest of the batch at once without waiting.
        let mut got = self.receive_once(queue, max, visibility, wait).await?;
        if got.len() < BATCH || max <= BATCH {
            return Ok(got.into_iter().map(|(_, d)| d).collect());
        }
        let more = (max - got.len()).div_ceil(BATCH).min(PARALLEL_RECEIVES - 1);
        let calls = (0..more).map(|_| self.receive_once(queue, BATCH, visibility, Duration::ZERO));
        for batch in futures::future::join_all(calls).await {
            match batch {
                Ok(b) => got.extend(b),
                // What was received stays hidden for the visibility timeout and comes back.
                Err(e) => tracing::warn!(queue = queue.as_str(), error = %e, "SQS receive failed; working on what arrived"),
            }
        }
        // Concurrent receives may hand out one message twice (SQS is at least once). Keep
        // one delivery per message, the last handed out: SQS deletes a message by its most
        // recent receipt handle, and a delete by an older one may leave it in the queue (it
        // then comes back once more, which consumers are built for).
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<Delivery> = Vec::with_capacity(got.len());
        for (id, d) in got.into_iter().rev() {
            if id.is_empty() || seen.insert(id) {
                unique.push(d);
            }
        }
        unique.reverse();
        unique.truncate(max);
        Ok(unique)
    }

    async fn ack(&self, queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        let url = self.urls.get(queue);
        let calls = receipts.chunks(BATCH).map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id(entry_id(i)).receipt_handle(r).build().map_err(build_err))
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_err("DeleteMessageBatch", queue, e))?;
            // A receipt from an older delivery no longer deletes anything; SQS says so
            // per entry. The message comes back and is worked again, idempotently.
            for f in out.failed() {
                tracing::debug!(queue = queue.as_str(), code = f.code(), "SQS delete refused for one message");
            }
            Ok::<_, QueueError>(())
        });
        try_join_all(calls).await.map(|_| ())
    }

    async fn extend(&self, queue: QueueName, receipts: Vec<String>, visibility: Duration) -> Result<(), QueueError> {
        let url = self.urls.get(queue);
        let secs = visibility.as_secs().clamp(1, 12 * 3600) as i32;
        let calls = receipts.chunks(BATCH).map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(entry_id(i))
                        .receipt_handle(r)
                        .visibility_timeout(secs)
                        .build()
                        .map_err(build_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_err("ChangeMessageVisibilityBatch", queue, e))?;
            Ok::<_, QueueError>(())
        });
        try_join_all(calls).await.map(|_| ())
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(self.urls.get(queue))
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_err("GetQueueAttributes", queue, e))?;
        let attrs = out.attributes().cloned().unwrap_or_default();
        let num = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(QueueStats {
            visible: num(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: num(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            // SQS publishes the oldest message's age only to CloudWatch
            // (ApproximateAgeOfOldestMessage); the queue-age alarms use that metric.
            oldest_age_ms: None,
        })
    }
}
