//! `withdraw-sim`: runs seeds of the deterministic simulation and reports. A failing seed
//! prints the command that replays it and the events that led there.

use clap::Parser;
use std::collections::BTreeMap;
use std::time::Instant;
use withdraw_sim::{Config, Report, run};

#[derive(Parser, Debug)]
#[command(name = "withdraw-sim", about = "Deterministic simulation of withdrawd under faults")]
struct Args {
    /// Run only this seed (replay).
    #[arg(long)]
    seed: Option<u64>,
    /// Seeds to run, starting at --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Withdrawals per seed.
    #[arg(long, default_value_t = Config::default().withdrawals)]
    withdrawals: usize,
    /// Steps with faults on per seed.
    #[arg(long, default_value_t = Config::default().steps)]
    steps: usize,
    #[arg(long)]
    no_faults: bool,
    #[arg(long, default_value_t = Config::default().max_reorg)]
    max_reorg: u64,
    #[arg(long, default_value_t = Config::default().confirmations)]
    confirmations: u64,
    /// Finality by the chain's `finalized` block rather than a count of confirmations.
    #[arg(long)]
    finalized: bool,
    #[arg(long, default_value_t = Config::default().wallets)]
    wallets: usize,
    /// Keep going after a failing seed.
    #[arg(long)]
    keep_going: bool,
    /// Print the trace of a replayed seed even when it passes.
    #[arg(long)]
    trace: bool,
}

fn config(a: &Args, seed: u64) -> Config {
    Config {
        seed,
        withdrawals: a.withdrawals,
        steps: a.steps,
        faults: !a.no_faults,
        max_reorg: a.max_reorg,
        confirmations: a.confirmations,
        finalized: a.finalized,
        wallets: a.wallets,
        double_pay_at: None,
    }
}

fn print_failure(cfg: &Config, r: &Report) {
    eprintln!("\nseed {} FAILED after {} steps ({:.1}s simulated):", r.seed, r.steps, r.sim_ms as f64 / 1000.0);
    for v in r.violations.iter().take(10) {
        eprintln!("  violation: {v}");
    }
    eprintln!("  replay: {}", cfg.replay_command());
    eprintln!("  last events:");
    for t in &r.trace {
        eprintln!("    {t}");
    }
    eprintln!("  last log lines:");
    for l in r.logs.iter().rev().take(12).rev() {
        eprintln!("    {l}");
    }
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    if let Some(seed) = a.seed {
        let cfg = config(&a, seed);
        let started = Instant::now();
        let r = run(&cfg);
        let wall = started.elapsed().as_secs_f64();
        if r.failed() {
            print_failure(&cfg, &r);
            return std::process::ExitCode::FAILURE;
        }
        if a.trace {
            for t in &r.trace {
                println!("  {t}");
            }
            for (why, n) in &r.reasons {
                println!("  {n:>4}  {why}");
            }
        }
        println!(
            "seed {seed} passed: {} withdrawals {:?}, {} blocks, {:.0}s simulated in {wall:.2}s; faults {:?}; digest {:016x}",
            r.withdrawals,
            r.by_status,
            r.blocks,
            r.sim_ms as f64 / 1000.0,
            r.faults,
            r.digest
        );
        return std::process::ExitCode::SUCCESS;
    }
    let bar = indicatif::ProgressBar::new(a.seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} seeds  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut withdrawals = 0usize;
    for seed in a.first..a.first + a.seeds {
        let cfg = config(&a, seed);
        let r = run(&cfg);
        withdrawals += r.withdrawals;
        for (k, v) in &r.faults {
            *faults.entry(k).or_default() += v;
        }
        if r.failed() {
            bar.suspend(|| print_failure(&cfg, &r));
            failures.push(seed);
            if !a.keep_going {
                break;
            }
        }
        bar.inc(1);
        bar.set_message(format!("{} failed", failures.len()));
        if bar.is_hidden() && bar.position().is_multiple_of(100) {
            // No terminal (CI, a log file): a line per hundred seeds instead of the bar.
            eprintln!("{}/{} seeds, {} failed, {:.0}s", bar.position(), a.seeds, failures.len(), started.elapsed().as_secs_f64());
        }
    }
    bar.finish();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{} seeds, {} failed, {withdrawals} withdrawals in {wall:.1}s ({:.0} simulated withdrawals/s, {:.3}s per seed)",
        bar.position(),
        failures.len(),
        withdrawals as f64 / wall,
        wall / bar.position().max(1) as f64
    );
    println!("faults injected:");
    for (k, v) in &faults {
        println!("  {k:<26} {v}");
    }
    if !failures.is_empty() {
        println!("failing seeds: {failures:?}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
