//! The store contract: the promises of every `Store` method, each written once as a generic
//! function and run on SQLite and on PostgreSQL (a fresh database per test), so that both
//! backends, and any rewrite of them, answer alike. A failure names the database and the
//! promise: `store_contract::postgres::racing_cursor_writers_one_wins`.
//!
//! Time is a `ManualClock` the test moves, so "older than", lease expiry and first-seen
//! times are exact. Races run two stores over one database at once: two pools on
//! PostgreSQL, a clone on SQLite (its writes queue on one connection).

use super::ManualClock;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use withdraw_core::domain::{Amount, Status, WithdrawalId};
use withdraw_core::ports::*;

/// The chain most promises run on, and another one that must stay apart from it.
const CHAIN: u64 = 31337;
const OTHER: u64 = 10;
/// Where every test's clock starts.
const T0: i64 = 1_700_000_000_000;

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
        chain_id: CHAIN,
        to: Address::repeat_byte(7),
        amount: Amount(U256::from(5)),
    }
}

/// The hash `fake_sign` gives withdrawal `id` at `nonce`.
fn fake_hash(id: &WithdrawalId, nonce: u64) -> B256 {
    keccak256(format!("{id}/{nonce}"))
}

/// A stand-in for the keys port: a distinct, reproducible hash per (withdrawal, nonce).
pub fn fake_sign() -> SignFn {
    sign_each(|w: &Withdrawal, nonce: u64| {
        let hash = fake_hash(&w.id, nonce);
        Ok(SignedTx { hash, raw: Bytes::from(hash.to_vec()), max_fee_per_gas: 10, max_priority_fee_per_gas: 1, gas_limit: 21_000 })
    })
}

fn hot() -> Address {
    Address::repeat_byte(0xaa)
}

fn hot2() -> Address {
    Address::repeat_byte(0xbb)
}

fn ids(ns: &[u32]) -> Vec<WithdrawalId> {
    ns.iter().copied().map(wid).collect()
}

fn request(n: u32) -> NewWithdrawal {
    new_w(n, &format!("k{n}"), &format!("h{n}"))
}

/// Records these requests; each must be new.
async fn submit_all<S: Store>(s: &S, batch: Vec<NewWithdrawal>) {
    let want: Vec<SubmitOutcome> = batch.iter().map(|w| SubmitOutcome::Created { id: w.id.clone() }).collect();
    assert_eq!(s.submit(batch).await.unwrap(), want);
}

async fn submit<S: Store>(s: &S, ns: &[u32]) {
    submit_all(s, ns.iter().copied().map(request).collect()).await;
}

/// Signs these withdrawals' first attempts from `wallet` on `chain_id`; returns their nonces.
async fn sign_on<S: Store>(s: &S, wallet: Address, chain_id: u64, ns: &[u32]) -> Vec<u64> {
    let out = s.sign_first_attempts(wallet, chain_id, ids(ns), fake_sign()).await.unwrap();
    out.iter()
        .map(|o| match o {
            SignOutcome::Signed { nonce, .. } => *nonce,
            o => panic!("not signed: {o:?}"),
        })
        .collect()
}

async fn sign<S: Store>(s: &S, wallet: Address, ns: &[u32]) -> Vec<u64> {
    sign_on(s, wallet, CHAIN, ns).await
}

fn t(n: u32, from: Status, to: Status) -> Transition {
    Transition { id: wid(n), from, to, reason: None, actor: "stage".into(), settle: None, audit: None }
}

/// Moves these withdrawals `from` -> `to`; each must apply.
async fn step<S: Store>(s: &S, ns: &[u32], from: Status, to: Status) {
    let out = s.transition(ns.iter().map(|&n| t(n, from, to)).collect()).await.unwrap();
    assert_eq!(out, vec![true; ns.len()], "{from} -> {to} of {ns:?}");
}

async fn latest<S: Store>(s: &S, n: u32) -> Attempt {
    let mut v = s.latest_attempts(vec![wid(n)]).await.unwrap();
    assert_eq!(v.len(), 1, "one newest attempt of {n}");
    v.remove(0)
}

/// A new attempt over `old` at its nonce: `kind`, one more wei per gas, signed at `at_ms`.
fn replacement(old: &Attempt, kind: AttemptKind, at_ms: i64) -> Replacement {
    let hash = keccak256(format!("{}/{}/{at_ms}", old.tx_hash, kind.as_str()));
    Replacement {
        replaces: old.tx_hash,
        attempt: Attempt {
            tx_hash: hash,
            kind,
            raw: Bytes::from(hash.to_vec()),
            max_fee_per_gas: old.max_fee_per_gas + 1,
            max_priority_fee_per_gas: old.max_priority_fee_per_gas + 1,
            created_at_ms: at_ms,
            sent_at_ms: None,
            ..old.clone()
        },
    }
}

/// Replaces withdrawal `n`'s newest attempt (which must apply) and returns the new one.
async fn bump<S: Store>(s: &S, n: u32, kind: AttemptKind, at_ms: i64) -> Attempt {
    let r = replacement(&latest(s, n).await, kind, at_ms);
    assert_eq!(s.record_replacements(vec![r.clone()]).await.unwrap(), [true], "replacement of {n}");
    r.attempt
}

fn inclusion(n: u32, tx_hash: B256, block: u64) -> Inclusion {
    Inclusion {
        withdrawal_id: wid(n),
        tx_hash,
        block_number: block,
        block_hash: keccak256(block.to_be_bytes()),
        success: true,
        failure: None,
    }
}

/// Records withdrawal `n` mined at `block` by its newest attempt; returns that attempt's hash.
async fn mine<S: Store>(s: &S, n: u32, block: u64) -> B256 {
    let h = latest(s, n).await.tx_hash;
    s.record_inclusions(CHAIN, vec![inclusion(n, h, block)]).await.unwrap();
    h
}

fn inc_key(i: &Inclusion) -> (WithdrawalId, B256, u64, B256, bool, Option<String>) {
    (i.withdrawal_id.clone(), i.tx_hash, i.block_number, i.block_hash, i.success, i.failure.clone())
}

fn audit(actor: &str, action: &str, target: &str) -> AuditEntry {
    AuditEntry { actor: actor.into(), action: action.into(), target: target.into(), reason: Some("because".into()), detail: "{}".into() }
}

/// How many audit rows carry `action`.
async fn audited<S: Store>(s: &S, action: &str) -> usize {
    s.audit_log(1000, None).await.unwrap().iter().filter(|a| a.action == action).count()
}

fn control(chain_id: Option<u64>, paused: bool, actor: &str, at_ms: i64) -> SigningControl {
    SigningControl { chain_id, paused, actor: actor.into(), reason: "drill".into(), updated_at_ms: at_ms }
}

async fn pause<S: Store>(s: &S, chain_id: Option<u64>, paused: bool) {
    let action = if paused { "signing.pause" } else { "signing.resume" };
    s.set_signing_control(control(chain_id, paused, "ann", T0), audit("ann", action, "signing")).await.unwrap();
}

/// A sign outcome without its signature bytes, for comparing lists.
#[derive(Debug, PartialEq)]
enum Out {
    Signed(u64),
    Skipped(Status),
    /// Skipped, whatever status it reports.
    SkippedAny,
    Paused,
    SignError(String),
}

fn outs(v: &[SignOutcome]) -> Vec<(WithdrawalId, Out)> {
    v.iter()
        .map(|o| match o {
            SignOutcome::Signed { id, hash, raw, nonce } => {
                assert_eq!((*hash, raw.as_ref()), (fake_hash(id, *nonce), fake_hash(id, *nonce).as_slice()), "signed by the sign fn");
                (id.clone(), Out::Signed(*nonce))
            }
            SignOutcome::Skipped { id, status } => (id.clone(), Out::Skipped(*status)),
            SignOutcome::Paused { id } => (id.clone(), Out::Paused),
            SignOutcome::SignError { id, error } => (id.clone(), Out::SignError(error.clone())),
        })
        .collect()
}

fn credit(key: &str, hash: &str, amount: u64, state: CreditState) -> CreditRecord {
    CreditRecord {
        idempotency_key: key.into(),
        request_hash: hash.into(),
        user_id: "u".into(),
        asset: "ETH".into(),
        amount: Amount(U256::from(amount)),
        reason: "goodwill".into(),
        requested_by: "ann".into(),
        approved_by: None,
        state,
        created_at_ms: T0,
    }
}

/// A credit record without its creation time (the store's clock sets it).
fn undated(c: &CreditRecord) -> CreditRecord {
    CreditRecord { created_at_ms: 0, ..c.clone() }
}

fn fill(wallet: Address, chain_id: u64, nonce: u64, tag: &str) -> NonceFill {
    let tx_hash = keccak256(format!("fill/{chain_id}/{wallet}/{nonce}/{tag}"));
    NonceFill { chain_id, wallet, nonce, tx_hash, raw: Bytes::from(tx_hash.to_vec()), max_fee_per_gas: 7, created_at_ms: T0 }
}

fn fill_key(f: &NonceFill) -> (u64, Address, u64, B256, Bytes, u128, i64) {
    (f.chain_id, f.wallet, f.nonce, f.tx_hash, f.raw.clone(), f.max_fee_per_gas, f.created_at_ms)
}

// ---------------------------------------------------------------------------------------
// submit, get, load

/// A key reused within one batch and across batches: the same request is Existing, another
/// request is a Conflict, and neither creates anything.
async fn submit_is_idempotent_per_client_key<S: Store>(s: S, _clock: &ManualClock) {
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

async fn submit_records_the_request_as_received<S: Store>(s: S, clock: &ManualClock) {
    let w = NewWithdrawal {
        user_id: "alice".into(),
        asset: "USDC".into(),
        chain_id: OTHER,
        to: Address::repeat_byte(9),
        amount: Amount(U256::from(123_456u64)),
        ..request(1)
    };
    clock.advance_ms(7);
    submit_all(&s, vec![w.clone()]).await;
    let d = s.get(&wid(1)).await.unwrap().expect("recorded");
    let got = &d.withdrawal;
    assert_eq!(
        (&got.id, got.client_id.as_str(), got.user_id.as_str(), got.asset.as_str(), got.chain_id, got.to, got.amount),
        (&w.id, "c", "alice", "USDC", OTHER, w.to, w.amount)
    );
    assert_eq!((got.status, &got.reason, got.created_at_ms, got.updated_at_ms), (Status::Received, &None, T0 + 7, T0 + 7));
    assert_eq!(
        d.history.iter().map(|h| (h.from, h.to, h.at_ms)).collect::<Vec<_>>(),
        [(None, Status::Received, T0 + 7)],
        "one history row, entering RECEIVED"
    );
    assert!(d.attempts.is_empty() && d.inclusion.is_none() && d.cancel.is_none());

    // The key belongs to its client: another client's same key is another request.
    let other_client = NewWithdrawal { client_id: "d".into(), idempotency_key: "k1".into(), request_hash: "h1".into(), ..request(2) };
    submit_all(&s, vec![other_client]).await;

    // A repeat reports where the first one is now.
    step(&s, &[1], Status::Received, Status::Invalid).await;
    assert_eq!(
        s.submit(vec![NewWithdrawal { id: wid(10), ..request(1) }]).await.unwrap(),
        [SubmitOutcome::Existing { id: wid(1), status: Status::Invalid }]
    );
    assert!(s.submit(vec![]).await.unwrap().is_empty());
    assert!(s.get(&wid(10)).await.unwrap().is_none());
}

async fn get_and_load_answer_for_known_ids_only<S: Store>(s: S, _clock: &ManualClock) {
    assert!(s.get(&wid(1)).await.unwrap().is_none());
    submit(&s, &[1, 2, 3]).await;
    step(&s, &[2], Status::Received, Status::Invalid).await;
    let mut got: Vec<(WithdrawalId, Status)> = s.load(ids(&[3, 2, 99, 2])).await.unwrap().into_iter().map(|w| (w.id, w.status)).collect();
    got.sort();
    got.dedup();
    assert_eq!(got, [(wid(2), Status::Invalid), (wid(3), Status::Received)], "unknown ids are left out");
    assert!(s.load(vec![]).await.unwrap().is_empty());
}

async fn get_shows_attempts_history_inclusion_and_cancel<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    clock.advance_ms(10);
    sign(&s, hot(), &[1]).await;
    let first = latest(&s, 1).await;
    clock.advance_ms(10);
    let sent = Transition { actor: "sender".into(), ..t(1, Status::Signed, Status::Sent) };
    assert_eq!(s.transition(vec![sent]).await.unwrap(), [true]);
    clock.advance_ms(10);
    let second = bump(&s, 1, AttemptKind::Transfer, T0 + 30).await;
    let cancel = CancelRequest { withdrawal_id: wid(1), actor: "ann".into(), reason: "wrong address".into(), requested_at_ms: T0 + 35 };
    assert!(s.request_cancel(cancel, audit("ann", "withdrawal.discard", "1")).await.unwrap());
    let inc = Inclusion { success: false, failure: Some("no Transfer log".into()), ..inclusion(1, second.tx_hash, 7) };
    s.record_inclusions(CHAIN, vec![inc.clone()]).await.unwrap();

    let d = s.get(&wid(1)).await.unwrap().unwrap();
    assert_eq!((d.withdrawal.status, d.withdrawal.updated_at_ms), (Status::Sent, T0 + 20));
    let mut attempts: Vec<_> = d.attempts.iter().map(|a| (a.created_at_ms, a.tx_hash, a.nonce, a.wallet)).collect();
    attempts.sort();
    assert_eq!(attempts, [(T0 + 10, first.tx_hash, 0, hot()), (T0 + 30, second.tx_hash, 0, hot())]);
    assert_eq!(
        d.history.iter().map(|h| (h.from, h.to, h.at_ms)).collect::<Vec<_>>(),
        [(None, Status::Received, T0), (Some(Status::Received), Status::Signed, T0 + 10), (Some(Status::Signed), Status::Sent, T0 + 20)],
        "history in the order it happened"
    );
    assert_eq!(d.history[2].actor, "sender");
    assert_eq!(d.inclusion.as_ref().map(inc_key), Some(inc_key(&inc)));
    let c = d.cancel.expect("the discard");
    assert_eq!((c.withdrawal_id, c.actor.as_str(), c.reason.as_str(), c.requested_at_ms), (wid(1), "ann", "wrong address", T0 + 35));
}

