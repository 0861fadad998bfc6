//! The chain's bad days, staged with anvil's own controls: a fee spike that strands our
//! transactions, a node that drops them, a reorg that unmines them. Each test ends by checking
//! that every destination was paid exactly once and the wallet's nonces have no gap.

use super::body;
use super::harness::*;
use serde_json::{Value, json};
use std::time::Duration;
use withdraw_core::testing::{Anvil, DEV_ADDRESS, eventually};

pub fn env_with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = fast_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

pub async fn submit_n(d: &Daemon, tag: u8, n: usize, amount: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (s, v) = d.submit(&format!("chain-{tag}-{i}"), &body("c", &dest(tag, i), amount)).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    ids
}

pub async fn wait_all(d: &Daemon, ids: &[String], what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    eventually(Duration::from_secs(60), what, || async {
        let mut out = Vec::new();
        for id in ids {
            let w = d.get(id).await;
            if !pred(&w) {
                return None;
            }
            out.push(w);
        }
        Some(out)
    })
    .await
}

fn fee(a: &Value, field: &str) -> u128 {
    a[field].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn stuck_transactions_are_replaced_with_higher_fees_and_pay_once() {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &env_with(&[("WITHDRAW__SIGNER__STUCK_AFTER_SECS", "1")]), &[]).await;
    d.credit("c", "10").await;
    let ids = submit_n(&d, 20, 3, "0.2").await;
    wait_all(&d, &ids, "broadcast", |w| w["status"] == "SENT").await;

    // Day 1: nothing gets mined. Past `stuck_after` each transfer is replaced at its nonce,
    // and anvil's pool accepts the replacement in place of the original (its own 10% rule).
    let replaced = wait_all(&d, &ids, "first replacements", |w| w["attempts"].as_array().unwrap().len() >= 2).await;
    let pool = anvil.rpc("txpool_status", json!([])).await;
    assert_eq!(pool["pending"], "0x3", "replacements replace, they do not add: {pool}");
    assert!(replaced.iter().all(|w| w["status"] == "SENT"));

    // Day 2: a fee spike. anvil evicts what can no longer pay the base fee.
    anvil.rpc("anvil_setNextBlockBaseFeePerGas", json!(["0x2e90edd000"])).await; // 200 gwei
    anvil.rpc("evm_mine", json!([])).await;
    let block = anvil.rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(block["transactions"], json!([]), "the spiked block holds none of ours");
    // The bumper prices a replacement above the spike (old bytes are refused as underpriced).
    let stuck = wait_all(&d, &ids, "replacements above the spike", |w| {
        w["attempts"].as_array().unwrap().iter().any(|a| fee(a, "max_fee_per_gas") > 200_000_000_000)
    })
    .await;
    for w in &stuck {
        assert_eq!(w["status"], "SENT", "not final before it is mined: {w}");
        let attempts = w["attempts"].as_array().unwrap();
        for pair in attempts.windows(2) {
            assert_eq!(pair[0]["nonce"], pair[1]["nonce"], "a replacement keeps the nonce");
            for f in ["max_fee_per_gas", "max_priority_fee_per_gas"] {
                assert!(fee(&pair[1], f) * 100 > fee(&pair[0], f) * 110, "{f} rises past the replacement threshold: {w}");
            }
        }
        assert!(attempts.iter().all(|a| fee(a, "max_fee_per_gas") <= 500_000_000_000), "never above the cap");
    }

    anvil.rpc("evm_setIntervalMining", json!([1])).await;
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(20, i)).await, wei("0.2"), "paid exactly once");
        let mined = w["inclusion"]["tx_hash"].as_str().unwrap();
        assert!(w["attempts"].as_array().unwrap().iter().any(|a| a["tx_hash"] == mined));
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 3, "no nonce gap, no extra transaction");
}

#[tokio::test]
async fn dropped_transactions_are_rebroadcast() {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("c", "10").await;
    let ids = submit_n(&d, 21, 2, "0.3").await;
    let sent = wait_all(&d, &ids, "broadcast", |w| w["status"] == "SENT").await;
    // The node forgets them.
    for w in &sent {
        anvil.rpc("anvil_dropTransaction", json!([w["attempts"][0]["tx_hash"]])).await;
    }
    assert_eq!(anvil.rpc("txpool_status", json!([])).await["pending"], "0x0");
    anvil.rpc("evm_setIntervalMining", json!([1])).await;
    // The reconciler finds no receipt for the stale SENT transfers and re-broadcasts them.
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(w["attempts"].as_array().unwrap().len(), 1, "the same bytes again, not a new signature: {w}");
        assert_eq!(anvil.balance(&dest(21, i)).await, wei("0.3"));
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 2);
}

