//! End-to-end tests: the real `withdrawd dev` binary against a real anvil, driven over
//! HTTP. Each test attacks one of the money-safety invariants of docs/design.md §5.

mod admin;
mod chain;
mod console;
mod custody;
mod deploy;
mod feed;
mod harness;
mod lanes;
mod production;
mod proxy;
mod rpc;
mod telemetry;

use futures::future::join_all;
use harness::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use withdraw_core::testing::{Anvil, DEV_ADDRESS, DEV_KEY, eventually};

pub fn body(user: &str, to: &str, amount: &str) -> Value {
    json!({"user_id": user, "asset": "ETH", "chain_id": 31337, "to": to, "amount": amount})
}

#[tokio::test]
async fn many_concurrent_withdrawals_complete_and_pay_exactly() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    for u in 0..10 {
        d.credit(&format!("user-{u}"), "1").await;
    }
    let n = 200;
    let amounts: Vec<String> = (0..n).map(|i| format!("0.00{}", i % 9 + 1)).collect();
    let subs = (0..n).map(|i| {
        let d = &d;
        let b = body(&format!("user-{}", i % 10), &dest(1, i), &amounts[i]);
        async move { d.submit(&format!("many-{i}"), &b).await }
    });
    let mut ids = Vec::new();
    // 32 in flight at a time.
    let subs: Vec<_> = subs.collect();
    let mut it = subs.into_iter();
    loop {
        let chunk: Vec<_> = it.by_ref().take(32).collect();
        if chunk.is_empty() {
            break;
        }
        for (s, v) in join_all(chunk).await {
            assert_eq!(s, 202, "{v}");
            assert_eq!(v["status"], "RECEIVED");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n, "distinct ids");
    let done = d.wait_settled(&ids, Duration::from_secs(90)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(1, i)).await, wei(&amounts[i]), "destination {i} paid exactly");
    }
    // The record tells the whole story.
    let w = &done[0];
    let hist: Vec<&str> = w["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    // Mined before the sender recorded SENT (anvil mines as it accepts) finishes from SIGNED.
    assert!(hist == ["RECEIVED", "SIGNED", "SENT", "COMPLETED"] || hist == ["RECEIVED", "SIGNED", "COMPLETED"], "{hist:?}");
    assert_eq!(w["attempts"].as_array().unwrap().len(), 1);
    assert!(w["confirmations"].as_u64().unwrap() >= 1, "{w}");
    assert_eq!(w["inclusion"]["success"], true);
    // Balances: what was spent is exactly what was paid, nothing left reserved.
    let mut total = 0u128;
    for u in 0..10 {
        let b = d.admin_get(&format!("/admin/v1/balances/user-{u}/ETH")).await;
        assert_eq!(b["reserved"], "0");
        let spent: u128 = (0..n).filter(|i| i % 10 == u).map(|i| wei(&amounts[i]).to::<u128>()).sum();
        assert_eq!(wei(b["spent"].as_str().unwrap()).to::<u128>(), spent, "user-{u}: {b}");
        total += spent;
    }
    assert!(total > 0);
    // One transaction per withdrawal, no more: the wallet's nonce count is the proof.
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, n as u64);
}

#[tokio::test]
async fn idempotency_keys_under_racing_duplicates() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("racer", "5").await;
    let b = body("racer", &dest(2, 0), "0.7");
    let answers = join_all((0..30).map(|_| d.submit("same-key", &b))).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 202, "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "30 racing duplicates share one id");
    let id = ids.into_iter().next().unwrap();

    // Same key, other body: refused, and it names the withdrawal the key belongs to.
    let (s, v) = d.submit("same-key", &body("racer", &dest(2, 0), "0.8")).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["type"], "urn:withdrawd:problem:idempotency-key-reused");
    assert!(v["detail"].as_str().unwrap().contains(&id));
    // Same request normalised differently (lowercase address, trailing zero): same request.
    let (s, v) = d.submit("same-key", &body("racer", &dest(2, 0).to_lowercase(), "0.70")).await;
    assert_eq!((s, v["id"].as_str().unwrap()), (202, id.as_str()));
    // Missing key: 400.
    let (s, _, v) = d.intake_call("POST", "/v1/withdrawals", None, &serde_json::to_vec(&b).unwrap(), 0, SECRET).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["type"], "urn:withdrawd:problem:idempotency-key-missing");

    let done = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "COMPLETED");
    // After completion the same key still answers with the same id and its status.
    let (s, v) = d.submit("same-key", &b).await;
    assert_eq!((s, v["id"].as_str().unwrap(), v["status"].as_str().unwrap()), (202, id.as_str(), "COMPLETED"));
    assert_eq!(anvil.balance(&dest(2, 0)).await, wei("0.7"), "paid once");
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 1);
}

