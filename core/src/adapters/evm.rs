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
    fee_policy: FeePolicy,
    finality: Finality,
}

/// How a chain prices its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeModel {
    /// EIP-1559: the priority fee from `eth_feeHistory`'s rewards, the max fee from the
    /// next block's base fee.
    Eip1559,
    /// A chain without EIP-1559: legacy transactions at the node's `eth_gasPrice`.
    Legacy,
}

/// The fee oracle's settings for one chain. Percentages and block counts, never floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    pub model: FeeModel,
    /// Blocks of `eth_feeHistory` the priority fee is read from.
    pub history_blocks: u64,
    /// The reward percentile read in each block (0-100).
    pub reward_percentile: u8,
    /// Max fee = next base fee × this / 100 + priority fee: room for the base fee to rise
    /// while the transaction waits (200 = it may double).
    pub base_fee_multiplier_percent: u128,
    /// The least priority fee (EIP-1559) or gas price (legacy) ever offered, in wei.
    pub floor_wei: u128,
}

impl Default for FeePolicy {
    fn default() -> Self {
        FeePolicy {
            model: FeeModel::Eip1559,
            history_blocks: 20,
            reward_percentile: 50,
            base_fee_multiplier_percent: 200,
            floor_wei: 1_000_000_000,
        }
    }
}

/// The median of the non-empty blocks' rewards at the percentile: one block with a
/// bidding war, or a node that skews a few, moves it little. None when every block was
/// empty (its reward says nothing about the market).
fn median_reward(history: &Value) -> Result<Option<u128>, ChainError> {
    let rewards = history["reward"].as_array().ok_or_else(|| ChainError::Malformed("feeHistory without rewards".into()))?;
    let used = history["gasUsedRatio"].as_array().ok_or_else(|| ChainError::Malformed("feeHistory without gasUsedRatio".into()))?;
    let mut tips = Vec::new();
    for (r, u) in rewards.iter().zip(used) {
        if u.as_f64().unwrap_or(0.0) > 0.0 {
            tips.push(hex_u128(&r[0])?);
        }
    }
    tips.sort_unstable();
    Ok(tips.get(tips.len() / 2).copied())
}

