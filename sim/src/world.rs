//! What the simulated process cannot see: the chain, the fault dice, the trace, and what
//! operators were told. Shared by the ports through one mutex (the simulation runs on one
//! thread; the mutex is never held across an await).

use crate::chain::ChainState;
use alloy::primitives::B256;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use withdraw_core::ports::QueueName;

/// How often each per-call fault strikes while faults are on.
#[derive(Debug, Clone)]
pub struct Rates {
    pub duplicate: f64,
    pub late: f64,
    pub balance_fail: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates { duplicate: 0.05, late: 0.03, balance_fail: 0.02 }
    }
}

pub struct World {
    pub chain: ChainState,
    /// Dice for faults inside port calls (seeded from the run's seed).
    pub rng: ChaCha8Rng,
    pub rates: Rates,
    /// Off once the simulation lets the system settle.
    pub faults_on: bool,
    pub counts: BTreeMap<&'static str, u64>,
    pub trace: VecDeque<String>,
    /// Messages held back for late delivery: (deliver at ms, queue, body).
    pub late: Vec<(i64, QueueName, String)>,
    /// Signing is paused as far as an operator was told (set when the pause call answers,
    /// cleared when a resume is issued).
    pub paused: bool,
    pub signed_while_paused: Vec<B256>,
    /// 0-value self-transfers signed since the last check: (wallet, nonce).
    pub self_transfers: Vec<(alloy::primitives::Address, u64)>,
    pub signatures: u64,
    pub violations: Vec<String>,
    /// Simulated time of the current step, for the trace.
    pub now_ms: i64,
    /// The balance store is down (every call fails) until then (ms since the epoch).
    pub balances_down_until_ms: i64,
}

const TRACE_LEN: usize = 60;

impl World {
    pub fn new(chain: ChainState, rng: ChaCha8Rng) -> Self {
        World {
            chain,
            rng,
            rates: Rates::default(),
            faults_on: true,
            counts: BTreeMap::new(),
            trace: VecDeque::new(),
            late: Vec::new(),
            paused: false,
            signed_while_paused: Vec::new(),
            self_transfers: Vec::new(),
            signatures: 0,
            violations: Vec::new(),
            now_ms: 0,
            balances_down_until_ms: 0,
        }
    }

    pub fn count(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
    }

    pub fn note(&mut self, what: impl Into<String>) {
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        let t = self.now_ms as f64 / 1000.0;
        self.trace.push_back(format!("t={t:>8.3}s  {}", what.into()));
    }

    pub fn violation(&mut self, what: String) {
        // The first few only: the trace is for the events that led there.
        if self.violations.len() < 5 {
            self.note(format!("VIOLATION: {what}"));
        }
        self.violations.push(what);
    }
}
