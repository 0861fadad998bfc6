#!/usr/bin/env bash
# The benchmark on the production profile's backends: PostgreSQL for the record, Redis for
# the balances, SQS for the queues -- here moto's server standing in for SQS, so queue
# figures are moto's, not Amazon's -- with every role in one `withdrawd dev` process and a
# fresh anvil. Same arguments and report as scripts/bench.sh.
#   scripts/bench-production.sh [--count N] [--concurrency C] [...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
cargo build --release -p withdrawd >&2

work="$(mktemp -d)"
chmod 755 "$work"
pids=()
pg_ctl_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN_DIR/pg_ctl" "$@"; else "$PG_BIN_DIR/pg_ctl" "$@"; fi; }
cleanup() {
  cp "$work/withdrawd.log" "${BENCH_LOG:-/tmp/withdrawd-bench-production.log}" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -d "$work/pg/data" ] && pg_ctl_as -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL: a cluster of its own, fsync on (the record must survive a crash).
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
pg_port=$(free_port)
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN_DIR/initdb" -D "$work/pg/data" -U postgres --auth=trust >/dev/null
else "$PG_BIN_DIR/initdb" -D "$work/pg/data" -U postgres --auth=trust >/dev/null; fi
pg_ctl_as -D "$work/pg/data" -l "$work/pg/log" -w -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null

redis_port=$(free_port)
"$REDIS_SERVER_BIN" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
moto_port=$(free_port)
"$MOTO_SERVER_BIN" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
"$ANVIL_BIN" --host 127.0.0.1 --port 0 --quiet --block-time 1 --disable-block-gas-limit --no-request-size-limit >"$work/anvil.log" 2>&1 &
pids+=($!)
anvil_pid=$!
anvil_url=""
for _ in $(seq 1 100); do
  sleep 0.1
  port=$(ss -ltnpH 2>/dev/null | grep "pid=${anvil_pid}," | sed -E 's/.*127\.0\.0\.1:([0-9]+).*/\1/' | head -n1)
  [ -n "$port" ] && anvil_url="http://127.0.0.1:$port" && break
done
[ -n "$anvil_url" ] || { echo "bench: anvil did not start" >&2; exit 1; }
for p in "$redis_port" "$moto_port"; do
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break; sleep 0.1; done
done

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export WITHDRAW_BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export WITHDRAW_BENCH_REDIS_URL="redis://127.0.0.1:$redis_port/"
cat >"$work/withdrawd.toml" <<TOML
[database]
sqlite_path = "unused.db"
backend = "postgres"
url = { env = "WITHDRAW_BENCH_DATABASE_URL" }
max_connections = 32

[queues]
visibility_timeout_secs = 30
max_receives = 5
backend = "sqs"

[balances]
backend = "redis"
redis_url = { env = "WITHDRAW_BENCH_REDIS_URL" }

[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:$moto_port"
TOML
./target/release/withdrawd --log-format json --config "$work/withdrawd.toml" queues ensure --prefix bench | sed -n '/^\[queues.sqs\]/,$p' >>"$work/withdrawd.toml"
echo "wait_secs = 1" >>"$work/withdrawd.toml"
./target/release/withdrawd --log-format json --config "$work/withdrawd.toml" migrate >/dev/null

WITHDRAW_LOG=${WITHDRAW_LOG:-warn} ./target/release/withdrawd --log-format json --config "$work/withdrawd.toml" dev --rpc-url "$anvil_url" \
  --data-dir "$work/data" --intake-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$work/withdrawd.log" 2>&1 &
pids+=($!)
wd_pid=$!
for _ in $(seq 1 100); do [ -s "$work/data/endpoints.json" ] && break; sleep 0.1; done
[ -s "$work/data/endpoints.json" ] || { cat "$work/withdrawd.log" >&2; exit 1; }
intake=$(sed -nE 's/.*"intake": "([^"]+)".*/\1/p' "$work/data/endpoints.json")
admin=$(sed -nE 's/.*"admin": "([^"]+)".*/\1/p' "$work/data/endpoints.json")

./target/release/withdrawd bench --intake "http://$intake" --admin "http://$admin" "$@"
curl -s "http://$admin/metrics" | python3 "$root/scripts/bench-breakdown.py"
echo "peak RSS of withdrawd: $(grep VmHWM /proc/"$wd_pid"/status | awk '{print $2, $3}')"
