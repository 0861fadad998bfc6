//! Nonce lanes: a nonce used behind our back, a gap in the lane, a dead-lettered transfer
//! blocking every later one, an operator's cancel, and several wallets sharing the load.
//! Each test ends with every destination paid exactly once and no nonce gap left.

use super::body;
use super::chain::{env_with, submit_n, wait_all};
use super::harness::*;
use serde_json::{Value, json};
use std::time::Duration;
use withdraw_core::testing::{Anvil, DEV_ADDRESS, eventually};

/// The wallet's entry of `GET /admin/v1/hot-wallets`.
async fn lane(d: &Daemon, wallet: &str) -> Value {
    let v = d.admin_get("/admin/v1/hot-wallets").await;
    v.as_array().unwrap().iter().find(|w| w["wallet"].as_str().unwrap().eq_ignore_ascii_case(wallet)).cloned().unwrap_or(Value::Null)
}

/// Waits for a nonce check that finds the lane whole and in step with the chain.
async fn lane_is_whole(d: &Daemon, anvil: &Anvil, wallet: &str) -> Value {
    let chain = anvil.nonce(wallet).await;
    eventually(Duration::from_secs(30), "a whole nonce lane", || async {
        let w = lane(d, wallet).await;
        let n = &w["nonces"];
        let whole = n["gaps"].as_array().is_some_and(|g| g.is_empty())
            && n["blocked"].as_array().is_some_and(|b| b.is_empty())
            && n["chain_latest"] == chain
            && w["next_nonce"] == chain;
        whole.then_some(w)
    })
    .await
}

async fn metric(d: &Daemon, prefix: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn act(d: &Daemon, id: &str, action: &str, reason: &str) -> (u16, Value) {
    d.admin_post(&format!("/admin/v1/withdrawals/{id}/{action}"), &json!({"reason": reason}), TOKEN).await
}

#[tokio::test]
async fn a_nonce_used_behind_our_back_is_skipped_and_the_transfer_signed_again_once() {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("c", "10").await;
    let ids = submit_n(&d, 30, 2, "0.1").await;
    wait_all(&d, &ids, "broadcast", |w| w["status"] == "SENT").await;

    // Another system signs with our key: nonces 0-4 are taken on chain by its transactions
    // (outbidding ours in the pool), so ours can never mine.
    foreign_use(&anvil, 0..5).await;
    anvil.rpc("evm_mine", json!([])).await;
    anvil.rpc("evm_setAutomine", json!([true])).await;

    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    let mut new_nonces = Vec::new();
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(30, i)).await, wei("0.1"), "paid exactly once");
        let attempts = w["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "the original and one re-signed transfer: {w}");
        assert!(attempts[0]["nonce"].as_u64().unwrap() < 5);
        new_nonces.push(attempts[1]["nonce"].as_u64().unwrap());
        assert_eq!(w["inclusion"]["tx_hash"], attempts[1]["tx_hash"], "the new attempt is the one mined");
    }
    new_nonces.sort();
    assert_eq!(new_nonces, vec![5, 6], "the lane continues right after the foreign nonces");
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 7);
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
    assert!(metric(&d, "withdraw_nonce_foreign_total").await >= 3.0);
    assert_eq!(metric(&d, "withdraw_nonce_resigned_total").await, 2.0);
}

#[tokio::test]
async fn a_gap_in_the_nonce_lane_is_filled_with_a_self_transfer() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("c", "10").await;
    let first = submit_n(&d, 31, 3, "0.1").await;
    d.wait_settled(&first, Duration::from_secs(30)).await;
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 3);

    // The chain's count moves back: nonces 1 and 2 are free again, and no open withdrawal
    // owns them (theirs are paid). Anything signed now waits behind the gap.
    anvil.rpc("anvil_setNonce", json!([DEV_ADDRESS, "0x1"])).await;
    let (s, v) = d.submit("gap-late", &body("c", &dest(31, 9), "0.2")).await;
    assert_eq!(s, 202, "{v}");
    let late = vec![v["id"].as_str().unwrap().to_owned()];

    let w = d.wait_settled(&late, Duration::from_secs(60)).await.remove(0);
    assert_eq!(w["status"], "COMPLETED", "{w}");
    assert_eq!(w["attempts"][0]["nonce"], 3, "signed at the store's next nonce, never re-used");
    assert_eq!(anvil.balance(&dest(31, 9)).await, wei("0.2"));
    for i in 0..3 {
        assert_eq!(anvil.balance(&dest(31, i)).await, wei("0.1"), "paid once, never again");
    }
    assert_eq!(metric(&d, "withdraw_nonce_fills_total").await, 2.0, "one fill per free nonce");
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 4);
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
}

