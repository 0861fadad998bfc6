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

use alloy::primitives::U256;
use std::collections::HashMap;

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
    /// The gas this withdrawal may still burn: its newest attempt's worst case (attempts
    /// are listed oldest first).
    pub fn worst_gas(&self) -> U256 {
        self.attempts.last().map(|a| gas_cost(a.gas_limit, a.max_fee_per_gas)).unwrap_or_default()
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
}
