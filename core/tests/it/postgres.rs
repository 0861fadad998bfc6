//! The record store on a real PostgreSQL, beyond the contract it shares with SQLite
//! (`store_contract.rs`): what only a multi-writer database needs, such as signer replicas
//! allocating nonces at once, and how a missing server fails.

use super::store_contract::{fake_sign, new_w, wid};
use alloy::primitives::Address;
use std::collections::HashSet;
use std::sync::Arc;
use withdraw_core::adapters::postgres::Postgres;
use withdraw_core::adapters::store::RecordStore;
use withdraw_core::domain::Status;
use withdraw_core::ports::*;
use withdraw_core::testing::servers;

/// A fresh database in the cluster, migrated.
pub(crate) fn database(pg: &servers::Postgres, name: &str) -> String {
    let admin = Postgres::connect(&pg.url, 2).expect("connect");
    drop(admin);
    let out = std::process::Command::new("psql")
        .args([pg.url.as_str(), "-v", "ON_ERROR_STOP=1", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", pg.port);
    Postgres::connect(&url, 4).unwrap().migrate().unwrap();
    url
}

fn store(url: &str) -> RecordStore {
    RecordStore::new(Postgres::connect(url, 8).unwrap(), Arc::new(SystemClock))
}

/// Four signer replicas (each its own pool) sign batches from one wallet at once; the
/// nonces they take are all different and leave no gap, and every withdrawal is signed
/// once even when two replicas got the same one (an SQS redelivery).
#[tokio::test]
async fn signer_replicas_never_share_a_nonce() {
    let pg = servers::Postgres::start();
    let url = database(&pg, "nonces");
    let wallet = Address::repeat_byte(0xaa);
    let setup = store(&url);
    setup.submit((0..200).map(|n| new_w(n, &format!("k{n}"), &format!("h{n}"))).collect()).await.unwrap();
    assert_eq!(setup.init_nonce(wallet, 31337, 7).await.unwrap(), 7);
    let mut tasks = Vec::new();
    for r in 0..4u32 {
        let s = store(&url);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for b in 0..10u32 {
                // Overlapping batches: replica r takes 20 ids starting at a shifted offset.
                let ids = (0..20).map(|i| wid((r * 37 + b * 20 + i) % 200)).collect();
                out.extend(s.sign_first_attempts(wallet, 31337, ids, fake_sign()).await.unwrap());
            }
            out
        }));
    }
    let mut nonces = Vec::new();
    let mut signed = HashSet::new();
    for t in tasks {
        for o in t.await.unwrap() {
            if let SignOutcome::Signed { id, nonce, .. } = o {
                assert!(signed.insert(id.clone()), "{id} signed twice");
                nonces.push(nonce);
            }
        }
    }
    nonces.sort_unstable();
    let n = nonces.len() as u64;
    assert_eq!(nonces, (7..7 + n).collect::<Vec<_>>(), "distinct and gapless");
    assert_eq!(setup.next_nonce(wallet, 31337).await.unwrap(), Some(7 + n));
    let loaded = setup.load(signed.iter().cloned().collect()).await.unwrap();
    assert!(loaded.iter().all(|w| w.status == Status::Signed));
    // What no replica reached is still RECEIVED, with no attempt.
    let rest: Vec<_> = (0..200).map(wid).filter(|id| !signed.contains(id)).collect();
    assert!(setup.latest_attempts(rest.clone()).await.unwrap().is_empty());
    assert!(setup.load(rest).await.unwrap().iter().all(|w| w.status == Status::Received));
}

