//! Custody and fees end to end: wallets whose keys live in KMS (moto) paying on anvil beside
//! a local key, and a start that fails with one line when a KMS key is wrong.

use crate::body;
use crate::harness::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use withdraw_core::testing::servers::Moto;
use withdraw_core::testing::{Anvil, DEV_KEYS};

fn moto_env(moto: &Moto) -> Vec<(String, String)> {
    let mut env = fast_env();
    env.extend(Moto::env().iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.push(("WITHDRAW__AWS__ENDPOINT_URL".into(), moto.endpoint.clone()));
    env
}

fn config_file(dir: &Path, toml: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("custody.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn kms_key(moto: &Moto, alias: &str) -> String {
    let c = aws_sdk_kms::Client::new(&moto.sdk_config().await);
    let id = c
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccSecgP256K1)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    c.create_alias().alias_name(alias).target_key_id(&id).send().await.unwrap();
    id
}

/// The address of a KMS key, as the chain will see it.
async fn kms_address(moto: &Moto, key_id: &str) -> alloy::primitives::Address {
    let c = aws_sdk_kms::Client::new(&moto.sdk_config().await);
    let limits = withdraw_core::adapters::kms::KmsLimits { concurrency: 1, timeout: Duration::from_secs(5) };
    let keys = withdraw_core::adapters::kms::KmsKeys::load(
        c,
        vec![withdraw_core::adapters::kms::KmsKey { key_id: key_id.to_owned(), address: None }],
        limits,
    )
    .await
    .unwrap();
    withdraw_core::ports::Keys::wallets(&keys)[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_wallets_pay_on_anvil_beside_a_local_key() {
    let anvil = Anvil::start(&[]);
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    kms_key(&moto, "alias/hot-kms").await;
    let wallet = kms_address(&moto, "alias/hot-kms").await;
    anvil.rpc("anvil_setBalance", json!([wallet, "0x56BC75E2D63100000"])).await;
    let cfg = config_file(
        dir.path(),
        &format!(
            r#"[signer]
key = {{ env = "WITHDRAW_TEST_HOT_KEY" }}

[[signer.kms_keys]]
key_id = "alias/hot-kms"
address = "{wallet}"
"#
        ),
    );
    let mut env = moto_env(&moto);
    env.push(("WITHDRAW_TEST_HOT_KEY".into(), DEV_KEYS[2].to_owned()));
    let d = Daemon::start(&anvil, &dir.path().join("d"), &env, &["--config", cfg.to_str().unwrap()]).await;
    for u in 0..4 {
        d.credit(&format!("kms-{u}"), "10").await;
    }
    let mut ids = Vec::new();
    for i in 0..40 {
        let (s, v) = d.submit(&format!("kms-{i}"), &body(&format!("kms-{}", i % 4), &dest(0x4b, i), "0.01")).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let done = d.wait_settled(&ids, Duration::from_secs(90)).await;
    assert!(done.iter().all(|w| w["status"] == "COMPLETED"), "{done:#?}");
    for i in 0..40 {
        assert_eq!(anvil.balance(&dest(0x4b, i)).await, wei("0.01"), "destination {i} paid exactly once");
    }
    let by_kms = done.iter().filter(|w| w["attempts"][0]["wallet"].as_str() == Some(wallet.to_checksum(None).as_str())).count();
    assert!(by_kms > 0, "the KMS wallet signed none of them");
    assert_eq!(anvil.nonce(&wallet.to_string()).await as usize, by_kms, "every KMS signature the chain saw was one of ours");
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("withdraw_kms_signatures_total"), "KMS signatures are counted");
    assert!(!d.output().contains(DEV_KEYS[2]), "the local key never appears");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kms_key_stops_the_start_with_one_line() {
    let anvil = Anvil::start(&[]);
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("missing", "alias/none", "".to_owned(), "does not exist"),
        ("wrong-address", "alias/hot", "address = \"0x00000000000000000000000000000000000000aa\"".to_owned(), "not the configured"),
    ];
    kms_key(&moto, "alias/hot").await;
    for (name, key_id, extra, expect) in cases {
        let cfg = config_file(&dir.path().join(name), &format!("[[signer.kms_keys]]\nkey_id = \"{key_id}\"\n{extra}\n"));
        let err = Daemon::try_start(&anvil, &dir.path().join(name).join("d"), &moto_env(&moto), &["--config", cfg.to_str().unwrap()])
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: started"));
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(last.contains(key_id) && last.contains(expect), "{name}: {err}");
    }
}

/// The dev chain (its URL replaced by `--rpc-url`) with `extra` settings of its own.
fn dev_chain_with(extra: &str) -> String {
    format!(
        r#"[[chains]]
chain_id = 31337
rpc_url = "http://127.0.0.1:8545"
max_fee_cap_wei = 500000000000
rpc_timeout_ms = 3000
{extra}
"#
    )
}

fn fee(attempt: &serde_json::Value, field: &str) -> u128 {
    attempt[field].as_str().unwrap().parse().unwrap()
}

/// The fee oracle reads the market on every batch: after the base fee jumps, the next
/// transfer offers at least twice the new base fee, and is mined.
#[tokio::test]
async fn a_fee_spike_prices_the_next_transfers_from_the_market() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("fee", "10").await;
    let (_, v) = d.submit("fee-calm", &body("fee", &dest(0xfe, 0), "0.01")).await;
    let calm = d.wait_settled(&[v["id"].as_str().unwrap().to_owned()], Duration::from_secs(60)).await.remove(0);
    assert_eq!(calm["status"], "COMPLETED", "{calm}");
    let calm_max = fee(&calm["attempts"][0], "max_fee_per_gas");
    assert!(calm_max < 10_000_000_000, "a calm chain is priced low: {calm_max}");

    let spike: u128 = 100_000_000_000;
    anvil.rpc("anvil_setNextBlockBaseFeePerGas", json!([format!("{spike:#x}")])).await;
    let (_, v) = d.submit("fee-spike", &body("fee", &dest(0xfe, 1), "0.01")).await;
    let spiked = d.wait_settled(&[v["id"].as_str().unwrap().to_owned()], Duration::from_secs(60)).await.remove(0);
    assert_eq!(spiked["status"], "COMPLETED", "{spiked}");
    let a = &spiked["attempts"][0];
    assert_eq!(spiked["attempts"].as_array().unwrap().len(), 1, "priced right the first time, no bump needed");
    assert!(fee(a, "max_fee_per_gas") >= 2 * spike + 1_000_000_000, "max fee from the new base fee: {a}");
    assert_eq!(fee(a, "max_priority_fee_per_gas"), 1_000_000_000, "the floor, on blocks with no market");
    assert_eq!(anvil.balance(&dest(0xfe, 1)).await, wei("0.01"));
    let metrics = reqwest::get(format!("{}/metrics", d.health)).await.unwrap().text().await.unwrap();
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("withdraw_fee_max_fee_per_gas_wei{chain_id=\"31337\"} "))
        .unwrap_or_else(|| panic!("no fee gauge in\n{metrics}"));
    assert!(gauge.parse::<f64>().unwrap() >= 2.0 * spike as f64, "the gauge shows the chosen max fee: {gauge}");
}

/// A chain configured without EIP-1559 gets legacy transactions (type 0, EIP-155) at the
/// node's gas price, and they pay.
#[tokio::test]
async fn a_legacy_chain_is_paid_with_legacy_transactions() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &dev_chain_with(r#"fees = { model = "legacy" }"#));
    let d = Daemon::start(&anvil, &dir.path().join("d"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    d.credit("legacy", "10").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (s, v) = d.submit(&format!("legacy-{i}"), &body("legacy", &dest(0x1e, i), "0.02")).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let done = d.wait_settled(&ids, Duration::from_secs(60)).await;
    for (i, w) in done.iter().enumerate() {
        assert_eq!(w["status"], "COMPLETED", "{w}");
        let a = &w["attempts"][0];
        let tx = anvil.rpc("eth_getTransactionByHash", json!([a["tx_hash"]])).await;
        assert_eq!(tx["type"], "0x0", "a legacy transaction: {tx}");
        assert_eq!(tx["chainId"], "0x7a69", "replay-protected (EIP-155): {tx}");
        assert_eq!(u128::from_str_radix(tx["gasPrice"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap(), fee(a, "max_fee_per_gas"));
        assert_eq!(anvil.balance(&dest(0x1e, i)).await, wei("0.02"));
    }
}

/// With finality "finalized", a mined transfer stays SENT until the chain finalizes its
/// block (anvil keeps it 64 blocks behind its head); a reorg above the finalized block
/// unmines it, and it is mined again and paid once.
#[tokio::test]
async fn finalized_finality_waits_for_the_finalized_block_and_survives_a_reorg_above_it() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), &dev_chain_with(r#"finality = "finalized""#));
    let d = Daemon::start(&anvil, &dir.path().join("d"), &fast_env(), &["--config", cfg.to_str().unwrap()]).await;
    d.credit("fin", "10").await;
    let (_, v) = d.submit("fin-0", &body("fin", &dest(0xf1, 0), "0.3")).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let mined = crate::chain::wait_all(&d, std::slice::from_ref(&id), "inclusion", |w| !w["inclusion"].is_null()).await.remove(0);
    let first_block = mined["inclusion"]["block_hash"].as_str().unwrap().to_owned();
    // Twenty blocks on top is far from final here.
    anvil.rpc("anvil_mine", json!(["0x14"])).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(d.get(&id).await["status"], "SENT", "mined 21 deep, but not finalized");

    // A reorg above the finalized block takes the transfer's block away (and all above it).
    let head = anvil.rpc("eth_blockNumber", json!([])).await;
    let head = u64::from_str_radix(head.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let depth = head + 1 - mined["inclusion"]["block_number"].as_u64().unwrap();
    assert!(depth > 20 && depth < 64, "above the finalized block: {depth}");
    anvil.rpc("anvil_reorg", json!([depth, []])).await;
    assert!(anvil.balance(&dest(0xf1, 0)).await.is_zero(), "unpaid after the reorg");
    let again = crate::chain::wait_all(&d, std::slice::from_ref(&id), "re-inclusion", |w| {
        w["inclusion"]["block_hash"].as_str().is_some_and(|h| h != first_block)
    })
    .await
    .remove(0);
    assert_eq!(again["status"], "SENT", "{again}");

    // Past the finalized block: COMPLETED, paid once.
    anvil.rpc("anvil_mine", json!(["0x50"])).await;
    let w = d.wait_settled(std::slice::from_ref(&id), Duration::from_secs(60)).await.remove(0);
    assert_eq!(w["status"], "COMPLETED", "{w}");
    let finalized = anvil.rpc("eth_getBlockByNumber", json!(["finalized", false])).await;
    let fin_n = u64::from_str_radix(finalized["number"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(w["inclusion"]["block_number"].as_u64().unwrap() <= fin_n, "completed only at or below the finalized block: {w}");
    assert_eq!(anvil.balance(&dest(0xf1, 0)).await, wei("0.3"), "paid exactly once");
    assert_eq!(anvil.nonce(withdraw_core::testing::DEV_ADDRESS).await, 1);
}
