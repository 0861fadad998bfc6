//! The chain port over JSON-RPC, and hot-wallet keys that sign EIP-1559 transactions with
//! alloy. We allocate nonces ourselves (in the store) and never use alloy's nonce filler.

use super::pool::{EndpointSpec, PoolConfig, RpcPool};
use super::rpc::RpcClient;
use crate::ports::*;
use alloy::consensus::{SignableTransaction, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use zeroize::Zeroizing;

/// One chain reached through a pool of JSON-RPC endpoints.
#[derive(Debug)]
pub struct EvmChain {
    rpc: std::sync::Arc<RpcPool>,
    chain_id: u64,
    /// Upper bound on max_fee_per_gas we will ever sign, in wei.
    max_fee_cap: u128,
    /// Priority fee used when the node cannot suggest one, in wei.
    default_priority_fee: u128,
}

fn hex_u64(v: &Value) -> Result<u64, ChainError> {
    let s = v.as_str().ok_or_else(|| ChainError::Malformed(format!("expected hex quantity, got {v}")))?;
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| ChainError::Malformed(format!("bad quantity {s}")))
}

fn hex_u128(v: &Value) -> Result<u128, ChainError> {
    let s = v.as_str().ok_or_else(|| ChainError::Malformed(format!("expected hex quantity, got {v}")))?;
    u128::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| ChainError::Malformed(format!("bad quantity {s}")))
}

fn parse<T: std::str::FromStr>(v: &Value, what: &str) -> Result<T, ChainError> {
    v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| ChainError::Malformed(format!("bad {what}: {v}")))
}

/// How good a broadcast answer is when endpoints disagree (lower is better): any node that
/// has the transaction settles it; "nonce too low" from a node that is ahead beats a
/// transport error; a definitive refusal counts only if no node did better.
fn rank(r: &SendResult) -> u8 {
    match r {
        SendResult::Accepted | SendResult::AlreadyKnown => 0,
        SendResult::NonceTooLow | SendResult::NonceTakenElsewhere => 1,
        SendResult::ReplacementUnderpriced => 2,
        SendResult::InsufficientFunds | SendResult::FeeCapExceeded => 3,
        SendResult::Rejected(_) => 4,
        SendResult::Unknown(_) => 5,
    }
}

fn receipt(v: &Value) -> Result<TxReceipt, ChainError> {
    Ok(TxReceipt {
        tx_hash: parse(&v["transactionHash"], "transactionHash")?,
        from: parse(&v["from"], "from")?,
        block_number: hex_u64(&v["blockNumber"])?,
        block_hash: parse(&v["blockHash"], "blockHash")?,
        success: hex_u64(&v["status"])? == 1,
        // A receipt without its logs proves nothing either way: refused, never read as "no
        // Transfer happened".
        transfers: v["logs"]
            .as_array()
            .ok_or_else(|| ChainError::Malformed("receipt without logs".into()))?
            .iter()
            .filter_map(transfer_log)
            .collect(),
    })
}

/// An ERC-20 `Transfer` log (three topics, a 32-byte amount); anything else is None.
fn transfer_log(log: &Value) -> Option<TransferLog> {
    let topics = log["topics"].as_array()?;
    let topic = |i: usize| topics.get(i)?.as_str()?.parse::<B256>().ok();
    if topics.len() != 3 || topic(0)? != TRANSFER_TOPIC {
        return None;
    }
    let data = hex::decode(log["data"].as_str()?.trim_start_matches("0x")).ok()?;
    if data.len() != 32 {
        return None;
    }
    let word_addr = |w: B256| Address::from_slice(&w[12..]);
    Some(TransferLog {
        token: log["address"].as_str()?.parse().ok()?,
        from: word_addr(topic(1)?),
        to: word_addr(topic(2)?),
        amount: U256::from_be_slice(&data),
    })
}