/// Conditional transitions from several replicas at once: each withdrawal moves once.
#[tokio::test]
async fn racing_transitions_apply_once() {
    let pg = servers::Postgres::start();
    let url = database(&pg, "transitions");
    let setup = store(&url);
    setup.submit((0..100).map(|n| new_w(n, &format!("k{n}"), &format!("h{n}"))).collect()).await.unwrap();
    let mut tasks = Vec::new();
    for r in 0..4 {
        let s = store(&url);
        tasks.push(tokio::spawn(async move {
            let batch = (0..100)
                .map(|n| Transition {
                    id: wid(n),
                    from: Status::Received,
                    to: Status::Invalid,
                    reason: Some(format!("replica {r}")),
                    actor: "t".into(),
                    settle: Some(Settle::Release),
                    audit: None,
                })
                .collect();
            s.transition(batch).await.unwrap().into_iter().filter(|a| *a).count()
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100, "each of 100 withdrawals moved exactly once across 4 replicas");
    let d = setup.get(&wid(5)).await.unwrap().unwrap();
    assert_eq!(d.history.len(), 2, "one history row for the move");
    let owed = setup.pending_settlements(i64::MAX, None, 1000).await.unwrap();
    assert_eq!(owed.len(), 100, "one owed release per move, written with it, whichever replica won");
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_and_names_the_problem() {
    let port = servers::free_port();
    let t = std::time::Instant::now();
    let err = Postgres::connect(&format!("postgres://postgres@127.0.0.1:{port}/x?connect_timeout=3"), 2).expect_err("nothing listens");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("PostgreSQL connection failed"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}

/// PostgreSQL over TLS, as a role reaches RDS (`sslmode=verify-full` with the CA's bundle):
/// the store migrates and works through it, the session is encrypted, and a server whose
/// certificate the given CA did not sign is refused.
#[tokio::test]
async fn the_store_speaks_tls_with_verify_full() {
    let ca = servers::TestCa::new();
    let pg = servers::Postgres::start_tls(&ca);
    let db = Postgres::connect(&pg.url, 2).expect("verify-full against the test CA");
    db.migrate().unwrap();
    let s = RecordStore::new(db, Arc::new(SystemClock));
    let out = s.submit(vec![new_w(1, "tls", "h")]).await.unwrap();
    assert_eq!(out, [SubmitOutcome::Created { id: wid(1) }]);
    let ssl = std::process::Command::new("psql")
        .args([pg.url.as_str(), "-At", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&ssl.stdout).trim(), "t", "{}", String::from_utf8_lossy(&ssl.stderr));

    let other = servers::TestCa::new();
    let url = pg.url.replace(&ca.cert.display().to_string(), &other.cert.display().to_string());
    let Err(err) = Postgres::connect(&url, 2) else { panic!("a certificate the given CA did not sign was accepted") };
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A database error reaches the stages typed: retryable or not as the adapter read it, its
/// text in the message, and the driver's own error kept as its source.
#[tokio::test]
async fn a_driver_error_is_kept_as_the_store_errors_source() {
    use diesel::{Connection, RunQueryDsl};
    let pg = servers::Postgres::start();
    let mut conn = diesel::PgConnection::establish(&pg.url).unwrap();
    let e = diesel::sql_query("SELECT * FROM no_such_table").execute(&mut conn).expect_err("no such table");
    let err = StoreError::from(e);
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().starts_with("database query failed: ") && err.to_string().contains("no_such_table"), "{err}");
    let source = std::error::Error::source(&err).expect("the driver's error is kept");
    assert!(matches!(source.downcast_ref::<diesel::result::Error>(), Some(diesel::result::Error::DatabaseError(..))), "{source:?}");
}

/// The roles run as a database user that cannot change the schema (RUNBOOK.md's "Database
/// users", run here as written): the migrate user owns the schema and migrates it; the
/// roles' user finds the schema current, records, signs and moves withdrawals, and cannot
/// create a table.
#[tokio::test]
async fn the_roles_run_as_a_user_that_cannot_change_the_schema() {
    let pg = servers::Postgres::start();
    let psql = |url: &str, sql: &str| {
        let out = std::process::Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]).output().expect("psql");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let base = format!("postgres://postgres@127.0.0.1:{}", pg.port);
    for sql in ["CREATE ROLE withdraw_migrate LOGIN", "CREATE ROLE withdraw_app LOGIN", "CREATE DATABASE withdraw OWNER withdraw_migrate"] {
        let (ok, out) = psql(&format!("{base}/postgres"), sql);
        assert!(ok, "{sql}: {out}");
    }
    let grants = "ALTER SCHEMA public OWNER TO withdraw_migrate; REVOKE ALL ON SCHEMA public FROM PUBLIC; \
                  GRANT USAGE ON SCHEMA public TO withdraw_app; \
                  ALTER DEFAULT PRIVILEGES FOR ROLE withdraw_migrate IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO withdraw_app; \
                  ALTER DEFAULT PRIVILEGES FOR ROLE withdraw_migrate IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO withdraw_app;";
    let (ok, out) = psql(&format!("{base}/withdraw"), grants);
    assert!(ok, "{out}");
    let migrate_url = format!("postgres://withdraw_migrate@127.0.0.1:{}/withdraw", pg.port);
    let app_url = format!("postgres://withdraw_app@127.0.0.1:{}/withdraw", pg.port);

    let app = Postgres::connect(&app_url, 2).unwrap();
    let err = app.check_schema().expect_err("nothing migrated yet");
    assert!(err.to_string().contains("withdrawd migrate"), "{err}");
    Postgres::connect(&migrate_url, 2).unwrap().migrate().unwrap();
    app.check_schema().expect("the roles' user reads the schema version");

    let s = RecordStore::new(app, Arc::new(SystemClock));
    assert_eq!(s.submit(vec![new_w(1, "least", "h")]).await.unwrap(), [SubmitOutcome::Created { id: wid(1) }]);
    s.init_nonce(Address::repeat_byte(0xAA), 31337, 0).await.unwrap();
    let out = s.sign_first_attempts(Address::repeat_byte(0xAA), 31337, vec![wid(1)], fake_sign()).await.unwrap();
    assert!(matches!(out[..], [SignOutcome::Signed { nonce: 0, .. }]), "{out:?}");
    let t =
        Transition { id: wid(1), from: Status::Signed, to: Status::Sent, reason: None, actor: "sender".into(), settle: None, audit: None };
    assert_eq!(s.transition(vec![t]).await.unwrap(), [true]);

    let (ok, out) = psql(&app_url, "CREATE TABLE intruder (x int)");
    assert!(!ok && out.contains("permission denied"), "{out}");
}

/// A transaction that took its id before another one changed the same withdrawal (a signer
/// locks its wallet before the withdrawal) and writes the next change after it: the feed
/// still serves that withdrawal's changes in the order they happened.
#[tokio::test]
async fn the_feed_keeps_one_withdrawals_changes_in_order_whatever_the_transaction_ids() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let pg = servers::Postgres::start();
    let url = database(&pg, "feed_order");
    let s = store(&url);
    s.submit(vec![new_w(1, "k1", "h1")]).await.unwrap();
    let mut early = PgConnection::establish(&url).unwrap();
    diesel::sql_query("BEGIN").execute(&mut early).unwrap();
    diesel::sql_query("SELECT pg_current_xact_id()").execute(&mut early).unwrap(); // its id, now
    let t = Transition {
        id: wid(1),
        from: Status::Received,
        to: Status::Invalid,
        reason: None,
        actor: "signer".into(),
        settle: None,
        audit: None,
    };
    assert_eq!(s.transition(vec![t]).await.unwrap(), [true]);
    let next = format!(
        "INSERT INTO history (withdrawal_id, from_status, to_status, actor, at) VALUES ('{}', 'INVALID', 'REJECTED', 'ann', 1)",
        wid(1)
    );
    diesel::sql_query(next).execute(&mut early).unwrap();
    diesel::sql_query("COMMIT").execute(&mut early).unwrap();
    let got: Vec<Status> = s.changes("c".into(), FeedCursor::default(), 100).await.unwrap().into_iter().map(|c| c.to).collect();
    assert_eq!(got, [Status::Received, Status::Invalid, Status::Rejected]);
}
