//! Hot-wallet keys that never leave AWS KMS, for the signer role only.
//!
//! Each wallet is one asymmetric KMS key of spec `ECC_SECG_P256K1` and usage `SIGN_VERIFY`,
//! named by key id, key ARN or alias. Nothing secret is ever in this process: it holds the
//! public key and the address derived from it, and asks KMS to sign each transaction's
//! digest (`MessageType=DIGEST`). IAM decides who may sign; the signer's role needs
//! `kms:GetPublicKey` and `kms:Sign` on these keys only (`k8s/iam/`).
//!
//! At start every key is checked, each failure one line naming the key: it exists and this
//! role may read it, its spec and usage are right, its address is the configured one (when
//! given), and this role may sign with it: a test digest is signed and must recover to the
//! address. So a missing permission stops the signer at start, not at the first withdrawal.
//!
//! KMS answers DER signatures with any `s`; alloy's `alloy-signer-aws` normalises them to
//! low-s and finds the recovery id by trial, which is what Ethereum accepts. A batch is
//! signed with at most `concurrency` requests in flight, the whole batch bounded by
//! `timeout` on top of the SDK's own retries, so a batch of 256 is a few round trips deep,
//! not 256, and a KMS that hangs costs one timeout.

use super::aws::describe;
use crate::ports::{KeyError, Keys, SignedTx, UnsignedTransfer};
use alloy::primitives::{Address, keccak256};
use alloy::signers::Signer;
use alloy_signer_aws::{AwsSigner, AwsSignerError};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// One configured KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// Key id, key ARN, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    /// The wallet the key must be; checked at start when given.
    pub address: Option<Address>,
}

/// How KMS is called.
#[derive(Debug, Clone, Copy)]
pub struct KmsLimits {
    /// Signing requests in flight at once, per batch.
    pub concurrency: usize,
    /// Longest one batch of signatures may take, retries included.
    pub timeout: Duration,
}

pub struct KmsKeys {
    signers: HashMap<Address, (String, AwsSigner)>,
    order: Vec<Address>,
    limits: KmsLimits,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for KmsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<(&str, Address)> = self.order.iter().map(|a| (self.signers[a].0.as_str(), *a)).collect();
        f.debug_struct("KmsKeys").field("keys", &keys).finish()
    }
}

/// The digest signed at start to prove `kms:Sign` works and the key is the wallet.
fn start_check_digest() -> alloy::primitives::B256 {
    keccak256(b"withdrawd: KMS start check (never a transaction)")
}

/// The error code of a failed KMS call, for the one-line start failures.
fn code<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &SdkError<E>) -> Option<&str> {
    e.as_service_error().and_then(|s| s.code())
}

/// IAM refused the call: KMS says `AccessDeniedException`; an IAM-enforcing stand-in may
/// answer a bare 403.
fn denied<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(code(e), Some("AccessDeniedException" | "AccessDenied")) || e.raw_response().is_some_and(|r| r.status().as_u16() == 403)
}

/// Checks one key and makes its signer. Every error names the key id and what to fix.
async fn check_key(client: &Client, key: &KmsKey) -> Result<(Address, AwsSigner), KeyError> {
    let id = key.key_id.as_str();
    let out = client.get_public_key().key_id(id).send().await.map_err(|e| {
        KeyError::Load(match code(&e) {
            _ if denied(&e) => format!("KMS key {id}: this role may not call kms:GetPublicKey on it"),
            Some("NotFoundException") => format!("KMS key {id} does not exist (or not in this account and region)"),
            Some("DisabledException") => format!("KMS key {id} is disabled"),
            Some("KMSInvalidStateException") => format!("KMS key {id} is not usable (pending deletion or import): {}", describe(&e)),
            _ => format!("KMS key {id}: {}", describe(&e)),
        })
    })?;
    // KMS answers both fields; the older `CustomerMasterKeySpec` alone is still served by
    // some stand-ins (moto), hence the deprecated read as a fallback.
    #[allow(deprecated)]
    let spec = out.key_spec().map(|s| s.as_str()).or(out.customer_master_key_spec().map(|s| s.as_str())).unwrap_or("unknown");
    if spec != KeySpec::EccSecgP256K1.as_str() {
        return Err(KeyError::Load(format!("KMS key {id} is of spec {spec}; a hot wallet needs ECC_SECG_P256K1")));
    }
    if out.key_usage() != Some(&KeyUsageType::SignVerify) {
        let usage = out.key_usage().map_or("unknown", |u| u.as_str());
        return Err(KeyError::Load(format!("KMS key {id} has usage {usage}; a hot wallet needs SIGN_VERIFY")));
    }
    let signer = AwsSigner::new(client.clone(), id.to_owned(), None)
        .await
        .map_err(|e| KeyError::Load(format!("KMS key {id}: cannot read its public key: {}", describe(&e))))?;
    let address = signer.address();
    if let Some(want) = key.address
        && want != address
    {
        return Err(KeyError::Load(format!(
            "KMS key {id} is wallet {}, not the configured {}",
            address.to_checksum(None),
            want.to_checksum(None)
        )));
    }
    let digest = start_check_digest();
    signer.sign_digest(&digest).await.map_err(|e| {
        KeyError::Load(match &e {
            AwsSignerError::Sign(e) if denied(e) => format!("KMS key {id}: this role may not call kms:Sign on it"),
            AwsSignerError::Sign(e) if code(e) == Some("DisabledException") => format!("KMS key {id} is disabled"),
            _ => format!("KMS key {id}: a test signature failed: {}", describe(&e)),
        })
    })?;
    let sig =
        signer.sign_hash(&digest).await.map_err(|e| KeyError::Load(format!("KMS key {id}: a test signature failed: {}", describe(&e))))?;
    match sig.recover_address_from_prehash(&digest) {
        Ok(a) if a == address => Ok((address, signer)),
        _ => Err(KeyError::Load(format!("KMS key {id}: its signatures do not recover to its own public key's address"))),
    }
}

