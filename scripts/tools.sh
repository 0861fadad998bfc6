#!/usr/bin/env bash
# Installs the external programs withdrawd's dev run and tests need into ./.tools (idempotent)
# and prints nothing on success. Source it to get ANVIL_BIN exported.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"
command -v npm >/dev/null || { echo "tools: npm and node are required (apt-get install -y nodejs npm)" >&2; exit 1; }

anvil_bin="$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if [ ! -x "$anvil_bin" ]; then
    echo "tools: installing anvil from npm into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --silent @foundry-rs/anvil >&2
fi
[ -x "$anvil_bin" ] || { echo "tools: anvil did not install at $anvil_bin" >&2; exit 1; }
export ANVIL_BIN="$anvil_bin"

# A real ERC-20 for the token tests, compiled from testdata/contracts with solc-js.
token_bin="$tools/TestToken.bin"
if [ ! -s "$token_bin" ] || [ "$root/testdata/contracts/TestToken.sol" -nt "$token_bin" ]; then
  if [ ! -d "$tools/node_modules/solc" ] || [ ! -d "$tools/node_modules/@openzeppelin/contracts" ]; then
    echo "tools: installing solc and OpenZeppelin contracts from npm into $tools" >&2
    npm install --prefix "$tools" --no-audit --no-fund --silent solc@0.8 @openzeppelin/contracts@5 >&2
  fi
  node "$root/scripts/build-test-token.js"
fi
export WITHDRAW_TEST_TOKEN_BIN="$token_bin"

# tmux drives the real console in its end-to-end test (Debian package).
if ! command -v tmux >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tools: installing tmux (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux) >&2
  else
    echo "tools: tmux is required for the console's end-to-end test (apt-get install -y tmux)" >&2
    exit 1
  fi
fi

# promtool checks the alert rules and a real /metrics scrape (Debian's prometheus package).
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tools: installing promtool (apt-get install prometheus)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >&2
  else
    echo "tools: promtool is required for the monitoring tests (apt-get install -y prometheus)" >&2
    exit 1
  fi
fi