impl EvmChain {
    /// Starts the endpoint pool (which checks every endpoint's chain id and health) for
    /// `cfg.chain_id`; fails if no endpoint is usable, naming each one's problem.
    pub async fn connect(cfg: PoolConfig, endpoints: Vec<EndpointSpec>, max_fee_cap: u128) -> Result<EvmChain, ChainError> {
        Self::connect_with(cfg, endpoints, max_fee_cap, true).await
    }

    /// As [`connect`](Self::connect); `require_usable` as in [`RpcPool::start_with`].
    pub async fn connect_with(
        cfg: PoolConfig,
        endpoints: Vec<EndpointSpec>,
        max_fee_cap: u128,
        require_usable: bool,
    ) -> Result<EvmChain, ChainError> {
        let chain_id = cfg.chain_id;
        let rpc = RpcPool::start_with(cfg, endpoints, require_usable).await?;
        Ok(EvmChain { rpc, chain_id, max_fee_cap, default_priority_fee: 1_000_000_000 })
    }

    /// Asks a node which chain it serves, before any config decision is made.
    pub async fn probe_chain_id(url: &str, timeout: Duration) -> Result<u64, ChainError> {
        let rpc = RpcClient::new(url, timeout)?;
        hex_u64(&rpc.call("eth_chainId", json!([])).await?)
    }

    pub fn pool(&self) -> &RpcPool {
        &self.rpc
    }
}

