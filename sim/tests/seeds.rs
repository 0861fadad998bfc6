//! A fixed set of seeds, every fault on: each must keep every invariant. A failure prints
//! the command that replays it.

use withdraw_sim::{Config, run};

fn seeds(range: std::ops::RangeInclusive<u64>) {
    for seed in range {
        // Even seeds count confirmations; odd ones read the chain's finalized block.
        let cfg = Config { seed, finalized: seed % 2 == 1, ..Config::default() };
        let r = run(&cfg);
        assert!(
            !r.failed(),
            "seed {seed} broke an invariant: {:?}\nreplay: {}\nlast events:\n{}",
            r.violations,
            cfg.replay_command(),
            r.trace.join("\n")
        );
        assert_eq!(r.withdrawals, cfg.withdrawals, "seed {seed}: every request was submitted");
        assert!(r.by_status.get("COMPLETED").copied().unwrap_or(0) > 0, "seed {seed}: nothing completed: {:?}", r.by_status);
    }
}

#[test]
fn seeds_1_to_4_keep_every_invariant() {
    seeds(1..=4);
}

#[test]
fn seeds_5_to_8_keep_every_invariant() {
    seeds(5..=8);
}

#[test]
fn seeds_9_to_12_keep_every_invariant() {
    seeds(9..=12);
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = Config { seed: 42, withdrawals: 120, steps: 800, ..Config::default() };
    let (a, b) = (run(&cfg), run(&cfg));
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.by_status, b.by_status);
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.digest, b.digest);
    assert!(a.faults.get("crash").copied().unwrap_or(0) + a.faults.get("reorg").copied().unwrap_or(0) > 0, "{:?}", a.faults);
}

#[test]
fn the_checks_catch_a_destination_paid_twice() {
    // The chain is made to mine a second payment to a paid destination: the per-step
    // check must see it, or it would not see the real thing either.
    let cfg = Config { seed: 3, double_pay_at: Some(400), ..Config::default() };
    let r = run(&cfg);
    assert!(r.violations.iter().any(|v| v.contains("in 2 transfers")), "{:?}", r.violations);
}

#[test]
fn without_faults_the_payable_withdrawals_complete() {
    let cfg = Config { seed: 5, faults: false, ..Config::default() };
    let r = run(&cfg);
    assert!(!r.failed(), "{:?}\n{}", r.violations, r.trace.join("\n"));
    assert_eq!(r.faults.get("crash"), None);
    let completed = r.by_status.get("COMPLETED").copied().unwrap_or(0);
    assert!(completed * 2 > r.withdrawals, "{:?}", r.by_status);
}
