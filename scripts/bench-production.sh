#!/usr/bin/env bash
# The benchmark on the production profile's backends: PostgreSQL for the record, Redis for
# the balances, SQS for the queues -- here fauxqs (an SQS server in Node, installed from npm
# into .tools) standing in for SQS, so queue figures are fauxqs's, not Amazon's; moto, at
# ~100 requests/s, would measure itself -- with every role in one `withdrawd dev` process
# and a fresh anvil. Same arguments and report as scripts/bench.sh, ceiling included.
#   scripts/bench-production.sh [--count N] [--concurrency C] [...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
cargo build --release -p withdrawd >&2

# shellcheck source=scripts/bench-lib.sh
BENCH_LOG=${BENCH_LOG:-/tmp/withdrawd-bench-production.log}
source scripts/bench-lib.sh
pg_ctl_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN_DIR/pg_ctl" "$@"; else "$PG_BIN_DIR/pg_ctl" "$@"; fi; }
stop_postgres() { [ -d "$work/pg/data" ] && pg_ctl_as -D "$work/pg/data" -m immediate stop >/dev/null 2>&1; }
cleanup_hooks+=(stop_postgres)

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
# fauxqs 1.9.2 runs on Node 20 (2.x needs Node 22.5). Started through a two-line module,
# not its CLI, which logs every request.
if [ ! -d "$tools/node_modules/fauxqs" ]; then
  echo "bench: installing fauxqs from npm into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --silent fauxqs@1.9.2 >&2
fi
cat >"$tools/fauxqs-server.mjs" <<'JS'
import { startFauxqs } from "fauxqs";
await startFauxqs({ port: Number(process.argv[2]), logger: false });
JS
sqs_port=$(free_port)
(cd "$tools" && exec node fauxqs-server.mjs "$sqs_port") >"$work/fauxqs.log" 2>&1 &
pids+=($!)
measure_ceiling "$(bench_count "$@")"
start_anvil
wait_port "$redis_port"
wait_port "$sqs_port"

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
endpoint_url = "http://127.0.0.1:$sqs_port"
TOML
./target/release/withdrawd --log-format json --config "$work/withdrawd.toml" queues ensure --prefix bench | sed -n '/^\[queues.sqs\]/,$p' >>"$work/withdrawd.toml"
echo "wait_secs = 1" >>"$work/withdrawd.toml"
./target/release/withdrawd --log-format json --config "$work/withdrawd.toml" migrate >/dev/null

run_bench --config "$work/withdrawd.toml" -- "$@"