#[tokio::test]
async fn concurrent_requests_cannot_overdraw_a_user() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("spender", "1").await;
    let answers = join_all((0..25).map(|i| {
        let b = body("spender", &dest(3, i), "0.1");
        let d = &d;
        async move { d.submit(&format!("od-{i}"), &b).await }
    }))
    .await;
    let ids: Vec<String> = answers.iter().map(|(s, v)| (assert_eq!(*s, 202), v["id"].as_str().unwrap().to_owned()).1).collect();
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    let completed = done.iter().filter(|w| w["status"] == "COMPLETED").count();
    let invalid: Vec<&Value> = done.iter().filter(|w| w["status"] == "INVALID").collect();
    assert_eq!((completed, invalid.len()), (10, 15), "exactly the credited amount goes out");
    for w in &invalid {
        assert!(w["reason"].as_str().unwrap().starts_with("insufficient balance"), "{w}");
    }
    let mut paid = alloy::primitives::U256::ZERO;
    for i in 0..25 {
        paid += anvil.balance(&dest(3, i)).await;
    }
    assert_eq!(paid, wei("1"));
    let b = d.admin_get("/admin/v1/balances/spender/ETH").await;
    assert_eq!((b["spent"].as_str(), b["reserved"].as_str(), b["available"].as_str()), (Some("1"), Some("0"), Some("0")));
    let st = d.stats().await;
    let dlq = st["queues"].as_array().unwrap().iter().find(|q| q["name"] == "invalid-dlq").unwrap();
    assert_eq!(dlq["visible"].as_i64().unwrap() + dlq["in_flight"].as_i64().unwrap(), 15, "every INVALID is on the operators' list: {st}");
}