// ---------------------------------------------------------------------------------------
// transition, pending_settlements, settled

async fn transition_applies_only_from_the_expected_status_once<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4]).await;
    clock.advance_ms(10);
    let batch = vec![
        Transition { reason: Some("bad address".into()), actor: "intake".into(), ..t(1, Status::Received, Status::Invalid) },
        t(2, Status::Signed, Status::Sent),
        t(3, Status::Received, Status::PendingApproval),
        t(3, Status::Received, Status::PendingApproval),
    ];
    assert_eq!(s.transition(batch).await.unwrap(), [true, false, true, false], "one withdrawal listed twice moves once");
    let d1 = s.get(&wid(1)).await.unwrap().unwrap();
    assert_eq!(
        (d1.withdrawal.status, d1.withdrawal.reason.as_deref(), d1.withdrawal.updated_at_ms),
        (Status::Invalid, Some("bad address"), T0 + 10)
    );
    let h = d1.history.last().unwrap();
    assert_eq!(
        (d1.history.len(), h.from, h.to, h.reason.as_deref(), h.actor.as_str(), h.at_ms),
        (2, Some(Status::Received), Status::Invalid, Some("bad address"), "intake", T0 + 10)
    );
    let d2 = s.get(&wid(2)).await.unwrap().unwrap();
    assert_eq!((d2.withdrawal.status, d2.withdrawal.updated_at_ms, d2.history.len()), (Status::Received, T0, 1), "untouched");
    let d3 = s.get(&wid(3)).await.unwrap().unwrap();
    assert_eq!((d3.withdrawal.status, d3.history.len()), (Status::PendingApproval, 2));

    // Once moved, the same change does not apply again; the next one does, with its reason.
    assert_eq!(s.transition(vec![t(1, Status::Received, Status::Invalid)]).await.unwrap(), [false]);
    assert_eq!(s.get(&wid(1)).await.unwrap().unwrap().history.len(), 2);
    assert_eq!(s.transition(vec![t(3, Status::PendingApproval, Status::Received)]).await.unwrap(), [true]);
    assert_eq!(s.get(&wid(3)).await.unwrap().unwrap().withdrawal.reason, None, "the reason is the new status's");

    // Two different changes of one withdrawal from the same status: exactly one applies, and
    // the answers say which.
    let release = |to| Transition { settle: Some(Settle::Release), ..t(4, Status::Received, to) };
    let out = s.transition(vec![release(Status::Invalid), release(Status::Rejected)]).await.unwrap();
    assert_eq!(out.iter().filter(|a| **a).count(), 1, "{out:?}");
    let won = if out[0] { Status::Invalid } else { Status::Rejected };
    let d4 = s.get(&wid(4)).await.unwrap().unwrap();
    assert_eq!((d4.withdrawal.status, d4.history.len()), (won, 2));
    assert_eq!(s.pending_settlements(i64::MAX, Some(ids(&[4])), 10).await.unwrap().len(), 1);
    assert!(s.transition(vec![]).await.unwrap().is_empty());
}

async fn transition_writes_its_settlement_and_audit_only_if_it_applies<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    clock.advance_ms(5);
    let batch = vec![
        Transition {
            settle: Some(Settle::Release),
            audit: Some(audit("ann", "withdrawal.reject", "1")),
            ..t(1, Status::Received, Status::Rejected)
        },
        Transition {
            settle: Some(Settle::Commit),
            audit: Some(audit("bob", "withdrawal.force", "2")),
            ..t(2, Status::Sent, Status::Completed)
        },
        t(3, Status::Received, Status::Invalid),
    ];
    assert_eq!(s.transition(batch).await.unwrap(), [true, false, true]);
    let owed: Vec<_> = s
        .pending_settlements(i64::MAX, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.withdrawal_id, p.settle, p.from, p.created_at_ms))
        .collect();
    assert_eq!(owed, [(wid(1), Settle::Release, Status::Received, T0 + 5)], "owed by the applied change only");
    let log = s.audit_log(100, None).await.unwrap();
    assert_eq!(
        log.iter().map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str(), a.at_ms)).collect::<Vec<_>>(),
        [("ann", "withdrawal.reject", "1", T0 + 5)],
        "the refused change leaves no audit row"
    );
    // One withdrawal listed twice: the first entry applies, and only its audit row stands.
    submit(&s, &[4]).await;
    let reject = |who: &str| Transition { audit: Some(audit(who, "withdrawal.reject", "4")), ..t(4, Status::Received, Status::Rejected) };
    assert_eq!(s.transition(vec![reject("cid"), reject("dan")]).await.unwrap(), [true, false]);
    let actors: Vec<String> = s.audit_log(100, None).await.unwrap().into_iter().filter(|a| a.target == "4").map(|a| a.actor).collect();
    assert_eq!(actors, ["cid"], "the entry that did not apply leaves no audit row");
}

async fn pending_settlements_filter_by_age_ids_and_limit<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4]).await;
    let owe = |n, to, settle| Transition { settle: Some(settle), ..t(n, Status::Received, to) };
    assert_eq!(s.transition(vec![owe(1, Status::Invalid, Settle::Release)]).await.unwrap(), [true]);
    clock.advance_ms(100);
    assert_eq!(s.transition(vec![owe(2, Status::Rejected, Settle::Release)]).await.unwrap(), [true]);
    clock.advance_ms(100);
    assert_eq!(s.transition(vec![owe(3, Status::Completed, Settle::Commit)]).await.unwrap(), [true]);
    let pending = |older: i64, of: Option<Vec<WithdrawalId>>, limit: i64| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s
                .pending_settlements(older, of, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.withdrawal_id, p.settle, p.from, p.created_at_ms))
                .collect();
            v.sort_by_key(|p| p.0.clone());
            v
        }
    };
    let one = (wid(1), Settle::Release, Status::Received, T0);
    let two = (wid(2), Settle::Release, Status::Received, T0 + 100);
    let three = (wid(3), Settle::Commit, Status::Received, T0 + 200);
    assert_eq!(pending(T0 + 100, None, 10).await, std::slice::from_ref(&one), "created before, strictly");
    assert_eq!(pending(T0 + 101, None, 10).await, [one.clone(), two.clone()]);
    assert_eq!(pending(i64::MAX, Some(ids(&[2, 3, 4])), 10).await, [two.clone(), three.clone()]);
    assert!(pending(i64::MAX, Some(vec![]), 10).await.is_empty(), "of no withdrawal, none");
    let limited = pending(i64::MAX, None, 2).await;
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|p| [&one, &two, &three].contains(&p)));

    // An owed change holds the withdrawal where it is until it is carried out.
    assert_eq!(s.transition(vec![t(1, Status::Invalid, Status::Received)]).await.unwrap(), [false]);
    s.settled(ids(&[1, 4])).await.unwrap();
    assert_eq!(pending(i64::MAX, None, 10).await, [two.clone(), three.clone()], "only the listed ones are settled");
    s.settled(ids(&[1])).await.unwrap();
    s.settled(vec![]).await.unwrap();
    assert_eq!(pending(i64::MAX, None, 10).await, [two, three]);
    assert_eq!(s.transition(vec![t(1, Status::Invalid, Status::Received)]).await.unwrap(), [true]);
}

// ---------------------------------------------------------------------------------------
// nonces: init_nonce, wallets, next_nonce, advance_nonce, sign_first_attempts

async fn init_nonce_starts_a_wallet_once_per_chain<S: Store>(s: S, _clock: &ManualClock) {
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), None);
    assert!(s.wallets(CHAIN).await.unwrap().is_empty());
    assert_eq!(s.init_nonce(hot(), CHAIN, 10).await.unwrap(), 10);
    assert_eq!(s.init_nonce(hot(), CHAIN, 3).await.unwrap(), 10, "a known wallet keeps its next nonce");
    assert_eq!(s.init_nonce(hot(), CHAIN, 50).await.unwrap(), 10);
    assert_eq!(s.init_nonce(hot(), OTHER, 0).await.unwrap(), 0, "each chain has its own lane");
    assert_eq!(s.init_nonce(hot2(), CHAIN, 7).await.unwrap(), 7);
    assert_eq!((s.next_nonce(hot(), CHAIN).await.unwrap(), s.next_nonce(hot(), OTHER).await.unwrap()), (Some(10), Some(0)));
    assert_eq!(s.next_nonce(hot2(), OTHER).await.unwrap(), None);
    let mut on_chain = s.wallets(CHAIN).await.unwrap();
    on_chain.sort();
    assert_eq!(on_chain, [hot(), hot2()]);
    assert_eq!(s.wallets(OTHER).await.unwrap(), [hot()]);
    assert!(s.wallets(999).await.unwrap().is_empty());

    submit(&s, &[1, 2]).await;
    assert_eq!(sign(&s, hot(), &[1, 2]).await, [10, 11]);
    assert_eq!(s.init_nonce(hot(), CHAIN, 0).await.unwrap(), 12, "returns the store's next nonce");
    assert_eq!(s.next_nonce(hot(), OTHER).await.unwrap(), Some(0));
}

async fn advance_nonce_only_raises_the_next_nonce<S: Store>(s: S, _clock: &ManualClock) {
    s.init_nonce(hot(), CHAIN, 10).await.unwrap();
    s.init_nonce(hot(), OTHER, 10).await.unwrap();
    assert_eq!(s.advance_nonce(hot(), CHAIN, 5).await.unwrap(), (10, 10), "never lowered");
    assert_eq!(s.advance_nonce(hot(), CHAIN, 10).await.unwrap(), (10, 10));
    assert_eq!(s.advance_nonce(hot(), CHAIN, 15).await.unwrap(), (10, 15));
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(15));
    assert_eq!(s.next_nonce(hot(), OTHER).await.unwrap(), Some(10), "other chains keep theirs");
    submit(&s, &[1]).await;
    assert_eq!(sign(&s, hot(), &[1]).await, [15], "signing continues from the raised nonce");
    assert_eq!(s.advance_nonce(hot(), CHAIN, 16).await.unwrap(), (16, 16));
}

async fn sign_first_attempts_take_contiguous_nonces_in_batch_order<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    s.init_nonce(hot(), CHAIN, 5).await.unwrap();
    clock.advance_ms(7);
    let out = s.sign_first_attempts(hot(), CHAIN, ids(&[3, 1, 2]), fake_sign()).await.unwrap();
    assert_eq!(outs(&out), [(wid(3), Out::Signed(5)), (wid(1), Out::Signed(6)), (wid(2), Out::Signed(7))]);
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(8));
    let mut got = s.latest_attempts(ids(&[1, 2, 3])).await.unwrap();
    got.sort_by_key(|a| a.nonce);
    for (a, (n, nonce)) in got.iter().zip([(3, 5), (1, 6), (2, 7)]) {
        let hash = fake_hash(&wid(n), nonce);
        assert_eq!(
            (&a.withdrawal_id, a.tx_hash, a.wallet, a.chain_id, a.nonce, a.kind, a.raw.as_ref()),
            (&wid(n), hash, hot(), CHAIN, nonce, AttemptKind::Transfer, hash.as_slice())
        );
        assert_eq!((a.max_fee_per_gas, a.max_priority_fee_per_gas, a.gas_limit), (10, 1, 21_000), "the signed fees");
        assert_eq!((a.created_at_ms, a.sent_at_ms), (T0 + 7, None));
    }
    for w in s.load(ids(&[1, 2, 3])).await.unwrap() {
        assert_eq!((w.status, w.updated_at_ms), (Status::Signed, T0 + 7), "{}", w.id);
    }
    let h = s.get(&wid(1)).await.unwrap().unwrap().history;
    assert_eq!(h.last().map(|h| (h.from, h.to, h.at_ms)), Some((Some(Status::Received), Status::Signed, T0 + 7)));
    assert!(s.sign_first_attempts(hot(), CHAIN, vec![], fake_sign()).await.unwrap().is_empty());
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(8));
}

async fn sign_first_attempts_skip_what_is_not_received_without_a_nonce<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    assert_eq!(sign(&s, hot(), &[1]).await, [0]);
    step(&s, &[2], Status::Received, Status::Invalid).await;
    let out = s.sign_first_attempts(hot(), CHAIN, ids(&[1, 2, 3, 3, 4]), fake_sign()).await.unwrap();
    let mut got = outs(&out);
    if let Some(dup) = got.get_mut(3)
        && matches!(dup.1, Out::Skipped(_))
    {
        dup.1 = Out::SkippedAny;
    }
    assert_eq!(
        got,
        [
            (wid(1), Out::Skipped(Status::Signed)),
            (wid(2), Out::Skipped(Status::Invalid)),
            (wid(3), Out::Signed(1)),
            (wid(3), Out::SkippedAny),
            (wid(4), Out::Signed(2)),
        ],
        "a redelivery or a repeat in the batch signs nothing"
    );
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(3), "no nonce taken by a skipped one");
    let count = |n| {
        let s = &s;
        async move { s.attempts_of(vec![wid(n)]).await.unwrap().len() }
    };
    assert_eq!((count(1).await, count(2).await, count(3).await, count(4).await), (1, 0, 1, 1));
    assert_eq!(s.get(&wid(1)).await.unwrap().unwrap().history.len(), 2, "signed once");
}

async fn a_refused_signature_takes_no_nonce<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    let mut inner = fake_sign();
    let refusing: SignFn = sign_each(
        move |w: &Withdrawal, nonce: u64| if w.id == wid(2) { Err("key refused".into()) } else { sign_one(&mut inner, w, nonce) },
    );
    let out = s.sign_first_attempts(hot(), CHAIN, ids(&[1, 2, 3]), refusing).await.unwrap();
    assert_eq!(outs(&out), [(wid(1), Out::Signed(0)), (wid(2), Out::SignError("key refused".into())), (wid(3), Out::Signed(1))]);
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(2));
    assert_eq!(s.load(ids(&[2])).await.unwrap()[0].status, Status::Received);
    assert!(s.attempts_of(ids(&[2])).await.unwrap().is_empty());
    assert_eq!(s.attempts_of(ids(&[3])).await.unwrap()[0].tx_hash, fake_hash(&wid(3), 1), "what is recorded was signed at its nonce");
    assert_eq!(sign(&s, hot(), &[2]).await, [2], "signed later, at the next free nonce");
}

