#!/usr/bin/env bash
# Runs the README's grpcurl walkthrough, verbatim, against the built
# contract-service binary, and checks what it printed.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'kill "${server:-0}" "${feedback:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --bin contract-service --bin feedback-service --bin mint-token
target/debug/contract-service --dev --listen 127.0.0.1:50051 \
  --database-url "sqlite://$work/contract-service.db" >"$work/server.log" 2>&1 &
server=$!
target/debug/feedback-service --dev --listen 127.0.0.1:50052 \
  --database-url "sqlite://$work/feedback-service.db" >>"$work/server.log" 2>&1 &
feedback=$!
for port in 50051 50052; do
  for _ in $(seq 1 100); do
    grpcurl -plaintext "localhost:$port" list >/dev/null 2>&1 && break
    sleep 0.1
  done
done

sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md \
  | sed '/^```/d;/^<!--/d' >"$work/walkthrough.sh"
grep -q "FeedbackService" "$work/walkthrough.sh" || { echo "smoke: walkthrough blocks not found"; exit 1; }
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
expect '"state": "FEEDBACK_REQUEST_STATE_PENDING"'
expect '"eligible": true'
expect '"cohort": "COHORT_BASELINE"'
expect '"fulfilledRequestId": "frq_'
expect '"clientSubmitted": true'
expect '"revealed": true'
expect '"midContractFeedback"'
expect '"clientFeedback"'
# Read each page whole first: `curl | grep -q` under pipefail fails at
# random, since grep exits at its first match and curl's next write fails.
metrics=$(curl -fsS http://127.0.0.1:9101/metrics)
grep -q 'grpc_server_handled_total{grpc_code="OK",grpc_method="EndContract",grpc_service="marketplace.contract.v1.ContractService",grpc_type="unary"}' <<<"$metrics" \
  || { echo "smoke: contract-service metrics did not count EndContract"; exit 1; }
metrics=$(curl -fsS http://127.0.0.1:9102/metrics)
grep -q 'grpc_client_handled_total{grpc_code="OK",grpc_method="GetContract"' <<<"$metrics" \
  || { echo "smoke: feedback-service metrics did not count its calls to contract-service"; exit 1; }
# SIGTERM, as Kubernetes sends it: both binaries drain and exit 0.
for pid in "$server" "$feedback"; do
  kill -TERM "$pid"
  if ! wait "$pid"; then
    echo "smoke: a service did not exit cleanly on SIGTERM"
    cat "$work/server.log"
    exit 1
  fi
done
grep -q "received SIGTERM" "$work/server.log" || { echo "smoke: SIGTERM was not handled"; exit 1; }
echo "smoke: README walkthrough, metrics and SIGTERM OK"
