#!/usr/bin/env bash
# The project's benchmark: first the chain's own ceiling (`withdrawd ceiling` on a fresh
# anvil), then a fresh anvil and a fresh `withdrawd dev` (release build) on private ports
# and a temporary data directory, and `withdrawd bench` over HTTP, its rates also printed
# as ratios to the ceiling.
#   scripts/bench.sh [--count N] [--concurrency C] [...]   (arguments go to `withdrawd bench`)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
cargo build --release -p withdrawd >&2
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

measure_ceiling "$(bench_count "$@")"
start_anvil
run_bench -- "$@"
