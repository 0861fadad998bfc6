//! The simulated chain: accounts, nonces, a mempool with the replacement rule, a base fee
//! that moves and spikes, blocks with receipts and `Transfer` logs, tokens that pay, revert
//! or return false, reorgs, dropped transactions and foreign use of the hot-wallet key. It
//! is the simulation's truth: the invariants are checked against its canonical state.
//!
//! Several endpoints stand in front of it (`Endpoint`): each can lag, answer null for mined
//! receipts, answer from the fork a reorg replaced, time out, rate-limit or be down. Reads
//! stick to one endpoint and move on after a transport error, as the real pool does; the
//! real pool itself is tested against HTTP fault proxies and anvil, not here.

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use std::collections::{BTreeMap, HashMap};
use withdraw_core::ports::{ChainError, SendResult, TransferLog, TransportKind, TxReceipt};

/// What a token contract does when asked to `transfer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Moves the amount and emits `Transfer` (or reverts without the balance).
    Pays,
    /// Always reverts.
    Reverts,
    /// Returns false: success, no log, nothing moved.
    ReturnsFalse,
}

#[derive(Debug, Clone)]
pub struct Tx {
    pub hash: B256,
    pub from: Address,
    pub nonce: u64,
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub gas_limit: u64,
    pub max_fee: u128,
    pub prio: u128,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub eth: HashMap<Address, U256>,
    pub nonce: HashMap<Address, u64>,
    pub token: HashMap<(Address, Address), U256>,
}

impl State {
    pub fn eth(&self, a: Address) -> U256 {
        self.eth.get(&a).copied().unwrap_or_default()
    }
    pub fn nonce(&self, a: Address) -> u64 {
        self.nonce.get(&a).copied().unwrap_or_default()
    }
    pub fn token(&self, t: Address, a: Address) -> U256 {
        self.token.get(&(t, a)).copied().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub number: u64,
    pub hash: B256,
    pub txs: Vec<Tx>,
    pub receipts: Vec<TxReceipt>,
    /// State after this block.
    pub state: State,
}

/// How one endpoint misbehaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Healthy,
    /// Answers as of this many blocks ago (within what the pool tolerates).
    Lagging(u64),
    /// Answers null for mined receipts and for block receipts.
    NullReceipts,
    /// Answers from the branch the last reorg replaced.
    OldFork,
    Timeout,
    RateLimited,
    Down,
}

impl Endpoint {
    pub fn kind(self) -> &'static str {
        match self {
            Endpoint::Healthy => "endpoint_healthy",
            Endpoint::Lagging(_) => "endpoint_lag",
            Endpoint::NullReceipts => "endpoint_null_receipts",
            Endpoint::OldFork => "endpoint_old_fork",
            Endpoint::Timeout => "endpoint_timeout",
            Endpoint::RateLimited => "endpoint_429",
            Endpoint::Down => "endpoint_down",
        }
    }
}

/// Which chain an answer is read from.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    pub lag: u64,
    pub null_receipts: bool,
    pub old_fork: bool,
}

/// How far off the head an endpoint may be and still serve reads (the pool's `max_lag`).
pub const MAX_LAG: u64 = 5;

pub const SELECTOR_TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
pub const NATIVE_GAS: u64 = 21_000;
pub const TOKEN_GAS: u64 = 52_000;

/// The chain and its nodes.
pub struct ChainState {
    pub chain_id: u64,
    pub canonical: Vec<Block>,
    /// The branch the last reorg replaced (blocks above `fork_point`).
    pub orphaned: Vec<Block>,
    pub fork_point: u64,
    pub mempool: BTreeMap<(Address, u64), Tx>,
    /// Canonical position of every mined transaction.
    pub index: HashMap<B256, (u64, usize)>,
    /// The base fee the next block will charge.
    pub base_fee: u128,
    pub tokens: BTreeMap<Address, TokenKind>,
    pub endpoints: Vec<Endpoint>,
    pub current: usize,
    /// Transactions our keys signed, by hash: how `send_raw` reads raw bytes without
    /// recovering signatures (the keys are the real alloy signer; see `SimKeys`).
    pub signed: HashMap<B256, Tx>,
}

