//! Hot-wallet keys from Secrets Manager (moto): load, sign, rotation, and clear failures
//! that never show a secret's value.

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::Address;
use std::time::Duration;
use withdraw_core::adapters::secrets::SecretsManagerKeys;
use withdraw_core::ports::{Fees, Keys, UnsignedTransfer};
use withdraw_core::testing::servers::Moto;
use withdraw_core::testing::{DEV_KEYS, eventually};

fn addr_of(key: &str) -> Address {
    key.parse::<alloy::signers::local::PrivateKeySigner>().unwrap().address()
}

async fn client(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await)
}

/// Signs a self-transfer with `wallet` and returns who the chain would see as its sender.
fn signer_of(keys: &SecretsManagerKeys, wallet: Address) -> Address {
    let fees = Fees::eip1559(2_000_000_000, 1_000_000_000);
    let signed = keys.sign(wallet, &UnsignedTransfer::self_transfer(31337, wallet, 0, fees)).expect("sign");
    let env = TxEnvelope::decode_2718(&mut signed.raw.as_ref()).unwrap();
    let tx = env.as_eip1559().expect("an EIP-1559 transfer");
    tx.signature().recover_address_from_prehash(&tx.signature_hash()).unwrap()
}

#[tokio::test]
async fn loads_hex_and_json_secrets_and_signs_with_them() {
    let moto = Moto::start();
    let c = client(&moto).await;
    c.create_secret().name("hot/1").secret_string(format!("0x{}", DEV_KEYS[1])).send().await.unwrap();
    c.create_secret().name("hot/2").secret_string(format!("{{\"private_key\":\"{}\"}}", DEV_KEYS[2])).send().await.unwrap();
    let keys = SecretsManagerKeys::load(c, vec!["hot/1".into(), "hot/2".into()], Duration::from_secs(300)).await.expect("load");
    assert_eq!(keys.wallets(), vec![addr_of(DEV_KEYS[1]), addr_of(DEV_KEYS[2])]);
    for w in keys.wallets() {
        assert_eq!(signer_of(&keys, w), w);
    }
    let dbg = format!("{keys:?}");
    assert!(DEV_KEYS.iter().all(|k| !dbg.contains(k)), "Debug shows no key");
}

#[tokio::test]
async fn a_rotation_is_picked_up_and_the_old_key_keeps_signing() {
    let moto = Moto::start();
    let c = client(&moto).await;
    c.create_secret().name("hot").secret_string(DEV_KEYS[1]).send().await.unwrap();
    let keys = SecretsManagerKeys::load(c.clone(), vec!["hot".into()], Duration::from_millis(200)).await.expect("load");
    assert_eq!(keys.wallets(), vec![addr_of(DEV_KEYS[1])]);
    c.put_secret_value().secret_id("hot").secret_string(DEV_KEYS[3]).send().await.unwrap();
    eventually(Duration::from_secs(10), "the rotated key", || async { (keys.wallets().len() == 2).then_some(()) }).await;
    assert_eq!(keys.wallets(), vec![addr_of(DEV_KEYS[1]), addr_of(DEV_KEYS[3])]);
    assert_eq!(signer_of(&keys, addr_of(DEV_KEYS[3])), addr_of(DEV_KEYS[3]));
    assert_eq!(signer_of(&keys, addr_of(DEV_KEYS[1])), addr_of(DEV_KEYS[1]), "in-flight transfers of the old key can still be bumped");
}

#[tokio::test]
async fn a_missing_or_malformed_secret_fails_with_its_id_and_never_its_value() {
    let moto = Moto::start();
    let c = client(&moto).await;
    let err = SecretsManagerKeys::load(c.clone(), vec!["nope".into()], Duration::from_secs(300)).await.expect_err("missing");
    let msg = err.to_string();
    assert!(msg.contains("secret nope does not exist"), "{msg}");

    let almost = &DEV_KEYS[1][..63]; // one hex digit short
    c.create_secret().name("short").secret_string(almost).send().await.unwrap();
    c.create_secret().name("json").secret_string(format!("{{\"key\":\"{}\"}}", DEV_KEYS[1])).send().await.unwrap();
    for id in ["short", "json"] {
        let err = SecretsManagerKeys::load(c.clone(), vec![id.into()], Duration::from_secs(300)).await.expect_err("malformed");
        let msg = err.to_string();
        assert!(msg.contains(&format!("secret {id}")), "{msg}");
        assert!(!msg.contains(almost) && !msg.contains(DEV_KEYS[1]), "the error repeats the secret: {msg}");
    }
    let err = SecretsManagerKeys::load(c, vec![], Duration::from_secs(300)).await.expect_err("none configured");
    assert!(err.to_string().contains("no hot-wallet secret ids"), "{err}");
}

/// What the refresh loop logs, captured: a rotation to a new key and then to a malformed
/// value (one hex digit short of a key) name the secret and the wallet, never a value, and
/// the keys already loaded keep signing.
#[tokio::test]
async fn refreshes_log_ids_and_addresses_never_a_secret_value() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).with_max_level(tracing::Level::DEBUG).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let moto = Moto::start();
    let c = client(&moto).await;
    c.create_secret().name("hot").secret_string(DEV_KEYS[1]).send().await.unwrap();
    let keys = SecretsManagerKeys::load(c.clone(), vec!["hot".into()], Duration::from_millis(200)).await.expect("load");
    c.put_secret_value().secret_id("hot").secret_string(format!("{{\"private_key\":\"{}\"}}", DEV_KEYS[2])).send().await.unwrap();
    eventually(Duration::from_secs(10), "the rotated key", || async { (keys.wallets().len() == 2).then_some(()) }).await;
    let almost = &DEV_KEYS[3][..63];
    c.put_secret_value().secret_id("hot").secret_string(almost).send().await.unwrap();
    let text = eventually(Duration::from_secs(10), "a failed refresh in the log", || async {
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        text.contains("refreshing a hot-wallet secret failed").then_some(text)
    })
    .await;
    assert!(text.contains("secret_id=\"hot\""), "{text}");
    assert!(text.contains("error=could not load hot-wallet key: secret hot: hot-wallet key is not hex"), "{text}");
    assert!(text.contains(&addr_of(DEV_KEYS[2]).to_checksum(None)), "the new wallet is named: {text}");
    for k in DEV_KEYS.iter().chain([&almost]) {
        assert!(!text.contains(k), "a secret value reached the log: {text}");
    }
    assert_eq!(keys.wallets(), vec![addr_of(DEV_KEYS[1]), addr_of(DEV_KEYS[2])], "a malformed version adds nothing");
    assert_eq!(signer_of(&keys, addr_of(DEV_KEYS[2])), addr_of(DEV_KEYS[2]), "loaded keys keep signing");
}