/// A batch signer (KMS) answers a whole batch at once: refusals anywhere take no nonce, what
/// is recorded is the signature made at the recorded nonce, and a signer that refuses
/// everything is asked once, not once per withdrawal.
async fn a_batch_signer_refusing_some_leaves_no_gap<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5, 6]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u64>>::new()));
    let seen = calls.clone();
    let mut inner = fake_sign();
    let batch: SignFn = Box::new(move |items: &[(&Withdrawal, u64)]| {
        seen.lock().unwrap().push(items.iter().map(|(_, n)| *n).collect());
        items
            .iter()
            .map(|(w, n)| if w.id == wid(2) || w.id == wid(4) { Err(format!("refused {}", w.id)) } else { sign_one(&mut inner, w, *n) })
            .collect()
    });
    let out = s.sign_first_attempts(hot(), CHAIN, ids(&[1, 2, 3, 4, 5, 6]), batch).await.unwrap();
    assert_eq!(
        outs(&out),
        [
            (wid(1), Out::Signed(0)),
            (wid(2), Out::SignError(format!("refused {}", wid(2)))),
            (wid(3), Out::Signed(1)),
            (wid(4), Out::SignError(format!("refused {}", wid(4)))),
            (wid(5), Out::Signed(2)),
            (wid(6), Out::Signed(3)),
        ]
    );
    assert_eq!(*calls.lock().unwrap(), [vec![0, 1, 2, 3, 4, 5], vec![1, 2, 3]], "refusals are final; the signed rest is asked again once");
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(4));
    for (n, nonce) in [(1, 0), (3, 1), (5, 2), (6, 3)] {
        let a = &s.attempts_of(ids(&[n])).await.unwrap()[0];
        assert_eq!((a.nonce, a.tx_hash), (nonce, fake_hash(&wid(n), nonce)), "withdrawal {n}");
    }

    submit(&s, &[7, 8, 9]).await;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(0));
    let seen = calls.clone();
    let down: SignFn = Box::new(move |items: &[(&Withdrawal, u64)]| {
        *seen.lock().unwrap() += 1;
        items.iter().map(|_| Err("KMS unavailable".to_owned())).collect()
    });
    let out = s.sign_first_attempts(hot(), CHAIN, ids(&[7, 8, 9]), down).await.unwrap();
    assert!(out.iter().all(|o| matches!(o, SignOutcome::SignError { .. })), "{out:?}");
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(4));

    // A flapping signer refusing the first of every call: four rounds, then the rest wait.
    submit(&s, &[10, 11, 12, 13, 14, 15]).await;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(0));
    let seen = calls.clone();
    let mut inner = fake_sign();
    let flapping: SignFn = Box::new(move |items: &[(&Withdrawal, u64)]| {
        *seen.lock().unwrap() += 1;
        items.iter().enumerate().map(|(k, (w, n))| if k == 0 { Err("throttled".into()) } else { sign_one(&mut inner, w, *n) }).collect()
    });
    let out = s.sign_first_attempts(hot(), CHAIN, ids(&[10, 11, 12, 13, 14, 15]), flapping).await.unwrap();
    assert_eq!(*calls.lock().unwrap(), 4, "bounded rounds");
    let errors: Vec<String> =
        out.iter().map(|o| if let SignOutcome::SignError { error, .. } = o { error.clone() } else { panic!("{o:?}") }).collect();
    assert_eq!(&errors[..4], ["throttled"; 4]);
    assert!(errors[4..].iter().all(|e| e.contains("signed later")), "{errors:?}");
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(4), "nothing recorded, no nonce taken");
    assert!(s.attempts_of(ids(&[10, 11, 12, 13, 14, 15])).await.unwrap().is_empty());
}

async fn signing_needs_an_initialised_wallet<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1]).await;
    if let Ok(out) = s.sign_first_attempts(hot(), CHAIN, ids(&[1]), fake_sign()).await {
        assert!(!out.iter().any(|o| matches!(o, SignOutcome::Signed { .. })), "{out:?}");
    }
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), None);
    assert_eq!(s.load(ids(&[1])).await.unwrap()[0].status, Status::Received);
    assert!(s.attempts_of(ids(&[1])).await.unwrap().is_empty());
}

async fn the_brake_stops_first_signatures_in_its_scope<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    let nothing_recorded = || {
        let s = &s;
        async move {
            assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(0), "no nonce taken");
            assert!(s.attempts_of(ids(&[1, 2])).await.unwrap().is_empty(), "no attempt recorded");
            assert!(s.load(ids(&[1, 2])).await.unwrap().iter().all(|w| w.status == Status::Received));
        }
    };
    for scope in [None, Some(CHAIN)] {
        pause(&s, scope, true).await;
        let out = s.sign_first_attempts(hot(), CHAIN, ids(&[1, 2]), fake_sign()).await.unwrap();
        assert_eq!(outs(&out), [(wid(1), Out::Paused), (wid(2), Out::Paused)], "paused {scope:?}");
        nothing_recorded().await;
        pause(&s, scope, false).await;
    }
    pause(&s, Some(OTHER), true).await;
    assert_eq!(sign(&s, hot(), &[1, 2]).await, [0, 1], "a pause of another chain does not brake this one");
}

// ---------------------------------------------------------------------------------------
// attempts: latest_attempts, attempts_of, find_attempts, mark_sent, record_replacements, stuck

async fn latest_attempts_are_the_newest_per_withdrawal<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2]).await;
    // A bump in the same millisecond as the attempt it replaces still is the newest.
    let b1 = bump(&s, 1, AttemptKind::Transfer, T0).await;
    clock.advance_ms(5);
    bump(&s, 2, AttemptKind::Transfer, T0 + 5).await;
    clock.advance_ms(5);
    let b2 = bump(&s, 2, AttemptKind::Cancel, T0 + 10).await;
    let mut got: Vec<_> = s.latest_attempts(ids(&[1, 2, 3, 99])).await.unwrap().into_iter().map(|a| (a.withdrawal_id, a.tx_hash)).collect();
    got.sort();
    assert_eq!(got, [(wid(1), b1.tx_hash), (wid(2), b2.tx_hash)], "one per withdrawal that has any");
    assert!(s.latest_attempts(vec![]).await.unwrap().is_empty());
}

async fn attempts_of_and_find_attempts_return_every_attempt<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3]).await;
    let o1 = fake_hash(&wid(1), 0);
    let (o2, o3) = (fake_hash(&wid(2), 1), fake_hash(&wid(3), 2));
    clock.advance_ms(1);
    let b1 = bump(&s, 1, AttemptKind::Transfer, T0 + 1).await.tx_hash;
    clock.advance_ms(1);
    let c1 = bump(&s, 1, AttemptKind::Cancel, T0 + 2).await.tx_hash;
    let keys = |v: Vec<Attempt>| {
        let mut v: Vec<_> = v.into_iter().map(|a| (a.withdrawal_id, a.tx_hash, a.nonce)).collect();
        v.sort();
        v
    };
    let mut want = vec![(wid(1), o1, 0), (wid(1), b1, 0), (wid(1), c1, 0), (wid(2), o2, 1)];
    want.sort();
    assert_eq!(keys(s.attempts_of(ids(&[1, 2, 99])).await.unwrap()), want, "replaced ones too; none of 3");
    assert!(s.attempts_of(vec![]).await.unwrap().is_empty());

    let f = fill(hot(), CHAIN, 9, "x");
    assert!(s.record_fill(f.clone()).await.unwrap());
    let mut want = vec![(wid(1), o1, 0), (wid(1), c1, 0), (wid(3), o3, 2)];
    want.sort();
    assert_eq!(
        keys(s.find_attempts(vec![o1, c1, o3, B256::repeat_byte(0xee), f.tx_hash]).await.unwrap()),
        want,
        "ours only: not unknown hashes, not a nonce fill"
    );
    assert!(s.find_attempts(vec![]).await.unwrap().is_empty());
}

async fn mark_sent_keeps_the_first_acceptance<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2]).await;
    let (h1, h2) = (fake_hash(&wid(1), 0), fake_hash(&wid(2), 1));
    let sent_at = |h: B256| {
        let s = &s;
        async move { s.find_attempts(vec![h]).await.unwrap().remove(0).sent_at_ms }
    };
    clock.advance_ms(5);
    s.mark_sent(vec![h1, B256::repeat_byte(0xee)]).await.unwrap();
    assert_eq!((sent_at(h1).await, sent_at(h2).await), (Some(T0 + 5), None), "only the listed attempt");
    clock.advance_ms(5);
    s.mark_sent(vec![h1, h2]).await.unwrap();
    assert_eq!((sent_at(h1).await, sent_at(h2).await), (Some(T0 + 5), Some(T0 + 10)), "the first acceptance counts");
    s.mark_sent(vec![]).await.unwrap();
}

async fn record_replacements_apply_only_over_the_newest_open_unmined_attempt<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5, 6]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4, 5, 6]).await;
    step(&s, &[1, 2, 3, 4, 5], Status::Signed, Status::Sent).await;
    step(&s, &[4], Status::Sent, Status::Completed).await;
    step(&s, &[5], Status::Sent, Status::SendFailed).await;
    mine(&s, 3, 1).await;
    clock.advance_ms(10);
    let mut old = BTreeMap::new();
    for n in 1..=6 {
        old.insert(n, latest(&s, n).await);
    }
    let r = |n: u32| replacement(&old[&n], AttemptKind::Transfer, T0 + 10);
    let wrong_nonce = {
        let mut x = r(2);
        x.attempt.nonce += 1;
        x
    };
    let wrong_wallet = {
        let mut x = r(2);
        x.attempt.wallet = hot2();
        x
    };
    let batch = vec![r(1), wrong_nonce, wrong_wallet, r(3), r(4), r(5), r(6)];
    assert_eq!(
        s.record_replacements(batch.clone()).await.unwrap(),
        [true, false, false, false, false, true, true],
        "SENT, SEND_FAILED and SIGNED take one; another nonce or wallet, a mined or a finished one do not"
    );
    assert_eq!(latest(&s, 1).await.tx_hash, batch[0].attempt.tx_hash);
    for (n, count) in [(1, 2), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)] {
        assert_eq!(s.attempts_of(ids(&[n])).await.unwrap().len(), count, "attempts of {n}");
    }
    // The attempt replaced before is no longer the newest.
    assert_eq!(s.record_replacements(vec![r(1)]).await.unwrap(), [false]);
    assert_eq!(s.attempts_of(ids(&[1])).await.unwrap().len(), 2);

    // The brake holds bumps and cancels too.
    let next = replacement(&batch[0].attempt, AttemptKind::Cancel, T0 + 20);
    pause(&s, Some(CHAIN), true).await;
    assert_eq!(s.record_replacements(vec![next.clone()]).await.unwrap(), [false], "paused");
    assert_eq!(latest(&s, 1).await.tx_hash, batch[0].attempt.tx_hash);
    pause(&s, Some(CHAIN), false).await;
    assert_eq!(s.record_replacements(vec![next.clone()]).await.unwrap(), [true]);
    assert_eq!(latest(&s, 1).await.kind, AttemptKind::Cancel);
    assert!(s.record_replacements(vec![]).await.unwrap().is_empty());
}

async fn stuck_lists_sent_unmined_transfers_whose_newest_attempt_is_old<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5, 6]).await;
    submit_all(&s, vec![NewWithdrawal { chain_id: OTHER, ..request(7) }]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    s.init_nonce(hot(), OTHER, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4, 5, 6]).await;
    sign_on(&s, hot(), OTHER, &[7]).await;
    clock.advance_ms(10);
    step(&s, &[1, 2, 3, 4, 5, 7], Status::Signed, Status::Sent).await;
    step(&s, &[4, 5], Status::Sent, Status::SendFailed).await;
    mine(&s, 2, 1).await;
    clock.advance_ms(10);
    let c5 = bump(&s, 5, AttemptKind::Cancel, T0 + 20).await;
    clock.advance_ms(980);
    let b3 = bump(&s, 3, AttemptKind::Transfer, T0 + 1000).await;
    let stuck = |chain, older, limit| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s.stuck(chain, older, limit).await.unwrap().into_iter().map(|(w, a)| (w.id, w.status, a.tx_hash)).collect();
            v.sort();
            v
        }
    };
    let one = (wid(1), Status::Sent, fake_hash(&wid(1), 0));
    let five = (wid(5), Status::SendFailed, c5.tx_hash);
    assert_eq!(
        stuck(CHAIN, T0 + 500, 10).await,
        [one.clone(), five.clone()],
        "not SIGNED, not mined, not freshly bumped; a dead-lettered transfer waits for an operator, its cancel does not"
    );
    let three = (wid(3), Status::Sent, b3.tx_hash);
    assert_eq!(stuck(CHAIN, T0 + 1001, 10).await, [one.clone(), three.clone(), five.clone()], "with the newest attempt");
    assert_eq!(stuck(OTHER, T0 + 1001, 10).await, [(wid(7), Status::Sent, fake_hash(&wid(7), 0))]);
    // The limit counts what is returned: older dead-lettered transfers, waiting for an
    // operator, do not fill it (4 moved to SEND_FAILED before 1's attempt grew old).
    assert_eq!(stuck(CHAIN, T0 + 500, 1).await.len(), 1, "a limit of one still finds one");
    step(&s, &[4], Status::SendFailed, Status::Failed).await;
    let limited = stuck(CHAIN, T0 + 1001, 2).await;
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|x| [&one, &three, &five].contains(&x)), "{limited:?}");
}

// ---------------------------------------------------------------------------------------
// inclusions: record_inclusions, forget_inclusions, included_up_to

