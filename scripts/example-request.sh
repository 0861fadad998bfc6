#!/usr/bin/env bash
# Submits one withdrawal to a running `withdrawd dev` with curl, signing it the way every
# client must: HMAC-SHA256 over "{timestamp}\n{METHOD}\n{path}\n{idempotency_key}\n{body}"
# with the client's secret, lowercase hex (path with its query string; the key empty when the
# request has none). Then fetches its status.
#   scripts/example-request.sh [idempotency-key]
set -euo pipefail
INTAKE="${INTAKE:-http://127.0.0.1:8080}"
ADMIN="${ADMIN:-http://127.0.0.1:8081}"
SECRET="${WITHDRAW_DEV_HMAC_SECRET:-dev-secret}"
TOKEN="${WITHDRAW_DEV_ADMIN_TOKEN:-dev-admin-token}"
KEY="${1:-order-$(date +%s%N)}"

# Give the user something to withdraw (admin API, operator token; idempotent per key).
curl -sf -X POST "$ADMIN/admin/v1/balances/credit" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -H "idempotency-key: credit-$KEY" \
  -d '{"user_id":"alice","asset":"ETH","amount":"1","reason":"example deposit"}' >/dev/null

BODY='{"user_id":"alice","asset":"ETH","chain_id":31337,"to":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","amount":"0.25"}'
TS=$(date +%s)
SIG=$(printf '%s\n%s\n%s\n%s\n%s' "$TS" POST /v1/withdrawals "$KEY" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -hex | sed 's/^.* //')
ANSWER=$(curl -sf -X POST "$INTAKE/v1/withdrawals" \
  -H 'content-type: application/json' -H 'x-api-key: dev' \
  -H "x-timestamp: $TS" -H "x-signature: $SIG" -H "idempotency-key: $KEY" \
  -d "$BODY")
echo "$ANSWER"
ID=$(echo "$ANSWER" | sed 's/.*"id":"\([^"]*\)".*/\1/')

sleep 2
TS=$(date +%s)
SIG=$(printf '%s\n%s\n%s\n%s\n%s' "$TS" GET "/v1/withdrawals/$ID" "" "" | openssl dgst -sha256 -hmac "$SECRET" -hex | sed 's/^.* //')
curl -sf "$INTAKE/v1/withdrawals/$ID" -H 'x-api-key: dev' -H "x-timestamp: $TS" -H "x-signature: $SIG"
echo
