//! The RPC endpoint pool against real anvil nodes and the fault proxy: a primary killed
//! mid-batch, endpoints that lie, stall, fail or rate-limit, and a chain with no usable
//! endpoint at all. Every withdrawal still completes exactly once.

use super::chain::submit_n;
use super::harness::*;
use super::proxy::{Fault, FaultProxy};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use withdraw_core::testing::{Anvil, DEV_ADDRESS, eventually};

/// A config whose dev chain is served by these endpoints `(name, url, tier)`.
fn pool_config(dir: &Path, endpoints: &[(&str, &str, &str)], extra: &str) -> std::path::PathBuf {
    let mut toml = String::from(
        "[[chains]]\nchain_id = 31337\nmax_fee_cap_wei = 500000000000\nrpc_timeout_ms = 1500\nhealth_every_ms = 200\n\
         max_lag_blocks = 3\nfail_threshold = 2\n",
    );
    toml.push_str(extra);
    for (name, url, tier) in endpoints {
        toml.push_str(&format!("\n[[chains.endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\ntier = \"{tier}\"\n"));
    }
    let path = dir.join("withdrawd.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn rpc_view(d: &Daemon) -> Vec<Value> {
    d.admin_get("/admin/v1/rpc").await.as_array().unwrap().clone()
}

fn endpoint<'a>(view: &'a [Value], name: &str) -> &'a Value {
    view.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no endpoint {name} in {view:?}"))
}