#[tokio::test]
async fn a_dead_lettered_transfer_blocks_its_lane_until_discarded_and_cancelled() {
    use alloy::primitives::U256;
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let token = anvil.deploy_test_token(DEV_ADDRESS, U256::from(1_000_000_000u64)).await;
    // ETH transfers get a gas limit below the intrinsic 21000: every node refuses them.
    let cfg = dir.path().join("withdrawd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[assets]]\nsymbol = \"ETH\"\nchain_id = 31337\ndecimals = 18\ngas_limit = 20000\n\n\
             [[assets]]\nsymbol = \"TUSD\"\nchain_id = 31337\ncontract = \"{token}\"\ndecimals = 6\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&anvil, &dir.path().join("data"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    d.credit("c", "1").await;
    d.credit_asset("c", "TUSD", "100").await;
    let start_nonce = anvil.nonce(DEV_ADDRESS).await;

    let (_, v) = d.submit("dlq-eth", &body("c", &dest(32, 0), "0.5")).await;
    let eth = v["id"].as_str().unwrap().to_owned();
    let w = d.wait_settled(std::slice::from_ref(&eth), Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "SEND_FAILED", "{w}");
    let blocked_nonce = w["attempts"][0]["nonce"].as_u64().unwrap();
    assert!(w["attempts"][0]["sent_at_ms"].is_null(), "never accepted by a node: {w}");

    // The next transfer is signed and accepted, but cannot be mined behind the hole.
    let (_, v) =
        d.submit("dlq-token", &json!({"user_id": "c", "asset": "TUSD", "chain_id": 31337, "to": dest(32, 1), "amount": "7"})).await;
    let tok = v["id"].as_str().unwrap().to_owned();
    wait_all(&d, std::slice::from_ref(&tok), "the token transfer broadcast", |w| w["status"] == "SENT").await;
    let blocked = eventually(Duration::from_secs(30), "the blocked nonce reported", || async {
        let w = lane(&d, DEV_ADDRESS).await;
        (w["nonces"]["blocked"] == json!([blocked_nonce])).then_some(w)
    })
    .await;
    assert_eq!(blocked["nonces"]["gaps"], json!([]), "a dead-lettered nonce is the operator's, never auto-filled: {blocked}");
    assert_eq!(d.get(&tok).await["status"], "SENT");

    // Operator errors are refused with problem+json and change nothing.
    let (s, v) = act(&d, &eth, "discard", "  ").await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = act(&d, &tok, "reprocess", "try again").await;
    assert_eq!(s, 409, "a SENT withdrawal is not in a dead-letter queue: {v}");
    let (s, v) = act(&d, "wd_doesnotexist", "discard", "x").await;
    assert_eq!(s, 404, "{v}");

    let (s, v) = act(&d, &eth, "discard", "gas limit misconfigured; user told to resubmit").await;
    assert_eq!((s, v["outcome"].as_str()), (200, Some("cancel_requested")), "{v}");
    let (s, v) = act(&d, &eth, "discard", "twice").await;
    assert_eq!((s, v["outcome"].as_str()), (200, Some("already_cancelling")), "{v}");
    let (s, v) = act(&d, &eth, "reprocess", "changed my mind").await;
    assert_eq!(s, 409, "a cancelled transfer cannot be revived: {v}");

    // SEND_FAILED counts as settled for wait_settled: wait for the cancel to finish it.
    wait_all(&d, std::slice::from_ref(&eth), "the discarded one cancelled", |w| w["status"] != "SEND_FAILED").await;
    let done = d.wait_settled(&[eth.clone(), tok.clone()], Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "CANCELLED", "{}", done[0]);
    let attempts = done[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["kind"], "cancel");
    assert_eq!(attempts.last().unwrap()["nonce"], blocked_nonce, "the cancel takes the same nonce");
    assert_eq!(done[0]["cancel"]["actor"], "dev-admin", "{}", done[0]);
    assert_eq!(done[1]["status"], "COMPLETED", "the lane moves once the hole is filled: {}", done[1]);
    assert!(anvil.balance(&dest(32, 0)).await.is_zero(), "the discarded withdrawal paid nothing");
    assert_eq!(anvil.token_balance(&token, &dest(32, 1)).await, U256::from(7_000_000u64));
    let b = d.admin_get("/admin/v1/balances/c/ETH").await;
    assert_eq!((b["available"].as_str(), b["reserved"].as_str(), b["spent"].as_str()), (Some("1"), Some("0"), Some("0")), "{b}");
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, start_nonce + 2);
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
}

