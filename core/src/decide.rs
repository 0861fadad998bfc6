//! The hot wallets' money decisions, as functions of plain values: which withdrawals of a
//! batch the wallet's funds cover, which nonces of a lane are gaps or blocked, which wallet
//! takes which part of a batch, and what a gap gets (the recorded transaction again, a
//! 0-value fill, or a fill's replacement). The stages in `core/src/stages/` read the ports,
//! call these, and carry out the answer; nothing here reads a port, awaits, logs or counts.
//!
//! It lives beside `fees.rs` rather than under `stages/` because it is compiled without the
//! `stages` feature (the console builds withdraw-core with `default-features = false`),
//! where tokio, tracing and metrics are not dependencies at all: the compiler, not a review,
//! keeps I/O out of these decisions.

use crate::domain::Status;
use crate::fees::{Bump, bump};
use crate::ports::{AttemptKind, Fees, NonceFill};
use alloy::primitives::{Address, U256};
use std::collections::{HashMap, HashSet};
use std::ops::Range;

// ---------------------------------------------------------------------------------------
// Funds

/// The most one transaction can cost in gas: every unit of its limit at its fee cap.
pub fn gas_cost(gas_limit: u64, max_fee_per_gas: u128) -> U256 {
    U256::from(gas_limit) * U256::from(max_fee_per_gas)
}

/// One signed attempt's gas terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasTerms {
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
}

/// An unmined withdrawal's claim on its wallet: the amount in its asset, and every attempt
/// signed for it (a bump or a cancel shares the transfer's nonce, so any one of them may be
/// the one mined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    pub asset: &'a str,
    pub amount: U256,
    pub attempts: Vec<GasTerms>,
}

impl Claim<'_> {
    /// The gas this withdrawal may still burn: the costliest of its attempts. Any one may be
    /// the one mined, and the newest is not always the costliest: a cancel (21,000 gas)
    /// after a token transfer bids more per unit on fewer units.
    pub fn worst_gas(&self) -> U256 {
        self.attempts.iter().map(|a| gas_cost(a.gas_limit, a.max_fee_per_gas)).max().unwrap_or_default()
    }
}

/// One asset's side of the wallet: what the chain says it holds, and what unmined
/// transfers may still take from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Book {
    pub balance: U256,
    pub in_flight: U256,
}

impl Book {
    /// What is left to spend (nothing, when more is in flight than held).
    pub fn left(&self) -> U256 {
        self.balance.saturating_sub(self.in_flight)
    }
}

/// The wallet's books per asset, from the balances read (`native` is the chain's coin,
/// which pays all gas) and the claims of what is in flight. A claim's amount is counted in
/// full whichever of its attempts is mined (a cancel pays no value, but the transfer it
/// competes with may win), and its gas at its worst attempt.
pub fn book(native: &str, balances: &HashMap<String, U256>, claims: &[Claim<'_>]) -> HashMap<String, Book> {
    let mut out: HashMap<String, Book> = HashMap::new();
    out.entry(native.to_owned()).or_default();
    for (asset, b) in balances {
        out.entry(asset.clone()).or_default().balance = *b;
    }
    for c in claims {
        out.get_mut(native).expect("inserted").in_flight += c.worst_gas();
        out.entry(c.asset.to_owned()).or_default().in_flight += c.amount;
    }
    out
}

/// A withdrawal offered to the wallet: its asset (`native` for the coin), amount, and the
/// gas limit its transfer is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want<'a> {
    pub asset: &'a str,
    pub amount: U256,
    pub gas_limit: u64,
}

/// What the wallet can fund of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// How many of the batch, from its start, are funded; the rest is held.
    pub fits: usize,
    /// Per asset, how much the first withdrawal held was short by (empty when all fit).
    pub short_by: HashMap<String, U256>,
    /// What is left to spend per asset after the funded ones.
    pub left: HashMap<String, U256>,
}

