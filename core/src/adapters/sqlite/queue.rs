//! Durable queues in the SQLite file, with the SQS semantics the stages are written for:
//! a received message is hidden for the visibility timeout and reappears unless acked, its
//! receive count grows each time, and past `max_receives` it is moved to its dead-letter
//! queue instead of being delivered again. In-process senders wake waiting receivers at
//! once; a short poll covers writers in other processes sharing the file.

use super::Sqlite;
use crate::adapters::schema::queue_messages;
use crate::ports::{Clock, Delivery, Queue, QueueError, QueueName, QueueStats, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct SqliteQueue {
    db: Sqlite,
    clock: Arc<dyn Clock>,
    max_receives: u32,
    wakers: Arc<HashMap<&'static str, Notify>>,
}

impl SqliteQueue {
    /// `max_receives`: deliveries of one message before it is redriven to its DLQ.
    pub fn new(db: Sqlite, clock: Arc<dyn Clock>, max_receives: u32) -> Self {
        let wakers = QueueName::ALL.into_iter().map(|q| (q.as_str(), Notify::new())).collect();
        Self { db, clock, max_receives: max_receives.max(1), wakers: Arc::new(wakers) }
    }

    fn waker(&self, q: QueueName) -> &Notify {
        &self.wakers[q.as_str()]
    }
}

#[derive(QueryableByName)]
struct Received {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Integer)]
    receive_count: i32,
    #[diesel(sql_type = BigInt)]
    sent_at: i64,
}

fn to_queue_err(e: StoreError) -> QueueError {
    match e {
        StoreError::Unavailable(m) => QueueError::Unavailable(m),
        other => QueueError::Failed(other.to_string()),
    }
}

/// A receipt names one delivery: the message id and its receive count. Acking with the
/// receipt of an older delivery (the message has been redelivered since) does nothing.
fn receipt(id: i64, count: i32) -> String {
    format!("{id}.{count}")
}

fn parse_receipt(r: &str) -> Option<(i64, i32)> {
    let (id, count) = r.split_once('.')?;
    Some((id.parse().ok()?, count.parse().ok()?))
}

impl Queue for SqliteQueue {
    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        self.db
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let rows: Vec<_> = bodies
                        .iter()
                        .map(|b| {
                            (
                                queue_messages::queue.eq(queue.as_str()),
                                queue_messages::body.eq(b.as_str()),
                                queue_messages::sent_at.eq(now),
                                queue_messages::visible_at.eq(now),
                                queue_messages::receive_count.eq(0),
                            )
                        })
                        .collect();
                    for chunk in rows.chunks(1000) {
                        diesel::insert_into(queue_messages::table).values(chunk).execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(to_queue_err)?;
        self.waker(queue).notify_waiters();
        Ok(())
    }

    async fn receive(&self, queue: QueueName, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.waker(queue).notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let now = self.clock.now_ms();
            let vis_ms = visibility.as_millis() as i64;
            let max_receives = self.max_receives as i32;
            let (got, redriven) = self
                .db
                .write(move |conn| {
                    conn.immediate_transaction(|conn| {
                        let mut redriven = 0;
                        if let Some(dlq) = queue.dead_letter() {
                            redriven = diesel::update(
                                queue_messages::table
                                    .filter(queue_messages::queue.eq(queue.as_str()))
                                    .filter(queue_messages::visible_at.le(now))
                                    .filter(queue_messages::receive_count.ge(max_receives)),
                            )
                            .set((
                                queue_messages::queue.eq(dlq.as_str()),
                                queue_messages::receive_count.eq(0),
                                queue_messages::visible_at.eq(now),
                            ))
                            .execute(conn)?;
                        }
                        let rows: Vec<Received> = diesel::sql_query(
                            "UPDATE queue_messages SET visible_at = ?1 + ?2, receive_count = receive_count + 1 \
                             WHERE id IN (SELECT id FROM queue_messages WHERE queue = ?3 AND visible_at <= ?1 \
                             ORDER BY id LIMIT ?4) RETURNING id, body, receive_count, sent_at",
                        )
                        .bind::<BigInt, _>(now)
                        .bind::<BigInt, _>(vis_ms)
                        .bind::<Text, _>(queue.as_str())
                        .bind::<BigInt, _>(max as i64)
                        .load(conn)?;
                        Ok((rows, redriven))
                    })
                })
                .await
                .map_err(to_queue_err)?;
            if redriven > 0 {
                tracing::warn!(queue = queue.as_str(), count = redriven, "messages redriven to dead-letter queue");
                if let Some(dlq) = queue.dead_letter() {
                    self.waker(dlq).notify_waiters();
                }
            }
            if !got.is_empty() {
                let mut out: Vec<Delivery> = got
                    .into_iter()
                    .map(|r| Delivery {
                        receipt: receipt(r.id, r.receive_count),
                        body: r.body,
                        receive_count: r.receive_count as u32,
                        sent_at_ms: r.sent_at,
                    })
                    .collect();
                out.sort_by_key(|d| parse_receipt(&d.receipt).map(|(id, _)| id));
                return Ok(out);
            }
            let now_i = tokio::time::Instant::now();
            if now_i >= deadline {
                return Ok(Vec::new());
            }
            let poll = Duration::from_millis(250).min(deadline - now_i);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn ack(&self, _queue: QueueName, receipts: Vec<String>) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let parsed: Vec<(i64, i32)> = receipts.iter().filter_map(|r| parse_receipt(r)).collect();
        if parsed.len() != receipts.len() {
            return Err(QueueError::Failed("malformed receipt handle".into()));
        }
        self.db
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    for (id, count) in &parsed {
                        diesel::delete(
                            queue_messages::table.filter(queue_messages::id.eq(id)).filter(queue_messages::receive_count.eq(count)),
                        )
                        .execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(to_queue_err)
    }

    async fn extend(&self, _queue: QueueName, receipts: Vec<String>, visibility: Duration) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let parsed: Vec<(i64, i32)> = receipts.iter().filter_map(|r| parse_receipt(r)).collect();
        if parsed.len() != receipts.len() {
            return Err(QueueError::Failed("malformed receipt handle".into()));
        }
        let until = self.clock.now_ms() + visibility.as_millis() as i64;
        self.db
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    for (id, count) in &parsed {
                        diesel::update(
                            queue_messages::table.filter(queue_messages::id.eq(id)).filter(queue_messages::receive_count.eq(count)),
                        )
                        .set(queue_messages::visible_at.eq(until))
                        .execute(conn)?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(to_queue_err)
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats, QueueError> {
        let now = self.clock.now_ms();
        self.db
            .run(move |conn| {
                let base = queue_messages::table.filter(queue_messages::queue.eq(queue.as_str()));
                let visible: i64 = base.filter(queue_messages::visible_at.le(now)).count().get_result(conn)?;
                let total: i64 = base.count().get_result(conn)?;
                let oldest: Option<i64> = base.select(diesel::dsl::min(queue_messages::sent_at)).first(conn)?;
                Ok(QueueStats { visible, in_flight: total - visible, oldest_age_ms: oldest.map(|t| now - t) })
            })
            .await
            .map_err(to_queue_err)
    }
}