#[tokio::test]
async fn discarding_a_stuck_transfer_cancels_it_at_its_nonce() {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &env_with(&[("WITHDRAW__SIGNER__STUCK_AFTER_SECS", "600")]), &[]).await;
    d.credit("c", "1").await;
    let ids = submit_n(&d, 33, 2, "0.25").await;
    let sent = wait_all(&d, &ids, "broadcast", |w| w["status"] == "SENT").await;
    assert!(sent.iter().all(|w| w["attempts"][0]["sent_at_ms"].as_i64().is_some()), "broadcast time recorded");

    let (s, v) = act(&d, &ids[0], "discard", "user asked to cancel").await;
    assert_eq!((s, v["outcome"].as_str()), (200, Some("cancel_requested")), "{v}");
    let w = wait_all(&d, &ids[..1], "the cancel signed", |w| w["attempts"].as_array().unwrap().len() == 2).await.remove(0);
    let (old, cancel) = (&w["attempts"][0], &w["attempts"][1]);
    assert_eq!((cancel["kind"].as_str(), &cancel["nonce"]), (Some("cancel"), &old["nonce"]), "{w}");
    let fee = |a: &Value, f: &str| a[f].as_str().unwrap().parse::<u128>().unwrap();
    for f in ["max_fee_per_gas", "max_priority_fee_per_gas"] {
        assert!(fee(cancel, f) * 10 >= fee(old, f) * 11, "{f} raised past the replacement threshold: {w}");
    }
    // anvil's pool takes the cancel in place of the transfer.
    eventually(Duration::from_secs(20), "the cancel in the pool", || async {
        let pool = anvil.rpc("txpool_content", json!([])).await;
        let txs = pool["pending"].as_object()?.values().next()?.as_object()?.clone();
        txs.values().any(|t| t["hash"] == cancel["tx_hash"]).then_some(())
    })
    .await;
    anvil.rpc("evm_setAutomine", json!([true])).await;
    anvil.rpc("evm_mine", json!([])).await;
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "CANCELLED", "{}", done[0]);
    assert_eq!(done[1]["status"], "COMPLETED", "{}", done[1]);
    assert!(anvil.balance(&dest(33, 0)).await.is_zero(), "cancelled: nothing paid");
    assert_eq!(anvil.balance(&dest(33, 1)).await, wei("0.25"));
    let b = d.admin_get("/admin/v1/balances/c/ETH").await;
    assert_eq!((b["available"].as_str(), b["spent"].as_str()), (Some("0.75"), Some("0.25")), "{b}");
    let (s, v) = act(&d, &ids[1], "discard", "too late").await;
    assert_eq!(s, 409, "a COMPLETED withdrawal cannot be discarded: {v}");
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
}

