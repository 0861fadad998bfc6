//! Integration tests of withdraw-core's adapters and stages against real servers.

mod kms;
mod nonce_race;
pub mod pipeline;
mod postgres;
mod redis;
mod secrets;
pub mod sqlite;
mod sqs;
mod store_contract;
mod tidy;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use withdraw_core::ports::Clock;

/// A clock tests move by hand, so visibility timeouts expire without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(start_ms)))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