impl ChainState {
    pub fn new(chain_id: u64, genesis: State) -> Self {
        ChainState {
            chain_id,
            canonical: vec![Block { number: 0, hash: B256::repeat_byte(0x11), txs: vec![], receipts: vec![], state: genesis }],
            orphaned: Vec::new(),
            fork_point: 0,
            mempool: BTreeMap::new(),
            index: HashMap::new(),
            base_fee: 10_000_000_000,
            tokens: BTreeMap::new(),
            endpoints: vec![Endpoint::Healthy; 3],
            current: 0,
            signed: HashMap::new(),
        }
    }

    pub fn head(&self) -> u64 {
        self.canonical.len() as u64 - 1
    }

    pub fn latest(&self) -> &State {
        &self.canonical.last().expect("genesis").state
    }

    /// The endpoint that serves the next read; transport failures move reads on. As the
    /// real pool does, an endpoint more than `MAX_LAG` blocks off the head serves no reads.
    pub fn pick(&mut self) -> Result<View, ChainError> {
        let n = self.endpoints.len();
        for _ in 0..n {
            let e = self.endpoints[self.current % n];
            let fail = |kind: TransportKind, what: &str| ChainError::Transport(kind, what.to_owned());
            let out = match e {
                Endpoint::Healthy => Ok(View::default()),
                Endpoint::Lagging(k) => Ok(View { lag: k, ..View::default() }),
                Endpoint::NullReceipts => Ok(View { null_receipts: true, ..View::default() }),
                Endpoint::OldFork => Ok(View { old_fork: true, ..View::default() }),
                Endpoint::Timeout => Err(fail(TransportKind::Timeout, "request timed out")),
                Endpoint::RateLimited => Err(fail(TransportKind::RateLimited, "HTTP 429 Too Many Requests")),
                Endpoint::Down => Err(fail(TransportKind::Other, "connection refused")),
            };
            match out {
                Ok(v) if self.view_head(v) + MAX_LAG < self.head() => self.current = (self.current + 1) % n,
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.current = (self.current + 1) % n;
                    return Err(e);
                }
            }
        }
        Err(ChainError::Transport(TransportKind::Other, "no endpoint within the allowed lag".into()))
    }

    pub fn available(&self) -> bool {
        self.endpoints.iter().any(|e| !matches!(e, Endpoint::Down))
    }

    /// Block `n` as a view sees it.
    pub fn block(&self, v: View, n: u64) -> Option<&Block> {
        if n > self.view_head(v) {
            return None;
        }
        if v.old_fork && !self.orphaned.is_empty() && n > self.fork_point {
            return self.orphaned.get((n - self.fork_point - 1) as usize);
        }
        self.canonical.get(n as usize)
    }

    pub fn view_head(&self, v: View) -> u64 {
        let head = if v.old_fork && !self.orphaned.is_empty() { self.fork_point + self.orphaned.len() as u64 } else { self.head() };
        head.saturating_sub(v.lag)
    }

    pub fn view_state(&self, v: View) -> &State {
        &self.block(v, self.view_head(v)).expect("head exists").state
    }

    pub fn receipt(&self, v: View, hash: &B256) -> Option<TxReceipt> {
        if v.null_receipts {
            return None;
        }
        let head = self.view_head(v);
        if v.old_fork && !self.orphaned.is_empty() {
            for b in self.orphaned.iter().filter(|b| b.number <= head) {
                if let Some(r) = b.receipts.iter().find(|r| &r.tx_hash == hash) {
                    return Some(r.clone());
                }
            }
            let &(n, i) = self.index.get(hash)?;
            return (n <= self.fork_point && n <= head).then(|| self.canonical[n as usize].receipts[i].clone());
        }
        let &(n, i) = self.index.get(hash)?;
        (n <= head).then(|| self.canonical[n as usize].receipts[i].clone())
    }

    /// The next nonce counting the mempool's contiguous run after the mined count.
    pub fn pending_nonce(&self, v: View, a: Address) -> u64 {
        let mut n = self.view_state(v).nonce(a);
        while self.mempool.contains_key(&(a, n)) {
            n += 1;
        }
        n
    }

    /// A node's answer to one raw transaction.
    pub fn admit(&mut self, tx: Tx) -> SendResult {
        let state = self.latest();
        if tx.nonce < state.nonce(tx.from) {
            return SendResult::classify("nonce too low");
        }
        let need = tx.value + U256::from(tx.gas_limit) * U256::from(tx.max_fee);
        if let Some(old) = self.mempool.get(&(tx.from, tx.nonce)) {
            if old.hash == tx.hash {
                return SendResult::classify("already known");
            }
            // The replacement rule of geth's pool: both fees at least 10% higher.
            if tx.max_fee * 100 < old.max_fee * 110 || tx.prio * 100 < old.prio * 110 {
                return SendResult::classify("replacement transaction underpriced");
            }
        }
        if state.eth(tx.from) < need {
            return SendResult::classify("insufficient funds for gas * price + value");
        }
        self.mempool.insert((tx.from, tx.nonce), tx);
        SendResult::Accepted
    }

    /// Mines one block from the mempool at the current base fee, then moves the base fee.
    pub fn mine(&mut self, hash: B256, capacity: usize, next_base_fee: u128) {
        let mut state = self.latest().clone();
        let number = self.head() + 1;
        let base = self.base_fee;
        let mut txs = Vec::new();
        let mut receipts = Vec::new();
        while txs.len() < capacity {
            // Every sender's next executable transaction; the best tip goes first.
            let mut best: Option<(u128, B256, (Address, u64))> = None;
            let senders: Vec<Address> = {
                let mut s: Vec<Address> = self.mempool.keys().map(|(a, _)| *a).collect();
                s.dedup();
                s
            };
            for a in senders {
                let key = (a, state.nonce(a));
                if let Some(t) = self.mempool.get(&key)
                    && t.max_fee >= base
                {
                    let tip = t.prio.min(t.max_fee - base);
                    let need = t.value + U256::from(t.gas_limit) * U256::from(t.max_fee);
                    if state.eth(a) >= need && best.as_ref().is_none_or(|(bt, bh, _)| tip > *bt || (tip == *bt && t.hash < *bh)) {
                        best = Some((tip, t.hash, key));
                    }
                }
            }
            let Some((tip, _, key)) = best else { break };
            let tx = self.mempool.remove(&key).expect("picked from the pool");
            let receipt = execute(&mut state, &self.tokens, &tx, base + tip, number, hash);
            self.index.insert(tx.hash, (number, receipts.len()));
            receipts.push(receipt);
            txs.push(tx);
        }
        // Transactions whose nonce is now used by another are gone from every pool.
        self.mempool.retain(|(a, n), _| *n >= state.nonce(*a));
        self.canonical.push(Block { number, hash, txs, receipts, state });
        self.base_fee = next_base_fee;
    }

    /// Unwinds `depth` blocks: they become the orphaned branch, their transactions go back
    /// to the pool (except those `keep` refuses: dropped by the nodes meanwhile).
    pub fn unwind(&mut self, depth: u64, mut keep: impl FnMut(&Tx) -> bool) -> usize {
        let depth = depth.min(self.head());
        let fork_point = self.head() - depth;
        let orphaned = self.canonical.split_off(fork_point as usize + 1);
        let mut back = 0;
        for b in &orphaned {
            for t in &b.txs {
                self.index.remove(&t.hash);
                if keep(t) && !self.mempool.contains_key(&(t.from, t.nonce)) {
                    self.mempool.insert((t.from, t.nonce), t.clone());
                    back += 1;
                }
            }
        }
        self.fork_point = fork_point;
        self.orphaned = orphaned;
        back
    }

    /// How much a destination has received on the canonical chain, and in how many
    /// transactions, for an asset (None: native).
    pub fn paid(&self, token: Option<Address>, to: Address) -> (U256, usize) {
        let count = self
            .canonical
            .iter()
            .flat_map(|b| b.txs.iter().zip(&b.receipts))
            .filter(|(t, r)| match token {
                None => t.to == to && !t.value.is_zero() && r.success,
                Some(tok) => r.transfers.iter().any(|l| l.token == tok && l.to == to),
            })
            .count();
        let amount = match token {
            None => self.latest().eth(to),
            Some(t) => self.latest().token(t, to),
        };
        (amount, count)
    }
}