#[tokio::test]
async fn an_invalid_withdrawal_is_reprocessed_after_a_credit() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    let (_, v) = d.submit("reprocess-1", &body("poor", &dest(34, 0), "0.3")).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let w = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "INVALID", "{w}");
    d.credit("poor", "0.3").await;
    let (s, v) = act(&d, &id, "reprocess", "user funded").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("RECEIVED")), "{v}");
    let w = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "COMPLETED", "{w}");
    assert_eq!(anvil.balance(&dest(34, 0)).await, wei("0.3"));
    let reprocessed = w["history"].as_array().unwrap().iter().find(|h| h["from"] == "INVALID").cloned().unwrap();
    assert_eq!(reprocessed["actor"], "dev-admin", "{w}");
    assert!(reprocessed["reason"].as_str().unwrap().contains("user funded"), "{w}");

    // Discarding an INVALID one rejects it and frees nothing twice.
    let (_, v) = d.submit("reprocess-2", &body("poor", &dest(34, 1), "5")).await;
    let id2 = v["id"].as_str().unwrap().to_owned();
    assert_eq!(d.wait_settled(std::slice::from_ref(&id2), Duration::from_secs(30)).await[0]["status"], "INVALID");
    let (s, v) = act(&d, &id2, "discard", "not payable").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("REJECTED")), "{v}");
    let b = d.admin_get("/admin/v1/balances/poor/ETH").await;
    assert_eq!((b["available"].as_str(), b["reserved"].as_str(), b["spent"].as_str()), (Some("0"), Some("0"), Some("0.3")), "{b}");
}

#[tokio::test]
async fn several_hot_wallets_share_the_load_one_nonce_lane_each() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &["--hot-wallets", "3"]).await;
    d.credit("c", "10").await;
    let ids = submit_n(&d, 35, 60, "0.01").await;
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        assert_eq!(anvil.balance(&dest(35, i)).await, wei("0.01"), "paid exactly once");
    }
    let accounts = anvil.rpc("eth_accounts", json!([])).await;
    let wallets: Vec<String> =
        d.admin_get("/admin/v1/hot-wallets").await.as_array().unwrap().iter().map(|w| w["wallet"].as_str().unwrap().to_owned()).collect();
    assert_eq!(wallets.len(), 3, "{wallets:?}");
    let mut total = 0;
    for w in &wallets {
        assert!(
            accounts.as_array().unwrap()[..3].iter().any(|a| a.as_str().unwrap().eq_ignore_ascii_case(w)),
            "{w} is one of anvil's first three accounts"
        );
        let n = anvil.nonce(w).await;
        assert!(n > 0, "every wallet took a share");
        total += n;
        lane_is_whole(&d, &anvil, w).await;
    }
    assert_eq!(total, 60, "one nonce per withdrawal across the lanes");
}

#[tokio::test]
async fn a_transfer_reorged_away_after_completing_is_broadcast_again_never_filled() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await; // 1 confirmation
    d.credit("c", "1").await;
    let ids = submit_n(&d, 36, 1, "0.3").await;
    let w = d.wait_settled(&ids, Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "COMPLETED", "{w}");
    assert_eq!(anvil.balance(&dest(36, 0)).await, wei("0.3"));

    // A reorg deeper than the confirmations takes the block, and no node keeps the transfer:
    // the record says COMPLETED, the chain says unpaid, and the wallet's nonce 0 is free.
    anvil.rpc("anvil_reorg", json!([1, []])).await;
    assert!(anvil.balance(&dest(36, 0)).await.is_zero());
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 0);

    // The nonce check broadcasts the recorded transfer again instead of a 0-value fill.
    eventually(Duration::from_secs(30), "the transfer restored", || async {
        (anvil.balance(&dest(36, 0)).await == wei("0.3")).then_some(())
    })
    .await;
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 1);
    assert!(metric(&d, "withdraw_nonce_restored_total").await >= 1.0);
    assert_eq!(metric(&d, "withdraw_nonce_fills_total").await, 0.0, "the user's nonce never went to a 0-value fill");
    assert_eq!(d.get(&ids[0]).await["status"], "COMPLETED");
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
}

