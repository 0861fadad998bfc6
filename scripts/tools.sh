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
if [ ! -s "$token_bin" ] || [ ! -s "$tools/FalseToken.bin" ] || [ "$root/testdata/contracts/TestToken.sol" -nt "$token_bin" ]; then
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

# The production profile's servers for the adapter tests, all on loopback.
apt_install() {
  # $1: command that must exist afterwards; rest: Debian packages.
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tools: installing $* (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@") >&2
  else
    echo "tools: $cmd is required (apt-get install -y $*)" >&2
    exit 1
  fi
}
apt_install redis-server redis-server
export REDIS_SERVER_BIN="$(command -v redis-server)"
# The TLS tests of Redis and PostgreSQL make a CA of their own with openssl.
apt_install openssl openssl

pg_dir=""
for v in 17 16 15; do
  if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then pg_dir="/usr/lib/postgresql/$v/bin"; break; fi
done
if [ -z "$pg_dir" ]; then
  apt_install pg_config postgresql libpq-dev
  pg_dir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
[ -x "$pg_dir/initdb" ] || { echo "tools: PostgreSQL's initdb not found" >&2; exit 1; }
export PG_BIN_DIR="$pg_dir"
# diesel's PostgreSQL backend links libpq.
[ -e /usr/include/postgresql/libpq-fe.h ] || apt_install pg_config libpq-dev

# moto's server mode stands in for SQS and Secrets Manager (PyPI, in a venv of our own).
moto_bin="$tools/venv/bin/moto_server"
if [ ! -x "$moto_bin" ]; then
  echo "tools: installing moto[server] from PyPI into $tools/venv" >&2
  python3 -m venv "$tools/venv" >&2
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.6' >&2
fi
[ -x "$moto_bin" ] || { echo "tools: moto_server did not install at $moto_bin" >&2; exit 1; }
# Started through scripts/moto-server.py, which makes KMS's Sign honour MessageType=DIGEST
# as AWS does (moto hashes the digest again, so no Ethereum signature would recover). The
# launcher patches moto's KMS internals, hence the exact version above.
moto_launcher="$tools/moto-server"
cat >"$moto_launcher" <<LAUNCHER
#!/bin/sh
exec "$tools/venv/bin/python" "$root/scripts/moto-server.py" "\$@"
LAUNCHER
chmod +x "$moto_launcher"
export MOTO_SERVER_BIN="$moto_launcher"

# The Kubernetes manifests' checks: the Kubernetes schemas (PyPI kubernetes-validate, into
# the same venv) and the KEDA and Prometheus Operator CRD schemas (npm kubernetes-models).
if ! "$tools/venv/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null; then
  echo "tools: installing kubernetes-validate from PyPI into $tools/venv" >&2
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.33' >&2
fi
if [ ! -d "$tools/node_modules/@kubernetes-models/keda" ] || [ ! -d "$tools/node_modules/@kubernetes-models/prometheus-operator" ]; then
  echo "tools: installing the KEDA and Prometheus Operator schemas from npm into $tools" >&2
  npm install --prefix "$tools" --no-audit --no-fund --silent @kubernetes-models/keda@2 @kubernetes-models/prometheus-operator@6 >&2
fi
export WITHDRAW_TOOLS_PYTHON="$tools/venv/bin/python"