#[tokio::test]
async fn a_reorged_transfer_goes_back_to_sent_and_completes_once() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &["--confirmations", "3"]).await;
    d.credit("c", "10").await;
    let ids = submit_n(&d, 22, 1, "0.4").await;
    let first = wait_all(&d, &ids, "inclusion", |w| !w["inclusion"].is_null()).await.remove(0);
    let first_block = first["inclusion"]["block_hash"].as_str().unwrap().to_owned();
    assert_eq!(first["status"], "SENT");

    // Replace the block that holds our transfer with an empty one.
    anvil.rpc("anvil_reorg", json!([1, []])).await;
    assert!(anvil.balance(&dest(22, 0)).await.is_zero(), "unpaid after the reorg");
    // The tracker notices its block is gone; the reconciler re-broadcasts; automine re-mines.
    let again =
        wait_all(&d, &ids, "re-inclusion in another block", |w| w["inclusion"]["block_hash"].as_str().is_some_and(|h| h != first_block))
            .await
            .remove(0);
    assert_eq!(again["status"], "SENT", "only one confirmation so far: {again}");
    anvil.rpc("anvil_mine", json!(["0x2"])).await;
    let w = d.wait_settled(&ids, Duration::from_secs(60)).await.remove(0);
    assert_eq!(w["status"], "COMPLETED", "{w}");
    assert_eq!(w["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(anvil.balance(&dest(22, 0)).await, wei("0.4"), "paid exactly once");
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 1);
}

#[tokio::test]
async fn a_dry_hot_wallet_holds_work_and_resumes_when_funded() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("c", "100").await;
    // The wallet can fund one 0.3 ETH transfer (plus gas), not three.
    anvil.rpc("anvil_setBalance", json!([DEV_ADDRESS, "0x6f05b59d3b20000"])).await; // 0.5 ETH
    let ids = submit_n(&d, 23, 3, "0.3").await;
    let first = d.wait_settled(&ids[..1], Duration::from_secs(30)).await.remove(0);
    assert_eq!(first["status"], "COMPLETED");

    // The other two are held: still RECEIVED, not INVALID, nothing in a dead-letter queue.
    let wallets = eventually(Duration::from_secs(30), "the short condition", || async {
        let v = d.admin_get("/admin/v1/hot-wallets").await;
        let w = v.as_array().unwrap().first().cloned()?;
        let eth = w["funds"].as_array().unwrap().iter().find(|r| r["asset"] == "ETH").cloned()?;
        (eth["held"] == 2).then_some((w, eth))
    })
    .await;
    let (wallet, eth) = wallets;
    assert_ne!(eth["short_by"], "0", "{eth}");
    assert_eq!(wallet["next_nonce"], 1, "held work takes no nonce: {wallet}");
    tokio::time::sleep(Duration::from_secs(4)).await; // past a re-check: still held, still no churn
    for id in &ids[1..] {
        let w = d.get(id).await;
        assert_eq!(w["status"], "RECEIVED", "{w}");
        assert!(w["attempts"].as_array().unwrap().is_empty());
    }
    let st = d.stats().await;
    for q in st["queues"].as_array().unwrap().iter().filter(|q| q["name"].as_str().unwrap().ends_with("dlq")) {
        assert_eq!(q["visible"].as_i64().unwrap() + q["in_flight"].as_i64().unwrap(), 0, "{st}");
    }
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("withdraw_hot_wallet_short{chain_id=\"31337\"") && l.ends_with("} 1")), "{metrics}");

    // Top up: the held withdrawals go out by themselves.
    anvil.rpc("anvil_setBalance", json!([DEV_ADDRESS, "0x56bc75e2d63100000"])).await; // 100 ETH
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(23, i)).await, wei("0.3"), "paid exactly once");
    }
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 3, "no nonce gap");
    let v = d.admin_get("/admin/v1/hot-wallets").await;
    let eth = v[0]["funds"].as_array().unwrap().iter().find(|r| r["asset"] == "ETH").unwrap();
    assert_eq!((eth["held"].as_u64(), eth["short_by"].as_str()), (Some(0), Some("0")), "{eth}");
}