/// The effect of one transaction on the state, and its receipt.
fn execute(state: &mut State, tokens: &BTreeMap<Address, TokenKind>, tx: &Tx, price: u128, number: u64, hash: B256) -> TxReceipt {
    let mut success = true;
    let mut transfers = Vec::new();
    let kind = tokens.get(&tx.to);
    let needed = if kind.is_some() { TOKEN_GAS } else { NATIVE_GAS };
    let gas = needed.min(tx.gas_limit);
    if tx.gas_limit < needed {
        success = false;
    } else if let Some(kind) = kind {
        match (kind, decode_token_transfer(&tx.input)) {
            (TokenKind::Pays, Some((to, amount))) => {
                let have = state.token(tx.to, tx.from);
                if have >= amount {
                    state.token.insert((tx.to, tx.from), have - amount);
                    *state.token.entry((tx.to, to)).or_default() += amount;
                    transfers.push(TransferLog { token: tx.to, from: tx.from, to, amount });
                } else {
                    success = false;
                }
            }
            (TokenKind::ReturnsFalse, Some(_)) => {}
            _ => success = false,
        }
    } else if !tx.input.is_empty() {
        success = false;
    }
    let fee = U256::from(gas) * U256::from(price);
    let from_eth = state.eth(tx.from);
    let value = if success { tx.value } else { U256::ZERO };
    state.eth.insert(tx.from, from_eth.saturating_sub(fee + value));
    if !value.is_zero() {
        *state.eth.entry(tx.to).or_default() += value;
    }
    *state.nonce.entry(tx.from).or_default() += 1;
    TxReceipt { tx_hash: tx.hash, from: tx.from, block_number: number, block_hash: hash, success, transfers }
}