/// Fits a batch (in order) to what is left to spend per asset, each withdrawal at its
/// worst-case gas (`gas_limit * max_fee_per_gas`, paid in `native`). Stops at the first that
/// does not fit, so a large withdrawal is not starved by smaller ones behind it.
pub fn fit_to_funds(native: &str, mut left: HashMap<String, U256>, batch: &[Want<'_>], max_fee_per_gas: u128) -> Fit {
    let mut short_by = HashMap::new();
    let mut fits = 0;
    for w in batch {
        let mut need: Vec<(&str, U256)> = vec![(native, gas_cost(w.gas_limit, max_fee_per_gas))];
        if w.asset == native {
            need[0].1 += w.amount;
        } else {
            need.push((w.asset, w.amount));
        }
        let missing: Vec<(String, U256)> = need
            .iter()
            .filter_map(|(k, n)| {
                let l = left.get(*k).copied().unwrap_or_default();
                (l < *n).then(|| ((*k).to_owned(), *n - l))
            })
            .collect();
        if !missing.is_empty() {
            short_by.extend(missing);
            break;
        }
        for (k, n) in need {
            *left.get_mut(k).expect("present") -= n;
        }
        fits += 1;
    }
    Fit { fits, short_by, left }
}

// ---------------------------------------------------------------------------------------
// Nonce lanes

/// An open withdrawal's hold on a nonce, as the lane check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub nonce: u64,
    pub status: Status,
    /// Its newest attempt's kind.
    pub kind: AttemptKind,
}

/// A lane's nonces that need someone: gaps (nobody will ever mine them) and nonces held
/// by a dead-lettered transfer (an operator's decision).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lane {
    pub gaps: Vec<u64>,
    pub blocked: Vec<u64>,
}

/// Classifies the nonces from the chain's mined count (`latest`) up to the store's `next`:
/// one held by a dead-lettered transfer blocks the lane (a discarded one, its cancel the
/// newest attempt, does not: the cancel goes out); one held by any other open withdrawal is
/// on its way; one below the node's `pending` count has a transaction in the node's pool
/// (ours or someone else's) and will be mined; anything else is a gap.
pub fn classify_lane(latest: u64, pending: u64, next: u64, holders: &[Holder]) -> Lane {
    let held: HashMap<u64, &Holder> = holders.iter().map(|h| (h.nonce, h)).collect();
    let mut lane = Lane::default();
    for n in latest..next {
        match held.get(&n) {
            Some(h) if h.status == Status::SendFailed && h.kind == AttemptKind::Transfer => lane.blocked.push(n),
            Some(_) => {}
            None if n < pending => {}
            None => lane.gaps.push(n),
        }
    }
    lane
}

// ---------------------------------------------------------------------------------------
// Wallet rotation

/// Splits a batch of `n` withdrawals over a chain's wallets in contiguous runs (submission
/// order within each lane), as even as they go, the first run to the wallet at `turn`
/// (counted round the usable ones, so every batch starts one further). Wallets short of
/// funds at their last check get nothing while another can take the work; when all are
/// short, all share it (their budget holds what they cannot pay).
pub fn rotate(wallets: &[Address], short: &HashSet<Address>, turn: usize, n: usize) -> Vec<(Address, Range<usize>)> {
    let mut lanes: Vec<Address> = wallets.iter().copied().filter(|w| !short.contains(w)).collect();
    if lanes.is_empty() {
        lanes = wallets.to_vec();
    }
    if lanes.is_empty() {
        return Vec::new();
    }
    let start = turn % lanes.len();
    let per = n.div_ceil(lanes.len()).max(1);
    (0..lanes.len())
        .map(|i| (lanes[(start + i) % lanes.len()], (i * per).min(n)..((i + 1) * per).min(n)))
        .filter(|(_, r)| !r.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Gap repairs

/// The price bump a fill's replacement carries, in percent (nodes require 10).
pub const FILL_BUMP_PERCENT: u128 = 10;

/// The gaps without a fill yet (a filled one is re-broadcast, not signed again).
pub fn unfilled(gaps: &[u64], fills: &[NonceFill]) -> Vec<u64> {
    let filled: HashSet<u64> = fills.iter().map(|f| f.nonce).collect();
    gaps.iter().copied().filter(|n| !filled.contains(n)).collect()
}

/// One recorded attempt at a gap's nonce, with what is known of it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub nonce: u64,
    /// Its withdrawal's status.
    pub status: Status,
    /// It is the transaction the tracker recorded as mined for its withdrawal.
    pub was_mined: bool,
    /// The chain serves a receipt for it now.
    pub on_chain: bool,
}

/// What the gaps get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Indices into the recorded attempts whose signed bytes go out again.
    pub restore: Vec<usize>,
    /// Nonces that get a 0-value fill.
    pub fill: Vec<u64>,
}