async fn inclusions_are_recorded_idempotently_and_forgotten_on_reorg<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5, 6]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4, 5, 6]).await;
    step(&s, &[1, 2, 3, 4, 6], Status::Signed, Status::Sent).await;
    let h: Vec<B256> = (1..=6).map(|n| fake_hash(&wid(n), n as u64 - 1)).collect();
    let failed = Inclusion { success: false, failure: Some("reverted".into()), ..inclusion(2, h[1], 11) };
    s.record_inclusions(CHAIN, vec![inclusion(1, h[0], 10), failed.clone(), inclusion(3, h[2], 12)]).await.unwrap();
    s.record_inclusions(CHAIN, vec![inclusion(1, h[0], 10)]).await.unwrap();
    assert_eq!(s.get(&wid(1)).await.unwrap().unwrap().inclusion.as_ref().map(inc_key), Some(inc_key(&inclusion(1, h[0], 10))));
    assert_eq!(s.get(&wid(2)).await.unwrap().unwrap().inclusion.as_ref().map(inc_key), Some(inc_key(&failed)));

    let up_to = |chain, block| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s
                .included_up_to(chain, block)
                .await
                .unwrap()
                .into_iter()
                .map(|i| (inc_key(&i.inclusion), i.withdrawal.id, i.withdrawal.status, i.kind == AttemptKind::Cancel))
                .collect();
            v.sort_by_key(|x| x.0.0.clone());
            v
        }
    };
    assert_eq!(
        up_to(CHAIN, 11).await,
        [(inc_key(&inclusion(1, h[0], 10)), wid(1), Status::Sent, false), (inc_key(&failed), wid(2), Status::Sent, false),],
        "at or below the block, once each"
    );
    assert!(up_to(CHAIN, 9).await.is_empty());
    assert!(up_to(OTHER, 100).await.is_empty(), "recorded on its chain");

    // Which attempt was mined decides the kind: the cancel, or the transfer it replaced.
    let c4 = bump(&s, 4, AttemptKind::Cancel, T0).await;
    bump(&s, 6, AttemptKind::Cancel, T0).await;
    s.record_inclusions(CHAIN, vec![inclusion(4, c4.tx_hash, 13), inclusion(5, h[4], 14), inclusion(6, h[5], 15)]).await.unwrap();
    let kinds: Vec<_> = up_to(CHAIN, 100).await.into_iter().map(|x| (x.1, x.2, x.3)).collect();
    assert_eq!(
        kinds,
        [
            (wid(1), Status::Sent, false),
            (wid(2), Status::Sent, false),
            (wid(3), Status::Sent, false),
            (wid(4), Status::Sent, true),
            (wid(5), Status::Signed, false),
            (wid(6), Status::Sent, false),
        ]
    );

    step(&s, &[1], Status::Sent, Status::Completed).await;
    s.forget_inclusions(ids(&[3])).await.unwrap();
    s.forget_inclusions(vec![]).await.unwrap();
    assert!(s.get(&wid(3)).await.unwrap().unwrap().inclusion.is_none());
    assert!(s.get(&wid(2)).await.unwrap().unwrap().inclusion.is_some(), "only the listed ones are forgotten");
    let open: Vec<_> = up_to(CHAIN, 100).await.into_iter().map(|x| x.1).collect();
    assert_eq!(open, ids(&[2, 4, 5, 6]), "not terminal, not forgotten");

    // Mined again elsewhere after a reorg: the new block is the one recorded.
    let moved = inclusion(2, h[1], 20);
    s.record_inclusions(CHAIN, vec![moved.clone()]).await.unwrap();
    assert_eq!(s.get(&wid(2)).await.unwrap().unwrap().inclusion.as_ref().map(inc_key), Some(inc_key(&moved)));
    assert!(up_to(CHAIN, 12).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// take_stale, cursor, set_cursor, acquire_lease, counts, oldest_in

async fn take_stale_nudges_each_withdrawal_once_per_period<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    clock.advance_ms(100);
    submit(&s, &[4]).await;
    step(&s, &[3], Status::Received, Status::Invalid).await;
    clock.advance_ms(900);
    let take = |status, older, limit| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s.take_stale(status, older, limit).await.unwrap().into_iter().map(|w| w.id).collect();
            v.sort();
            v
        }
    };
    assert_eq!(take(Status::Received, T0 + 50, 10).await, ids(&[1, 2]), "in the status since before, strictly");
    assert!(take(Status::Received, T0 + 50, 10).await.is_empty(), "nudged now");
    assert_eq!(take(Status::Received, T0 + 500, 10).await, ids(&[4]));
    assert_eq!(take(Status::Invalid, T0 + 500, 10).await, ids(&[3]));
    clock.advance_ms(1000);
    assert_eq!(take(Status::Received, T0 + 1500, 10).await, ids(&[1, 2, 4]), "a nudge older than the threshold is stale again");
    clock.advance_ms(1000);
    let first = take(Status::Received, T0 + 2500, 2).await;
    let rest = take(Status::Received, T0 + 2500, 10).await;
    assert_eq!((first.len(), rest.len()), (2, 1));
    assert_eq!(first.into_iter().chain(rest).collect::<BTreeSet<_>>(), ids(&[1, 2, 4]).into_iter().collect());
    // A new status is a new wait.
    step(&s, &[1], Status::Received, Status::PendingApproval).await;
    assert!(take(Status::PendingApproval, T0 + 3000, 10).await.is_empty());
    clock.advance_ms(1);
    assert_eq!(take(Status::PendingApproval, T0 + 3001, 10).await, ids(&[1]));
}

async fn the_cursor_moves_only_from_where_the_writer_saw_it<S: Store>(s: S, _clock: &ManualClock) {
    assert_eq!(s.cursor(CHAIN).await.unwrap(), None);
    assert!(s.set_cursor(CHAIN, None, 100).await.unwrap());
    assert!(!s.set_cursor(CHAIN, None, 5).await.unwrap(), "already set");
    assert!(!s.set_cursor(CHAIN, Some(99), 120).await.unwrap(), "not where the writer saw it");
    assert_eq!(s.cursor(CHAIN).await.unwrap(), Some(100));
    assert!(s.set_cursor(CHAIN, Some(100), 120).await.unwrap());
    assert!(s.set_cursor(CHAIN, Some(120), 90).await.unwrap(), "a rewind");
    assert_eq!(s.cursor(CHAIN).await.unwrap(), Some(90));
    assert_eq!(s.cursor(OTHER).await.unwrap(), None, "per chain");
    assert!(!s.set_cursor(OTHER, Some(90), 91).await.unwrap(), "no cursor yet on that chain");
    assert!(s.set_cursor(OTHER, None, 7).await.unwrap());
    assert_eq!((s.cursor(CHAIN).await.unwrap(), s.cursor(OTHER).await.unwrap()), (Some(90), Some(7)));
}

async fn a_lease_is_held_by_one_holder_until_it_expires<S: Store>(s: S, clock: &ManualClock) {
    assert!(s.acquire_lease("tracker", "a", 1000).await.unwrap());
    assert!(!s.acquire_lease("tracker", "b", 1000).await.unwrap());
    clock.advance_ms(999);
    assert!(!s.acquire_lease("tracker", "b", 1000).await.unwrap(), "held until it expires");
    assert!(s.acquire_lease("tracker", "a", 1000).await.unwrap(), "renewed by its holder");
    clock.advance_ms(501);
    assert!(!s.acquire_lease("tracker", "b", 1000).await.unwrap(), "the renewal counts from when it was made");
    assert!(s.acquire_lease("signer", "b", 1000).await.unwrap(), "another lease is another lock");
    clock.advance_ms(500);
    assert!(s.acquire_lease("tracker", "b", 1000).await.unwrap(), "expired: taken over");
    assert!(!s.acquire_lease("tracker", "a", 1000).await.unwrap(), "the old holder lost it");
    assert!(s.acquire_lease("tracker", "b", 1000).await.unwrap());
}

async fn counts_tally_withdrawals_by_status<S: Store>(s: S, _clock: &ManualClock) {
    let tally = || {
        let s = &s;
        async move { s.counts().await.unwrap().into_iter().filter(|(_, n)| *n > 0).collect::<BTreeMap<_, _>>() }
    };
    assert!(tally().await.is_empty());
    submit(&s, &[1, 2, 3, 4, 5]).await;
    step(&s, &[1, 2], Status::Received, Status::Invalid).await;
    step(&s, &[3], Status::Received, Status::PendingApproval).await;
    assert_eq!(tally().await, BTreeMap::from([(Status::Received, 2), (Status::Invalid, 2), (Status::PendingApproval, 1)]));
}

async fn oldest_in_is_when_the_longest_waiting_entered_its_status<S: Store>(s: S, clock: &ManualClock) {
    assert_eq!(s.oldest_in(Status::Sent).await.unwrap(), None);
    submit(&s, &[1, 2]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    clock.advance_ms(10);
    sign(&s, hot(), &[1, 2]).await;
    clock.advance_ms(10);
    step(&s, &[1], Status::Signed, Status::Sent).await;
    clock.advance_ms(10);
    step(&s, &[2], Status::Signed, Status::Sent).await;
    assert_eq!(s.oldest_in(Status::Sent).await.unwrap(), Some(T0 + 20));
    assert_eq!((s.oldest_in(Status::Received).await.unwrap(), s.oldest_in(Status::Signed).await.unwrap()), (None, None));
    clock.advance_ms(10);
    bump(&s, 1, AttemptKind::Transfer, T0 + 40).await;
    assert_eq!(s.oldest_in(Status::Sent).await.unwrap(), Some(T0 + 20), "a bump does not restart the wait");
    step(&s, &[1], Status::Sent, Status::Completed).await;
    assert_eq!(s.oldest_in(Status::Sent).await.unwrap(), Some(T0 + 30));
}

// ---------------------------------------------------------------------------------------
// the wallet's lane: in_flight, nonce_owners, resign_displaced, attempts_at

async fn in_flight_is_what_the_wallet_must_still_cover<S: Store>(s: S, clock: &ManualClock) {
    let amount = |n: u32| Amount(U256::from(n));
    let mut batch: Vec<_> = [1, 2, 3, 4, 5, 8, 9].into_iter().map(|n| NewWithdrawal { amount: amount(n), ..request(n) }).collect();
    batch.push(NewWithdrawal { asset: "USDC".into(), amount: amount(6), ..request(6) });
    batch.push(NewWithdrawal { chain_id: OTHER, amount: amount(7), ..request(7) });
    submit_all(&s, batch).await;
    for (w, c) in [(hot(), CHAIN), (hot2(), CHAIN), (hot(), OTHER)] {
        s.init_nonce(w, c, 0).await.unwrap();
    }
    sign(&s, hot(), &[1, 2, 3, 4, 6, 8]).await;
    sign(&s, hot2(), &[5]).await;
    sign_on(&s, hot(), OTHER, &[7]).await;
    step(&s, &[2, 3, 4, 8], Status::Signed, Status::Sent).await;
    step(&s, &[3], Status::Sent, Status::SendFailed).await;
    step(&s, &[8], Status::Sent, Status::Failed).await;
    clock.advance_ms(1);
    bump(&s, 2, AttemptKind::Transfer, T0 + 1).await;
    mine(&s, 4, 1).await;
    let owed = |chain, wallet| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s
                .in_flight(chain, wallet)
                .await
                .unwrap()
                .into_iter()
                .map(|f| (f.amount, f.asset, f.gas_limit, f.max_fee_per_gas))
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(
        owed(CHAIN, hot()).await,
        [
            (amount(1), "ETH".to_owned(), 21_000, 10),
            (amount(2), "ETH".to_owned(), 21_000, 11),
            (amount(3), "ETH".to_owned(), 21_000, 10),
            (amount(6), "USDC".to_owned(), 21_000, 10),
        ],
        "signed, sent and dead-lettered, at the newest attempt's fee; not mined, not finished"
    );
    assert_eq!(owed(CHAIN, hot2()).await, [(amount(5), "ETH".to_owned(), 21_000, 10)]);
    assert_eq!(owed(OTHER, hot()).await, [(amount(7), "ETH".to_owned(), 21_000, 10)]);
    assert!(owed(OTHER, hot2()).await.is_empty());
}

async fn nonce_owners_are_open_withdrawals_by_their_newest_attempt<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5, 6, 7]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    s.init_nonce(hot2(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4, 5]).await;
    sign(&s, hot2(), &[6]).await;
    step(&s, &[2, 3, 4, 5], Status::Signed, Status::Sent).await;
    step(&s, &[3], Status::Sent, Status::SendFailed).await;
    step(&s, &[5], Status::Sent, Status::Completed).await;
    clock.advance_ms(10);
    let b2 = bump(&s, 2, AttemptKind::Transfer, T0 + 10).await.tx_hash;
    let c3 = bump(&s, 3, AttemptKind::Cancel, T0 + 10).await.tx_hash;
    mine(&s, 4, 1).await;
    let owners = |wallet, chain| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s
                .nonce_owners(chain, wallet)
                .await
                .unwrap()
                .into_iter()
                .map(|o| {
                    let kind = o.kind == AttemptKind::Cancel;
                    (o.withdrawal_id, o.status, o.nonce, kind, o.mined, o.signed_at_ms, o.hashes.into_iter().collect::<BTreeSet<_>>())
                })
                .collect();
            v.sort_by_key(|o| o.2);
            v
        }
    };
    let h = |n: u32| fake_hash(&wid(n), n as u64 - 1);
    assert_eq!(
        owners(hot(), CHAIN).await,
        [
            (wid(1), Status::Signed, 0, false, false, T0, BTreeSet::from([h(1)])),
            (wid(2), Status::Sent, 1, false, false, T0 + 10, BTreeSet::from([h(2), b2])),
            (wid(3), Status::SendFailed, 2, true, false, T0 + 10, BTreeSet::from([h(3), c3])),
            (wid(4), Status::Sent, 3, false, true, T0, BTreeSet::from([h(4)])),
        ],
        "open, mined or not; every attempt's hash; not finished, not unsigned, not another wallet's"
    );
    assert_eq!(owners(hot2(), CHAIN).await, [(wid(6), Status::Signed, 0, false, false, T0, BTreeSet::from([fake_hash(&wid(6), 0)]))]);
    assert!(owners(hot(), OTHER).await.is_empty());
}

/// The nonce lane's repairs, end to end: advancing the next nonce, a cancel request,
/// re-signing a displaced transfer, replacing an attempt, the first broadcast time.
async fn nonce_lane_repairs_are_guarded<S: Store>(s: S, clock: &ManualClock) {
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
    clock.advance_ms(5);
    s.mark_sent(vec![c.tx_hash]).await.unwrap();
    let again = s.attempts_of(vec![wid(2)]).await.unwrap().into_iter().find(|a| a.tx_hash == c.tx_hash).unwrap().sent_at_ms;
    assert_eq!(first, again);
}

