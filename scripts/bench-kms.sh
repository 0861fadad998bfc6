#!/usr/bin/env bash
# What signing in AWS KMS costs: the same bench twice in one run on one anvil, first with
# the hot wallet's key in this process (anvil's dev key), then with the key in KMS (moto's,
# through scripts/moto-server.py). Compare the two runs' "signed" rates.
#   scripts/bench-kms.sh [--count N] [--concurrency C] [...]   (arguments go to `withdrawd bench`)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
cargo build --release -p withdrawd >&2
BENCH_LOG=${BENCH_LOG:-/tmp/withdrawd-bench-kms.log}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

moto_port=$(free_port)
"$MOTO_SERVER_BIN" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$moto_port"
start_anvil

echo "== local key (in this process)"
data_name=local run_bench -- "$@"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
"$tools/venv/bin/python" - "$moto_port" <<'PY'
import sys, boto3
kms = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
key = kms.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/bench-hot", TargetKeyId=key)
PY
cat >"$work/kms.toml" <<TOML
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:$moto_port"

[[signer.kms_keys]]
key_id = "alias/bench-hot"
TOML
echo "== key in KMS (moto)"
data_name=kms start_withdrawd --config "$work/kms.toml"
# The KMS wallet is new: fund it before the bench (the signer holds work while it is dry).
wallet=""
for _ in $(seq 1 100); do
  wallet=$(curl -sf -H "Authorization: Bearer ${WITHDRAW_DEV_ADMIN_TOKEN:-dev-admin-token}" "http://$admin/admin/v1/hot-wallets" |
    python3 -c 'import json,sys; w=json.load(sys.stdin); print(w[0]["wallet"] if w else "")' || true)
  [ -n "$wallet" ] && break
  sleep 0.1
done
[ -n "$wallet" ] || { echo "bench: the KMS wallet never showed in /admin/v1/hot-wallets" >&2; exit 1; }
curl -sf -H 'content-type: application/json' \
  -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"anvil_setBalance\",\"params\":[\"$wallet\",\"0x33B2E3C9FD0803CE8000000\"]}" "$anvil_url" >/dev/null
bench_started "$@"