impl Chain for EvmChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn max_fee_cap(&self) -> u128 {
        self.max_fee_cap
    }

    fn available(&self) -> bool {
        self.rpc.available()
    }

    fn endpoints(&self) -> Vec<EndpointHealth> {
        self.rpc.health()
    }

    async fn head(&self) -> Result<u64, ChainError> {
        hex_u64(&self.rpc.call("eth_blockNumber", json!([])).await?)
    }

    async fn fees(&self) -> Result<Fees, ChainError> {
        let answers = self
            .rpc
            .batch(vec![("eth_getBlockByNumber".into(), json!(["latest", false])), ("eth_maxPriorityFeePerGas".into(), json!([]))])
            .await?;
        let mut it = answers.into_iter();
        let block = it.next().unwrap_or_else(|| Err(ChainError::Malformed("no block".into())))?;
        let base = hex_u128(&block["baseFeePerGas"]).unwrap_or(0);
        let tip = match it.next() {
            Some(Ok(v)) => hex_u128(&v).unwrap_or(self.default_priority_fee),
            _ => self.default_priority_fee,
        };
        // Room for the base fee to double over a few blocks, as wallets commonly do; the
        // cap bounds what a fee spike can cost us.
        let max_fee = base.saturating_mul(2).saturating_add(tip).min(self.max_fee_cap);
        Ok(Fees { max_fee_per_gas: max_fee, max_priority_fee_per_gas: tip.min(max_fee) })
    }

    async fn send_raw(&self, raws: Vec<Bytes>) -> Result<Vec<SendResult>, ChainError> {
        let calls: Vec<(String, Value)> = raws.iter().map(|r| ("eth_sendRawTransaction".to_owned(), json!([r]))).collect();
        // Every usable endpoint gets every transaction; per transaction the best answer wins.
        let per_endpoint = self.rpc.broadcast(calls).await?;
        let mut merged: Vec<Option<SendResult>> = vec![None; raws.len()];
        for answers in per_endpoint {
            let results: Vec<SendResult> = match answers {
                Ok(a) => a
                    .into_iter()
                    .map(|a| match a {
                        Ok(_) => SendResult::Accepted,
                        Err(ChainError::Rpc { message, .. }) => SendResult::classify(&message),
                        Err(e) => SendResult::Unknown(e.to_string()),
                    })
                    .collect(),
                Err(e) => raws.iter().map(|_| SendResult::Unknown(e.to_string())).collect(),
            };
            for (slot, r) in merged.iter_mut().zip(results) {
                if slot.as_ref().is_none_or(|cur| rank(&r) < rank(cur)) {
                    *slot = Some(r);
                }
            }
        }
        Ok(merged.into_iter().map(|r| r.unwrap_or_else(|| SendResult::Unknown("no endpoint answered".into()))).collect())
    }

    async fn block_receipts(&self, from: u64, to: u64) -> Result<Vec<BlockReceipts>, ChainError> {
        if to < from {
            return Ok(Vec::new());
        }
        let mut calls = Vec::new();
        for n in from..=to {
            calls.push(("eth_getBlockByNumber".to_owned(), json!([format!("{n:#x}"), false])));
            calls.push(("eth_getBlockReceipts".to_owned(), json!([format!("{n:#x}")])));
        }
        let answers = self.rpc.batch(calls).await?;
        let mut out = Vec::new();
        for (i, pair) in answers.chunks(2).enumerate() {
            let (block, receipts) = match pair {
                [Ok(b), Ok(r)] if !b.is_null() && !r.is_null() => (b, r),
                // Past the head (or a node behind us): stop; the next round continues here.
                [Ok(_), Ok(_)] => break,
                [Err(e), _] | [_, Err(e)] => return Err(e.clone()),
                _ => return Err(ChainError::Malformed("odd batch answer".into())),
            };
            let hash: B256 = parse(&block["hash"], "block hash")?;
            let list = receipts.as_array().ok_or_else(|| ChainError::Malformed("receipts not an array".into()))?;
            let receipts = list.iter().map(receipt).collect::<Result<Vec<_>, _>>()?;
            // Receipts fetched in the same batch may come from a block that replaced this
            // one in a reorg between the two reads; keep them only if they agree.
            if receipts.iter().any(|r| r.block_hash != hash) {
                break;
            }
            out.push(BlockReceipts { number: from + i as u64, hash, receipts });
        }
        Ok(out)
    }

    async fn block_hashes(&self, numbers: Vec<u64>) -> Result<Vec<Option<B256>>, ChainError> {
        let calls = numbers.iter().map(|n| ("eth_getBlockByNumber".to_owned(), json!([format!("{n:#x}"), false]))).collect();
        self.rpc
            .batch(calls)
            .await?
            .into_iter()
            .map(|a| {
                let b = a?;
                if b.is_null() { Ok(None) } else { parse(&b["hash"], "block hash").map(Some) }
            })
            .collect()
    }

    async fn receipts(&self, hashes: Vec<B256>) -> Result<Vec<Option<TxReceipt>>, ChainError> {
        let calls = hashes.iter().map(|h| ("eth_getTransactionReceipt".to_owned(), json!([h]))).collect();
        self.rpc
            .batch(calls)
            .await?
            .into_iter()
            .map(|a| {
                let r = a?;
                if r.is_null() { Ok(None) } else { receipt(&r).map(Some) }
            })
            .collect()
    }

    async fn nonce(&self, address: Address, pending: bool) -> Result<u64, ChainError> {
        let tag = if pending { "pending" } else { "latest" };
        hex_u64(&self.rpc.call("eth_getTransactionCount", json!([address, tag])).await?)
    }

    async fn nonce_at(&self, address: Address, block: u64) -> Result<u64, ChainError> {
        hex_u64(&self.rpc.call("eth_getTransactionCount", json!([address, format!("{block:#x}")])).await?)
    }

    async fn balance(&self, address: Address) -> Result<U256, ChainError> {
        parse(&self.rpc.call("eth_getBalance", json!([address, "latest"])).await?, "balance")
    }

    async fn token_balance(&self, token: Address, holder: Address) -> Result<U256, ChainError> {
        let data = crate::tx::erc20_balance_of_calldata(holder);
        let v = self.rpc.call("eth_call", json!([{"to": token, "data": data}, "latest"])).await?;
        let s = v.as_str().ok_or_else(|| ChainError::Malformed(format!("balanceOf answer {v}")))?;
        U256::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| ChainError::Malformed(format!("balanceOf answer {s}")))
    }
}

/// Hot-wallet keys held in this process. alloy's signer keeps the key in a k256
/// `SigningKey`, which zeroizes on drop; we never expose it, and `Debug` shows addresses only.
pub struct LocalKeys {
    signers: HashMap<Address, PrivateKeySigner>,
    order: Vec<Address>,
}

