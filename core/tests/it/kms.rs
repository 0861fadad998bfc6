//! Hot-wallet keys in KMS (moto's KMS, started through `scripts/moto-server.py` so that
//! digest signing behaves as AWS's): start checks that fail with one line, signatures that
//! recover to the key's own address with low s, and a batch signed concurrently in order.

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, U256};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use std::time::Duration;
use withdraw_core::adapters::kms::{KmsKey, KmsKeys, KmsLimits};
use withdraw_core::ports::{Fees, KeyError, Keys, UnsignedTransfer};
use withdraw_core::testing::servers::Moto;

const LIMITS: KmsLimits = KmsLimits { concurrency: 16, timeout: Duration::from_secs(5) };

async fn client(moto: &Moto) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&moto.sdk_config().await)
}

async fn create_key(c: &aws_sdk_kms::Client, spec: KeySpec, usage: KeyUsageType) -> String {
    c.create_key().key_spec(spec).key_usage(usage).send().await.unwrap().key_metadata().unwrap().key_id().to_owned()
}

async fn secp256k1(c: &aws_sdk_kms::Client) -> String {
    create_key(c, KeySpec::EccSecgP256K1, KeyUsageType::SignVerify).await
}

fn key(id: &str) -> KmsKey {
    KmsKey { key_id: id.to_owned(), address: None }
}

fn transfer(wallet: Address, nonce: u64) -> UnsignedTransfer {
    let fees = Fees::eip1559(2_000_000_000, 1_000_000_000);
    UnsignedTransfer { value: U256::from(nonce + 1), ..UnsignedTransfer::self_transfer(31337, wallet, nonce, fees) }
}

/// Who the chain would see as the sender of `raw`, and its nonce; panics on a high-s
/// signature (nodes refuse those since EIP-2).
fn sender_of(raw: &[u8]) -> (Address, u64) {
    let env = TxEnvelope::decode_2718(&mut &raw[..]).unwrap();
    let tx = env.as_eip1559().expect("an EIP-1559 transfer");
    let half_n = U256::from_str_radix("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0", 16).unwrap();
    assert!(tx.signature().s() <= half_n, "low-s signature");
    (tx.signature().recover_address_from_prehash(&tx.signature_hash()).unwrap(), tx.tx().nonce)
}

async fn load_err(c: aws_sdk_kms::Client, keys: Vec<KmsKey>) -> String {
    match KmsKeys::load(c, keys, LIMITS).await {
        Err(KeyError::Load(m)) => m,
        Err(e) => panic!("not a load error: {e}"),
        Ok(k) => panic!("loaded: {k:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_a_batch_concurrently_in_order_with_the_keys_own_address() {
    let moto = Moto::start();
    let c = client(&moto).await;
    let a = secp256k1(&c).await;
    let b = secp256k1(&c).await;
    c.create_alias().alias_name("alias/hot-b").target_key_id(&b).send().await.unwrap();
    let keys = KmsKeys::load(c, vec![key(&a), key("alias/hot-b")], LIMITS).await.expect("load");
    let wallets = keys.wallets();
    assert_eq!(wallets.len(), 2);
    assert_ne!(wallets[0], wallets[1]);
    for &w in &wallets {
        let txs: Vec<UnsignedTransfer> = (0..40).map(|n| transfer(w, n)).collect();
        let signed = keys.sign_many(w, &txs);
        assert_eq!(signed.len(), 40);
        for (n, s) in signed.into_iter().enumerate() {
            let s = s.expect("signed");
            assert_eq!(sender_of(&s.raw), (w, n as u64), "in order, by the key's own address");
        }
        let one = keys.sign(w, &transfer(w, 7)).expect("sign one");
        assert_eq!(sender_of(&one.raw), (w, 7));
    }
    let stranger = Address::repeat_byte(7);
    assert!(matches!(keys.sign(stranger, &transfer(stranger, 0)), Err(KeyError::UnknownWallet(_))));
    assert!(!format!("{keys:?}").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_address_is_checked() {
    let moto = Moto::start();
    let c = client(&moto).await;
    let a = secp256k1(&c).await;
    let probe = KmsKeys::load(c.clone(), vec![key(&a)], LIMITS).await.unwrap();
    let address = probe.wallets()[0];
    KmsKeys::load(c.clone(), vec![KmsKey { key_id: a.clone(), address: Some(address) }], LIMITS).await.expect("the right address loads");
    let wrong = Address::repeat_byte(0x11);
    let err = load_err(c, vec![KmsKey { key_id: a.clone(), address: Some(wrong) }]).await;
    assert!(err.contains(&a) && err.contains("not the configured") && err.contains(&wrong.to_checksum(None)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_failure_is_one_line_naming_the_key() {
    let moto = Moto::start();
    let c = client(&moto).await;
    let err = load_err(c.clone(), vec![key("alias/nowhere")]).await;
    assert!(err.contains("alias/nowhere") && err.contains("does not exist"), "{err}");

    let p256 = create_key(&c, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let err = load_err(c.clone(), vec![key(&p256)]).await;
    assert!(err.contains(&p256) && err.contains("ECC_NIST_P256") && err.contains("needs ECC_SECG_P256K1"), "{err}");

    let rsa = create_key(&c, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let err = load_err(c.clone(), vec![key(&rsa)]).await;
    assert!(err.contains(&rsa) && err.contains("RSA_2048"), "{err}");

    let a = secp256k1(&c).await;
    c.create_alias().alias_name("alias/same").target_key_id(&a).send().await.unwrap();
    let err = load_err(c.clone(), vec![key(&a), key("alias/same")]).await;
    assert!(err.contains("same wallet"), "{err}");

    // A disabled key (DisabledException) is not tested: moto signs with disabled keys.
    assert!(load_err(c, vec![]).await.contains("no KMS key"));
}

/// moto enforcing IAM (after the setup's requests): a role that may read the public key but
/// not sign stops at start, naming the missing action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_kms_sign_fails_at_start() {
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]);
    let admin = client(&moto).await;
    let a = secp256k1(&admin).await;
    let (id, secret) = iam_user_allowed(&moto.endpoint, &["kms:GetPublicKey"]).await;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(id, secret, None, None, "iam-user"))
        .load()
        .await;
    let err = load_err(aws_sdk_kms::Client::new(&conf), vec![key(&a)]).await;
    assert!(err.contains(&a) && err.contains("may not call kms:Sign"), "{err}");
}

/// Creates an IAM user allowed only `actions`, over moto's IAM query API (three requests).
async fn iam_user_allowed(endpoint: &str, actions: &[&str]) -> (String, String) {
    let http = reqwest::Client::new();
    let call = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let mut form = form;
            form.push(("Version", "2010-05-08".into()));
            http.post(endpoint)
                .header(
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
                )
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    call(vec![("Action", "CreateUser".into()), ("UserName", "signer".into())]).await;
    let created = call(vec![("Action", "CreateAccessKey".into()), ("UserName", "signer".into())]).await;
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = created.find(&open).unwrap_or_else(|| panic!("{name} in {created}")) + open.len();
        created[start..start + created[start..].find('<').unwrap()].to_owned()
    };
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]});
    call(vec![
        ("Action", "PutUserPolicy".into()),
        ("UserName", "signer".into()),
        ("PolicyName", "only".into()),
        ("PolicyDocument", policy.to_string()),
    ])
    .await;
    (field("AccessKeyId"), field("SecretAccessKey"))
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