impl KmsKeys {
    /// Checks every key (all must pass) and keeps their signers. Must be called on the
    /// multi-threaded tokio runtime that will later sign.
    pub async fn load(client: Client, keys: Vec<KmsKey>, limits: KmsLimits) -> Result<KmsKeys, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Load("no KMS key is configured".into()));
        }
        let mut signers = HashMap::new();
        let mut order = Vec::new();
        for key in &keys {
            let (address, signer) = check_key(&client, key).await?;
            if let Some((other, _)) = signers.insert(address, (key.key_id.clone(), signer)) {
                return Err(KeyError::Load(format!(
                    "KMS keys {other} and {} are the same wallet {}",
                    key.key_id,
                    address.to_checksum(None)
                )));
            }
            order.push(address);
        }
        let limits = KmsLimits { concurrency: limits.concurrency.max(1), timeout: limits.timeout };
        Ok(KmsKeys { signers, order, limits, runtime: tokio::runtime::Handle::current() })
    }

    async fn sign_async(&self, signer: &AwsSigner, t: &UnsignedTransfer, deadline: tokio::time::Instant) -> Result<SignedTx, KeyError> {
        let hash = crate::adapters::evm::signature_hash(t);
        let sig = tokio::time::timeout_at(deadline, signer.sign_hash(&hash))
            .await
            .map_err(|_| KeyError::Signing(format!("KMS did not sign within {:?}", self.limits.timeout)))?
            .map_err(|e| KeyError::Signing(format!("KMS: {}", describe(&e))))?;
        Ok(crate::adapters::evm::signed(t, sig))
    }

    /// Runs `fut` to completion from the synchronous `Keys` calls: the store calls them on
    /// its blocking threads, the bumper on a runtime worker (which `block_in_place` hands
    /// off first so the other tasks keep running).
    fn wait<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, KeyError> {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => {
                Err(KeyError::Signing("KMS signing needs the multi-threaded runtime; it was called on a current-thread one".into()))
            }
            _ => Ok(tokio::task::block_in_place(|| self.runtime.block_on(fut))),
        }
    }
}

impl Keys for KmsKeys {
    fn wallets(&self) -> Vec<alloy::primitives::Address> {
        self.order.clone()
    }

    fn sign(&self, wallet: Address, t: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
        self.sign_many(wallet, std::slice::from_ref(t)).pop().unwrap_or_else(|| Err(KeyError::Signing("nothing signed".into())))
    }

    fn sign_many(&self, wallet: Address, txs: &[UnsignedTransfer]) -> Vec<Result<SignedTx, KeyError>> {
        let Some((_, signer)) = self.signers.get(&wallet) else {
            return txs.iter().map(|_| Err(KeyError::UnknownWallet(wallet))).collect();
        };
        let started = std::time::Instant::now();
        // One deadline for the whole batch, not one per signature: the store may be holding
        // the wallet's nonce row while this runs, and a KMS that hangs must cost one
        // timeout, not one per wave of `concurrency` requests.
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let all = futures::stream::iter(txs.iter().map(|t| self.sign_async(signer, t, deadline)))
            .buffered(self.limits.concurrency)
            .collect::<Vec<_>>();
        let out = match self.wait(all) {
            Ok(out) => out,
            Err(e) => return txs.iter().map(|_| Err(KeyError::Signing(e.to_string()))).collect(),
        };
        metrics::histogram!("withdraw_kms_batch_seconds").record(started.elapsed().as_secs_f64());
        let failed = out.iter().filter(|r| r.is_err()).count() as u64;
        metrics::counter!("withdraw_kms_signatures_total", "outcome" => "signed").increment(out.len() as u64 - failed);
        metrics::counter!("withdraw_kms_signatures_total", "outcome" => "failed").increment(failed);
        out
    }
}