/// A gap at a COMPLETED withdrawal's nonce, whose mined transaction no longer is on chain
/// (a reorg deeper than the confirmations), gets that transaction again: a fill would leave
/// the user unpaid while the record says paid. Any other gap is filled: a FAILED one's
/// transfer would pay what nobody holds any longer, and a nonce with one of its attempts
/// on chain moved for another reason.
pub fn restore_or_fill(gaps: &[u64], recorded: &[Recorded]) -> Repairs {
    let mut out = Repairs::default();
    for &n in gaps {
        let on_chain = recorded.iter().any(|r| r.nonce == n && r.on_chain);
        match recorded.iter().position(|r| r.nonce == n && r.status == Status::Completed && r.was_mined) {
            Some(i) if !on_chain => out.restore.push(i),
            _ => out.fill.push(n),
        }
    }
    out
}

/// The newest fill per nonce (by signing time, then fee): the one that counts.
pub fn newest_fills(known: Vec<NonceFill>) -> HashMap<u64, NonceFill> {
    let mut newest: HashMap<u64, NonceFill> = HashMap::new();
    for f in known {
        if newest.get(&f.nonce).is_none_or(|g| (f.created_at_ms, f.max_fee_per_gas) > (g.created_at_ms, g.max_fee_per_gas)) {
            newest.insert(f.nonce, f);
        }
    }
    newest
}

