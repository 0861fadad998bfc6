//! The balance contract run against both backends (SQLite and a real redis-server), plus
//! what only Redis has: Lua decimal arithmetic far past 2^53, restarts, and outages.

use alloy::primitives::U256;
use std::sync::Arc;
use std::time::Duration;
use withdraw_core::adapters::redis_balances::RedisBalances;
use withdraw_core::adapters::sqlite::{Sqlite, SqliteBalances};
use withdraw_core::domain::{Amount, WithdrawalId};
use withdraw_core::ports::*;
use withdraw_core::testing::servers::{Redis, TestCa};

fn wid(n: u32) -> WithdrawalId {
    WithdrawalId::parse(&format!("00000000-0000-7000-8000-{n:012}")).unwrap()
}

fn units(s: &str) -> Amount {
    Amount::from_base_units(s).unwrap()
}

fn res(n: u32, user: &str, amount: &str) -> Reservation {
    Reservation { withdrawal_id: wid(n), user_id: user.into(), asset: "ETH".into(), amount: units(amount) }
}

async fn redis() -> (Redis, RedisBalances) {
    let server = Redis::start();
    let b = RedisBalances::connect(&server.url).await.expect("connect");
    (server, b)
}

fn sqlite() -> (tempfile::TempDir, SqliteBalances) {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("t.db")).unwrap();
    (dir, SqliteBalances::new(db, Arc::new(SystemClock)))
}

