#!/usr/bin/env bash
# The quick start: installs anvil if needed, starts it on 127.0.0.1:8545 unless a node is
# already listening there, then runs `withdrawd dev` (release build). Ctrl-C stops both.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh

anvil_pid=""
cleanup() { [ -n "$anvil_pid" ] && kill "$anvil_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if ! (exec 3<>/dev/tcp/127.0.0.1/8545) 2>/dev/null; then
  mkdir -p .withdrawd
  echo "dev: starting anvil on 127.0.0.1:8545 (log: .withdrawd/anvil.log)" >&2
  # Blocks every second, as on a real chain: automine would mine one block per arriving
  # transaction and leave the tail of a burst waiting in the pool.
  "$ANVIL_BIN" --host 127.0.0.1 --port 8545 --block-time 1 --disable-block-gas-limit >.withdrawd/anvil.log 2>&1 &
  anvil_pid=$!
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8545) 2>/dev/null && break
    sleep 0.1
  done
else
  echo "dev: using the node already listening on 127.0.0.1:8545" >&2
fi

cargo build --release -p withdrawd
./target/release/withdrawd dev "$@"