/// Waits until the named endpoints are in the given states; returns how long it took.
async fn until_states(d: &Daemon, want: &[(&str, &str)], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let v = rpc_view(d).await;
        if want.iter().all(|(n, s)| endpoint(&v, n)["state"] == *s) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "endpoint states {want:?} not reached within {within:?}: {v:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reads_fail_over_when_the_primary_node_dies_mid_batch() {
    // Two real nodes of "one chain": every transaction is broadcast to both, so both hold
    // the same transfers; reads go to the primary until it dies.
    let primary = Anvil::start(&[]);
    let backup = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = pool_config(dir.path(), &[("a", &primary.url, "primary"), ("b", &backup.url, "backup")], "");
    let d = Daemon::start_on_config(&dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    let v = rpc_view(&d).await;
    assert_eq!((endpoint(&v, "a")["serving_reads"].as_bool(), endpoint(&v, "b")["state"].as_str()), (Some(true), Some("healthy")), "{v:?}");
    d.credit("c", "10").await;
    // Requests keep arriving (one every 40 ms) while the primary dies under them.
    let submitter = async {
        let mut ids = Vec::new();
        for i in 0..40 {
            let (s, v) = d.submit(&format!("failover-{i}"), &super::body("c", &dest(40, i), "0.05")).await;
            assert_eq!(s, 202, "{v}");
            ids.push(v["id"].as_str().unwrap().to_owned());
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        ids
    };
    let killer = async {
        // Kill it once the pipeline has paid a few on it, with most requests still to come.
        eventually(Duration::from_secs(30), "the first withdrawals completed on the primary", || async {
            let done = d.stats().await["statuses"]["COMPLETED"].as_i64().unwrap_or(0);
            (done >= 3).then_some(())
        })
        .await;
        let accepted = d.stats().await["statuses"].as_object().unwrap().values().map(|n| n.as_i64().unwrap()).sum::<i64>();
        drop(primary);
        let took = until_states(&d, &[("a", "down")], Duration::from_secs(10)).await;
        (accepted, took)
    };
    let (ids, (accepted_at_kill, took)) = tokio::join!(submitter, killer);
    let v = rpc_view(&d).await;
    assert!(endpoint(&v, "b")["serving_reads"].as_bool().unwrap(), "reads moved to the backup: {v:?}");
    assert!(took < Duration::from_secs(5), "fail-over took {took:?}");
    assert!(accepted_at_kill < 30, "the kill came mid-batch, with {accepted_at_kill} of 40 requests in");

    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(backup.balance(&dest(40, i)).await, wei("0.05"), "paid exactly once on the surviving node");
    }
    assert_eq!(backup.nonce(DEV_ADDRESS).await, 40, "one nonce per withdrawal");
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("withdraw_rpc_endpoint_state{")
            && l.contains("endpoint=\"a\"")
            && l.contains("state=\"down\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn lying_failing_and_stalled_endpoints_are_avoided() {
    let anvil = Anvil::start(&[]);
    let wrong = FaultProxy::start(&anvil.url).await;
    let ahead = FaultProxy::start(&anvil.url).await;
    let flaky = FaultProxy::start(&anvil.url).await;
    let broken = FaultProxy::start(&anvil.url).await;
    let good = FaultProxy::start(&anvil.url).await;
    wrong.set(Fault::WrongChainId(1));
    ahead.set(Fault::HeadAhead(1000));
    flaky.set(Fault::Drop);
    broken.set(Fault::Status(500));
    let dir = tempfile::tempdir().unwrap();
    // The first endpoint answers the dev chain-id probe, so it must be an honest one.
    let cfg = pool_config(
        dir.path(),
        &[
            ("good", &good.url, "backup"),
            ("wrong", &wrong.url, "primary"),
            ("ahead", &ahead.url, "primary"),
            ("flaky", &flaky.url, "primary"),
            ("broken", &broken.url, "primary"),
        ],
        "",
    );
    let d = Daemon::start_on_config(&dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    // One node far ahead is itself out of step; it does not make the others look lagged.
    let all_bad = [("wrong", "quarantined"), ("ahead", "lagging"), ("flaky", "down"), ("broken", "down"), ("good", "healthy")];
    until_states(&d, &all_bad, Duration::from_secs(10)).await;
    let v = rpc_view(&d).await;
    assert!(endpoint(&v, "good")["serving_reads"].as_bool().unwrap(), "{v:?}");
    assert!(endpoint(&v, "wrong")["last_error"].as_str().unwrap().contains("chain id 1"), "{v:?}");
    assert_eq!(endpoint(&v, "ahead")["lag"], -1000, "{v:?}");
    assert!(endpoint(&v, "broken")["last_error"].as_str().unwrap().contains("HTTP 500"), "{v:?}");
    assert!(endpoint(&v, "flaky")["last_error"].as_str().is_some(), "a dropped connection is an error: {v:?}");

    d.credit("c", "10").await;
    let first = submit_n(&d, 41, 10, "0.1").await;
    let done = d.wait_settled(&first, Duration::from_secs(60)).await;
    assert!(done.iter().all(|w| w["status"] == "COMPLETED"), "{done:?}");

    // The primary that dropped connections recovers: a half-open probe brings it back, and
    // reads return to the primary tier.
    flaky.set(Fault::Pass);
    until_states(&d, &[("flaky", "healthy")], Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), "reads back on the primary", || async {
        let v = rpc_view(&d).await;
        endpoint(&v, "flaky")["serving_reads"].as_bool().unwrap().then_some(())
    })
    .await;

    // It stalls: its head stops while the chain moves on; reads leave it.
    flaky.set(Fault::StallHead);
    tokio::time::sleep(Duration::from_millis(600)).await; // a probe or two sees the head it stalls at
    anvil.rpc("anvil_mine", json!(["0xa"])).await;
    until_states(&d, &[("flaky", "lagging")], Duration::from_secs(10)).await;
    let second = submit_n(&d, 42, 10, "0.1").await;
    let done = d.wait_settled(&second, Duration::from_secs(60)).await;
    assert!(done.iter().all(|w| w["status"] == "COMPLETED"), "{done:?}");
    let v = rpc_view(&d).await;
    assert!(!endpoint(&v, "flaky")["serving_reads"].as_bool().unwrap(), "{v:?}");
    for (tag, ids) in [(41, &first), (42, &second)] {
        for i in 0..ids.len() {
            assert_eq!(anvil.balance(&dest(tag, i)).await, wei("0.1"), "paid exactly once");
        }
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 20);
}

#[tokio::test]
async fn with_every_endpoint_down_work_waits_and_resumes_by_itself() {
    let anvil = Anvil::start(&[]);
    let only = FaultProxy::start(&anvil.url).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pool_config(dir.path(), &[("only", &only.url, "primary")], "");
    let mut env = fast_env();
    // Short visibility and few receives: any delivery counted while waiting would land the
    // work in a dead-letter queue within the test.
    env.extend(
        [("WITHDRAW__QUEUES__VISIBILITY_TIMEOUT_SECS", "1"), ("WITHDRAW__QUEUES__MAX_RECEIVES", "2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let d = Daemon::start_on_config(&dir.path().join("data"), &env, &["--config", cfg.to_str().unwrap()]).await;
    d.credit("c", "10").await;

    only.set(Fault::Status(429));
    until_states(&d, &[("only", "down")], Duration::from_secs(10)).await;
    let ids = submit_n(&d, 43, 5, "0.2").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for id in &ids {
        let w = d.get(id).await;
        assert_eq!(w["status"], "RECEIVED", "waits, not dead-lettered: {w}");
        assert!(w["attempts"].as_array().unwrap().is_empty(), "no nonce taken while the chain is unreachable: {w}");
    }
    let st = d.stats().await;
    for q in st["queues"].as_array().unwrap().iter().filter(|q| q["name"].as_str().unwrap().ends_with("dlq")) {
        assert_eq!(q["visible"].as_i64().unwrap() + q["in_flight"].as_i64().unwrap(), 0, "{st}");
    }

    only.set(Fault::Pass);
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(43, i)).await, wei("0.2"));
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 5);
}

#[tokio::test]
async fn a_pool_with_no_usable_endpoint_refuses_to_start_naming_each_problem() {
    use withdraw_core::adapters::pool::{EndpointSpec, PoolConfig, RpcPool};
    use withdraw_core::ports::EndpointTier;
    let anvil = Anvil::start(&[]);
    let wrong = FaultProxy::start(&anvil.url).await;
    wrong.set(Fault::WrongChainId(5));
    let hung = FaultProxy::start(&anvil.url).await;
    hung.set(Fault::Delay(Duration::from_secs(5)));
    let spec =
        |name: &str, url: &str| EndpointSpec { url: url.to_owned(), name: Some(name.to_owned()), tier: EndpointTier::Primary, weight: 1 };
    let cfg = || PoolConfig {
        chain_id: 31337,
        timeout: Duration::from_millis(500),
        health_every: Duration::from_secs(1),
        max_lag: 3,
        fail_threshold: 2,
    };
    let err = RpcPool::start(cfg(), vec![spec("liar", &wrong.url), spec("hung", &hung.url), spec("gone", "http://127.0.0.1:9")])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no usable RPC endpoint"), "{err}");
    assert!(err.contains("liar: serves chain id 5, expected 31337"), "{err}");
    assert!(err.contains("hung:") && err.contains("timeout"), "{err}");
    assert!(err.contains("gone:"), "{err}");

    // The same pool with one honest endpoint starts, and says which is which.
    let pool = RpcPool::start(cfg(), vec![spec("liar", &wrong.url), spec("honest", &anvil.url)]).await.unwrap();
    let h = pool.health();
    assert_eq!(
        h.iter().map(|e| (e.name.as_str(), e.state.as_str(), e.serving_reads)).collect::<Vec<_>>(),
        [("liar", "quarantined", false), ("honest", "healthy", true)]
    );
    let head = pool.call("eth_blockNumber", json!([])).await.unwrap();
    assert_eq!(head, json!("0x0"));
}

/// Behind an endpoint that answers null for every receipt (the attack that paid each
/// withdrawal three times in a minute), a missing receipt is never taken as evidence: no
/// transfer is re-signed at a new nonce, each destination is paid once, and once receipts
/// come back every withdrawal completes.
#[tokio::test]
async fn holes_null_receipts_never_resign_or_pay_twice() {
    let anvil = Anvil::start(&[]);
    let liar = FaultProxy::start(&anvil.url).await;
    liar.set(Fault::NullReceipts);
    let dir = tempfile::tempdir().unwrap();
    let cfg = pool_config(dir.path(), &[("liar", &liar.url, "primary")], "");
    let d = Daemon::start_on_config(&dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    d.credit("c", "1").await;
    let ids = submit_n(&d, 45, 3, "0.01").await;
    // The nonce check runs every second (displaced after 1 s), the reconciler every second
    // with stale after 4 s: each has had many chances to act on the missing receipts.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 3, "one nonce per withdrawal: nothing re-signed at a new nonce");
    for i in 0..3 {
        assert_eq!(anvil.balance(&dest(45, i)).await, wei("0.01"), "paid exactly once while receipts were hidden");
    }
    for id in &ids {
        let w = d.get(id).await;
        assert_eq!(w["status"], "SENT", "nothing decided without a receipt: {w}");
    }
    liar.set(Fault::Pass);
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(45, i)).await, wei("0.01"));
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 3);
}