#[tokio::test]
async fn malformed_input_is_refused_and_never_queued() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("m", "10").await;
    let good = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    // (case, body, expected status, field named in the problem)
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("not json", b"{nope".to_vec(), 400, None),
        ("empty body", Vec::new(), 400, None),
        ("missing field", j(json!({"user_id": "m", "asset": "ETH", "chain_id": 31337, "to": good})), 400, None),
        ("unknown field", j(json!({"user_id": "m", "asset": "ETH", "chain_id": 31337, "to": good, "amount": "1", "memo": "x"})), 400, None),
        ("amount as number", j(json!({"user_id": "m", "asset": "ETH", "chain_id": 31337, "to": good, "amount": 1})), 400, None),
        ("chain id as string", j(json!({"user_id": "m", "asset": "ETH", "chain_id": "31337", "to": good, "amount": "1"})), 400, None),
        ("bad address", j(body("m", "0x1234", "1")), 400, Some("to")),
        ("mis-checksummed address", j(body("m", "0x70997970c51812dc3A010C7d01b50e0d17dc79C8", "1")), 400, Some("to")),
        ("zero address", j(body("m", "0x0000000000000000000000000000000000000000", "1")), 400, Some("to")),
        ("zero amount", j(body("m", good, "0")), 400, Some("amount")),
        ("negative amount", j(body("m", good, "-1")), 400, Some("amount")),
        ("exponent amount", j(body("m", good, "1e-3")), 400, Some("amount")),
        ("too many decimals", j(body("m", good, "0.0000000000000000001")), 400, Some("amount")),
        ("unknown asset", j(json!({"user_id": "m", "asset": "DOGE", "chain_id": 31337, "to": good, "amount": "1"})), 400, Some("asset")),
        ("unknown chain", j(json!({"user_id": "m", "asset": "ETH", "chain_id": 1, "to": good, "amount": "1"})), 400, Some("chain_id")),
        ("bad user id", j(body("m m", good, "1")), 400, Some("user_id")),
        ("oversized body", j(body(&"u".repeat(20_000), good, "1")), 413, None),
    ];
    for (i, (name, b, want, field)) in cases.iter().enumerate() {
        let (s, ct, v) = d.intake_call("POST", "/v1/withdrawals", Some(&format!("bad-{i}")), b, 0, SECRET).await;
        assert_eq!(s, *want, "{name}: {v}");
        if *want != 413 {
            assert_eq!(ct, "application/problem+json", "{name}");
            assert_eq!(v["status"], *want, "{name}: {v}");
        }
        if let Some(f) = field {
            let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
            assert!(fields.contains(f), "{name}: {v}");
        }
    }
    // Wrong content type.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/withdrawals", d.intake))
        .header("content-type", "text/plain")
        .header("x-api-key", "dev")
        .header("idempotency-key", "ct")
        .header("x-timestamp", withdraw_now().to_string())
        .header("x-signature", signature(SECRET, &withdraw_now().to_string(), "POST", "/v1/withdrawals", "ct", &j(body("m", good, "1"))))
        .body(j(body("m", good, "1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    let st = d.stats().await;
    assert!(st["statuses"].as_object().unwrap().is_empty(), "nothing recorded: {st}");
    for q in st["queues"].as_array().unwrap() {
        assert_eq!((q["visible"].as_i64(), q["in_flight"].as_i64()), (Some(0), Some(0)), "nothing queued: {st}");
    }
}

#[tokio::test]
async fn authentication_is_enforced() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    let b = serde_json::to_vec(&body("a", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "1")).unwrap();
    for (name, offset, secret) in [("stale", -120, SECRET), ("future", 120, SECRET), ("wrong secret", 0, "not-the-secret")] {
        let (s, ct, v) = d.intake_call("POST", "/v1/withdrawals", Some("k"), &b, offset, secret).await;
        assert_eq!((s, ct.as_str()), (401, "application/problem+json"), "{name}: {v}");
    }
    // A signature over another body or path.
    let ts = withdraw_now().to_string();
    let http = reqwest::Client::new();
    let send = |sig: String, key: &'static str| {
        http.post(format!("{}/v1/withdrawals", d.intake))
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .header("x-timestamp", &ts)
            .header("x-signature", sig)
            .header("idempotency-key", "k")
            .body(b.clone())
            .send()
    };
    assert_eq!(send(signature(SECRET, &ts, "POST", "/v1/withdrawals", "k", b"{}"), "dev").await.unwrap().status(), 401);
    assert_eq!(send(signature(SECRET, &ts, "POST", "/v1/other", "k", &b), "dev").await.unwrap().status(), 401);
    assert_eq!(send(signature(SECRET, &ts, "POST", "/v1/withdrawals", "k", &b), "nobody").await.unwrap().status(), 401);
    assert_eq!(send(signature(SECRET, &ts, "POST", "/v1/withdrawals", "", &b), "dev").await.unwrap().status(), 401, "key not signed");
    let r = http.post(format!("{}/v1/withdrawals", d.intake)).body(b.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "no headers at all");
    // Admin: no token, wrong token.
    let (s, _) = d.admin_post("/admin/v1/balances/credit", &json!({"user_id": "a", "asset": "ETH", "amount": "1"}), "wrong").await;
    assert_eq!(s, 401);
    let r = http.get(format!("{}/admin/v1/stats", d.admin)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Nothing got through.
    let st = d.stats().await;
    assert!(st["statuses"].as_object().unwrap().is_empty(), "{st}");
    let bal = d.admin_get("/admin/v1/balances/a/ETH").await;
    assert_eq!(bal["credited"], "0");
}

/// A signed request captured on the wire and re-sent inside the timestamp window with another
/// `Idempotency-Key` (the attack that paid twice): the key is part of the signature, so the
/// replay is refused and exactly one withdrawal exists, paid once on chain.
#[tokio::test]
async fn holes_captured_request_replayed_under_another_key_is_refused() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("replay", "1").await;
    let to = dest(41, 0);
    let b = serde_json::to_vec(&json!({"user_id": "replay", "asset": "ETH", "chain_id": 31337, "to": to, "amount": "0.01"})).unwrap();
    let ts = withdraw_now().to_string();
    let sig = signature(SECRET, &ts, "POST", "/v1/withdrawals", "order-7", &b);
    let http = reqwest::Client::new();
    let send = |key: &'static str| {
        http.post(format!("{}/v1/withdrawals", d.intake))
            .header("content-type", "application/json")
            .header("x-api-key", "dev")
            .header("x-timestamp", &ts)
            .header("x-signature", &sig)
            .header("idempotency-key", key)
            .body(b.clone())
            .send()
    };
    let first = send("order-7").await.unwrap();
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for key in ["order-8", "order-7-replay", "x"] {
        let r = send(key).await.unwrap();
        assert_eq!(r.status(), 401, "replay under key {key} must fail the signature");
    }
    // The same request as captured is the same request: the same id, no second withdrawal.
    let again = send("order-7").await.unwrap();
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
    let done = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "COMPLETED", "{}", done[0]);
    let st = d.stats().await;
    assert_eq!(st["statuses"].as_object().unwrap().values().filter_map(Value::as_i64).sum::<i64>(), 1, "one withdrawal: {st}");
    assert_eq!(anvil.balance(&to).await, wei("0.01"), "the destination was paid exactly once");
}

