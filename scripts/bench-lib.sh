# Shared by scripts/bench.sh and scripts/bench-production.sh (source it after tools.sh):
# a temporary work directory cleaned up on exit, a fresh anvil, and a withdrawd dev run
# driven by `withdrawd bench` with its report.

work="$(mktemp -d)"
chmod 755 "$work"
pids=()
cleanup_hooks=()
cleanup() {
  cp "$work/withdrawd.log" "${BENCH_LOG:-/tmp/withdrawd-bench.log}" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for h in "${cleanup_hooks[@]}"; do $h || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A free loopback port, and waiting (up to 10 s) until something listens on one.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
}

# Starts anvil with 1 s blocks like a real chain (automine mines one block per arriving
# transaction, so the tail of a burst larger than one block would wait for a transaction
# that never comes) and no block gas cap, so a block holds a whole burst; sets anvil_url.
start_anvil() {
  "$ANVIL_BIN" --host 127.0.0.1 --port 0 --quiet --block-time 1 --disable-block-gas-limit --no-request-size-limit >"$work/anvil.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  anvil_url=""
  for _ in $(seq 1 100); do
    sleep 0.1
    local port
    # Not listening yet is no match, which must not end the script (set -e, pipefail).
    port=$(ss -ltnpH 2>/dev/null | grep "pid=${pid}," | sed -E 's/.*127\.0\.0\.1:([0-9]+).*/\1/' | head -n1 || true)
    [ -n "$port" ] && anvil_url="http://127.0.0.1:$port" && return 0
  done
  echo "bench: anvil did not start" >&2
  exit 1
}

# Starts `withdrawd [global args] dev` on anvil with its data in $work/$data_name (default
# "data"); sets wd (its pid) and intake, admin and health (its addresses).
#   start_withdrawd [withdrawd global args...]
start_withdrawd() {
  local data="$work/${data_name:-data}"
  WITHDRAW_LOG=${WITHDRAW_LOG:-warn} ./target/release/withdrawd --log-format json "$@" dev --rpc-url "$anvil_url" \
    --data-dir "$data" --intake-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 >"$work/withdrawd.log" 2>&1 &
  wd=$!
  pids+=("$wd")
  for _ in $(seq 1 100); do [ -s "$data/endpoints.json" ] && break; sleep 0.1; done
  [ -s "$data/endpoints.json" ] || { cat "$work/withdrawd.log" >&2; exit 1; }
  intake=$(sed -nE 's/.*"intake": "([^"]+)".*/\1/p' "$data/endpoints.json")
  admin=$(sed -nE 's/.*"admin": "([^"]+)".*/\1/p' "$data/endpoints.json")
  health=$(sed -nE 's/.*"health": "([^"]+)".*/\1/p' "$data/endpoints.json")
}

# The bench against the withdrawd start_withdrawd started, then the stage breakdown and
# withdrawd's peak RSS; stops that withdrawd.
#   bench_started [bench args...]
bench_started() {
  ./target/release/withdrawd bench --intake "http://$intake" --admin "http://$admin" "$@" ${ceiling_args[@]+"${ceiling_args[@]}"} | tee "$work/bench.out"
  # Where the time went, from withdrawd's own histograms.
  curl -s "http://$health/metrics" | python3 "$root/scripts/bench-breakdown.py"
  echo "peak RSS of withdrawd: $(grep VmHWM /proc/"$wd"/status | awk '{print $2, $3}')"
  # CPU seconds withdrawd used (user + system, from /proc) per 1,000 withdrawals: work
  # moved onto anvil's cores shows here, not in the rates.
  local n ticks
  n=$(awk '/^withdrawals/ {print $2}' "$work/bench.out")
  ticks=$(awk '{print $14 + $15}' /proc/"$wd"/stat)
  python3 -c "import sys; t=$ticks/$(getconf CLK_TCK); print(f'CPU of withdrawd: {t:.1f} s, {t*1000/$n:.2f} s per 1,000 withdrawals')"
  kill "$wd" 2>/dev/null || true
  wait "$wd" 2>/dev/null || true
}

# The chain's ceiling on a fresh anvil of its own (started as start_anvil starts it, then
# stopped): pre-signed transfers from one key in batches of 256. Sets ceiling_args for the
# benches that follow, which print their rates as ratios to it.
#   measure_ceiling COUNT
measure_ceiling() {
  start_anvil
  local pid=${pids[${#pids[@]}-1]}
  ./target/release/withdrawd ceiling --rpc-url "$anvil_url" --count "$1" | tee "$work/ceiling.out"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  ceiling_args=(--ceiling-accepted "$(awk '/^ceiling accepted/ {sub("/s", "", $3); print $3}' "$work/ceiling.out")"
    --ceiling-mined "$(awk '/^ceiling mined/ {sub("/s", "", $3); print $3}' "$work/ceiling.out")")
}

# The --count among the bench arguments (20000, the bench's default, if none).
bench_count() {
  local n=20000
  while [ $# -gt 0 ]; do [ "$1" = "--count" ] && [ $# -gt 1 ] && n=$2; shift; done
  echo "$n"
}

# Runs `withdrawd [global args] dev` on anvil, then the bench with the remaining arguments
# after `--`, the stage breakdown, and withdrawd's peak RSS.
#   run_bench [withdrawd global args...] -- [bench args...]
run_bench() {
  local global=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do global+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  start_withdrawd "${global[@]}"
  bench_started "$@"
}
