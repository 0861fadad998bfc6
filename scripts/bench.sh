#!/usr/bin/env bash
# The project's benchmark: a fresh anvil and a fresh `withdrawd dev` (release build) on
# private ports and a temporary data directory, then `withdrawd bench` over HTTP.
#   scripts/bench.sh [--count N] [--concurrency C] [...]   (arguments go to `withdrawd bench`)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
cargo build --release -p withdrawd >&2
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

start_anvil
run_bench -- "$@"