async fn submit_crash_batch(d: &Daemon, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let answers = join_all(chunk.iter().map(|&i| {
            let b = body("k", &dest(4, i), "0.01");
            async move { d.submit(&format!("crash-{i}"), &b).await }
        }))
        .await;
        for (s, v) in answers {
            assert_eq!(s, 202, "{v}");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

#[tokio::test]
async fn sigkill_mid_batch_and_restart_pays_each_exactly_once() {
    // Mining by hand, 100 transfers per block at most: the crash points are deterministic.
    let anvil = Anvil::start(&["--no-mining", "--gas-limit", "2100000"]);
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("k", "100").await;
    let n = 300;
    let ids = submit_crash_batch(&d, n).await;

    // Kill 1: as soon as the signer has started on the batch.
    eventually(Duration::from_secs(30), "signing to start", || async {
        let st = d.stats().await;
        (st["statuses"]["RECEIVED"].as_i64().unwrap_or(0) < n as i64).then_some(())
    })
    .await;
    d.kill9();
    let mut outputs = d.output();

    // The client retries every request with its key: same ids, nothing new.
    let mut d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    assert_eq!(submit_crash_batch(&d, n).await, ids, "retries after a crash find the same withdrawals");
    eventually(Duration::from_secs(60), "every transfer broadcast", || async {
        let st = d.stats().await;
        (st["statuses"]["SENT"].as_i64().unwrap_or(0) == n as i64).then_some(())
    })
    .await;

    // Kill 2: one block of 100 mined, 200 still in the mempool.
    anvil.rpc("evm_mine", json!([])).await;
    let at_kill = eventually(Duration::from_secs(30), "the first completions", || async {
        let st = d.stats().await;
        (st["statuses"]["COMPLETED"].as_i64().unwrap_or(0) > 0).then_some(st)
    })
    .await;
    d.kill9();
    outputs.push_str(&d.output());
    let completed_at_kill = at_kill["statuses"]["COMPLETED"].as_i64().unwrap();
    assert!(completed_at_kill <= 100, "only one block was mined: {at_kill}");

    // Restart once more and let the chain run.
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    anvil.rpc("evm_setIntervalMining", json!([1])).await;
    let done = d.wait_settled(&ids, Duration::from_secs(120)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(w["attempts"].as_array().unwrap().len(), 1, "{w}");
        assert_eq!(anvil.balance(&dest(4, i)).await, wei("0.01"), "destination {i} paid exactly once");
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, n as u64, "one transaction per withdrawal, no gaps");
    let b = d.admin_get("/admin/v1/balances/k/ETH").await;
    assert_eq!((b["spent"].as_str(), b["reserved"].as_str()), (Some("3"), Some("0")));
    outputs.push_str(&d.output());
    assert!(!outputs.contains(DEV_KEY), "the key never reaches the output");
}

#[tokio::test]
async fn graceful_shutdown_then_restart_resumes() {
    let anvil = Anvil::start(&["--block-time", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("g", "1").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, v) = d.submit(&format!("g-{i}"), &body("g", &dest(5, i), "0.01")).await;
        assert_eq!(s, 202);
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let status = d.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}\n{}", d.output());
    let d2 = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    let done = d2.wait_settled(&ids, Duration::from_secs(60)).await;
    assert!(done.iter().all(|w| w["status"] == "COMPLETED"));
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 20);
}

#[tokio::test]
async fn keystore_wallet_signs_and_its_key_never_appears() {
    use alloy::signers::local::PrivateKeySigner;
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // A fresh key in an encrypted keystore, funded on the chain.
    let key = alloy::primitives::B256::from(rand::random::<[u8; 32]>());
    let key_hex = hex::encode(key);
    let ks_dir = dir.path().join("ks");
    std::fs::create_dir_all(&ks_dir).unwrap();
    let (signer, _) = PrivateKeySigner::encrypt_keystore(&ks_dir, &mut rand::thread_rng(), key, "pw-123", Some("hot.json")).unwrap();
    let wallet = signer.address();
    anvil.rpc("anvil_setBalance", json!([wallet, "0x56BC75E2D63100000"])).await;
    std::fs::write(dir.path().join("pw"), "pw-123\n").unwrap();
    let mut env = fast_env();
    env.push(("WITHDRAW__SIGNER__KEYSTORE_PASSWORD__FILE".into(), dir.path().join("pw").display().to_string()));

    // A wrong password fails at start with one clear line, and no key material.
    std::fs::write(dir.path().join("badpw"), "nope\n").unwrap();
    let mut bad_env = fast_env();
    bad_env.push(("WITHDRAW__SIGNER__KEYSTORE_PASSWORD__FILE".into(), dir.path().join("badpw").display().to_string()));
    let ks = ks_dir.join("hot.json");
    let err =
        Daemon::try_start(&anvil, &dir.path().join("bad"), &bad_env, &["--keystore", ks.to_str().unwrap()]).await.err().expect("must fail");
    assert!(err.contains("keystore"), "{err}");
    assert!(!err.contains(&key_hex), "key leaked in a start failure");

    let d = Daemon::start(&anvil, &dir.path().join("good"), &env, &["--keystore", ks.to_str().unwrap()]).await;
    d.credit("ks", "1").await;
    let (s, v) = d.submit("ks-1", &body("ks", &dest(6, 0), "0.5")).await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_owned();
    let done = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "COMPLETED");
    assert_eq!(done[0]["attempts"][0]["wallet"].as_str().unwrap(), wallet.to_checksum(None));
    assert_eq!(anvil.balance(&dest(6, 0)).await, wei("0.5"));
    // Scrape everything the process exposes: logs, API answers, metrics.
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    let everything = format!("{}{}{}{}", d.output(), serde_json::to_string(&done).unwrap(), d.stats().await, metrics);
    for needle in [key_hex.as_str(), &key_hex[..24], "pw-123"] {
        assert!(!everything.contains(needle), "secret material {needle:.8}… found in output");
    }
    assert!(metrics.contains("withdraw_transitions_total"), "metrics are served");
}

