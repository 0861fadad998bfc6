//! Fee-bump rule for replacing a stuck transaction at the same nonce. Nodes accept a
//! replacement only if *both* fee fields rise by their price-bump percentage (10% on geth
//! and anvil); a bump of exactly 10% is refused by some, so we go strictly above: at least
//! +10% rounded up, plus 1 wei. The network's current suggestion wins when it is higher; the
//! per-chain cap bounds what a fee spike can cost. Pure: no I/O.

use crate::ports::Fees;

/// Result of a bump attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    /// Sign a replacement with these fees.
    To(Fees),
    /// The cap leaves no room for a valid replacement; keep re-broadcasting the old one.
    AtCap,
}

/// Minimum fee a replacement of `old` must carry: `old + ceil(old * percent / 100) + 1`.
pub fn min_replacement(old: u128, percent: u128) -> u128 {
    old.saturating_add(old.saturating_mul(percent).div_ceil(100)).saturating_add(1)
}

pub fn bump(old: Fees, network: Fees, cap: u128, percent: u128) -> Bump {
    let min_max = min_replacement(old.max_fee_per_gas, percent);
    let min_tip = min_replacement(old.max_priority_fee_per_gas, percent);
    let tip = min_tip.max(network.max_priority_fee_per_gas);
    let max_fee = min_max.max(network.max_fee_per_gas).max(tip);
    // A legacy transaction has one price: both fields move together.
    let legacy = network.legacy;
    if max_fee <= cap {
        let tip = if legacy { max_fee } else { tip };
        return Bump::To(Fees { max_fee_per_gas: max_fee, max_priority_fee_per_gas: tip, legacy });
    }
    // Capped: still a valid replacement if the cap clears both minimums.
    if cap >= min_max && cap >= min_tip {
        let tip = if legacy { cap } else { tip.min(cap) };
        return Bump::To(Fees { max_fee_per_gas: cap, max_priority_fee_per_gas: tip, legacy });
    }
    Bump::AtCap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(max: u128, tip: u128) -> Fees {
        Fees::eip1559(max, tip)
    }

    fn check(old: Fees, network: Fees, cap: u128, expect: Bump) {
        assert_eq!(bump(old, network, cap, 10), expect, "old {old:?} network {network:?} cap {cap}");
    }

    #[test]
    fn table() {
        // Strictly above +10% on both fields even when the network is calmer.
        check(f(100, 10), f(50, 5), 1_000, Bump::To(f(111, 12)));
        // 10% of an odd value rounds up: 15 -> 15 + 2 + 1.
        check(f(15, 15), f(0, 0), 1_000, Bump::To(f(18, 18)));
        // The network's suggestion wins when higher.
        check(f(100, 10), f(500, 40), 1_000, Bump::To(f(500, 40)));
        // The tip never exceeds the max fee.
        check(f(100, 10), f(0, 300), 1_000, Bump::To(f(300, 300)));
        // Capped but still a valid replacement.
        check(f(100, 10), f(900, 10), 200, Bump::To(f(200, 12)));
        // Capped below the minimum replacement: nothing valid to sign.
        check(f(100, 10), f(900, 10), 110, Bump::AtCap);
        check(f(100, 10), f(900, 10), 100, Bump::AtCap);
        // Zero fees still rise by at least 1 wei.
        check(f(0, 0), f(0, 0), 10, Bump::To(f(1, 1)));
    }

    #[test]
    fn every_bump_clears_the_node_rule() {
        // geth/anvil: new >= old * 1.1 on both fields. Check over a range of values.
        for old_max in (0u128..5_000).step_by(7) {
            for old_tip in [0u128, 1, 9, 10, 11, 99, 1_000, old_max] {
                let old = f(old_max, old_tip.min(old_max));
                if let Bump::To(new) = bump(old, f(0, 0), u128::MAX, 10) {
                    assert!(new.max_fee_per_gas * 100 > old.max_fee_per_gas * 110, "{old:?} -> {new:?}");
                    assert!(new.max_priority_fee_per_gas * 100 > old.max_priority_fee_per_gas * 110, "{old:?} -> {new:?}");
                    assert!(new.max_priority_fee_per_gas <= new.max_fee_per_gas);
                } else {
                    panic!("uncapped bump must succeed");
                }
            }
        }
    }
}
