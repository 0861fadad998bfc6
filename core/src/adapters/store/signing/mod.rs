//! Signing a batch's first attempts: plan (consecutive nonces from the wallet's next, in the
//! caller's order, for every withdrawal still RECEIVED), sign, and record (the attempts, the
//! move to SIGNED with its history, the wallet's next nonce) in one transaction. The
//! planning and the recording are shared; how the two databases keep two signers of one
//! wallet apart differs, each in its own file:
//! - [`postgres`]: many writers, so the transaction locks the wallet's nonce row first, then
//!   plans, signs and commits under that lock;
//! - [`sqlite`]: one writer, and ECDSA is the expensive part, so it plans on a reader, signs
//!   outside the write lock, and commits only if the nonce and statuses are still what it
//!   planned on.

pub(super) mod postgres;
pub(super) mod sqlite;

use super::conn::{AnyConn, insert_rows};
use super::rows::{AttemptRow, NewHistory, hex_addr, nonce_row};
use crate::adapters::schema::{attempts, history, wallet_nonces, withdrawals};
use crate::domain::{Status, WithdrawalId};
use crate::ports::{SignFn, SignOutcome, StoreError, Withdrawal};
use alloy::primitives::Address;
use diesel::prelude::*;

/// Rounds of signing one batch may take before what is left is put off to a later batch.
const MAX_SIGN_ROUNDS: usize = 4;

/// One batch to sign for one wallet, and what its plan signed.
pub(super) struct Batch {
    pub wallet: String,
    pub chain_id: u64,
    pub batch: Vec<WithdrawalId>,
    pub ids: Vec<String>,
    pub now: i64,
}

/// What a plan signed: the outcome per requested withdrawal, the attempt rows to record, and
/// the wallet's next nonce after them.
pub(super) struct Plan {
    pub outcomes: Vec<SignOutcome>,
    pub rows: Vec<AttemptRow>,
    pub next: i64,
}

impl Batch {
    pub fn new(wallet: Address, chain_id: u64, batch: Vec<WithdrawalId>, now: i64) -> Batch {
        let ids = batch.iter().map(|i| i.as_str().to_owned()).collect();
        Batch { wallet: hex_addr(&wallet), chain_id, batch, ids, now }
    }

    /// Every requested withdrawal answered "paused": nothing was signed.
    pub fn paused(&self) -> Vec<SignOutcome> {
        self.batch.iter().map(|id| SignOutcome::Paused { id: id.clone() }).collect()
    }