#[tokio::test]
async fn refuses_a_non_dev_chain_and_an_unreachable_node() {
    let anvil = Anvil::start(&["--chain-id", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let err = Daemon::try_start(&anvil, dir.path(), &fast_env(), &[]).await.err().expect("chain id 1 must be refused");
    assert!(err.contains("chain id 1") && err.contains("--allow-any-chain"), "{err}");
    let port = anvil.url.rsplit(':').next().unwrap().to_owned();
    drop(anvil);
    // Nothing listens there any more.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_withdrawd"))
        .args(["dev", "--rpc-url", &format!("http://127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no usable node at http://127.0.0.1:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn erc20_and_native_withdrawals_share_one_wallet() {
    use alloy::primitives::U256;
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let token = anvil.deploy_test_token(DEV_ADDRESS, U256::from(1_000_000_000_000u64)).await;
    let cfg = dir.path().join("withdrawd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[assets]]\nsymbol = \"ETH\"\nchain_id = 31337\ndecimals = 18\n\n\
             [[assets]]\nsymbol = \"TUSD\"\nchain_id = 31337\ncontract = \"{token}\"\ndecimals = 6\nmax_amount = \"500\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&anvil, &dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    let v = d.credit_asset("t", "TUSD", "1000").await;
    assert_eq!(v["available"].as_str(), Some("1000"), "{v}");
    d.credit("t", "1").await;
    let tusd = |to: &str, amount: &str| json!({"user_id": "t", "asset": "TUSD", "chain_id": 31337, "to": to, "amount": amount});

    // A token's own decimals decide precision.
    let (s, v) = d.submit("tok-precise", &tusd(&dest(7, 99), "1.0000001")).await;
    assert_eq!(s, 400, "{v}");
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, v) = if i % 2 == 0 {
            d.submit(&format!("tok-{i}"), &tusd(&dest(7, i), "12.345678")).await
        } else {
            d.submit(&format!("tok-{i}"), &body("t", &dest(7, i), "0.01")).await
        };
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // Above the token's per-asset maximum: accepted by intake, refused by the signer.
    let (_, v) = d.submit("tok-big", &tusd(&dest(7, 50), "600")).await;
    let big = v["id"].as_str().unwrap().to_owned();
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        if i % 2 == 0 {
            assert_eq!(anvil.token_balance(&token, &dest(7, i)).await, U256::from(12_345_678u64), "token destination {i}");
            assert_eq!(anvil.balance(&dest(7, i)).await, U256::ZERO, "no ETH sent with a token transfer");
        } else {
            assert_eq!(anvil.balance(&dest(7, i)).await, wei("0.01"), "ETH destination {i}");
        }
    }
    let w = &d.wait_settled(std::slice::from_ref(&big), Duration::from_secs(30)).await[0];
    assert_eq!(w["status"], "INVALID");
    assert!(w["reason"].as_str().unwrap().contains("exceeds the per-asset maximum 500"), "{w}");
    let b = d.admin_get("/admin/v1/balances/t/TUSD").await;
    assert_eq!((b["spent"].as_str(), b["reserved"].as_str()), (Some("123.45678"), Some("0")), "{b}");
}

/// A token whose `transfer` returns false without reverting: the receipt succeeds, nothing
/// moves. The withdrawal must end FAILED with a reason naming the missing Transfer log, the
/// user's reservation released (nothing spent), the destination unpaid, the alert's counter
/// moved; and a real token beside it still completes.
#[tokio::test]
async fn holes_a_token_whose_transfer_returns_false_is_failed_not_completed() {
    use alloy::primitives::U256;
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let liar = anvil.deploy_false_token(DEV_ADDRESS, U256::from(1_000_000_000_000u64)).await;
    let cfg = dir.path().join("withdrawd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[assets]]\nsymbol = \"ETH\"\nchain_id = 31337\ndecimals = 18\n\n\
             [[assets]]\nsymbol = \"FUSD\"\nchain_id = 31337\ncontract = \"{liar}\"\ndecimals = 6\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&anvil, &dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    d.credit_asset("f", "FUSD", "100").await;
    let (s, v) = d.submit("false-1", &json!({"user_id": "f", "asset": "FUSD", "chain_id": 31337, "to": dest(42, 0), "amount": "25"})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let w = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(60)).await.remove(0);
    assert_eq!(w["status"], "FAILED", "a successful receipt without a Transfer log is no payment: {w}");
    assert!(w["reason"].as_str().unwrap().contains("token transfer not proven"), "{w}");
    assert!(w["inclusion"]["success"] == false, "{w}");
    assert_eq!(anvil.token_balance(&liar, &dest(42, 0)).await, U256::ZERO, "nothing was paid");
    let b = eventually(Duration::from_secs(10), "the reservation released", || async {
        let b = d.admin_get("/admin/v1/balances/f/FUSD").await;
        (b["reserved"] == "0").then_some(b)
    })
    .await;
    assert_eq!((b["available"].as_str(), b["spent"].as_str()), (Some("100"), Some("0")), "the user was not charged: {b}");
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("withdraw_token_transfer_unproven_total{") && l.ends_with(" 1")),
        "the alert's counter moved: {metrics}"
    );
}

/// Half a request line, then silence (the slow-client attack held both ports for 75 s): each
/// listener closes the connection once its header deadline passes.
#[tokio::test]
async fn holes_a_silent_client_is_disconnected_by_the_header_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut env = fast_env();
    env.push(("WITHDRAW__HTTP__HEADER_TIMEOUT_MS".into(), "1500".into()));
    let d = Daemon::start(&anvil, dir.path(), &env, &[]).await;
    for base in [&d.intake, &d.admin, &d.health] {
        let addr = base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"POST /v1/withdr").await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 512];
        // The server either answers 408 and closes or just closes; it must not hold on.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{base}: a silent connection still open after 10 s");
        assert!(started.elapsed() >= Duration::from_millis(1000), "{base}: closed by the deadline, not at once");
        // A kept-alive connection left idle is closed the same way.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let n = idle.read(&mut buf).await.unwrap();
        // Answered (the probes are on the health listener only: 404 on the API ports).
        let want = if *base == d.health { "HTTP/1.1 200" } else { "HTTP/1.1 404" };
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with(want), "{base}: served first");
        let closed =
            tokio::time::timeout(Duration::from_secs(10), async { while !matches!(idle.read(&mut buf).await, Ok(0) | Err(_)) {} }).await;
        assert!(closed.is_ok(), "{base}: an idle kept-alive connection still open after 10 s");
    }
    // And the ports still serve.
    let (s, v) = d.submit("after-slow", &body("nobody", &dest(43, 0), "0.01")).await;
    assert_eq!(s, 202, "{v}");
}