async fn resign_displaced_re_signs_only_eligible_transfers_at_new_nonces<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    s.init_nonce(hot2(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4, 5]).await;
    step(&s, &[1, 2, 3, 5], Status::Signed, Status::Sent).await;
    step(&s, &[2], Status::Sent, Status::SendFailed).await;
    let cancel = CancelRequest { withdrawal_id: wid(5), actor: "ann".into(), reason: "r".into(), requested_at_ms: T0 };
    assert!(s.request_cancel(cancel, audit("ann", "withdrawal.discard", "5")).await.unwrap());
    clock.advance_ms(10);
    let out = s
        .resign_displaced(hot(), CHAIN, vec![(wid(1), 0), (wid(2), 1), (wid(3), 99), (wid(4), 3), (wid(5), 4)], fake_sign())
        .await
        .unwrap();
    assert_eq!(
        outs(&out),
        [
            (wid(1), Out::Signed(5)),
            (wid(2), Out::Skipped(Status::SendFailed)),
            (wid(3), Out::Skipped(Status::Sent)),
            (wid(4), Out::Signed(6)),
            (wid(5), Out::Skipped(Status::Sent)),
        ],
        "SIGNED or SENT at the nonce named, without a cancel request"
    );
    assert_eq!(s.next_nonce(hot(), CHAIN).await.unwrap(), Some(7), "new nonces, contiguous");
    let now1 = latest(&s, 1).await;
    assert_eq!((now1.tx_hash, now1.nonce, now1.kind, now1.wallet), (fake_hash(&wid(1), 5), 5, AttemptKind::Transfer, hot()));
    assert!(now1.created_at_ms >= T0 + 10);
    assert_eq!(s.attempts_of(ids(&[1])).await.unwrap().len(), 2, "the displaced attempt stays on record");
    for n in [2, 3, 5] {
        assert_eq!(latest(&s, n).await.tx_hash, fake_hash(&wid(n), n as u64 - 1), "{n} untouched");
    }
    let out = s.resign_displaced(hot2(), CHAIN, vec![(wid(1), 5)], fake_sign()).await.unwrap();
    assert_eq!(outs(&out), [(wid(1), Out::Skipped(Status::Sent))], "its newest attempt is another wallet's");
    assert_eq!(s.next_nonce(hot2(), CHAIN).await.unwrap(), Some(0));

    pause(&s, None, true).await;
    let out = s.resign_displaced(hot(), CHAIN, vec![(wid(4), 6)], fake_sign()).await.unwrap();
    assert_eq!(outs(&out), [(wid(4), Out::Paused)]);
    assert_eq!((s.next_nonce(hot(), CHAIN).await.unwrap(), latest(&s, 4).await.nonce), (Some(7), 6), "nothing taken while paused");
}

async fn attempts_at_lists_every_attempt_of_the_wallet_at_these_nonces<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    s.init_nonce(hot2(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4]).await;
    sign(&s, hot2(), &[5]).await;
    let b1 = bump(&s, 1, AttemptKind::Transfer, T0).await.tx_hash;
    step(&s, &[2, 3], Status::Signed, Status::Sent).await;
    let m2 = mine(&s, 2, 1).await;
    step(&s, &[2], Status::Sent, Status::Completed).await;
    let at = |wallet, chain, nonces: Vec<u64>| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s
                .attempts_at(chain, wallet, nonces)
                .await
                .unwrap()
                .into_iter()
                .map(|a| (a.attempt.nonce, a.attempt.tx_hash, a.attempt.withdrawal_id, a.status, a.mined_hash))
                .collect();
            v.sort();
            v
        }
    };
    let h = |n: u32| fake_hash(&wid(n), n as u64 - 1);
    let mut want = vec![
        (0, h(1), wid(1), Status::Signed, None),
        (0, b1, wid(1), Status::Signed, None),
        (1, h(2), wid(2), Status::Completed, Some(m2)),
        (2, h(3), wid(3), Status::Sent, None),
    ];
    want.sort();
    assert_eq!(at(hot(), CHAIN, vec![0, 1, 2, 9]).await, want, "every attempt, whatever the status, with what was seen mined");
    assert_eq!(at(hot2(), CHAIN, vec![0]).await, [(0, fake_hash(&wid(5), 0), wid(5), Status::Signed, None)]);
    assert!(at(hot(), OTHER, vec![0, 1]).await.is_empty());
    assert!(at(hot(), CHAIN, vec![]).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// fills and nonce checks

async fn fills_are_recorded_per_wallet_from_a_nonce<S: Store>(s: S, _clock: &ManualClock) {
    let (f3, f5, f5b) =
        (fill(hot(), CHAIN, 3, "a"), fill(hot(), CHAIN, 5, "a"), NonceFill { max_fee_per_gas: 9, ..fill(hot(), CHAIN, 5, "b") });
    let (g4, o4) = (fill(hot2(), CHAIN, 4, "a"), fill(hot(), OTHER, 4, "a"));
    for f in [&f3, &f5, &f5b, &g4, &o4, &f3] {
        assert!(s.record_fill(f.clone()).await.unwrap(), "recorded");
    }
    let fills = |chain, wallet, from| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s.fills(chain, wallet, from).await.unwrap().iter().map(fill_key).collect();
            v.sort();
            v
        }
    };
    let mut all = vec![fill_key(&f3), fill_key(&f5), fill_key(&f5b)];
    all.sort();
    assert_eq!(fills(CHAIN, hot(), 0).await, all, "each fill once, a bumped one beside the first");
    assert_eq!(fills(CHAIN, hot(), 4).await, all[1..].to_vec());
    assert_eq!(fills(CHAIN, hot(), 5).await, all[1..].to_vec(), "from the nonce, inclusive");
    assert!(fills(CHAIN, hot(), 6).await.is_empty());
    assert_eq!(fills(CHAIN, hot2(), 0).await, [fill_key(&g4)]);
    assert_eq!(fills(OTHER, hot(), 0).await, [fill_key(&o4)]);

    for scope in [None, Some(CHAIN)] {
        pause(&s, scope, true).await;
        assert!(!s.record_fill(fill(hot(), CHAIN, 8, "paused")).await.unwrap(), "paused {scope:?}");
        pause(&s, scope, false).await;
    }
    assert!(fills(CHAIN, hot(), 6).await.is_empty(), "nothing recorded while paused");
    pause(&s, Some(OTHER), true).await;
    assert!(s.record_fill(fill(hot(), CHAIN, 8, "other chain paused")).await.unwrap());
    assert_eq!(fills(CHAIN, hot(), 6).await.len(), 1);
}

async fn a_nonce_check_is_kept_per_wallet_and_the_last_one_stands<S: Store>(s: S, _clock: &ManualClock) {
    s.init_nonce(hot(), CHAIN, 4).await.unwrap();
    s.init_nonce(hot2(), CHAIN, 0).await.unwrap();
    s.init_nonce(hot(), OTHER, 2).await.unwrap();
    assert!(s.nonce_checks().await.unwrap().is_empty(), "never checked: none");
    let check = |wallet, chain_id, next_nonce, gaps: &[u64], blocked: &[u64], at| NonceCheck {
        chain_id,
        wallet,
        next_nonce,
        chain_latest: 1,
        chain_pending: 2,
        gaps: gaps.to_vec(),
        blocked: blocked.to_vec(),
        checked_at_ms: at,
    };
    let sorted = |mut v: Vec<NonceCheck>| {
        v.sort_by_key(|c| (c.chain_id, c.wallet));
        v
    };
    let first = check(hot(), CHAIN, 4, &[1, 3], &[2], T0 + 1);
    s.record_nonce_check(first.clone()).await.unwrap();
    assert_eq!(s.nonce_checks().await.unwrap(), [first]);
    let second = NonceCheck { chain_latest: 4, chain_pending: 4, ..check(hot(), CHAIN, 4, &[], &[], T0 + 2) };
    s.record_nonce_check(second.clone()).await.unwrap();
    let other = check(hot(), OTHER, 2, &[0], &[], T0 + 3);
    s.record_nonce_check(other.clone()).await.unwrap();
    assert_eq!(sorted(s.nonce_checks().await.unwrap()), sorted(vec![second, other]), "the last per wallet and chain");
}

// ---------------------------------------------------------------------------------------
// cancels and search

async fn pending_cancels_are_open_unmined_transfers_with_a_request<S: Store>(s: S, clock: &ManualClock) {
    submit(&s, &[1, 2, 3, 4, 5, 6]).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[1, 2, 3, 4, 5, 6]).await;
    step(&s, &[1, 2, 3, 4, 5], Status::Signed, Status::Sent).await;
    mine(&s, 2, 1).await;
    step(&s, &[3], Status::Sent, Status::Completed).await;
    for (i, n) in [1, 6, 2, 3, 4].into_iter().enumerate() {
        let req = CancelRequest { withdrawal_id: wid(n), actor: "ann".into(), reason: format!("r{n}"), requested_at_ms: T0 + i as i64 };
        assert!(s.request_cancel(req, audit("ann", "withdrawal.discard", &n.to_string())).await.unwrap());
    }
    let again = CancelRequest { withdrawal_id: wid(1), actor: "bob".into(), reason: "again".into(), requested_at_ms: T0 + 9 };
    assert!(!s.request_cancel(again, audit("bob", "withdrawal.discard", "1")).await.unwrap(), "the first stands");
    assert_eq!(audited(&s, "withdrawal.discard").await, 5, "audited once per recorded request");
    let c = s.get(&wid(1)).await.unwrap().unwrap().cancel.unwrap();
    assert_eq!((c.actor.as_str(), c.reason.as_str(), c.requested_at_ms), ("ann", "r1", T0));
    clock.advance_ms(10);
    bump(&s, 4, AttemptKind::Cancel, T0 + 10).await;
    let pending = |limit| {
        let s = &s;
        async move {
            let mut v: Vec<_> = s
                .pending_cancels(CHAIN, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|(w, a)| (w.id, w.status, a.tx_hash, a.kind == AttemptKind::Transfer))
                .collect();
            v.sort();
            v
        }
    };
    let one = (wid(1), Status::Sent, fake_hash(&wid(1), 0), true);
    let six = (wid(6), Status::Signed, fake_hash(&wid(6), 5), true);
    assert_eq!(pending(10).await, [one.clone(), six.clone()], "not mined, not finished, not already cancelling, not unrequested");
    let limited = pending(1).await;
    assert!(limited.len() == 1 && (limited[0] == one || limited[0] == six), "{limited:?}");
    // 4's cancel is already signed and its request is among the oldest: it must not take
    // the one place of a limit of one.
    s.transition(vec![t(1, Status::Sent, Status::Completed), t(6, Status::Signed, Status::Cancelled)]).await.unwrap();
    submit(&s, &[8]).await;
    sign(&s, hot(), &[8]).await;
    let req = CancelRequest { withdrawal_id: wid(8), actor: "ann".into(), reason: "r8".into(), requested_at_ms: T0 + 50 };
    assert!(s.request_cancel(req, audit("ann", "withdrawal.discard", "8")).await.unwrap());
    assert_eq!(pending(1).await, [(wid(8), Status::Signed, fake_hash(&wid(8), 6), true)], "behind a request already cancelling");
    assert!(s.pending_cancels(OTHER, 10).await.unwrap().is_empty());
}

/// Candidates already cancelling fill more than one page of the query: the pending request
/// behind them is still found.
async fn pending_cancels_look_past_pages_of_requests_already_cancelling<S: Store>(s: S, clock: &ManualClock) {
    let many: Vec<u32> = (1..=130).collect();
    submit(&s, &many).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &many).await;
    for &n in &many {
        let req = CancelRequest { withdrawal_id: wid(n), actor: "ann".into(), reason: "r".into(), requested_at_ms: T0 + i64::from(n) };
        assert!(s.request_cancel(req, audit("ann", "withdrawal.discard", &n.to_string())).await.unwrap());
    }
    clock.advance_ms(10);
    let mut cancels = Vec::new();
    for &n in &many {
        cancels.push(replacement(&latest(&s, n).await, AttemptKind::Cancel, T0 + 10));
    }
    assert_eq!(s.record_replacements(cancels).await.unwrap(), vec![true; many.len()]);
    submit(&s, &[131]).await;
    sign(&s, hot(), &[131]).await;
    let req = CancelRequest { withdrawal_id: wid(131), actor: "ann".into(), reason: "r".into(), requested_at_ms: T0 + 500 };
    assert!(s.request_cancel(req, audit("ann", "withdrawal.discard", "131")).await.unwrap());
    let found: Vec<WithdrawalId> = s.pending_cancels(CHAIN, 1).await.unwrap().into_iter().map(|(w, _)| w.id).collect();
    assert_eq!(found, [wid(131)]);
}

async fn search_matches_exactly_and_pages_newest_first<S: Store>(s: S, _clock: &ManualClock) {
    let (a, b) = (Address::repeat_byte(0xab), Address::repeat_byte(0xcd));
    let people = [(1, "alice", a), (2, "bob", b), (3, "alice", a), (4, "carol", b), (5, "alice", b)];
    submit_all(&s, people.iter().map(|&(n, user, to)| NewWithdrawal { user_id: user.into(), to, ..request(n) }).collect()).await;
    step(&s, &[5], Status::Received, Status::Invalid).await;
    s.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&s, hot(), &[2]).await;
    let first_hash = fake_hash(&wid(2), 0);
    let bumped = bump(&s, 2, AttemptKind::Transfer, T0).await.tx_hash;
    let find = |status: Option<Status>, query: Option<String>, before: Option<u32>, limit: i64| {
        let s = &s;
        async move {
            let f = SearchFilter { status, query, before: before.map(wid), limit };
            s.search(f).await.unwrap().into_iter().map(|w| w.id).collect::<Vec<_>>()
        }
    };
    let q = |s: &str| Some(s.to_owned());
    assert_eq!(find(None, None, None, 10).await, ids(&[5, 4, 3, 2, 1]), "newest first");
    assert_eq!(find(Some(Status::Received), None, None, 10).await, ids(&[4, 3, 1]), "2 is SIGNED");
    assert_eq!(find(None, q("alice"), None, 10).await, ids(&[5, 3, 1]), "by user id");
    assert_eq!(find(Some(Status::Received), q("alice"), None, 10).await, ids(&[3, 1]), "both filters");
    assert!(find(None, q("ali"), None, 10).await.is_empty(), "a user id matches exactly, not a prefix");
    assert_eq!(find(None, q(wid(4).as_str()), None, 10).await, ids(&[4]), "by withdrawal id");
    // The start of an id, as lists show it, finds the ids it starts (uppercase too).
    assert_eq!(find(None, q("00000000-0000-7000"), None, 10).await, ids(&[5, 4, 3, 2, 1]), "by the start of an id");
    assert_eq!(find(None, q(&wid(4).as_str()[..35]), None, 10).await, ids(&[5, 4, 3, 2, 1]), "these differ in the last digit only");
    assert_eq!(find(None, q(&format!("{}-", &wid(4).as_str()[..23].to_uppercase())), None, 10).await, ids(&[5, 4, 3, 2, 1]));
    assert_eq!(find(Some(Status::Received), q(&wid(4).as_str()[..13]), None, 10).await, ids(&[4, 3, 1]), "with a status");
    assert!(find(None, q("00000000-0000-7000-8000-0000000009"), None, 10).await.is_empty());
    assert!(find(None, q("0000000"), None, 10).await.is_empty(), "under 8 characters is not an id's start");
    assert_eq!(find(None, Some(format!("{a:#x}")), None, 10).await, ids(&[3, 1]), "by destination");
    assert_eq!(find(None, Some(a.to_checksum(None)), None, 10).await, ids(&[3, 1]), "a checksummed address is the same address");
    assert_eq!(find(None, Some(format!("{first_hash:#x}")), None, 10).await, ids(&[2]), "by any attempt's hash");
    assert_eq!(find(None, Some(format!("{bumped:#x}")), None, 10).await, ids(&[2]));
    assert!(find(None, Some(format!("{:#x}", B256::repeat_byte(0xee))), None, 10).await.is_empty());
    assert_eq!(find(None, None, None, 2).await, ids(&[5, 4]), "limited");
    assert_eq!(find(None, None, Some(4), 2).await, ids(&[3, 2]), "the page before an id");
    assert_eq!(find(None, None, Some(2), 2).await, ids(&[1]));
    assert_eq!(find(None, q("alice"), Some(5), 10).await, ids(&[3, 1]));
}