/// `transfer(address,uint256)` calldata, decoded.
pub fn decode_token_transfer(input: &[u8]) -> Option<(Address, U256)> {
    if input.len() != 68 || input[..4] != SELECTOR_TRANSFER {
        return None;
    }
    let to = Address::from_slice(&input[16..36]);
    let amount = U256::from_be_slice(&input[36..68]);
    Some((to, amount))
}

/// The hash of a raw EIP-2718 transaction, as nodes compute it.
pub fn raw_hash(raw: &[u8]) -> B256 {
    keccak256(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Address = Address::repeat_byte(1);
    const B: Address = Address::repeat_byte(2);
    const TOKEN: Address = Address::repeat_byte(0xa1);

    fn chain() -> ChainState {
        let mut g = State::default();
        g.eth.insert(A, U256::from(10u128.pow(20)));
        g.token.insert((TOKEN, A), U256::from(1_000u64));
        let mut c = ChainState::new(1, g);
        c.tokens.insert(TOKEN, TokenKind::Pays);
        c
    }

    fn tx(nonce: u64, fee: u128, value: u64, seed: u8) -> Tx {
        Tx {
            hash: B256::repeat_byte(seed),
            from: A,
            nonce,
            to: B,
            value: U256::from(value),
            input: Bytes::new(),
            gas_limit: NATIVE_GAS,
            max_fee: fee,
            prio: fee / 10,
        }
    }

    fn token_transfer(nonce: u64, amount: u64, seed: u8) -> Tx {
        let mut input = SELECTOR_TRANSFER.to_vec();
        input.extend_from_slice(&[0u8; 12]);
        input.extend_from_slice(B.as_slice());
        input.extend_from_slice(&U256::from(amount).to_be_bytes::<32>());
        Tx { to: TOKEN, input: input.into(), gas_limit: 65_000, value: U256::ZERO, ..tx(nonce, 50_000_000_000, 0, seed) }
    }

    #[test]
    fn a_replacement_needs_ten_percent_more_on_both_fees() {
        let mut c = chain();
        assert_eq!(c.admit(tx(0, 20_000_000_000, 1, 1)), SendResult::Accepted);
        assert_eq!(c.admit(tx(0, 20_000_000_000, 1, 1)), SendResult::AlreadyKnown);
        assert_eq!(c.admit(tx(0, 21_000_000_000, 1, 2)), SendResult::ReplacementUnderpriced);
        assert_eq!(c.admit(tx(0, 22_000_000_000, 1, 3)), SendResult::Accepted);
        c.mine(B256::repeat_byte(9), 10, c.base_fee);
        assert_eq!(c.canonical[1].txs[0].hash, B256::repeat_byte(3), "the replacement is mined");
        assert_eq!(c.admit(tx(0, 40_000_000_000, 1, 4)), SendResult::NonceTooLow);
    }

    #[test]
    fn blocks_mine_in_nonce_order_above_the_base_fee_and_a_reorg_unwinds_them() {
        let mut c = chain();
        c.admit(tx(1, 20_000_000_000, 5, 2));
        c.mine(B256::repeat_byte(9), 10, c.base_fee);
        assert!(c.canonical[1].txs.is_empty(), "nonce 1 waits for nonce 0");
        c.admit(tx(0, 5_000_000_000, 7, 1));
        c.mine(B256::repeat_byte(10), 10, c.base_fee);
        assert!(c.canonical[2].txs.is_empty(), "below the base fee: not mined");
        c.base_fee = 1_000_000_000;
        c.mine(B256::repeat_byte(11), 10, c.base_fee);
        assert_eq!(c.canonical[3].txs.iter().map(|t| t.nonce).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(c.paid(None, B), (U256::from(12), 2));
        let back = c.unwind(1, |_| true);
        assert_eq!((back, c.head(), c.latest().nonce(A)), (2, 2, 0));
        assert_eq!(c.paid(None, B), (U256::ZERO, 0));
        let old = View { old_fork: true, ..View::default() };
        assert!(c.receipt(old, &B256::repeat_byte(1)).is_some(), "the old fork still shows it");
        assert!(c.receipt(View::default(), &B256::repeat_byte(1)).is_none());
    }

    #[test]
    fn tokens_pay_revert_or_return_false() {
        for (kind, paid, success) in [(TokenKind::Pays, 40u64, true), (TokenKind::Reverts, 0, false), (TokenKind::ReturnsFalse, 0, true)] {
            let mut c = chain();
            c.tokens.insert(TOKEN, kind);
            c.admit(token_transfer(0, 40, 1));
            c.mine(B256::repeat_byte(9), 10, c.base_fee);
            let r = &c.canonical[1].receipts[0];
            assert_eq!(r.success, success, "{kind:?}");
            assert_eq!(r.transfers.len(), usize::from(paid > 0), "{kind:?}");
            assert_eq!(c.latest().token(TOKEN, B), U256::from(paid), "{kind:?}");
        }
        let mut c = chain();
        c.admit(token_transfer(0, 4_000, 1));
        c.mine(B256::repeat_byte(9), 10, c.base_fee);
        assert!(!c.canonical[1].receipts[0].success, "more than the wallet holds reverts");
    }

    #[test]
    fn an_endpoint_past_the_allowed_lag_serves_no_reads() {
        let mut c = chain();
        for i in 0..10 {
            c.mine(B256::repeat_byte(i), 1, c.base_fee);
        }
        c.endpoints = vec![Endpoint::Lagging(MAX_LAG + 1), Endpoint::Down, Endpoint::Lagging(2)];
        // The first is skipped (too far behind), the second fails the call and reads move on.
        assert!(c.pick().is_err());
        let v = c.pick().expect("the third serves");
        assert_eq!(c.view_head(v), 8);
        c.endpoints = vec![Endpoint::Down; 3];
        assert!(c.pick().is_err() && !c.available());
    }
}