/// Many callers at once, each reserving 1/10 of the balance: exactly ten win.
async fn concurrent_callers_cannot_overdraw<B: Balances + Clone>(b: B) {
    let big = "1000000000000000000000000000000"; // 10^30: far past 2^64
    b.credit("t1", "alice", "ETH", units(big)).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..40u32 {
        let b = b.clone();
        // Batches of two, overlapping, so one script sees several reservations.
        tasks.push(tokio::spawn(async move {
            b.reserve(vec![
                res(1000 + n, "alice", "100000000000000000000000000000"),
                res(1000 + n, "alice", "100000000000000000000000000000"),
            ])
            .await
            .unwrap()
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        let out = t.await.unwrap();
        match out[0] {
            ReserveOutcome::Reserved => {
                reserved += 1;
                assert_eq!(out[1], ReserveOutcome::AlreadyReserved, "the same id twice in a batch reserves once");
            }
            ReserveOutcome::Insufficient { .. } => {}
            ReserveOutcome::AlreadyReserved => panic!("distinct ids"),
        }
    }
    assert_eq!(reserved, 10);
    let bal = b.get("alice", "ETH").await.unwrap();
    assert_eq!((bal.reserved, bal.available()), (units(big), Amount::ZERO));
}

async fn reserve_commit_release_are_idempotent<B: Balances>(b: B) {
    b.credit("t2", "bob", "ETH", units("1000")).await.unwrap();
    let again = b.credit("t2", "bob", "ETH", units("1000")).await.unwrap();
    assert_eq!(again.credited, units("1000"), "a credit id applies once, however often it is retried");
    assert_eq!(
        b.reserve(vec![res(1, "bob", "300"), res(2, "bob", "300")]).await.unwrap(),
        [ReserveOutcome::Reserved, ReserveOutcome::Reserved]
    );
    assert_eq!(b.reserve(vec![res(1, "bob", "300")]).await.unwrap(), [ReserveOutcome::AlreadyReserved]);
    assert_eq!(b.reserve(vec![res(3, "bob", "500")]).await.unwrap(), [ReserveOutcome::Insufficient { available: units("400") }]);
    assert!(b.commit(vec![wid(1)]).await.unwrap().is_empty());
    assert!(b.commit(vec![wid(1)]).await.unwrap().is_empty(), "a repeat settles nothing and misses nothing");
    b.release(vec![wid(1)]).await.unwrap(); // committed: release must not touch it
    b.release(vec![wid(2)]).await.unwrap();
    b.release(vec![wid(2)]).await.unwrap();
    assert_eq!(b.release(vec![wid(2), wid(99)]).await.unwrap(), vec![wid(99)], "a reservation that does not exist is reported");
    let bal = b.get("bob", "ETH").await.unwrap();
    assert_eq!((bal.credited, bal.reserved, bal.spent), (units("1000"), Amount::ZERO, units("300")));
    // A released reservation can be taken again (an INVALID withdrawal reprocessed); a
    // committed one cannot.
    assert_eq!(b.reserve(vec![res(2, "bob", "300")]).await.unwrap(), [ReserveOutcome::Reserved]);
    assert_eq!(b.reserve(vec![res(1, "bob", "300")]).await.unwrap(), [ReserveOutcome::AlreadyReserved]);
    assert_eq!(b.get("bob", "ETH").await.unwrap().available(), units("400"));
    // Other users and assets are untouched, including look-alike keys.
    assert_eq!(b.get("bo", "bETH").await.unwrap(), Balance::default());
}

async fn credit_past_u256_is_refused_and_changes_nothing<B: Balances>(b: B) {
    b.credit("t3", "carol", "ETH", Amount(U256::MAX - U256::from(5u8))).await.unwrap();
    let err = b.credit("t4", "carol", "ETH", units("6")).await.expect_err("overflow");
    assert!(matches!(err, BalanceError::Overflow(_) | BalanceError::Failed(_)), "{err}");
    assert_eq!(b.get("carol", "ETH").await.unwrap().credited, Amount(U256::MAX - U256::from(5u8)));
    b.credit("t5", "carol", "ETH", units("5")).await.unwrap();
    assert_eq!(b.get("carol", "ETH").await.unwrap().credited, Amount(U256::MAX));
}

#[tokio::test]
async fn sqlite_balance_contract() {
    let (_d, b) = sqlite();
    concurrent_callers_cannot_overdraw(b.clone()).await;
    reserve_commit_release_are_idempotent(b.clone()).await;
    credit_past_u256_is_refused_and_changes_nothing(b).await;
}

#[tokio::test]
async fn redis_balance_contract() {
    let (_s, b) = redis().await;
    concurrent_callers_cannot_overdraw(b.clone()).await;
    reserve_commit_release_are_idempotent(b.clone()).await;
    credit_past_u256_is_refused_and_changes_nothing(b).await;
}

/// Redis as ElastiCache runs it with in-transit encryption: TLS only, with AUTH. The
/// balance contract holds through it; a server whose CA is not trusted, a wrong password,
/// and plain text to the TLS port are each refused with a clear error.
#[tokio::test]
async fn the_balance_store_speaks_tls_with_auth() {
    let ca = TestCa::new();
    let server = Redis::start_tls(&ca, "tls-auth-pass");
    let pem = std::fs::read(&ca.cert).unwrap();
    let b = RedisBalances::connect_with_ca(&server.url, Some(&pem)).await.expect("TLS with AUTH");
    concurrent_callers_cannot_overdraw(b.clone()).await;
    reserve_commit_release_are_idempotent(b).await;

    let err = RedisBalances::connect(&server.url).await.expect_err("a CA the system does not trust");
    assert!(err.to_string().contains("Redis"), "{err}");
    let other = TestCa::new();
    let err = RedisBalances::connect_with_ca(&server.url, Some(&std::fs::read(&other.cert).unwrap())).await.expect_err("another CA");
    assert!(err.to_string().contains("Redis"), "{err}");
    let wrong = format!("rediss://:not-the-pass@localhost:{}/", server.port);
    let err = RedisBalances::connect_with_ca(&wrong, Some(&pem)).await.expect_err("a wrong password");
    assert!(err.to_string().to_lowercase().contains("pass") || err.to_string().contains("auth"), "{err}");
    assert!(!err.to_string().contains("not-the-pass"), "the password is not in the error: {err}");
    let plain = format!("redis://:tls-auth-pass@localhost:{}/", server.port);
    let t = std::time::Instant::now();
    RedisBalances::connect(&plain).await.expect_err("plain text to a TLS port");
    assert!(t.elapsed() < Duration::from_secs(15));
}

/// The scripts' decimal-string arithmetic against U256, on random amounts of every size.
#[tokio::test]
async fn lua_decimal_arithmetic_matches_u256() {
    use rand::{Rng, SeedableRng};
    let (_s, b) = redis().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut n = 0u32;
    for user in 0..40 {
        let user = format!("u{user}");
        let digits = rng.gen_range(1..=76);
        let mut credit = U256::ZERO;
        for _ in 0..3 {
            let c: String = (0..digits).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect();
            let c = U256::from_str_radix(&c, 10).unwrap();
            credit += c;
            b.credit(&format!("t6-{user}-{credit}"), &user, "ETH", Amount(c)).await.unwrap();
        }
        let (mut reserved, mut spent) = (U256::ZERO, U256::ZERO);
        for _ in 0..6 {
            n += 1;
            let want = credit / U256::from(rng.gen_range(2..9u8)) + U256::from(rng.gen_range(0..1000u32));
            let out = b
                .reserve(vec![Reservation { withdrawal_id: wid(n), user_id: user.clone(), asset: "ETH".into(), amount: Amount(want) }])
                .await
                .unwrap();
            let available = credit - reserved - spent;
            if want <= available {
                assert_eq!(out, [ReserveOutcome::Reserved]);
                if rng.gen_bool(0.5) {
                    b.commit(vec![wid(n)]).await.unwrap();
                    spent += want;
                } else {
                    reserved += want;
                }
            } else {
                assert_eq!(out, [ReserveOutcome::Insufficient { available: Amount(available) }]);
            }
        }
        let bal = b.get(&user, "ETH").await.unwrap();
        assert_eq!((bal.credited, bal.reserved, bal.spent), (Amount(credit), Amount(reserved), Amount(spent)), "{user}");
    }
}

#[tokio::test]
async fn a_restart_keeps_reservations_and_an_outage_is_unavailable() {
    let (mut server, b) = redis().await;
    b.credit("t7", "dave", "ETH", units("100")).await.unwrap();
    assert_eq!(b.reserve(vec![res(1, "dave", "60")]).await.unwrap(), [ReserveOutcome::Reserved]);

    server.kill();
    let err = b.reserve(vec![res(2, "dave", "10")]).await.expect_err("redis is down");
    assert!(err.is_retryable(), "{err}");
    let source = std::error::Error::source(&err).expect("the client's error is kept");
    assert!(source.downcast_ref::<redis::RedisError>().is_some(), "{source:?}");
    assert!(withdraw_core::stages::StageError::from(err).is_retryable(), "the stage retries instead of failing the withdrawal");

    server.start_again();
    // The connection manager reconnects; the acknowledged reservation survived.
    let again = withdraw_core::testing::eventually(Duration::from_secs(15), "redis reconnect", || async {
        b.reserve(vec![res(1, "dave", "60")]).await.ok()
    })
    .await;
    assert_eq!(again, [ReserveOutcome::AlreadyReserved]);
    assert_eq!(b.get("dave", "ETH").await.unwrap().available(), units("40"));
}

#[tokio::test]
async fn connect_to_nothing_fails_fast_with_a_clear_error() {
    let port = withdraw_core::testing::servers::free_port();
    let t = std::time::Instant::now();
    let err = RedisBalances::connect(&format!("redis://127.0.0.1:{port}/")).await.expect_err("nothing listens");
    assert!(matches!(err, BalanceError::Backend { retryable: true, .. }), "{err}");
    assert!(err.to_string().contains("Redis"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(15));
    let err = RedisBalances::connect("not a url").await.expect_err("bad url");
    assert!(err.to_string().contains("Redis URL"), "{err}");
}

/// A Redis that lost writes (a reservation record gone, totals wrong) is rebuilt from the
/// database's journal; a dry run reports the same differences and changes nothing.
#[tokio::test]
async fn reconcile_rebuilds_lost_reservations_and_totals_from_the_journal() {
    use withdraw_core::adapters::redis_balances::{BalanceField, Drift, JournalEntry};
    use withdraw_core::domain::Status;
    let (server, b) = redis().await;
    b.credit("t8", "erin", "ETH", units("1000")).await.unwrap();
    b.reserve(vec![res(1, "erin", "100"), res(2, "erin", "200"), res(3, "erin", "300")]).await.unwrap();
    b.commit(vec![wid(1)]).await.unwrap();
    b.release(vec![wid(3)]).await.unwrap();
    let good = b.get("erin", "ETH").await.unwrap();
    assert_eq!((good.reserved, good.spent), (units("200"), units("100")));

    // Lost writes: withdrawal 2's reservation record and both totals.
    let client = ::redis::Client::open(server.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () =
        ::redis::cmd("DEL").arg(withdraw_core::adapters::redis_balances::reservation_key(&wid(2))).query_async(&mut c).await.unwrap();
    let bal_key = withdraw_core::adapters::redis_balances::balance_key("erin", "ETH");
    let _: () = ::redis::cmd("HSET").arg(&bal_key).arg("reserved").arg("0").arg("spent").arg("0").query_async(&mut c).await.unwrap();
    assert_eq!(b.get("erin", "ETH").await.unwrap().available(), units("1000"), "an overdraft waiting to happen");

    let entry = |n: u32, amount: &str, status| JournalEntry {
        withdrawal_id: wid(n),
        user_id: "erin".into(),
        asset: "ETH".into(),
        amount: units(amount),
        status,
    };
    let journal = vec![entry(1, "100", Status::Completed), entry(2, "200", Status::Sent), entry(3, "300", Status::Invalid)];
    let report = b.reconcile(journal.clone(), true).await.unwrap();
    let expected = vec![
        Drift::Reservation { withdrawal_id: wid(2), found: None, expected: "reserved" },
        Drift::Total {
            user_id: "erin".into(),
            asset: "ETH".into(),
            field: BalanceField::Reserved,
            found: Amount::ZERO,
            expected: units("200"),
        },
        Drift::Total {
            user_id: "erin".into(),
            asset: "ETH".into(),
            field: BalanceField::Spent,
            found: Amount::ZERO,
            expected: units("100"),
        },
    ];
    assert_eq!(report, expected, "dry run");
    assert_eq!(b.get("erin", "ETH").await.unwrap().available(), units("1000"), "a dry run changes nothing");

    assert_eq!(b.reconcile(journal.clone(), false).await.unwrap(), expected);
    let fixed = b.get("erin", "ETH").await.unwrap();
    assert_eq!((fixed.credited, fixed.reserved, fixed.spent), (units("1000"), units("200"), units("100")));
    assert!(b.reconcile(journal, false).await.unwrap().is_empty(), "nothing left to fix");
    // The restored reservation settles like any other.
    b.commit(vec![wid(2)]).await.unwrap();
    assert_eq!(b.get("erin", "ETH").await.unwrap().spent, units("300"));
}

/// The status write and the release it owes are one promise (DESIGN §5, invariant 7): with
/// Redis cut between them, the FAILED-side status is written with the release owed, not
/// lost; the withdrawal cannot leave that status (a reprocess would reserve anew under a
/// pending release); once Redis is back the reconciler's settler releases it, exactly once.
#[tokio::test]
async fn holes_a_redis_cut_between_the_status_write_and_the_release_settles_once_back() {
    use std::collections::HashMap;
    use withdraw_core::adapters::sqlite::SqliteQueue;
    use withdraw_core::adapters::store::RecordStore;
    use withdraw_core::adapters::{AnyBalances, AnyQueue, Configured};
    use withdraw_core::domain::{AssetRegistry, Status};
    use withdraw_core::machine::Event;
    use withdraw_core::ports::Ports;
    use withdraw_core::stages::{Decision, Tracker, TrackerConfig, apply, reprocess};

    let (mut server, b) = redis().await;
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("t.db")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ports = Arc::new(Ports::<Configured> {
        store: RecordStore::new(db.clone(), clock.clone()),
        queue: AnyQueue::Sqlite(SqliteQueue::new(db, clock.clone(), 5)),
        balances: AnyBalances::Redis(b.clone()),
        chains: HashMap::new(),
        clock,
    });
    let new = NewWithdrawal {
        id: wid(7),
        client_id: "c".into(),
        idempotency_key: "k7".into(),
        request_hash: "h".into(),
        user_id: "alice".into(),
        asset: "ETH".into(),
        chain_id: 31337,
        to: alloy::primitives::Address::repeat_byte(7),
        amount: units("400"),
    };
    ports.store.submit(vec![new]).await.unwrap();
    b.credit("t9", "alice", "ETH", units("1000")).await.unwrap();
    assert_eq!(b.reserve(vec![res(7, "alice", "400")]).await.unwrap(), vec![ReserveOutcome::Reserved]);

    server.kill();
    let decision = Decision { id: wid(7), from: Status::Received, event: Event::ValidationFailed, reason: Some("test".into()) };
    let won = apply(&ports, "signer", vec![decision]).await.expect("the status write does not wait for Redis");
    assert_eq!(won.len(), 1);
    assert_eq!(ports.store.get(&wid(7)).await.unwrap().unwrap().withdrawal.status, Status::Invalid);
    let owed = ports.store.pending_settlements(i64::MAX, None, 10).await.unwrap();
    assert_eq!(owed.len(), 1, "the release is owed, written with the status");
    // An operator acting now: the reprocess cannot reserve anew under a pending release.
    assert!(reprocess(&ports, &wid(7), "operator:ann", "funded").await.is_err(), "refused while Redis is down");
    assert_eq!(ports.store.get(&wid(7)).await.unwrap().unwrap().withdrawal.status, Status::Invalid);

    server.start_again();
    let tracker = Tracker::new(ports.clone(), Arc::new(AssetRegistry::new(vec![])), TrackerConfig::default());
    tokio::time::sleep(Duration::from_millis(2100)).await; // past the settler's grace
    // The client reconnects on its own; the settler's next passes carry the release out.
    for _ in 0..50 {
        if tracker.reconcile().await.is_ok() && ports.store.pending_settlements(i64::MAX, None, 10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bal = eventually_balance(&b, "alice").await;
    assert_eq!((bal.reserved, bal.available()), (units("0"), units("1000")), "released once Redis is back");
    assert!(ports.store.pending_settlements(i64::MAX, None, 10).await.unwrap().is_empty());
    tracker.reconcile().await.unwrap();
    assert_eq!(b.get("alice", "ETH").await.unwrap().available(), units("1000"), "exactly once");
}

async fn eventually_balance(b: &RedisBalances, user: &str) -> Balance {
    for _ in 0..50 {
        if let Ok(bal) = b.get(user, "ETH").await {
            return bal;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.get(user, "ETH").await.expect("redis back")
}