// ---------------------------------------------------------------------------------------
// the change feed

/// Reads a client's whole feed from `after`, a page of `page` at a time.
async fn read_feed<S: Store>(
    s: &S,
    client: &str,
    mut after: FeedCursor,
    page: i64,
) -> (Vec<(WithdrawalId, Option<Status>, Status)>, FeedCursor) {
    let mut out = Vec::new();
    loop {
        let got = s.changes(client.to_owned(), after, page).await.unwrap();
        let Some(last) = got.last() else { return (out, after) };
        assert!(got.windows(2).all(|w| w[0].cursor < w[1].cursor), "in cursor order");
        assert!(got[0].cursor > after, "after the cursor");
        after = last.cursor;
        out.extend(got.into_iter().map(|c| (c.withdrawal.id, c.from, c.to)));
    }
}

/// Every status change of a client's withdrawals, in order, once, resumable from any cursor;
/// another client's never.
async fn the_feed_serves_a_clients_changes_in_order_from_a_cursor<S: Store>(s: S, _clock: &ManualClock) {
    let other = |n: u32| NewWithdrawal { client_id: "other".into(), user_id: "u".into(), ..request(n) };
    submit_all(&s, vec![request(1), request(2), other(3)]).await;
    step(&s, &[2], Status::Received, Status::Invalid).await;
    step(&s, &[3], Status::Received, Status::Invalid).await;
    let (all, end) = read_feed(&s, "c", FeedCursor::default(), 1).await;
    let (r, i) = (Status::Received, Status::Invalid);
    assert_eq!(all, [(wid(1), None, r), (wid(2), None, r), (wid(2), Some(r), i)], "client c's, in order, paged one by one");
    assert_eq!(read_feed(&s, "other", FeedCursor::default(), 100).await.0, [(wid(3), None, r), (wid(3), Some(r), i)]);
    assert!(read_feed(&s, "nobody", FeedCursor::default(), 100).await.0.is_empty());
    // From the end: nothing, until something changes; then only that.
    assert!(s.changes("c".into(), end, 100).await.unwrap().is_empty());
    step(&s, &[2], Status::Invalid, Status::Rejected).await;
    let (more, _) = read_feed(&s, "c", end, 100).await;
    assert_eq!(more, [(wid(2), Some(i), Status::Rejected)]);
    // The change carries the withdrawal as it is now.
    let first = s.changes("c".into(), FeedCursor::default(), 1).await.unwrap().remove(0);
    assert_eq!((first.withdrawal.id, first.withdrawal.status, first.to), (wid(1), Status::Received, Status::Received));
    // A cursor survives its encoding; anything else is not a cursor.
    assert_eq!(FeedCursor::decode(&end.encode()), Some(end));
    for bad in ["", "c1.", "c1.1", "c1.1.2.3", "c1.-1.2", "c2.1.2", "c1.a.b"] {
        assert_eq!(FeedCursor::decode(bad), None, "{bad:?}");
    }
}

/// Moves each of `ns` RECEIVED -> INVALID -> REJECTED, one transaction per step.
async fn feed_writer<S: Store>(s: &S, ns: std::ops::RangeInclusive<u32>) {
    for n in ns {
        step(s, &[n], Status::Received, Status::Invalid).await;
        step(s, &[n], Status::Invalid, Status::Rejected).await;
    }
}

/// Two writers moving withdrawals at once while a reader follows the feed with its cursor:
/// every change is read exactly once, none skipped (on PostgreSQL, ids are drawn before
/// their transactions commit, in any order), each withdrawal's in the order they happened.
async fn the_feed_never_skips_a_change_under_concurrent_writers<S: Store>(a: S, b: S, _clock: &ManualClock) {
    const EACH: u32 = 60;
    submit_all(&a, (1..=2 * EACH).map(request).collect()).await;
    let done = AtomicBool::new(false);
    let writers = async {
        tokio::join!(feed_writer(&a, 1..=EACH), feed_writer(&b, EACH + 1..=2 * EACH));
        done.store(true, Ordering::SeqCst);
    };
    let reader = async {
        let mut seen = Vec::new();
        let mut after = FeedCursor::default();
        loop {
            let finished = done.load(Ordering::SeqCst);
            let (got, next) = read_feed(&a, "c", after, 7).await;
            seen.extend(got);
            after = next;
            if finished {
                return seen;
            }
            tokio::task::yield_now().await;
        }
    };
    let ((), seen) = tokio::join!(writers, reader);
    let mut per: BTreeMap<WithdrawalId, Vec<Status>> = BTreeMap::new();
    for (id, _, to) in &seen {
        per.entry(id.clone()).or_default().push(*to);
    }
    assert_eq!(seen.len(), 3 * 2 * EACH as usize, "every change once (received, invalid, rejected per withdrawal)");
    for (id, steps) in per {
        assert_eq!(steps, [Status::Received, Status::Invalid, Status::Rejected], "{id}");
    }
}

// ---------------------------------------------------------------------------------------
// approvals, signing controls, the audit log

/// An approval stands once; revoked, it no longer counts and a new one can be given.
async fn approvals_stand_once_and_can_be_revoked<S: Store>(s: S, _clock: &ManualClock) {
    s.submit(vec![new_w(1, "a", "h1"), new_w(2, "b", "h2")]).await.unwrap();
    let approval = |who: &str| Approval { withdrawal_id: wid(1), approver: who.into(), reason: "ok".into(), approved_at_ms: 1 };
    assert!(s.record_approval(approval("bob")).await.unwrap());
    assert!(!s.record_approval(approval("eve")).await.unwrap(), "the first approval stands");
    assert_eq!(s.approved(vec![wid(1), wid(2)]).await.unwrap(), [wid(1)]);
    s.revoke_approvals(vec![wid(1)]).await.unwrap();
    assert!(s.approved(vec![wid(1)]).await.unwrap().is_empty(), "a revoked approval no longer counts");
    assert!(s.record_approval(approval("eve")).await.unwrap(), "and a new one can be given");
}

async fn approvals_are_per_withdrawal<S: Store>(s: S, _clock: &ManualClock) {
    submit(&s, &[1, 2, 3]).await;
    assert!(s.approved(ids(&[1, 2, 3])).await.unwrap().is_empty());
    for n in [1, 3] {
        let a = Approval { withdrawal_id: wid(n), approver: "bob".into(), reason: "ok".into(), approved_at_ms: T0 };
        assert!(s.record_approval(a).await.unwrap());
    }
    let mut got = s.approved(ids(&[3, 2, 1, 99])).await.unwrap();
    got.sort();
    assert_eq!(got, ids(&[1, 3]));
    s.revoke_approvals(ids(&[3, 99])).await.unwrap();
    s.revoke_approvals(vec![]).await.unwrap();
    assert_eq!(s.approved(ids(&[1, 2, 3])).await.unwrap(), ids(&[1]), "only the listed ones are revoked");
    assert!(s.approved(vec![]).await.unwrap().is_empty());
}

async fn signing_controls_keep_the_latest_per_scope_with_its_audit<S: Store>(s: S, _clock: &ManualClock) {
    assert!(s.signing_controls().await.unwrap().is_empty());
    let steps = [
        (control(None, true, "ann", T0 + 1), "signing.pause"),
        (control(Some(CHAIN), true, "bob", T0 + 2), "signing.pause.chain"),
        (control(None, false, "carol", T0 + 3), "signing.resume"),
    ];
    for (c, action) in &steps {
        s.set_signing_control(c.clone(), audit(&c.actor, action, "signing")).await.unwrap();
    }
    let mut got = s.signing_controls().await.unwrap();
    got.sort_by_key(|c| c.chain_id);
    assert_eq!(got, [steps[2].0.clone(), steps[1].0.clone()], "one per scope, the latest");
    let log = s.audit_log(10, None).await.unwrap();
    assert_eq!(
        log.iter().map(|a| (a.actor.as_str(), a.action.as_str())).collect::<Vec<_>>(),
        [("carol", "signing.resume"), ("bob", "signing.pause.chain"), ("ann", "signing.pause")],
        "each change audited"
    );
}