#[tokio::test]
async fn the_readme_curl_example_works() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/example-request.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .arg("readme-1")
        .env("INTAKE", &d.intake)
        .env("ADMIN", &d.admin)
        .env("WITHDRAW_DEV_HMAC_SECRET", SECRET)
        .env("WITHDRAW_DEV_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "COMPLETED", "{last}");
    assert_eq!(
        anvil.balance("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").await,
        wei("10000.25"),
        "anvil's account 1 starts with 10000 ETH"
    );
}

#[tokio::test]
async fn completes_only_at_the_configured_depth() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &["--confirmations", "3"]).await;
    d.credit("deep", "1").await;
    let (_, v) = d.submit("deep-1", &body("deep", &dest(8, 0), "0.1")).await;
    let id = v["id"].as_str().unwrap().to_owned();
    // Mined at once (automine), seen by the tracker, but only 1 deep.
    let w = eventually(Duration::from_secs(30), "inclusion", || async {
        let w = d.get(&id).await;
        (!w["inclusion"].is_null() && w["confirmations"].as_u64() == Some(1)).then_some(w)
    })
    .await;
    assert_eq!(w["status"], "SENT", "{w}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.get(&id).await["status"], "SENT", "1 of 3 confirmations is not final");
    anvil.rpc("anvil_mine", json!(["0x1"])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.get(&id).await["status"], "SENT", "2 of 3 confirmations is not final");
    anvil.rpc("anvil_mine", json!(["0x1"])).await;
    let w = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "COMPLETED");
    assert_eq!(w["confirmations"], 3, "{w}");
}