/// The fills to sign, and at what fees: each new gap at the network's fees; each fill
/// signed before `stuck_before` replaced with bumped fees (from its max fee on both fields,
/// since its priority fee is not stored and the max bounds it), unless the cap leaves no
/// valid replacement (then it is only re-broadcast). Gaps first, in their order, then the
/// replacements by nonce.
pub fn fills_to_sign(gaps: &[u64], newest: &HashMap<u64, NonceFill>, network: Fees, cap: u128, stuck_before: i64) -> Vec<(u64, Fees)> {
    let mut out: Vec<(u64, Fees)> = gaps.iter().map(|&n| (n, network)).collect();
    let mut stuck: Vec<&NonceFill> = newest.values().filter(|f| f.created_at_ms < stuck_before).collect();
    stuck.sort_by_key(|f| f.nonce);
    for f in stuck {
        let old = Fees { max_fee_per_gas: f.max_fee_per_gas, max_priority_fee_per_gas: f.max_fee_per_gas, legacy: network.legacy };
        if let Bump::To(fees) = bump(old, network, cap, FILL_BUMP_PERCENT) {
            out.push((f.nonce, fees));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(x: u128) -> U256 {
        U256::from(x)
    }

    fn map(entries: &[(&str, u128)]) -> HashMap<String, U256> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), u(*v))).collect()
    }

    mod funds {
        use super::*;

        /// The chain's coin; USDC and DAI are tokens.
        const ETH: &str = "ETH";
        const USDC: &str = "USDC";
        const DAI: &str = "DAI";

        /// A native transfer's gas limit, and a token transfer's.
        const NATIVE_GAS: u64 = 21_000;
        const TOKEN_GAS: u64 = 65_000;
        /// A chain's fee cap: 500 gwei.
        const CAP: u128 = 500_000_000_000;

        /// (asset, amount, every attempt's (gas limit, max fee), oldest first)
        type InFlight<'a> = (&'a str, u128, &'a [(u64, u128)]);
        /// (asset, amount, gas limit)
        type Offered<'a> = (&'a str, u128, u64);

        struct Case<'a> {
            what: &'a str,
            balances: &'a [(&'a str, u128)],
            in_flight: &'a [InFlight<'a>],
            batch: &'a [Offered<'a>],
            max_fee: u128,
            /// How many of the batch are funded, and what the first held one is short of.
            fits: usize,
            short_by: &'a [(&'a str, u128)],
        }

        fn claims<'a>(in_flight: &'a [InFlight<'a>]) -> Vec<Claim<'a>> {
            in_flight
                .iter()
                .map(|(asset, amount, attempts)| Claim {
                    asset,
                    amount: u(*amount),
                    attempts: attempts.iter().map(|&(gas_limit, max_fee_per_gas)| GasTerms { gas_limit, max_fee_per_gas }).collect(),
                })
                .collect()
        }

        fn wants<'a>(batch: &'a [Offered<'a>]) -> Vec<Want<'a>> {
            batch.iter().map(|&(asset, amount, gas_limit)| Want { asset, amount: u(amount), gas_limit }).collect()
        }

        /// From a fresh read: the books from the balances and what is in flight, then the
        /// batch fitted to what is left.
        fn check(cases: &[Case<'_>]) {
            for c in cases {
                let books = book(ETH, &map(c.balances), &claims(c.in_flight));
                let left = books.iter().map(|(k, b)| (k.clone(), b.left())).collect();
                let fit = fit_to_funds(ETH, left, &wants(c.batch), c.max_fee);
                assert_eq!((fit.fits, fit.short_by), (c.fits, map(c.short_by)), "{}", c.what);
            }
        }

        #[test]
        fn a_batch_is_funded_up_to_the_first_withdrawal_that_does_not_fit() {
            // 21_000 gas at 10 wei: 210_000 wei of gas per native transfer.
            check(&[
                Case {
                    what: "exactly enough: the amount and the worst-case gas",
                    balances: &[(ETH, 210_100)],
                    in_flight: &[],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 1,
                    short_by: &[],
                },
                Case {
                    what: "one wei short",
                    balances: &[(ETH, 210_099)],
                    in_flight: &[],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
                Case {
                    what: "gas at the fee cap, every unit of the limit: exactly enough",
                    balances: &[(ETH, 21_000 * CAP + 100)],
                    in_flight: &[],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: CAP,
                    fits: 1,
                    short_by: &[],
                },
                Case {
                    what: "one wei more per gas costs the whole limit in wei",
                    balances: &[(ETH, 21_000 * CAP + 100)],
                    in_flight: &[],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: CAP + 1,
                    fits: 0,
                    short_by: &[(ETH, 21_000)],
                },
                Case {
                    what: "three offered, two fit: the third is short by what the second left",
                    balances: &[(ETH, 2 * 210_100 + 50)],
                    in_flight: &[],
                    batch: &[(ETH, 100, NATIVE_GAS), (ETH, 100, NATIVE_GAS), (ETH, 100, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 2,
                    short_by: &[(ETH, 210_050)],
                },
                Case {
                    what: "a large one that does not fit holds the small ones behind it",
                    balances: &[(ETH, 500_000)],
                    in_flight: &[],
                    batch: &[(ETH, 1_000_000, NATIVE_GAS), (ETH, 1, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 710_000)],
                },
                Case {
                    what: "nothing offered: nothing held, nothing short",
                    balances: &[(ETH, 0)],
                    in_flight: &[],
                    batch: &[],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[],
                },
                Case {
                    what: "no fee, no amount: a wallet with nothing funds it",
                    balances: &[(ETH, 0)],
                    in_flight: &[],
                    batch: &[(ETH, 0, NATIVE_GAS)],
                    max_fee: 0,
                    fits: 1,
                    short_by: &[],
                },
            ]);
        }

        #[test]
        fn a_token_needs_its_amount_in_the_token_and_its_gas_in_the_coin() {
            // 65_000 gas at 10 wei: 650_000 wei of gas per token transfer.
            check(&[
                Case {
                    what: "exactly enough of both",
                    balances: &[(ETH, 650_000), (USDC, 50)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 1,
                    short_by: &[],
                },
                Case {
                    what: "one token unit short, gas covered",
                    balances: &[(ETH, 650_000), (USDC, 49)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(USDC, 1)],
                },
                Case {
                    what: "tokens enough, gas one wei short",
                    balances: &[(ETH, 649_999), (USDC, 1_000)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
                Case {
                    what: "short of both: both reported",
                    balances: &[(ETH, 600_000), (USDC, 10)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 50_000), (USDC, 40)],
                },
                Case {
                    what: "a token balance never read counts as nothing",
                    balances: &[(ETH, 10_000_000)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(USDC, 50)],
                },
                Case {
                    what: "the coin's amount is not paid from a token: tokens plenty, coin short",
                    balances: &[(ETH, 210_000), (USDC, 1_000_000)],
                    in_flight: &[],
                    batch: &[(ETH, 1, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
                Case {
                    what: "two tokens and the coin share one gas budget",
                    balances: &[(ETH, 650_000 * 2 + 210_000 + 7), (USDC, 50), (DAI, 70)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS), (ETH, 7, NATIVE_GAS), (DAI, 70, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 3,
                    short_by: &[],
                },
                Case {
                    what: "a token withdrawal spends the gas a native one behind it needed",
                    balances: &[(ETH, 650_000 + 210_000), (USDC, 50)],
                    in_flight: &[],
                    batch: &[(USDC, 50, TOKEN_GAS), (ETH, 1, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 1,
                    short_by: &[(ETH, 1)],
                },
            ]);
        }

        #[test]
        fn what_is_in_flight_is_spent_already() {
            check(&[
                Case {
                    what: "a native transfer in flight: its amount and its gas",
                    balances: &[(ETH, 210_100 + 210_100)],
                    in_flight: &[(ETH, 100, &[(NATIVE_GAS, 10)])],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 1,
                    short_by: &[],
                },
                Case {
                    what: "the same, one wei less",
                    balances: &[(ETH, 210_100 + 210_099)],
                    in_flight: &[(ETH, 100, &[(NATIVE_GAS, 10)])],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
                Case {
                    what: "in flight at its own fee cap, not the batch's",
                    balances: &[(ETH, 21_000 * 40 + 210_099)],
                    in_flight: &[(ETH, 0, &[(NATIVE_GAS, 40)])],
                    batch: &[(ETH, 100, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
                Case {
                    what: "a token transfer in flight: its tokens, and its gas in the coin",
                    balances: &[(ETH, 650_000 + 650_000), (USDC, 80)],
                    in_flight: &[(USDC, 30, &[(TOKEN_GAS, 10)])],
                    batch: &[(USDC, 51, TOKEN_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(USDC, 1)],
                },
                Case {
                    what: "more in flight than held: nothing left, not a negative",
                    balances: &[(ETH, 100), (USDC, 10)],
                    in_flight: &[(USDC, 30, &[(TOKEN_GAS, 10)])],
                    batch: &[(USDC, 1, 0)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(USDC, 1)],
                },
                Case {
                    what: "a bumped transfer: the newest attempt is the dearest",
                    balances: &[(ETH, 21_000 * 12 + 210_000)],
                    in_flight: &[(ETH, 0, &[(NATIVE_GAS, 10), (NATIVE_GAS, 12)])],
                    batch: &[(ETH, 1, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
                Case {
                    what: "a cancel after a token transfer: the transfer may still win, so its gas counts",
                    balances: &[(ETH, TOKEN_GAS as u128 * 10 + 210_000), (USDC, 100)],
                    in_flight: &[(USDC, 5, &[(TOKEN_GAS, 10), (NATIVE_GAS, 11)])],
                    batch: &[(ETH, 1, NATIVE_GAS)],
                    max_fee: 10,
                    fits: 0,
                    short_by: &[(ETH, 1)],
                },
            ]);
        }

        #[test]
        fn the_worst_case_gas_is_in_u256() {
            // 21_000 times the largest fee a u128 holds is more than a u128 holds.
            let fit = fit_to_funds(ETH, map(&[(ETH, u128::MAX)]), &[Want { asset: ETH, amount: u(0), gas_limit: NATIVE_GAS }], u128::MAX);
            let need = U256::from(NATIVE_GAS) * u(u128::MAX);
            assert_eq!((fit.fits, fit.short_by), (0, HashMap::from([(ETH.to_owned(), need - u(u128::MAX))])));
        }

        #[test]
        fn what_one_batch_spends_is_gone_for_the_next() {
            // The signer keeps `left` between reads: a second batch from the same read must
            // not spend what the first one did.
            let first = fit_to_funds(ETH, map(&[(ETH, 420_200), (USDC, 5)]), &wants(&[(ETH, 100, NATIVE_GAS)]), 10);
            assert_eq!((first.fits, first.left.clone()), (1, map(&[(ETH, 210_100), (USDC, 5)])));
            let second = fit_to_funds(ETH, first.left, &wants(&[(ETH, 101, NATIVE_GAS)]), 10);
            assert_eq!((second.fits, second.short_by, second.left), (0, map(&[(ETH, 1)]), map(&[(ETH, 210_100), (USDC, 5)])));
        }
    }

    mod lanes {
        use super::*;
        use AttemptKind::{Cancel, Transfer};

        /// (nonce, status, newest attempt's kind) of every open withdrawal.
        type Held = (u64, Status, AttemptKind);

        struct Case<'a> {
            what: &'a str,
            /// The chain's mined and pending counts, the store's next nonce.
            latest: u64,
            pending: u64,
            next: u64,
            holders: &'a [Held],
            gaps: &'a [u64],
            blocked: &'a [u64],
        }

        fn check(cases: &[Case<'_>]) {
            for c in cases {
                let holders: Vec<Holder> = c.holders.iter().map(|&(nonce, status, kind)| Holder { nonce, status, kind }).collect();
                let got = classify_lane(c.latest, c.pending, c.next, &holders);
                assert_eq!(got, Lane { gaps: c.gaps.to_vec(), blocked: c.blocked.to_vec() }, "{}", c.what);
            }
        }

        #[test]
        fn every_nonce_between_the_chain_and_the_store_is_accounted_for() {
            check(&[
                Case { what: "an empty lane: all mined", latest: 5, pending: 5, next: 5, holders: &[], gaps: &[], blocked: &[] },
                Case {
                    what: "the store behind the chain: nothing to look at",
                    latest: 7,
                    pending: 7,
                    next: 5,
                    holders: &[],
                    gaps: &[],
                    blocked: &[],
                },
                Case { what: "a gap of one", latest: 5, pending: 5, next: 6, holders: &[], gaps: &[5], blocked: &[] },
                Case {
                    what: "our own transfer at the head",
                    latest: 5,
                    pending: 5,
                    next: 6,
                    holders: &[(5, Status::Sent, Transfer)],
                    gaps: &[],
                    blocked: &[],
                },
                Case {
                    what: "signed, not sent yet: still ours",
                    latest: 5,
                    pending: 5,
                    next: 6,
                    holders: &[(5, Status::Signed, Transfer)],
                    gaps: &[],
                    blocked: &[],
                },
                Case {
                    what: "someone else's transaction in the node's pool at the nonce: it will be mined",
                    latest: 5,
                    pending: 6,
                    next: 6,
                    holders: &[],
                    gaps: &[],
                    blocked: &[],
                },
                Case {
                    what: "past the pool's count nobody holds the nonce",
                    latest: 5,
                    pending: 7,
                    next: 9,
                    holders: &[(8, Status::Sent, Transfer)],
                    gaps: &[7],
                    blocked: &[],
                },
                Case {
                    what: "a dead-lettered transfer blocks the lane",
                    latest: 5,
                    pending: 5,
                    next: 7,
                    holders: &[(5, Status::SendFailed, Transfer), (6, Status::Sent, Transfer)],
                    gaps: &[],
                    blocked: &[5],
                },
                Case {
                    what: "a dead-lettered one already discarded: its cancel goes out, nothing blocks",
                    latest: 5,
                    pending: 5,
                    next: 6,
                    holders: &[(5, Status::SendFailed, Cancel)],
                    gaps: &[],
                    blocked: &[],
                },
                Case {
                    what: "a dead letter in the node's pool still blocks: only an operator decides",
                    latest: 5,
                    pending: 6,
                    next: 6,
                    holders: &[(5, Status::SendFailed, Transfer)],
                    gaps: &[],
                    blocked: &[5],
                },
                Case {
                    what: "holders below the chain's count are not looked at",
                    latest: 5,
                    pending: 5,
                    next: 6,
                    holders: &[(4, Status::SendFailed, Transfer), (3, Status::Sent, Transfer)],
                    gaps: &[5],
                    blocked: &[],
                },
                Case {
                    what: "gaps, holders and a dead letter, in nonce order",
                    latest: 10,
                    pending: 11,
                    next: 16,
                    holders: &[(12, Status::Sent, Transfer), (14, Status::SendFailed, Transfer), (13, Status::Sent, Cancel)],
                    gaps: &[11, 15],
                    blocked: &[14],
                },
            ]);
        }
    }

    mod rotation {
        use super::*;

        const A: Address = Address::repeat_byte(0xa);
        const B: Address = Address::repeat_byte(0xb);
        const C: Address = Address::repeat_byte(0xc);

        struct Case<'a> {
            what: &'a str,
            wallets: &'a [Address],
            short: &'a [Address],
            turn: usize,
            n: usize,
            runs: &'a [(Address, Range<usize>)],
        }

        fn check(cases: &[Case<'_>]) {
            for c in cases {
                let short: HashSet<Address> = c.short.iter().copied().collect();
                assert_eq!(rotate(c.wallets, &short, c.turn, c.n), c.runs.to_vec(), "{}", c.what);
            }
        }

        #[test]
        fn each_batch_starts_one_wallet_further_in_contiguous_runs() {
            check(&[
                Case { what: "one wallet takes everything", wallets: &[A], short: &[], turn: 7, n: 5, runs: &[(A, 0..5)] },
                Case { what: "an empty batch goes nowhere", wallets: &[A, B, C], short: &[], turn: 0, n: 0, runs: &[] },
                Case {
                    what: "even runs from the first wallet",
                    wallets: &[A, B, C],
                    short: &[],
                    turn: 0,
                    n: 6,
                    runs: &[(A, 0..2), (B, 2..4), (C, 4..6)],
                },
                Case {
                    what: "the next batch starts at the next wallet",
                    wallets: &[A, B, C],
                    short: &[],
                    turn: 1,
                    n: 6,
                    runs: &[(B, 0..2), (C, 2..4), (A, 4..6)],
                },
                Case {
                    what: "the last wallet first, then round to the first",
                    wallets: &[A, B, C],
                    short: &[],
                    turn: 2,
                    n: 6,
                    runs: &[(C, 0..2), (A, 2..4), (B, 4..6)],
                },
                Case {
                    what: "the turn wraps around the wallets",
                    wallets: &[A, B, C],
                    short: &[],
                    turn: 4,
                    n: 3,
                    runs: &[(B, 0..1), (C, 1..2), (A, 2..3)],
                },
                Case {
                    what: "the counter's own wrap-around still picks a wallet",
                    wallets: &[A, B],
                    short: &[],
                    turn: usize::MAX,
                    n: 2,
                    runs: &[(B, 0..1), (A, 1..2)],
                },
                Case {
                    what: "uneven: the first runs take one more, the last what is left",
                    wallets: &[A, B, C],
                    short: &[],
                    turn: 0,
                    n: 7,
                    runs: &[(A, 0..3), (B, 3..6), (C, 6..7)],
                },
                Case {
                    what: "fewer withdrawals than wallets: one each from the turn's wallet on",
                    wallets: &[A, B, C],
                    short: &[],
                    turn: 2,
                    n: 2,
                    runs: &[(C, 0..1), (A, 1..2)],
                },
                Case { what: "a short wallet is skipped", wallets: &[A, B, C], short: &[B], turn: 0, n: 4, runs: &[(A, 0..2), (C, 2..4)] },
                Case {
                    what: "the turn counts round the wallets that are not short",
                    wallets: &[A, B, C],
                    short: &[B],
                    turn: 1,
                    n: 4,
                    runs: &[(C, 0..2), (A, 2..4)],
                },
                Case {
                    what: "the turn wraps round the usable wallets only: the fourth batch starts at the second",
                    wallets: &[A, B, C],
                    short: &[B],
                    turn: 3,
                    n: 2,
                    runs: &[(C, 0..1), (A, 1..2)],
                },
                Case {
                    what: "all but one short: it takes everything",
                    wallets: &[A, B, C],
                    short: &[A, C],
                    turn: 2,
                    n: 3,
                    runs: &[(B, 0..3)],
                },
                Case {
                    what: "all short: all share (their budgets hold what they cannot pay)",
                    wallets: &[A, B],
                    short: &[A, B],
                    turn: 1,
                    n: 2,
                    runs: &[(B, 0..1), (A, 1..2)],
                },
                Case { what: "no wallet: nowhere to go", wallets: &[], short: &[], turn: 0, n: 3, runs: &[] },
            ]);
        }
    }

    mod repairs {
        use super::*;

        fn fill(nonce: u64, max_fee_per_gas: u128, created_at_ms: i64) -> NonceFill {
            NonceFill {
                chain_id: 1,
                wallet: Address::repeat_byte(0xa),
                nonce,
                tx_hash: alloy::primitives::B256::repeat_byte(nonce as u8 ^ created_at_ms as u8 ^ max_fee_per_gas as u8),
                raw: Default::default(),
                max_fee_per_gas,
                created_at_ms,
            }
        }

        fn fees(max: u128, tip: u128) -> Fees {
            Fees::eip1559(max, tip)
        }

        #[test]
        fn a_filled_gap_is_not_filled_again() {
            let fills = [fill(4, 10, 0), fill(9, 10, 0)];
            for (gaps, expect) in [(&[][..], &[][..]), (&[3, 4, 5], &[3, 5]), (&[4], &[]), (&[5], &[5])] {
                assert_eq!(unfilled(gaps, &fills), expect.to_vec(), "gaps {gaps:?}");
            }
        }

        /// (nonce, status, recorded as mined, on chain now)
        type Rec = (u64, Status, bool, bool);

        /// (what, gaps, recorded attempts, expected restores, expected fills)
        type RestoreCase<'a> = (&'a str, &'a [u64], &'a [Rec], &'a [usize], &'a [u64]);

        fn check_restore(cases: &[RestoreCase<'_>]) {
            for &(what, gaps, recorded, restore, fill) in cases {
                let recorded: Vec<Recorded> =
                    recorded.iter().map(|&(nonce, status, was_mined, on_chain)| Recorded { nonce, status, was_mined, on_chain }).collect();
                assert_eq!(restore_or_fill(gaps, &recorded), Repairs { restore: restore.to_vec(), fill: fill.to_vec() }, "{what}");
            }
        }

        #[test]
        fn only_a_paid_transfer_the_chain_forgot_is_sent_again() {
            use Status::{Completed, Failed};
            check_restore(&[
                ("nothing recorded at the nonce: a fill", &[5], &[], &[], &[5]),
                (
                    "a completed one's mined transfer, gone from the chain: the same bytes again",
                    &[5],
                    &[(5, Completed, true, false)],
                    &[0],
                    &[],
                ),
                ("its mined transfer still on chain: the count moved for another reason", &[5], &[(5, Completed, true, true)], &[], &[5]),
                (
                    "another attempt of that nonce on chain: a fill, never a second payment",
                    &[5],
                    &[(5, Completed, false, true), (5, Completed, true, false)],
                    &[],
                    &[5],
                ),
                ("a completed one's attempt that is not the mined one", &[5], &[(5, Completed, false, false)], &[], &[5]),
                ("a failed one's transfer would pay what nobody holds: a fill", &[5], &[(5, Failed, true, false)], &[], &[5]),
                (
                    "several gaps: each decided by its own nonce's record",
                    &[5, 6, 7],
                    &[(6, Completed, false, false), (6, Completed, true, false), (7, Completed, true, true)],
                    &[1],
                    &[5, 7],
                ),
                ("no gaps, nothing to do", &[], &[(5, Completed, true, false)], &[], &[]),
            ]);
        }

        #[test]
        fn the_newest_fill_of_a_nonce_counts() {
            let newest = newest_fills(vec![fill(3, 10, 100), fill(3, 12, 200), fill(3, 11, 150), fill(4, 10, 100), fill(4, 20, 100)]);
            let mut got: Vec<(u64, u128, i64)> = newest.values().map(|f| (f.nonce, f.max_fee_per_gas, f.created_at_ms)).collect();
            got.sort();
            // Nonce 3: the latest signed; nonce 4: signed at the same time, the dearer.
            assert_eq!(got, vec![(3, 12, 200), (4, 20, 100)]);
        }

        #[test]
        fn a_new_gap_gets_the_network_fees_and_a_stuck_fill_a_bump_under_the_cap() {
            let calm = fees(50, 5);
            // (what, new gaps, newest fills, the network's fees, cap, expected signatures);
            // fills signed before 1_000 are stuck.
            type FillCase<'a> = (&'a str, &'a [u64], &'a [NonceFill], Fees, u128, &'a [(u64, Fees)]);
            let cases: &[FillCase<'_>] = &[
                ("nothing to do", &[], &[], calm, 1_000, &[]),
                ("a gap of one: a fill at the network's fees", &[7], &[], calm, 1_000, &[(7, calm)]),
                ("a fill signed at the stuck threshold is not stuck yet", &[], &[fill(7, 100, 1_000)], calm, 1_000, &[]),
                (
                    "a stuck fill: +10% and 1 wei on both fields, from its max fee",
                    &[],
                    &[fill(7, 100, 999)],
                    calm,
                    1_000,
                    &[(7, fees(111, 111))],
                ),
                ("the network's fees when they are higher", &[], &[fill(7, 100, 999)], fees(300, 150), 1_000, &[(7, fees(300, 150))]),
                ("a stuck fill the cap leaves no valid replacement for: only re-broadcast", &[], &[fill(7, 100, 999)], calm, 110, &[]),
                ("a stuck fill bumped to the cap exactly", &[], &[fill(7, 100, 999)], calm, 111, &[(7, fees(111, 111))]),
                (
                    "the network above the cap: capped, still a valid replacement",
                    &[],
                    &[fill(7, 100, 999)],
                    fees(500, 5),
                    200,
                    &[(7, fees(200, 111))],
                ),
                (
                    "a new gap takes the network's fees as given (the chain port caps them)",
                    &[7],
                    &[],
                    fees(500, 5),
                    200,
                    &[(7, fees(500, 5))],
                ),
                (
                    "new gaps first, in order, then the stuck fills by nonce",
                    &[9, 8],
                    &[fill(6, 100, 10), fill(4, 30, 10), fill(5, 100, 5_000)],
                    calm,
                    1_000,
                    &[(9, calm), (8, calm), (4, fees(50, 34)), (6, fees(111, 111))],
                ),
            ];
            for &(what, gaps, fills, network, cap, expect) in cases {
                let newest: HashMap<u64, NonceFill> = fills.iter().map(|f| (f.nonce, f.clone())).collect();
                assert_eq!(fills_to_sign(gaps, &newest, network, cap, 1_000), expect.to_vec(), "{what}");
            }
        }
    }
}