    /// The wallet's next nonce as recorded.
    pub fn read_start(&self, conn: &mut AnyConn) -> Result<i64, StoreError> {
        nonce_row(&self.wallet, self.chain_id)
            .select(wallet_nonces::next_nonce)
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::Query(format!("nonce of wallet {} on chain {} was never initialised", self.wallet, self.chain_id)))
    }

    /// Signs, in the caller's order (submission order), every withdrawal still RECEIVED, at
    /// consecutive nonces from `start`. A withdrawal listed twice is signed once.
    ///
    /// The whole batch goes to the signer at once. A refused signature takes no nonce: what
    /// was signed before the first refusal stands, every refusal is final for this batch
    /// (the message is redelivered), and what was signed after one is signed again at the
    /// nonces left free (those signatures are dropped unseen, never recorded or sent). So a
    /// signer that is down costs one round, not one per withdrawal; each round settles at
    /// least one withdrawal, and after [`MAX_SIGN_ROUNDS`] the rest wait for a later batch.
    pub fn plan(&self, start: i64, loaded: &[Withdrawal], sign: &mut SignFn) -> Result<Plan, StoreError> {
        enum Slot<'a> {
            Skip(&'a WithdrawalId, Status),
            Sign(usize),
        }
        let mut slots = Vec::with_capacity(self.batch.len());
        let mut candidates: Vec<&Withdrawal> = Vec::new();
        let mut taken: std::collections::HashSet<&WithdrawalId> = std::collections::HashSet::new();
        for id in &self.batch {
            let Some(w) = loaded.iter().find(|w| &w.id == id) else {
                return Err(StoreError::Query(format!("withdrawal {id} does not exist")));
            };
            if w.status != Status::Received || !taken.insert(id) {
                slots.push(Slot::Skip(id, w.status));
                continue;
            }
            slots.push(Slot::Sign(candidates.len()));
            candidates.push(w);
        }

        let mut answers: Vec<Option<(i64, Result<crate::ports::SignedTx, String>)>> = (0..candidates.len()).map(|_| None).collect();
        let mut next = start;
        let mut todo: Vec<usize> = (0..candidates.len()).collect();
        // A signer that keeps refusing one more each round (a flapping KMS) would otherwise
        // take a round per withdrawal while the caller may hold the wallet's nonce row.
        let mut rounds = 0;
        while !todo.is_empty() {
            rounds += 1;
            if rounds > MAX_SIGN_ROUNDS {
                for i in todo.drain(..) {
                    answers[i] = Some((next, Err("the signer refused others in this batch several times; signed later".into())));
                }
                break;
            }
            let asked: Vec<(&Withdrawal, u64)> = todo.iter().enumerate().map(|(k, &i)| (candidates[i], (next + k as i64) as u64)).collect();
            let mut got = sign(&asked).into_iter();
            let mut rest = Vec::new();
            let mut refused = false;
            for &i in &todo {
                match got.next().unwrap_or_else(|| Err("the signer answered fewer transfers than asked".into())) {
                    // Signed at a nonce that is still the next one: it stands.
                    Ok(tx) if !refused => {
                        answers[i] = Some((next, Ok(tx)));
                        next += 1;
                    }
                    // Signed, but a refusal before it leaves its nonce one too high.
                    Ok(_) => rest.push(i),
                    Err(error) => {
                        answers[i] = Some((next, Err(error)));
                        refused = true;
                    }
                }
            }
            todo = rest;
        }

        let mut outcomes = Vec::with_capacity(self.batch.len());
        let mut rows = Vec::new();
        for slot in slots {
            match slot {
                Slot::Skip(id, status) => outcomes.push(SignOutcome::Skipped { id: id.clone(), status }),
                Slot::Sign(i) => {
                    let id = &candidates[i].id;
                    match answers[i].take().expect("every candidate is answered") {
                        (nonce, Ok(tx)) => {
                            rows.push(AttemptRow::transfer(&tx, id.as_str(), &self.wallet, self.chain_id, nonce, self.now));
                            outcomes.push(SignOutcome::Signed { id: id.clone(), hash: tx.hash, raw: tx.raw, nonce: nonce as u64 });
                        }
                        (_, Err(error)) => outcomes.push(SignOutcome::SignError { id: id.clone(), error }),
                    }
                }
            }
        }
        Ok(Plan { outcomes, rows, next })
    }

    /// Records a plan's attempts, moves their withdrawals RECEIVED -> SIGNED with history, and
    /// advances the wallet's nonce, inside the caller's transaction.
    pub fn record(&self, conn: &mut AnyConn, plan: &Plan) -> Result<(), StoreError> {
        let moved: Vec<&str> = plan.rows.iter().map(|r| r.withdrawal_id.as_str()).collect();
        for chunk in plan.rows.chunks(200) {
            insert_rows!(conn, attempts::table, chunk)?;
        }
        for chunk in moved.chunks(500) {
            diesel::update(withdrawals::table.filter(withdrawals::id.eq_any(chunk)))
                .set((
                    withdrawals::status.eq(Status::Signed.as_str()),
                    withdrawals::reason.eq(None::<String>),
                    withdrawals::updated_at.eq(self.now),
                    withdrawals::nudged_at.eq(None::<i64>),
                ))
                .execute(conn)?;
        }
        let history: Vec<NewHistory> = moved
            .iter()
            .map(|id| NewHistory {
                withdrawal_id: id,
                from_status: Some(Status::Received.as_str()),
                to_status: Status::Signed.as_str(),
                reason: None,
                actor: "signer",
                at: self.now,
            })
            .collect();
        for chunk in history.chunks(500) {
            insert_rows!(conn, history::table, chunk)?;
        }
        diesel::update(nonce_row(&self.wallet, self.chain_id)).set(wallet_nonces::next_nonce.eq(plan.next)).execute(conn)?;
        Ok(())
    }
}
