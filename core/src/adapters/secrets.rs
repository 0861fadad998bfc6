//! Hot-wallet keys from AWS Secrets Manager, for the signer role only.
//!
//! One secret per wallet, holding the private key as hex or as JSON
//! `{"private_key": "0x…"}`. Keys are loaded at start (a missing or malformed secret stops
//! the signer with one line naming the secret, never its value), kept in memory as signers
//! that zeroize on drop, and re-read every `ttl` so a rotation is picked up without a
//! restart:
//! - a new version holding the same key changes nothing;
//! - a new version holding a different key adds that wallet. The old key stays loaded, since
//!   transfers already signed at its nonces may still need a fee bump or a cancel. The
//!   signer gives new work to the new wallet from its next start; retire the old secret once
//!   `GET /admin/v1/hot-wallets` shows nothing in flight for it.
//!
//! A failed refresh keeps the keys already loaded (and says so in the log): an outage of
//! Secrets Manager must not stop withdrawals that are already possible.

use super::aws::describe;
use super::evm::LocalKeys;
use crate::ports::{KeyError, Keys, SignedTx, UnsignedTransfer};
use alloy::primitives::Address;
use aws_sdk_secretsmanager::Client;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use zeroize::Zeroizing;

pub struct SecretsManagerKeys {
    keys: Arc<RwLock<LocalKeys>>,
    refresher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SecretsManagerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerKeys").field("wallets", &self.wallets()).finish()
    }
}

impl Drop for SecretsManagerKeys {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

#[derive(serde::Deserialize)]
struct KeySecret {
    private_key: String,
}

/// Reads one secret and parses the key in it. Errors name the secret id, never the value.
async fn fetch(client: &Client, id: &str) -> Result<LocalKeys, KeyError> {
    let out = client.get_secret_value().secret_id(id).send().await.map_err(|e| {
        let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
        if not_found {
            KeyError::Load(format!("secret {id} does not exist (or this role may not read it)"))
        } else {
            KeyError::Load(format!("secret {id}: {}", describe(&e)))
        }
    })?;
    let raw = Zeroizing::new(
        out.secret_string()
            .map(str::to_owned)
            .ok_or_else(|| KeyError::Load(format!("secret {id} has no string value (a binary secret is not supported)")))?,
    );
    drop(out);
    let hex_key = if raw.trim_start().starts_with('{') {
        // Deserialised straight into the struct: the key's heap buffer moves into a
        // Zeroizing without a copy.
        let parsed: KeySecret = serde_json::from_str(&raw)
            .map_err(|_| KeyError::Load(format!("secret {id} is not JSON with a \"private_key\" string (value not shown)")))?;
        Zeroizing::new(parsed.private_key)
    } else {
        raw
    };
    LocalKeys::from_hex(std::slice::from_ref(&hex_key)).map_err(|e| match e {
        KeyError::Load(m) => KeyError::Load(format!("secret {id}: {m}")),
        other => other,
    })
}

impl SecretsManagerKeys {
    /// Loads every secret (all must load), then re-reads them every `ttl`.
    pub async fn load(client: Client, secret_ids: Vec<String>, ttl: Duration) -> Result<Self, KeyError> {
        if secret_ids.is_empty() {
            return Err(KeyError::Load("no hot-wallet secret ids are configured".into()));
        }
        let mut keys: Option<LocalKeys> = None;
        for id in &secret_ids {
            let k = fetch(&client, id).await?;
            match keys.as_mut() {
                None => keys = Some(k),
                Some(all) => {
                    all.merge(k);
                }
            }
        }
        let keys = Arc::new(RwLock::new(keys.expect("at least one secret")));
        let shared = keys.clone();
        let refresher = tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + ttl, ttl.max(Duration::from_millis(100)));
            loop {
                every.tick().await;
                for id in &secret_ids {
                    match fetch(&client, id).await {
                        Ok(k) => {
                            let added = shared.write().unwrap_or_else(|p| p.into_inner()).merge(k);
                            for w in added {
                                // The secret's id and the wallet's public address only.
                                tracing::warn!(secret_id = id.as_str(), wallet = %w.to_checksum(None),
                                    "hot-wallet secret now holds a new key; the old key keeps signing its in-flight transfers, restart the signer to give the new wallet work");
                            }
                        }
                        // `fetch` builds its errors from the id and the SDK's error, never
                        // from the secret's value (tested with a malformed rotation).
                        Err(e) => {
                            tracing::warn!(secret_id = id.as_str(), error = %e, "refreshing a hot-wallet secret failed; keeping the keys already loaded")
                        }
                    }
                }
            }
        });
        Ok(Self { keys, refresher })
    }
}

impl Keys for SecretsManagerKeys {
    fn wallets(&self) -> Vec<Address> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).wallets()
    }

    fn sign(&self, wallet: Address, tx: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).sign(wallet, tx)
    }
}
