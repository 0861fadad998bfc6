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

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

# Blocks every second like a real chain (automine mines one block per arriving transaction,
# so the tail of a burst larger than one block would wait for a transaction that never
# comes); no block gas cap, so a block holds a whole burst.
"$ANVIL_BIN" --host 127.0.0.1 --port 0 --quiet --block-time 1 --disable-block-gas-limit --no-request-size-limit >"$work/anvil.log" 2>&1 &
pids+=($!)
anvil_url=""
for _ in $(seq 1 100); do
  sleep 0.1
  port=$(ss -ltnpH 2>/dev/null | grep "pid=${pids[0]}," | sed -E 's/.*127\.0\.0\.1:([0-9]+).*/\1/' | head -n1)
  [ -n "$port" ] && anvil_url="http://127.0.0.1:$port" && break
done
[ -n "$anvil_url" ] || { echo "bench: anvil did not start" >&2; exit 1; }

WITHDRAW_LOG=${WITHDRAW_LOG:-warn} ./target/release/withdrawd --log-format json dev --rpc-url "$anvil_url" --data-dir "$work/data" \
  --intake-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$work/withdrawd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/data/endpoints.json" ] && break; sleep 0.1; done
[ -s "$work/data/endpoints.json" ] || { cat "$work/withdrawd.log" >&2; exit 1; }
intake=$(sed -nE 's/.*"intake": "([^"]+)".*/\1/p' "$work/data/endpoints.json")
admin=$(sed -nE 's/.*"admin": "([^"]+)".*/\1/p' "$work/data/endpoints.json")

./target/release/withdrawd bench --intake "http://$intake" --admin "http://$admin" "$@"
# Where the time went, from withdrawd's own histograms.
curl -s "http://$admin/metrics" | python3 "$root/scripts/bench-breakdown.py"
cp "$work/withdrawd.log" "${BENCH_LOG:-/tmp/withdrawd-bench.log}" 2>/dev/null || true
echo "peak RSS of withdrawd: $(grep VmHWM /proc/"${pids[1]}"/status | awk '{print $2, $3}')"
