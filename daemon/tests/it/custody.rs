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