/// A broadcast refused with an error no node list knows ("txpool is full", a provider's
/// -32005 inside HTTP 200) is retried with back-off, not dead-lettered: once the endpoint
/// accepts again, the withdrawal completes, paid once.
#[tokio::test]
async fn holes_unknown_send_errors_are_retried_not_dead_lettered() {
    let anvil = Anvil::start(&["--no-mining"]);
    let flaky = FaultProxy::start(&anvil.url).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pool_config(dir.path(), &[("flaky", &flaky.url, "primary")], "");
    let d = Daemon::start_on_config(&dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    d.credit("c", "1").await;
    for (n, (code, message)) in [(-32000, "txpool is full"), (-32005, "limit exceeded")].into_iter().enumerate() {
        flaky.set(Fault::SendError(code, message.to_owned()));
        let ids = submit_n(&d, 46 + n as u8, 1, "0.01").await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let w = d.get(&ids[0]).await;
        assert_eq!(w["status"], "SIGNED", "{message}: still being retried, not SEND_FAILED: {w}");
        flaky.set(Fault::Pass);
        anvil.rpc("evm_mine", json!([])).await;
        let done = eventually(Duration::from_secs(60), "mined and completed", || async {
            anvil.rpc("evm_mine", json!([])).await;
            let w = d.get(&ids[0]).await;
            (w["status"] == "COMPLETED").then_some(w)
        })
        .await;
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(anvil.balance(&dest(46 + n as u8, 0)).await, wei("0.01"));
    }
}

/// Probes answer from state already held. With the only RPC endpoint rate-limiting (429),
/// a process running the admin role alone, as its Deployment does, stays ready (it is the
/// one that pauses signing), reports the chain, and its pause answers; the process whose
/// roles use the chain is not ready. A flood of probes adds no RPC traffic that could keep
/// the endpoint's circuit open.
#[tokio::test]
async fn holes_readiness_is_cached_and_an_rpc_outage_keeps_the_admin_api_ready() {
    let anvil = Anvil::start(&[]);
    let only = FaultProxy::start(&anvil.url).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pool_config(dir.path(), &[("only", &only.url, "primary")], "");
    let data = dir.path().join("data");
    let d = Daemon::start_on_config(&data, &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    let mut env = fast_env();
    env.extend(
        [
            ("WITHDRAW__ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
            ("WITHDRAW__HEALTH_LISTEN", "127.0.0.1:0".to_owned()),
            ("WITHDRAW__DATABASE__SQLITE_PATH", data.join("withdrawd.db").display().to_string()),
            ("WITHDRAW__DATA_DIR", dir.path().join("admin").display().to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let args = ["--config".to_owned(), cfg.display().to_string(), "admin".to_owned()];
    let (child, eps) =
        spawn_withdrawd(&args, &dir.path().join("admin"), &env).await.unwrap_or_else(|log| panic!("admin did not start:\n{log}"));
    let _admin_process = KillOnDrop(child);
    let admin = Daemon::client(
        &d.intake,
        &format!("http://{}", eps["admin"].as_str().unwrap()),
        &format!("http://{}", eps["health"].as_str().unwrap()),
    );

    only.set(Fault::Status(429));
    until_states(&d, &[("only", "down")], Duration::from_secs(10)).await;
    let http = reqwest::Client::new();
    let v = eventually(Duration::from_secs(15), "readiness to report the chain", || async {
        let r = http.get(format!("{}/readyz", admin.health)).send().await.ok()?;
        assert_eq!(r.status(), 200, "an RPC outage does not take the admin API out of service");
        let v: Value = r.json().await.ok()?;
        (v["chains_unavailable"] == json!([31337])).then_some(v)
    })
    .await;
    assert_eq!(v["status"], "ready");
    let (s, v) = admin.admin_post("/admin/v1/signing/pause", &json!({"reason": "rpc outage drill"}), TOKEN).await;
    assert_eq!(s, 200, "pause answers while the chain is down: {v}");
    let worker = eventually(Duration::from_secs(15), "the pipeline's process to be unready", || async {
        let r = http.get(format!("{}/readyz", d.health)).send().await.ok()?;
        (r.status() == 503).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(worker.contains("31337"), "{worker}");

    // Healthy again: a flood of 300 probes adds only the health loop's own calls.
    only.set(Fault::Pass);
    until_states(&d, &[("only", "healthy")], Duration::from_secs(10)).await;
    eventually(Duration::from_secs(15), "the pipeline's process to be ready again", || async {
        (http.get(format!("{}/readyz", d.health)).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    let before = only.calls();
    let started = Instant::now();
    let flood: Vec<_> = (0..300).map(|_| http.get(format!("{}/readyz", d.health)).send()).collect();
    for r in futures::future::join_all(flood).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let (calls, took) = (only.calls() - before, started.elapsed());
    // The pipeline and the health loops (every 200 ms, two processes) call on their own: a
    // few dozen a second at most here; 300 probes answered by RPC would be 300 more.
    assert!(calls < 100 + 40 * took.as_secs(), "{calls} RPC calls during 300 probes in {took:?}");
}

/// The admin API comes up while its chain's only endpoint is down, as a pod rescheduled
/// during an RPC outage must: ready, the chain reported, and a pause answers. A signer in
/// the same state refuses to start, naming the problem (its start reads the chain's nonces).
#[tokio::test]
async fn the_admin_api_starts_during_an_rpc_outage_and_a_signer_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", withdraw_core::testing::servers::free_port());
    let cfg = pool_config(dir.path(), &[("only", &dead, "primary")], "");
    let role = |name: &str| {
        let mut env = fast_env();
        env.extend(
            [
                ("WITHDRAW__ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
                ("WITHDRAW__HEALTH_LISTEN", "127.0.0.1:0".to_owned()),
                ("WITHDRAW__DATA_DIR", dir.path().join(name).display().to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        (["--config".to_owned(), cfg.display().to_string(), name.to_owned()], dir.path().join(name), env)
    };
    let (args, at, env) = role("admin");
    let (child, eps) = spawn_withdrawd(&args, &at, &env).await.unwrap_or_else(|log| panic!("admin did not start:\n{log}"));
    let _admin_process = KillOnDrop(child);
    let admin = Daemon::client(
        "http://127.0.0.1:9",
        &format!("http://{}", eps["admin"].as_str().unwrap()),
        &format!("http://{}", eps["health"].as_str().unwrap()),
    );
    let http = reqwest::Client::new();
    let v: Value = http.get(format!("{}/readyz", admin.health)).send().await.unwrap().json().await.unwrap();
    assert!(v["status"] == "ready" && v["chains_unavailable"] == json!([31337]), "{v}");
    let (s, v) = admin.admin_post("/admin/v1/signing/pause", &json!({"reason": "rpc outage at start"}), TOKEN).await;
    assert_eq!(s, 200, "{v}");

    let (args, at, env) = role("signer");
    let log = spawn_withdrawd(&args, &at, &env).await.map(|_| ()).expect_err("a signer without its chain does not start");
    assert!(log.contains("no usable RPC endpoint"), "{log}");
}

/// Kills a process started beside a test's daemon when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
