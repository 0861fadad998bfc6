#!/usr/bin/env bash
# Installs the external programs withdrawd's dev run and tests need into ./.tools (idempotent)
# and prints nothing on success. Source it to get ANVIL_BIN exported.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

anvil_bin="$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if [ ! -x "$anvil_bin" ]; then
  command -v npm >/dev/null || { echo "tools: npm is required to install anvil (apt-get install -y npm)" >&2; exit 1; }
  echo "tools: installing anvil from npm into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --silent @foundry-rs/anvil >&2
fi
[ -x "$anvil_bin" ] || { echo "tools: anvil did not install at $anvil_bin" >&2; exit 1; }
export ANVIL_BIN="$anvil_bin"