/// A FAILED withdrawal (its transfer reverted, its funds released) whose block a deep reorg
/// takes away: its nonce gets a 0-value fill, never the reverted transaction again. Broadcast
/// again after the cause of the revert is gone, it would pay what nobody holds any more.
#[tokio::test]
async fn holes_a_failed_transfer_reorged_away_is_filled_never_broadcast_again() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("c", "1").await;
    let to = dest(38, 0);
    // The destination refuses ETH (its code reverts): the transfer is mined and reverts.
    anvil.rpc("anvil_setCode", json!([to, "0x60006000fd"])).await;
    let ids = submit_n(&d, 38, 1, "0.3").await;
    let w = d.wait_settled(&ids, Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "FAILED", "{w}");
    let b = eventually(Duration::from_secs(10), "the funds released", || async {
        let b = d.admin_get("/admin/v1/balances/c/ETH").await;
        (b["reserved"] == "0").then_some(b)
    })
    .await;
    assert_eq!(b["available"], "1", "{b}");

    // The block goes, and the cause with it.
    anvil.rpc("anvil_reorg", json!([1, []])).await;
    anvil.rpc("anvil_setCode", json!([to, "0x"])).await;
    assert_eq!(anvil.nonce(DEV_ADDRESS).await, 0);
    eventually(Duration::from_secs(30), "the nonce filled", || async { (anvil.nonce(DEV_ADDRESS).await == 1).then_some(()) }).await;
    assert!(anvil.balance(&to).await.is_zero(), "the reverted transfer was never sent again");
    assert!(metric(&d, "withdraw_nonce_fills_total").await >= 1.0);
    assert_eq!(metric(&d, "withdraw_nonce_restored_total").await, 0.0);
    assert_eq!(d.get(&ids[0]).await["status"], "FAILED");
    assert_eq!(d.admin_get("/admin/v1/balances/c/ETH").await["available"], "1", "the user was never charged");
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
}

#[tokio::test]
async fn a_discarded_transfer_whose_nonce_is_taken_elsewhere_ends_cancelled() {
    let anvil = Anvil::start(&["--no-mining"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &env_with(&[("WITHDRAW__SIGNER__STUCK_AFTER_SECS", "600")]), &[]).await;
    d.credit("c", "1").await;
    let ids = submit_n(&d, 37, 1, "0.4").await;
    wait_all(&d, &ids, "broadcast", |w| w["status"] == "SENT").await;
    let (s, v) = act(&d, &ids[0], "discard", "customer cancelled").await;
    assert_eq!((s, v["outcome"].as_str()), (200, Some("cancel_requested")), "{v}");
    wait_all(&d, &ids, "the cancel signed", |w| w["attempts"].as_array().unwrap().len() == 2).await;

    // Before either is mined, someone else uses the key: nonce 0 goes to a foreign
    // transaction (outbidding both in the pool), and two more follow it.
    foreign_use(&anvil, 0..3).await;
    anvil.rpc("evm_mine", json!([])).await;
    anvil.rpc("evm_setAutomine", json!([true])).await;

    let w = d.wait_settled(&ids, Duration::from_secs(30)).await.remove(0);
    assert_eq!(w["status"], "CANCELLED", "{w}");
    assert_eq!(w["attempts"].as_array().unwrap().len(), 2, "nothing signed again: {w}");
    assert!(anvil.balance(&dest(37, 0)).await.is_zero(), "never paid");
    let b = d.admin_get("/admin/v1/balances/c/ETH").await;
    assert_eq!((b["available"].as_str(), b["reserved"].as_str(), b["spent"].as_str()), (Some("1"), Some("0"), Some("0")), "{b}");
    lane_is_whole(&d, &anvil, DEV_ADDRESS).await;
}

/// Another system signs with the hot wallet's key: a real transaction at each of these
/// nonces (to a stranger, fees far above ours so each replaces whatever we have pending).
async fn foreign_use(anvil: &Anvil, nonces: std::ops::Range<u64>) {
    for n in nonces {
        let tx = json!({
            "from": DEV_ADDRESS,
            "to": "0x000000000000000000000000000000000000dEaD",
            "value": "0x1",
            "gas": "0x5208",
            "nonce": format!("{n:#x}"),
            "maxFeePerGas": "0x1d1a94a2000",
            "maxPriorityFeePerGas": "0xe8d4a51000",
        });
        let hash = anvil.rpc("eth_sendTransaction", json!([tx])).await;
        assert!(hash.is_string(), "foreign transaction at nonce {n}: {hash}");
    }
}