async fn the_audit_log_pages_newest_first<S: Store>(s: S, clock: &ManualClock) {
    assert!(s.audit_log(10, None).await.unwrap().is_empty());
    for i in 0..5 {
        clock.advance_ms(1);
        let e = AuditEntry {
            actor: format!("op{i}"),
            action: "withdrawal.reprocess".into(),
            target: format!("withdrawal/{i}"),
            reason: (i % 2 == 0).then(|| format!("why {i}")),
            detail: format!("{{\"i\":{i}}}"),
        };
        s.audit(e).await.unwrap();
    }
    let all = s.audit_log(10, None).await.unwrap();
    let row = |a: &AuditRecord| (a.at_ms, a.actor.clone(), a.action.clone(), a.target.clone(), a.reason.clone(), a.detail.clone());
    let want: Vec<_> = (0..5i64)
        .rev()
        .map(|i| {
            let reason = (i % 2 == 0).then(|| format!("why {i}"));
            (T0 + i + 1, format!("op{i}"), "withdrawal.reprocess".to_owned(), format!("withdrawal/{i}"), reason, format!("{{\"i\":{i}}}"))
        })
        .collect();
    assert_eq!(all.iter().map(row).collect::<Vec<_>>(), want, "newest first, as written");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let page1 = s.audit_log(2, None).await.unwrap();
    let page2 = s.audit_log(2, Some(page1[1].id)).await.unwrap();
    let page3 = s.audit_log(2, Some(page2[1].id)).await.unwrap();
    let paged: Vec<i64> = page1.iter().chain(&page2).chain(&page3).map(|a| a.id).collect();
    assert_eq!(paged, all.iter().map(|a| a.id).collect::<Vec<_>>(), "pages meet without gaps or overlaps");
    assert!(s.audit_log(10, Some(all[4].id)).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// credits: record_credit, approve_credit, credits_to_apply, credit_applied

async fn a_credit_is_journaled_once_per_key_with_its_audit<S: Store>(s: S, _clock: &ManualClock) {
    let c = credit("k1", "h1", 5, CreditState::Approved);
    let CreditOutcome::Created(stored) = s.record_credit(c.clone(), audit("ann", "balance.credit", "u")).await.unwrap() else {
        panic!("a new key is created")
    };
    assert_eq!(undated(&stored), undated(&c));
    assert_eq!(
        s.record_credit(c.clone(), audit("ann", "balance.credit", "u")).await.unwrap(),
        CreditOutcome::Existing(stored.clone()),
        "the same request again: the first one"
    );
    let other = credit("k1", "h2", 6, CreditState::Approved);
    assert_eq!(
        s.record_credit(other, audit("ann", "balance.credit", "u")).await.unwrap(),
        CreditOutcome::Conflict(stored.clone()),
        "another request under the key: the first one, unchanged"
    );
    assert_eq!(audited(&s, "balance.credit").await, 1, "audited with the journal entry only");
    assert_eq!(s.credits_to_apply(10).await.unwrap(), std::slice::from_ref(&stored), "approved at once: to apply");
    assert_eq!(
        s.approve_credit("k1", "bob", audit("bob", "balance.credit.approve", "k1")).await.unwrap(),
        ApproveCreditOutcome::NotPending(stored.clone())
    );
    s.credit_applied("k1").await.unwrap();
    assert!(s.credits_to_apply(10).await.unwrap().is_empty(), "applied: not again");
    let applied = CreditRecord { state: CreditState::Applied, ..stored };
    assert_eq!(
        s.record_credit(c, audit("ann", "balance.credit", "u")).await.unwrap(),
        CreditOutcome::Existing(applied),
        "as it stands now"
    );
    assert_eq!(audited(&s, "balance.credit.approve").await, 0);
}

async fn a_credit_above_the_threshold_waits_for_a_second_person<S: Store>(s: S, _clock: &ManualClock) {
    let c = credit("k2", "h", 5_000, CreditState::PendingApproval);
    let CreditOutcome::Created(pending) = s.record_credit(c, audit("ann", "balance.credit.request", "u")).await.unwrap() else {
        panic!("created")
    };
    assert_eq!((pending.state, &pending.approved_by), (CreditState::PendingApproval, &None));
    assert!(s.credits_to_apply(10).await.unwrap().is_empty(), "pending is not to apply");
    let approve = |key: &str, who: &str| {
        let (s, key, who) = (&s, key.to_owned(), who.to_owned());
        async move { s.approve_credit(&key, &who, audit(&who, "balance.credit.approve", &key)).await.unwrap() }
    };
    assert_eq!(approve("k2", "ann").await, ApproveCreditOutcome::SamePerson, "not the one who asked");
    assert_eq!(approve("nope", "bob").await, ApproveCreditOutcome::NotFound);
    assert_eq!(audited(&s, "balance.credit.approve").await, 0, "refusals leave no audit row");
    let approved = CreditRecord { state: CreditState::Approved, approved_by: Some("bob".into()), ..pending };
    assert_eq!(approve("k2", "bob").await, ApproveCreditOutcome::Approved(approved.clone()));
    assert_eq!(approve("k2", "carol").await, ApproveCreditOutcome::NotPending(approved.clone()), "the first approval stands");
    assert_eq!(audited(&s, "balance.credit.approve").await, 1);
    assert_eq!(s.credits_to_apply(10).await.unwrap(), std::slice::from_ref(&approved));
    s.credit_applied("k2").await.unwrap();
    assert!(s.credits_to_apply(10).await.unwrap().is_empty());
    let applied = CreditRecord { state: CreditState::Applied, ..approved };
    assert_eq!(approve("k2", "carol").await, ApproveCreditOutcome::NotPending(applied));
}

async fn credits_to_apply_hands_out_approved_credits_up_to_the_limit<S: Store>(s: S, _clock: &ManualClock) {
    for (i, state) in
        [CreditState::Approved, CreditState::PendingApproval, CreditState::Approved, CreditState::Approved].into_iter().enumerate()
    {
        let key = format!("c{i}");
        assert!(matches!(
            s.record_credit(credit(&key, "h", 1, state), audit("ann", "balance.credit", &key)).await.unwrap(),
            CreditOutcome::Created(_)
        ));
    }
    let keys = |v: Vec<CreditRecord>| v.into_iter().map(|c| c.idempotency_key).collect::<BTreeSet<_>>();
    let first = keys(s.credits_to_apply(2).await.unwrap());
    assert_eq!(first.len(), 2);
    for k in &first {
        s.credit_applied(k).await.unwrap();
    }
    let rest = keys(s.credits_to_apply(2).await.unwrap());
    assert_eq!(rest.len(), 1, "the applied ones are gone, the pending one never came");
    assert_eq!(first.union(&rest).cloned().collect::<BTreeSet<_>>(), BTreeSet::from(["c0".to_owned(), "c2".into(), "c3".into()]));
}

// ---------------------------------------------------------------------------------------
// hot wallets' funds and alerts

async fn wallet_funds_keep_the_latest_report_per_wallet_and_asset<S: Store>(s: S, _clock: &ManualClock) {
    assert!(s.wallet_funds().await.unwrap().is_empty());
    let funds = |chain_id, asset: &str, balance: u64, at| WalletFunds {
        chain_id,
        wallet: hot(),
        asset: asset.into(),
        balance: Amount(U256::from(balance)),
        in_flight: Amount::ZERO,
        short_by: Amount::ZERO,
        held: 0,
        updated_at_ms: at,
    };
    s.record_wallet_funds(vec![funds(CHAIN, "ETH", 100, T0), funds(CHAIN, "USDC", 5, T0)]).await.unwrap();
    let short =
        WalletFunds { in_flight: Amount(U256::from(7)), short_by: Amount(U256::from(3)), held: 2, ..funds(CHAIN, "ETH", 90, T0 + 1) };
    s.record_wallet_funds(vec![short.clone(), funds(OTHER, "ETH", 1, T0 + 1)]).await.unwrap();
    s.record_wallet_funds(vec![]).await.unwrap();
    let mut got = s.wallet_funds().await.unwrap();
    got.sort_by_key(|f| (f.chain_id, f.wallet, f.asset.clone()));
    let mut want = vec![short, funds(CHAIN, "USDC", 5, T0), funds(OTHER, "ETH", 1, T0 + 1)];
    want.sort_by_key(|f| (f.chain_id, f.wallet, f.asset.clone()));
    assert_eq!(got, want);
}

async fn alerts_are_deduplicated_by_fingerprint_and_listed_newest_first<S: Store>(s: S, _clock: &ManualClock) {
    let alert = |fp: &str, status: &str, at: i64| AlertRecord {
        fingerprint: fp.into(),
        status: status.into(),
        name: "WithdrawStuckTransaction".into(),
        severity: Some("critical".into()),
        summary: Some(format!("{fp} is {status}")),
        console: Some("withdraw-console --goto stuck".into()),
        labels: serde_json::json!({"chain_id": "31337", "fp": fp}),
        annotations: serde_json::json!({"runbook": "docs"}),
        starts_at: "2026-01-01T00:00:00Z".into(),
        ends_at: (status == "resolved").then(|| "2026-01-01T01:00:00Z".into()),
        received_at_ms: at,
    };
    assert_eq!(s.record_alerts(vec![alert("a", "firing", T0 + 1), alert("b", "firing", T0 + 2)]).await.unwrap(), 2);
    assert_eq!(
        s.record_alerts(vec![alert("a", "resolved", T0 + 3), alert("c", "firing", T0 + 4), alert("c", "firing", T0 + 5)]).await.unwrap(),
        1,
        "one new fingerprint"
    );
    assert_eq!(s.record_alerts(vec![]).await.unwrap(), 0);
    let list = |status: Option<&str>, limit| {
        let s = &s;
        let status = status.map(str::to_owned);
        async move { s.alerts(status, limit).await.unwrap() }
    };
    assert_eq!(list(None, 10).await, [alert("c", "firing", T0 + 5), alert("a", "resolved", T0 + 3), alert("b", "firing", T0 + 2)]);
    assert_eq!(list(Some("firing"), 10).await, [alert("c", "firing", T0 + 5), alert("b", "firing", T0 + 2)]);
    assert_eq!(list(Some("resolved"), 10).await, [alert("a", "resolved", T0 + 3)]);
    assert_eq!(list(None, 2).await, [alert("c", "firing", T0 + 5), alert("a", "resolved", T0 + 3)]);
}

/// The brake read inside every signing write, the cursor's compare-and-set, the tracker
/// lease, owed settlements and the credit journal, in one pass.
async fn brake_cursor_lease_and_credits_hold<S: Store>(s: S, clock: &ManualClock) {
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
    clock.advance_ms(20);
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

// ---------------------------------------------------------------------------------------
// Races: two stores over one database, called at once. Each round is a fresh contest.

/// Which of two racers won, given whether each did; panics unless exactly one did.
fn one_winner(a: bool, b: bool, what: &str) -> bool {
    assert!(a ^ b, "{what}: exactly one must win (a {a}, b {b})");
    a
}

/// Duplicate submissions racing each other never make two withdrawals, and the one that
/// loses answers Existing (on PostgreSQL, even when both looked the key up before either
/// committed: its insert waits on the winner's and then does nothing).
async fn racing_submits_of_one_key_never_make_two_withdrawals<S: Store>(a: S, b: S, _clock: &ManualClock) {
    for round in 0..10u32 {
        let key = format!("race{round}");
        let (x, y) = tokio::join!(a.submit(vec![new_w(2 * round + 1, &key, "h")]), b.submit(vec![new_w(2 * round + 2, &key, "h")]));
        // Neither fails: a lost race is an answer (Existing), not an error that would refuse
        // the loser's whole intake batch.
        let (x, y) = (x.unwrap(), y.unwrap());
        let created: Vec<WithdrawalId> = [&x, &y]
            .into_iter()
            .filter_map(|r| match Some(&r[0]) {
                Some(SubmitOutcome::Created { id }) => Some(id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "{key}: exactly one created: {x:?} {y:?}");
        let id = created[0].clone();
        for v in [&x, &y] {
            assert!(
                matches!(&v[0], SubmitOutcome::Created { id: c } | SubmitOutcome::Existing { id: c, status: Status::Received } if *c == id),
                "{key}: {v:?}"
            );
        }
        let retry = a.submit(vec![new_w(100 + round, &key, "h")]).await.unwrap();
        assert_eq!(retry, [SubmitOutcome::Existing { id, status: Status::Received }], "{key}: the retry finds the one");
    }
    let received: i64 = a.counts().await.unwrap().into_iter().filter(|(s, _)| *s == Status::Received).map(|(_, n)| n).sum();
    assert_eq!(received, 10, "one withdrawal per key");
}

async fn racing_nudgers_take_each_stale_withdrawal_once<S: Store>(a: S, b: S, clock: &ManualClock) {
    submit(&a, &(1..=40).collect::<Vec<_>>()).await;
    for round in 0..10 {
        clock.advance_ms(100);
        let now = clock.now_ms();
        let (x, y) = tokio::join!(a.take_stale(Status::Received, now, 1000), b.take_stale(Status::Received, now, 1000));
        let (x, y): (BTreeSet<WithdrawalId>, BTreeSet<WithdrawalId>) =
            (x.unwrap().into_iter().map(|w| w.id).collect(), y.unwrap().into_iter().map(|w| w.id).collect());
        assert!(x.is_disjoint(&y), "round {round}: {} taken by both", x.intersection(&y).count());
        assert_eq!(x.len() + y.len(), 40, "round {round}: every stale withdrawal taken once");
    }
}

/// Two bumpers replacing the same attempt at once (a transfer's bump and an operator's
/// cancel, say): exactly one replacement stands, and it is the newest attempt.
async fn racing_bumpers_replace_each_attempt_once<S: Store>(a: S, b: S, _clock: &ManualClock) {
    let all: Vec<u32> = (1..=20).collect();
    submit(&a, &all).await;
    a.init_nonce(hot(), CHAIN, 0).await.unwrap();
    sign(&a, hot(), &all).await;
    for round in 0..3i64 {
        let mut olds = Vec::new();
        for &n in &all {
            olds.push(latest(&a, n).await);
        }
        let at = T0 + 100 * (round + 1);
        let by_a: Vec<Replacement> = olds.iter().map(|o| replacement(o, AttemptKind::Transfer, at)).collect();
        let by_b: Vec<Replacement> = olds.iter().map(|o| replacement(o, AttemptKind::Cancel, at + 1)).collect();
        let (x, y) = tokio::join!(a.record_replacements(by_a.clone()), b.record_replacements(by_b.clone()));
        let (x, y) = (x.unwrap(), y.unwrap());
        for (i, &n) in all.iter().enumerate() {
            let winner = if one_winner(x[i], y[i], &format!("round {round}, withdrawal {n}")) { &by_a[i] } else { &by_b[i] };
            assert_eq!(latest(&a, n).await.tx_hash, winner.attempt.tx_hash, "round {round}, withdrawal {n}: the winner is the newest");
        }
    }
}

async fn racing_transitions_move_each_withdrawal_once<S: Store>(a: S, b: S, _clock: &ManualClock) {
    submit(&a, &(1..=50).collect::<Vec<_>>()).await;
    let mut won_by_a = HashSet::new();
    for round in 0..10u32 {
        let ns: Vec<u32> = (round * 5 + 1..=round * 5 + 5).collect();
        let to_a = ns.iter().map(|&n| Transition { settle: Some(Settle::Release), ..t(n, Status::Received, Status::Invalid) }).collect();
        let to_b = ns.iter().map(|&n| t(n, Status::Received, Status::PendingApproval)).collect();
        let (x, y) = tokio::join!(a.transition(to_a), b.transition(to_b));
        let (x, y) = (x.unwrap(), y.unwrap());
        for (i, &n) in ns.iter().enumerate() {
            if one_winner(x[i], y[i], &format!("withdrawal {n}")) {
                won_by_a.insert(wid(n));
            }
        }
    }
    for w in a.load((1..=50).map(wid).collect()).await.unwrap() {
        let want = if won_by_a.contains(&w.id) { Status::Invalid } else { Status::PendingApproval };
        assert_eq!(w.status, want, "{}", w.id);
        assert_eq!(a.get(&w.id).await.unwrap().unwrap().history.len(), 2, "one history row for the one move");
    }
    let owed: HashSet<WithdrawalId> =
        a.pending_settlements(i64::MAX, None, 1000).await.unwrap().into_iter().map(|p| p.withdrawal_id).collect();
    assert_eq!(owed, won_by_a, "a settlement exactly where the move that owes one applied");
}

/// Signs `order` ten at a time from the hot wallet; returns what was signed, at which nonce.
async fn sign_in_tens<S: Store>(s: &S, order: Vec<u32>) -> Vec<(WithdrawalId, u64)> {
    let mut signed = Vec::new();
    for chunk in order.chunks(10) {
        for o in s.sign_first_attempts(hot(), CHAIN, ids(chunk), fake_sign()).await.unwrap() {
            if let SignOutcome::Signed { id, nonce, .. } = o {
                signed.push((id, nonce));
            }
        }
    }
    signed
}

async fn racing_signers_sign_each_withdrawal_once_at_distinct_nonces<S: Store>(a: S, b: S, _clock: &ManualClock) {
    let all: Vec<u32> = (1..=60).collect();
    submit(&a, &all).await;
    a.init_nonce(hot(), CHAIN, 3).await.unwrap();
    let (x, y) = tokio::join!(sign_in_tens(&a, all.clone()), sign_in_tens(&b, all.iter().rev().copied().collect()));
    let mut seen = HashSet::new();
    let mut nonces: Vec<u64> = Vec::new();
    for (id, nonce) in x.into_iter().chain(y) {
        assert!(seen.insert(id.clone()), "{id} signed twice");
        nonces.push(nonce);
    }
    nonces.sort_unstable();
    assert_eq!(nonces, (3..63).collect::<Vec<u64>>(), "every withdrawal signed, at distinct nonces without a gap");
    assert_eq!(a.next_nonce(hot(), CHAIN).await.unwrap(), Some(63));
    assert_eq!(a.attempts_of(ids(&all)).await.unwrap().len(), 60, "one attempt each");
}

async fn a_pause_that_answered_holds_for_every_signer<S: Store>(a: S, b: S, _clock: &ManualClock) {
    let all: Vec<u32> = (1..=60).collect();
    submit(&a, &all).await;
    a.init_nonce(hot(), CHAIN, 0).await.unwrap();
    let answered = AtomicBool::new(false);
    let signer = async {
        let mut signed = 0;
        for chunk in all.chunks(2) {
            let after_pause = answered.load(Ordering::SeqCst);
            let out = a.sign_first_attempts(hot(), CHAIN, ids(chunk), fake_sign()).await.unwrap();
            let n = out.iter().filter(|o| matches!(o, SignOutcome::Signed { .. })).count();
            if after_pause {
                assert_eq!(n, 0, "signed after the pause answered: {out:?}");
                assert!(out.iter().all(|o| matches!(o, SignOutcome::Paused { .. })));
            }
            signed += n;
        }
        signed as u64
    };
    let braker = async {
        tokio::task::yield_now().await;
        pause(&b, None, true).await;
        answered.store(true, Ordering::SeqCst);
        b.counts().await.unwrap().into_iter().filter(|(s, _)| *s == Status::Signed).map(|(_, n)| n).sum::<i64>()
    };
    let (signed, at_answer) = tokio::join!(signer, braker);
    let now: i64 = a.counts().await.unwrap().into_iter().filter(|(s, _)| *s == Status::Signed).map(|(_, n)| n).sum();
    assert_eq!(now, at_answer, "nothing signed once the pause answered");
    assert_eq!((now as u64, a.next_nonce(hot(), CHAIN).await.unwrap()), (signed, Some(signed)), "recorded exactly what was answered");
    // Whether or not the signer finished before the pause landed, a new request is held.
    submit(&a, &[61]).await;
    let out = a.sign_first_attempts(hot(), CHAIN, ids(&[61]), fake_sign()).await.unwrap();
    assert!(matches!(out[..], [SignOutcome::Paused { .. }]), "{out:?}");
}

async fn racing_fills_record_once_and_stop_at_the_brake<S: Store>(a: S, b: S, _clock: &ManualClock) {
    a.init_nonce(hot(), CHAIN, 0).await.unwrap();
    let f0 = fill(hot(), CHAIN, 0, "same");
    let (x, y) = tokio::join!(a.record_fill(f0.clone()), b.record_fill(f0.clone()));
    assert!(x.unwrap() && y.unwrap(), "both recorded it");
    assert_eq!(a.fills(CHAIN, hot(), 0).await.unwrap().iter().map(fill_key).collect::<Vec<_>>(), [fill_key(&f0)], "once");

    let answered = AtomicBool::new(false);
    let recorder = async {
        let mut recorded = BTreeSet::new();
        for n in 1..=40u64 {
            let after_pause = answered.load(Ordering::SeqCst);
            let ok = a.record_fill(fill(hot(), CHAIN, n, "race")).await.unwrap();
            assert!(!(after_pause && ok), "fill {n} recorded after the pause answered");
            if ok {
                recorded.insert(n);
            }
        }
        recorded
    };
    let braker = async {
        tokio::task::yield_now().await;
        pause(&b, Some(CHAIN), true).await;
        answered.store(true, Ordering::SeqCst);
    };
    let (recorded, ()) = tokio::join!(recorder, braker);
    let stored: BTreeSet<u64> = a.fills(CHAIN, hot(), 1).await.unwrap().into_iter().map(|f| f.nonce).collect();
    assert_eq!(stored, recorded, "recorded exactly the fills answered true");
    assert!(!b.record_fill(fill(hot(), CHAIN, 99, "after")).await.unwrap());
}

async fn racing_cursor_writers_one_wins<S: Store>(a: S, b: S, _clock: &ManualClock) {
    let (x, y) = tokio::join!(a.set_cursor(CHAIN, None, 10), b.set_cursor(CHAIN, None, 20));
    let mut cur = if one_winner(x.unwrap(), y.unwrap(), "first cursor") { 10 } else { 20 };
    assert_eq!(a.cursor(CHAIN).await.unwrap(), Some(cur));
    for round in 0..20 {
        let (x, y) = tokio::join!(a.set_cursor(CHAIN, Some(cur), cur + 1), b.set_cursor(CHAIN, Some(cur), cur + 2));
        cur = if one_winner(x.unwrap(), y.unwrap(), &format!("round {round}")) { cur + 1 } else { cur + 2 };
        assert_eq!(b.cursor(CHAIN).await.unwrap(), Some(cur), "the winner's block");
    }
}

async fn racing_lease_takers_one_holds_it<S: Store>(a: S, b: S, clock: &ManualClock) {
    for round in 0..20 {
        let name = format!("lease{round}");
        let (x, y) = tokio::join!(a.acquire_lease(&name, "a", 1000), b.acquire_lease(&name, "b", 1000));
        let a_won = one_winner(x.unwrap(), y.unwrap(), &name);
        let (winner, loser) = if a_won { ("a", "b") } else { ("b", "a") };
        assert!(!b.acquire_lease(&name, loser, 1000).await.unwrap(), "{name}: still held");
        assert!(a.acquire_lease(&name, winner, 1000).await.unwrap(), "{name}: renewed by its winner");
    }
    clock.advance_ms(1001);
    for round in 0..20 {
        let name = format!("lease{round}");
        let (x, y) = tokio::join!(a.acquire_lease(&name, "c", 1000), b.acquire_lease(&name, "d", 1000));
        one_winner(x.unwrap(), y.unwrap(), &format!("expired {name}"));
    }
}

async fn racing_credit_requests_journal_once<S: Store>(a: S, b: S, _clock: &ManualClock) {
    for round in 0..10 {
        let key = format!("same{round}");
        let c = credit(&key, "h", 5, CreditState::Approved);
        let (x, y) = tokio::join!(
            a.record_credit(c.clone(), audit("ann", "balance.credit", &key)),
            b.record_credit(c.clone(), audit("ann", "balance.credit", &key))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let created = |o: &CreditOutcome| matches!(o, CreditOutcome::Created(_));
        let (won, lost) = if one_winner(created(&x), created(&y), &key) { (x, y) } else { (y, x) };
        let CreditOutcome::Created(first) = won else { unreachable!() };
        assert_eq!(lost, CreditOutcome::Existing(first), "{key}");

        let key = format!("conflict{round}");
        let (x, y) = tokio::join!(
            a.record_credit(credit(&key, "ha", 5, CreditState::Approved), audit("ann", "balance.credit", &key)),
            b.record_credit(credit(&key, "hb", 6, CreditState::Approved), audit("ann", "balance.credit", &key))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let (won, lost) = if one_winner(created(&x), created(&y), &key) { (x, y) } else { (y, x) };
        let CreditOutcome::Created(first) = won else { unreachable!() };
        assert_eq!(lost, CreditOutcome::Conflict(first), "{key}");
    }
    assert_eq!(audited(&a, "balance.credit").await, 20, "one audit row per journaled credit");
    assert_eq!(a.credits_to_apply(100).await.unwrap().len(), 20);
}

async fn racing_credit_approvals_approve_once<S: Store>(a: S, b: S, _clock: &ManualClock) {
    for round in 0..10 {
        let key = format!("k{round}");
        let c = credit(&key, "h", 5_000, CreditState::PendingApproval);
        assert!(matches!(a.record_credit(c, audit("ann", "balance.credit.request", &key)).await.unwrap(), CreditOutcome::Created(_)));
        let (x, y) = tokio::join!(
            a.approve_credit(&key, "bob", audit("bob", "balance.credit.approve", &key)),
            b.approve_credit(&key, "carol", audit("carol", "balance.credit.approve", &key))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let approved = |o: &ApproveCreditOutcome| matches!(o, ApproveCreditOutcome::Approved(_));
        let (won, lost) = if one_winner(approved(&x), approved(&y), &key) { (x, y) } else { (y, x) };
        let ApproveCreditOutcome::Approved(rec) = won else { unreachable!() };
        assert_eq!(lost, ApproveCreditOutcome::NotPending(rec.clone()), "{key}: the loser sees the winner's approval");
    }
    assert_eq!(audited(&a, "balance.credit.approve").await, 10, "one audit row per approval");
}

async fn racing_approvals_the_first_stands<S: Store>(a: S, b: S, _clock: &ManualClock) {
    let all: Vec<u32> = (1..=20).collect();
    submit(&a, &all).await;
    for &n in &all {
        let by = |who: &str| Approval { withdrawal_id: wid(n), approver: who.into(), reason: "ok".into(), approved_at_ms: T0 };
        let (x, y) = tokio::join!(a.record_approval(by("bob")), b.record_approval(by("eve")));
        one_winner(x.unwrap(), y.unwrap(), &format!("approval of {n}"));
    }
    let mut got = a.approved(ids(&all)).await.unwrap();
    got.sort();
    assert_eq!(got, ids(&all));
}

// ---------------------------------------------------------------------------------------
// The databases.

mod rig {
    use super::{ManualClock, T0};
    use std::sync::Arc;
    use withdraw_core::adapters::postgres::Postgres;
    use withdraw_core::adapters::sqlite::Sqlite;
    use withdraw_core::adapters::store::RecordStore;
    use withdraw_core::testing::servers;

    /// A fresh SQLite file and the clock its stores read.
    pub struct SqliteRig {
        pub clock: Arc<ManualClock>,
        db: Sqlite,
        dir: tempfile::TempDir,
    }

    impl SqliteRig {
        pub fn new() -> SqliteRig {
            let dir = tempfile::tempdir().unwrap();
            let db = Sqlite::open(&dir.path().join("contract.db")).unwrap();
            SqliteRig { clock: ManualClock::new(T0), db, dir }
        }

        pub fn store(&self) -> RecordStore {
            RecordStore::new(self.db.clone(), self.clock.clone())
        }

        /// A store over the same file opened again, with its own writer connection, as a
        /// second process would have: races meet in SQLite's file lock, not in one process's
        /// writer mutex.
        pub fn another_process(&self) -> RecordStore {
            RecordStore::new(Sqlite::open(&self.dir.path().join("contract.db")).unwrap(), self.clock.clone())
        }
    }

    /// A PostgreSQL server of its own with one fresh, migrated database; each store is its
    /// own pool, as each replica would be.
    pub struct PgRig {
        pub clock: Arc<ManualClock>,
        url: String,
        _pg: servers::Postgres,
    }

    impl PgRig {
        pub fn new() -> PgRig {
            let pg = servers::Postgres::start();
            let url = crate::postgres::database(&pg, "contract");
            PgRig { clock: ManualClock::new(T0), url, _pg: pg }
        }

        pub fn store(&self) -> RecordStore {
            RecordStore::new(Postgres::connect(&self.url, 8).unwrap(), self.clock.clone())
        }
    }
}

/// One `#[tokio::test]` per promise per database. `solo` promises take a store and the
/// clock; `race` promises take two stores over the same database.
macro_rules! contract {
    (solo: $($solo:ident),* $(,)?; race: $($race:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $solo() {
                    let rig = super::rig::SqliteRig::new();
                    super::$solo(rig.store(), &rig.clock).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $race() {
                    let rig = super::rig::SqliteRig::new();
                    super::$race(rig.store(), rig.another_process(), &rig.clock).await;
                }
            )*
        }

        /// The races again with both sides in one process, sharing its writer (and the
        /// urgent lane an operator's write takes past a signer's batch).
        mod sqlite_one_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $race() {
                    let rig = super::rig::SqliteRig::new();
                    let s = rig.store();
                    super::$race(s.clone(), s, &rig.clock).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $solo() {
                    let rig = super::rig::PgRig::new();
                    super::$solo(rig.store(), &rig.clock).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $race() {
                    let rig = super::rig::PgRig::new();
                    super::$race(rig.store(), rig.store(), &rig.clock).await;
                }
            )*
        }
    };
}

contract! {
    solo:
        submit_is_idempotent_per_client_key,
        submit_records_the_request_as_received,
        get_and_load_answer_for_known_ids_only,
        get_shows_attempts_history_inclusion_and_cancel,
        transition_applies_only_from_the_expected_status_once,
        transition_writes_its_settlement_and_audit_only_if_it_applies,
        pending_settlements_filter_by_age_ids_and_limit,
        init_nonce_starts_a_wallet_once_per_chain,
        advance_nonce_only_raises_the_next_nonce,
        sign_first_attempts_take_contiguous_nonces_in_batch_order,
        sign_first_attempts_skip_what_is_not_received_without_a_nonce,
        a_refused_signature_takes_no_nonce,
        a_batch_signer_refusing_some_leaves_no_gap,
        signing_needs_an_initialised_wallet,
        the_brake_stops_first_signatures_in_its_scope,
        latest_attempts_are_the_newest_per_withdrawal,
        attempts_of_and_find_attempts_return_every_attempt,
        mark_sent_keeps_the_first_acceptance,
        record_replacements_apply_only_over_the_newest_open_unmined_attempt,
        stuck_lists_sent_unmined_transfers_whose_newest_attempt_is_old,
        inclusions_are_recorded_idempotently_and_forgotten_on_reorg,
        take_stale_nudges_each_withdrawal_once_per_period,
        the_cursor_moves_only_from_where_the_writer_saw_it,
        a_lease_is_held_by_one_holder_until_it_expires,
        counts_tally_withdrawals_by_status,
        oldest_in_is_when_the_longest_waiting_entered_its_status,
        in_flight_is_what_the_wallet_must_still_cover,
        nonce_owners_are_open_withdrawals_by_their_newest_attempt,
        nonce_lane_repairs_are_guarded,
        resign_displaced_re_signs_only_eligible_transfers_at_new_nonces,
        attempts_at_lists_every_attempt_of_the_wallet_at_these_nonces,
        fills_are_recorded_per_wallet_from_a_nonce,
        a_nonce_check_is_kept_per_wallet_and_the_last_one_stands,
        pending_cancels_are_open_unmined_transfers_with_a_request,
        pending_cancels_look_past_pages_of_requests_already_cancelling,
        search_matches_exactly_and_pages_newest_first,
        the_feed_serves_a_clients_changes_in_order_from_a_cursor,
        approvals_stand_once_and_can_be_revoked,
        approvals_are_per_withdrawal,
        signing_controls_keep_the_latest_per_scope_with_its_audit,
        the_audit_log_pages_newest_first,
        a_credit_is_journaled_once_per_key_with_its_audit,
        a_credit_above_the_threshold_waits_for_a_second_person,
        credits_to_apply_hands_out_approved_credits_up_to_the_limit,
        wallet_funds_keep_the_latest_report_per_wallet_and_asset,
        alerts_are_deduplicated_by_fingerprint_and_listed_newest_first,
        brake_cursor_lease_and_credits_hold;
    race:
        the_feed_never_skips_a_change_under_concurrent_writers,
        racing_submits_of_one_key_never_make_two_withdrawals,
        racing_transitions_move_each_withdrawal_once,
        racing_bumpers_replace_each_attempt_once,
        racing_nudgers_take_each_stale_withdrawal_once,
        racing_signers_sign_each_withdrawal_once_at_distinct_nonces,
        a_pause_that_answered_holds_for_every_signer,
        racing_fills_record_once_and_stop_at_the_brake,
        racing_cursor_writers_one_wins,
        racing_lease_takers_one_holds_it,
        racing_credit_requests_journal_once,
        racing_credit_approvals_approve_once,
        racing_approvals_the_first_stands,
}
