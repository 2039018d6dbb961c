#!/usr/bin/env bash
# Runs the README's grpcurl walkthrough, verbatim, against the built
# contract-service binary, and checks what it printed.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --bin contract-service --bin mint-token
target/debug/contract-service --dev --listen 127.0.0.1:50051 \
  --database-url "sqlite://$work/contract-service.db" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  grpcurl -plaintext localhost:50051 list >/dev/null 2>&1 && break
  sleep 0.1
done

sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md \
  | sed '/^```/d;/^<!--/d' >"$work/walkthrough.sh"
bash -euo pipefail "$work/walkthrough.sh" >"$work/out.txt" 2>&1 || {
  cat "$work/out.txt" "$work/server.log"
  exit 1
}
cat "$work/out.txt"

expect() {
  grep -q -- "$1" "$work/out.txt" || { echo "smoke: expected output to contain: $1"; cat "$work/server.log"; exit 1; }
}
expect "marketplace.contract.v1.ContractService"
expect '"status": "SERVING"'
expect "contract: ctr_"
expect '"billableMinutes": 10'
expect '"state": "CONTRACT_STATE_ENDED"'
expect "Code: FailedPrecondition"
expect "Work Diary is locked"
expect "WORK_DIARY_LOCKED"
expect '"locked": true'
echo "smoke: README walkthrough OK"