impl std::fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeys").field("wallets", &self.order).finish()
    }
}

impl LocalKeys {
    /// From a hex private key. The caller's copy is zeroized when its `Zeroizing` drops; the
    /// error never repeats the input.
    pub fn from_hex(keys: &[Zeroizing<String>]) -> Result<LocalKeys, KeyError> {
        let mut signers = Vec::new();
        for k in keys {
            let bytes = Zeroizing::new(
                hex::decode(k.trim().trim_start_matches("0x"))
                    .map_err(|_| KeyError::Load("hot-wallet key is not hex (value not shown)".into()))?,
            );
            let b =
                B256::try_from(bytes.as_slice()).map_err(|_| KeyError::Load("hot-wallet key is not 32 bytes (value not shown)".into()))?;
            let s =
                PrivateKeySigner::from_bytes(&b).map_err(|_| KeyError::Load("hot-wallet key is not a valid secp256k1 scalar".into()))?;
            signers.push(s);
        }
        Ok(Self::from_signers(signers))
    }

    /// From an encrypted (Web3 Secret Storage) keystore file.
    pub fn from_keystore(path: &std::path::Path, password: &Zeroizing<String>) -> Result<LocalKeys, KeyError> {
        let s = PrivateKeySigner::decrypt_keystore(path, password.as_bytes())
            .map_err(|e| KeyError::Load(format!("keystore {}: {e}", path.display())))?;
        Ok(Self::from_signers(vec![s]))
    }

    fn from_signers(signers: Vec<PrivateKeySigner>) -> LocalKeys {
        let order: Vec<Address> = signers.iter().map(|s| s.address()).collect();
        LocalKeys { signers: signers.into_iter().map(|s| (s.address(), s)).collect(), order }
    }

    /// Adds `other`'s keys (a key already held is replaced by its newer copy); returns the
    /// wallets that are new.
    pub fn merge(&mut self, other: LocalKeys) -> Vec<Address> {
        let mut added = Vec::new();
        for (addr, s) in other.signers {
            if self.signers.insert(addr, s).is_none() {
                self.order.push(addr);
                added.push(addr);
            }
        }
        added
    }
}

impl Keys for LocalKeys {
    fn wallets(&self) -> Vec<Address> {
        self.order.clone()
    }

    fn sign(&self, wallet: Address, t: &UnsignedTransfer) -> Result<SignedTx, KeyError> {
        let signer = self.signers.get(&wallet).ok_or(KeyError::UnknownWallet(wallet))?;
        let sig = signer.sign_hash_sync(&signature_hash(t)).map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(signed(t, sig))
    }
}

/// The digest a key signs for `t`.
pub(crate) fn signature_hash(t: &UnsignedTransfer) -> B256 {
    crate::tx::eip1559(t).signature_hash()
}

/// `t` with its signature, as recorded and broadcast.
pub(crate) fn signed(t: &UnsignedTransfer, sig: alloy::primitives::Signature) -> SignedTx {
    let env = TxEnvelope::from(crate::tx::eip1559(t).into_signed(sig));
    SignedTx {
        hash: *env.tx_hash(),
        raw: Bytes::from(env.encoded_2718()),
        max_fee_per_gas: t.fees.max_fee_per_gas,
        max_priority_fee_per_gas: t.fees.max_priority_fee_per_gas,
        gas_limit: t.gas_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_broadcast_answer_wins() {
        // What a node that has the transaction says beats everything else; a definitive
        // refusal beats "we could not ask"; an unknown outcome counts only if nothing else.
        let order = [
            SendResult::Accepted,
            SendResult::NonceTooLow,
            SendResult::ReplacementUnderpriced,
            SendResult::InsufficientFunds,
            SendResult::Rejected("x".into()),
            SendResult::Unknown("timeout".into()),
        ];
        for w in order.windows(2) {
            assert!(rank(&w[0]) < rank(&w[1]), "{:?} before {:?}", w[0], w[1]);
        }
        assert_eq!(rank(&SendResult::AlreadyKnown), rank(&SendResult::Accepted));
    }
}