/// The fees the oracle offers, from what the chain said: pure, table-tested.
fn price(policy: &FeePolicy, cap: u128, next_base: u128, market_tip: Option<u128>) -> Fees {
    let tip = market_tip.unwrap_or(0).max(policy.floor_wei).min(cap);
    let max_fee = next_base.saturating_mul(policy.base_fee_multiplier_percent).div_ceil(100).saturating_add(tip).min(cap);
    Fees::eip1559(max_fee, tip.min(max_fee))
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

/// The hash in an `eth_getBlockByNumber` answer; None for a block past the node's head.
fn block_hash(answer: Result<Value, ChainError>) -> Result<Option<B256>, ChainError> {
    let b = answer?;
    if b.is_null() { Ok(None) } else { parse(&b["hash"], "block hash").map(Some) }
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
        Ok(EvmChain { rpc, chain_id, max_fee_cap, fee_policy: FeePolicy::default(), finality: Finality::Confirmations(1) })
    }

    pub fn with_fee_policy(self, fee_policy: FeePolicy) -> EvmChain {
        EvmChain { fee_policy, ..self }
    }

    pub fn with_finality(self, finality: Finality) -> EvmChain {
        EvmChain { finality, ..self }
    }

    async fn eip1559_fees(&self) -> Result<Fees, ChainError> {
        let p = &self.fee_policy;
        let history = self
            .rpc
            .call("eth_feeHistory", json!([format!("{:#x}", p.history_blocks.max(1)), "latest", [p.reward_percentile.min(100)]]))
            .await?;
        // baseFeePerGas holds one more entry than blocks: the next block's base fee.
        let next_base = history["baseFeePerGas"]
            .as_array()
            .and_then(|b| b.last())
            .ok_or_else(|| ChainError::Malformed("feeHistory without baseFeePerGas".into()))
            .and_then(hex_u128)?;
        let tip = median_reward(&history)?;
        metrics::gauge!("withdraw_fee_base_fee_wei", "chain_id" => self.chain_id.to_string()).set(next_base as f64);
        Ok(price(p, self.max_fee_cap, next_base, tip))
    }

    async fn legacy_fees(&self) -> Result<Fees, ChainError> {
        let suggested = hex_u128(&self.rpc.call("eth_gasPrice", json!([])).await?)?;
        Ok(Fees::legacy(suggested.max(self.fee_policy.floor_wei).min(self.max_fee_cap)))
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

    fn finality(&self) -> Finality {
        self.finality
    }

    async fn head(&self) -> Result<u64, ChainError> {
        hex_u64(&self.rpc.call("eth_blockNumber", json!([])).await?)
    }

    async fn finalized(&self) -> Result<u64, ChainError> {
        let block = self.rpc.call("eth_getBlockByNumber", json!(["finalized", false])).await?;
        if block.is_null() {
            return Err(ChainError::Malformed(
                "the node has no finalized block (is finality = \"finalized\" right for this chain?)".into(),
            ));
        }
        hex_u64(&block["number"])
    }

    /// The market's fees now: never a cached estimate, so a spike prices the next batch.
    async fn fees(&self) -> Result<Fees, ChainError> {
        let fees = match self.fee_policy.model {
            FeeModel::Eip1559 => self.eip1559_fees().await?,
            FeeModel::Legacy => self.legacy_fees().await?,
        };
        let chain = self.chain_id.to_string();
        metrics::gauge!("withdraw_fee_max_fee_per_gas_wei", "chain_id" => chain.clone()).set(fees.max_fee_per_gas as f64);
        metrics::gauge!("withdraw_fee_priority_fee_per_gas_wei", "chain_id" => chain).set(fees.max_priority_fee_per_gas as f64);
        Ok(fees)
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
        self.rpc.batch(calls).await?.into_iter().map(block_hash).collect()
    }

    async fn block_hashes_and_finalized(&self, numbers: Vec<u64>) -> Result<(Vec<Option<B256>>, u64), ChainError> {
        // Finalized first: a block at or below it cannot change under the hash reads that
        // follow (read the other way round, a reorg between the two could pair a hash that
        // was never final with a finality that covers its height). One batch goes to one
        // endpoint.
        let mut calls: Vec<(String, Value)> = vec![("eth_getBlockByNumber".to_owned(), json!(["finalized", false]))];
        calls.extend(numbers.iter().map(|n| ("eth_getBlockByNumber".to_owned(), json!([format!("{n:#x}"), false]))));
        let mut answers = self.rpc.batch(calls).await?.into_iter();
        let finalized = answers.next().ok_or_else(|| ChainError::Malformed("no finalized block in the answer".into()))??;
        if finalized.is_null() {
            return Err(ChainError::Malformed("the node has no finalized block".into()));
        }
        let finalized = hex_u64(&finalized["number"])?;
        Ok((answers.map(block_hash).collect::<Result<_, _>>()?, finalized))
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
    crate::tx::typed(t).signature_hash()
}

/// `t` with its signature, as recorded and broadcast.
pub(crate) fn signed(t: &UnsignedTransfer, sig: alloy::primitives::Signature) -> SignedTx {
    let env = TxEnvelope::from(crate::tx::typed(t).into_signed(sig));
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
    fn the_oracle_prices_from_the_market_within_floor_and_cap() {
        let p = FeePolicy { floor_wei: 100, ..FeePolicy::default() };
        let check = |cap: u128, base: u128, tip: Option<u128>, want: (u128, u128)| {
            let f = price(&p, cap, base, tip);
            assert_eq!((f.max_fee_per_gas, f.max_priority_fee_per_gas), want, "cap {cap} base {base} tip {tip:?}");
            assert!(!f.legacy);
        };
        check(1_000_000, 1_000, Some(500), (2_500, 500));
        // Empty blocks say nothing: the floor.
        check(1_000_000, 1_000, None, (2_100, 100));
        check(1_000_000, 1_000, Some(7), (2_100, 100));
        // The cap bounds both fields; the tip never exceeds the max fee.
        check(1_500, 1_000, Some(500), (1_500, 500));
        check(50, 1_000, Some(500), (50, 50));
        // A spike: the next base fee rules.
        check(u128::MAX, 90_000, Some(500), (180_500, 500));
        let half = FeePolicy { base_fee_multiplier_percent: 125, ..p };
        assert_eq!(price(&half, u128::MAX, 1_001, Some(0)).max_fee_per_gas, 1_252 + 100, "rounded up");
    }

    #[test]
    fn the_median_reward_ignores_empty_blocks() {
        let h = json!({"reward": [["0x1"], ["0x64"], ["0x0"], ["0x5"], ["0x3e8"]], "gasUsedRatio": [0.5, 0.2, 0.0, 0.9, 0.1]});
        assert_eq!(median_reward(&h).unwrap(), Some(0x64));
        let empty = json!({"reward": [["0x0"], ["0x0"]], "gasUsedRatio": [0.0, 0.0]});
        assert_eq!(median_reward(&empty).unwrap(), None);
        assert!(median_reward(&json!({"gasUsedRatio": []})).is_err());
    }

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
