#!/usr/bin/env bash
# Runs the README's grpcurl walkthrough, verbatim, against the built
# contract-service binary, and checks what it printed; a real Prometheus
# scrapes both services meanwhile, with the rules of deploy/monitoring.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'kill "${server:-0}" "${feedback:-0}" "${nats:-0}" 2>/dev/null || true; if [ -n "${prom:-}" ]; then kill "$prom" 2>/dev/null; wait "$prom" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

cargo build --bin contract-service --bin feedback-service --bin mint-token
# A JetStream server: both services relay their events to it (--nats-url).
PATH="$PATH:/usr/sbin"
nats_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
nats=$!
target/debug/contract-service --dev --listen 127.0.0.1:50051 --nats-url "nats://127.0.0.1:$nats_port" \
  --database-url "sqlite://$work/contract-service.db" >"$work/server.log" 2>&1 &
server=$!
target/debug/feedback-service --dev --listen 127.0.0.1:50052 --nats-url "nats://127.0.0.1:$nats_port" \
  --database-url "sqlite://$work/feedback-service.db" >>"$work/server.log" 2>&1 &
feedback=$!
for port in 50051 50052; do
  for _ in $(seq 1 100); do
    grpcurl -plaintext "localhost:$port" list >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# A real Prometheus scrapes both services every second, with the rules of
# deploy/monitoring loaded, while the walkthrough runs (checked below).
command -v prometheus >/dev/null || bash .ci/monitoring.sh install
bash .ci/monitoring.sh extract "$work/rules.yaml"
bash .ci/monitoring.sh metric-names >"$work/rule-metrics.txt"
prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $work/rules.yaml
scrape_configs:
  - job_name: contract-service
    static_configs:
      - targets: ["127.0.0.1:9101"]
        labels: {app: contract-service, namespace: smoke}
  - job_name: feedback-service
    static_configs:
      - targets: ["127.0.0.1:9102"]
        labels: {app: feedback-service, namespace: smoke}
EOF
# walkthrough NAME MUST_MENTION OUT LOG: runs the README's shell blocks between
# <!-- NAME:start --> and <!-- NAME:end -->, printing OUT (and LOG on failure).
walkthrough() {
  sed -n "/<!-- $1:start -->/,/<!-- $1:end -->/p" README.md | sed '/^```/d;/^<!--/d' >"$work/$1.sh"
  grep -q "$2" "$work/$1.sh" || { echo "smoke: README block $1 not found"; exit 1; }
  bash -euo pipefail "$work/$1.sh" >"$3" 2>&1 || { cat "$3" "$4"; exit 1; }
  cat "$3"
}

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom=$!

walkthrough walkthrough FeedbackService "$work/out.txt" "$work/server.log"

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
expect '"unadjustedAmount"'
expect '"state": "FEEDBACK_REQUEST_STATE_PENDING"'
expect '"eligible": true'
expect '"cohort": "COHORT_BASELINE"'
expect '"fulfilledRequestId": "frq_'
expect '"clientSubmitted": true'
expect '"revealed": true'
expect '"midContractFeedback"'
expect '"clientFeedback"'
expect '"userId": "freelancer-1"'
expect '"type": "MODERATION_ACTION_TYPE_HIDE"'
expect '"removedBySupport": true'
# Read each page whole first: `curl | grep -q` under pipefail fails at
# random, since grep exits at its first match and curl's next write fails.
metrics=$(curl -fsS http://127.0.0.1:9101/metrics)
grep -q 'grpc_server_handled_total{grpc_code="OK",grpc_method="EndContract",grpc_service="marketplace.contract.v1.ContractService",grpc_type="unary"}' <<<"$metrics" \
  || { echo "smoke: contract-service metrics did not count EndContract"; exit 1; }
metrics=$(curl -fsS http://127.0.0.1:9102/metrics)
grep -q 'grpc_client_handled_total{grpc_code="OK",grpc_method="GetContract"' <<<"$metrics" \
  || { echo "smoke: feedback-service metrics did not count its calls to contract-service"; exit 1; }
# A WatchEvents consumer on each service (the walkthrough has none): each
# reports the last sequence it was sent as outbox_consumer_sequence{consumer},
# which EventConsumerLagHigh reads. grpcurl stops at its -max-time.
WATCHER=$(cargo run -q --bin mint-token -- --sub smoke-watcher --scope events:read)
for port in 50051 50052; do
  case $port in
    50051) method=marketplace.contract.v1.ContractService/WatchEvents metrics_port=9101 ;;
    50052) method=marketplace.feedback.v1.FeedbackService/WatchEvents metrics_port=9102 ;;
  esac
  grpcurl -plaintext -max-time 2 -H "authorization: Bearer $WATCHER" \
    -d '{"after_sequence": 0}' "localhost:$port" "$method" >"$work/watch.txt" 2>&1 || true
  grep -q '"sequence"' "$work/watch.txt" || { echo "smoke: $method sent no event"; cat "$work/watch.txt"; exit 1; }
  if [ "$port" = 50052 ]; then
    grep -q NOTIFICATION_KIND_END_FEEDBACK_PROMPT "$work/watch.txt" \
      || { echo "smoke: feedback-service prompted nobody when the contracts ended"; exit 1; }
  fi
  metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")
  grep -q 'outbox_consumer_sequence{consumer="smoke-watcher"}' <<<"$metrics" \
    || { echo "smoke: $method did not report outbox_consumer_sequence for its consumer"; exit 1; }
done
# The NATS relay of each service is connected and has published up to the
# outbox head (outbox_consumer_sequence{consumer="jetstream:<stream>"}).
for metrics_port in 9101 9102; do
  relayed=""
  for _ in $(seq 1 50); do
    metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")
    head=$(awk '$1 == "outbox_last_sequence" {print $2}' <<<"$metrics")
    relayed=$(awk '$1 ~ /^outbox_consumer_sequence\{consumer="jetstream:MARKETPLACE_/ {print $2}' <<<"$metrics")
    grep -q '^nats_relay_connected 1' <<<"$metrics" && [ -n "$relayed" ] && [ "$relayed" = "$head" ] && [ "$relayed" != 0 ] && break
    relayed=""
    sleep 0.2
  done
  [ -n "$relayed" ] || { echo "smoke: the NATS relay on :$metrics_port is not connected or behind the outbox head"; grep -i nats "$work/server.log" | tail -5; exit 1; }
  echo "smoke: :$metrics_port relayed events 1..$relayed to NATS JetStream"
done
# Prometheus: `sum by (job) (grpc_server_handled_total)` has both jobs, every
# rule evaluates without error, recorded series exist for both services, and
# every metric the rules read is exported (but those listed as not yet).
not_yet_exported=""
cat >"$work/prometheus_check.py" <<'PY'
import json
import sys
import urllib.parse
import urllib.request

base, names_file, not_yet = sys.argv[1], sys.argv[2], set(sys.argv[3].split())


def api(path, **params):
    url = f"{base}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]


def labels(query, label):
    return {s["metric"].get(label) for s in api("query", query=query)["result"]}


both = {"contract-service", "feedback-service"}
jobs = {s["metric"].get("job"): s["value"][1]
        for s in api("query", query="sum by (job) (grpc_server_handled_total)")["result"]}
if not both <= jobs.keys():
    sys.exit(f"sum by (job) (grpc_server_handled_total) has jobs {sorted(jobs)}")
rules = [r for g in api("rules")["groups"] for r in g["rules"]]
bad = [f"{r['name']}: {r.get('lastError') or r['health']}" for r in rules if r["health"] != "ok"]
if not rules or bad:
    sys.exit(f"rules not evaluating: {bad[:3] or 'none loaded'}")
for name, want in [
    ("app:grpc_server_requests:rate5m", both),
    ("app:slo_availability_errors:ratio_rate5m", both),
    ("app:slo_latency_slow:ratio_rate5m", both),
    ("app:outbox_sequenced_events:deriv10m", both),
    ("app_grpc_method:grpc_client_requests:rate5m", {"feedback-service"}),
]:
    if not want <= labels(name, "app"):
        sys.exit(f"recorded {name} has no series for {sorted(want - labels(name, 'app'))}")
exported = set(api("label/__name__/values"))
used = {n for n in open(names_file).read().split() if not n.startswith("kube_")}
missing = sorted(used - exported - not_yet)
if missing:
    print(f"smoke: the rules read metrics no service exports: {missing}")
    sys.exit(2)
for n in sorted(not_yet & exported):
    print(f"smoke: {n} is exported now: take it out of not_yet_exported in .ci/smoke.sh")
print(f"smoke: Prometheus scraped both services (calls handled: "
      f"{', '.join(f'{j} {jobs[j]}' for j in sorted(both))}); {len(rules)} rules evaluate; "
      f"{len(used & exported)} metrics the rules read are exported, not yet: {', '.join(sorted(not_yet - exported)) or 'none'}")
PY
prom_status=1
for _ in $(seq 1 60); do
  prom_status=0
  python3 "$work/prometheus_check.py" "http://127.0.0.1:$prom_port" "$work/rule-metrics.txt" "$not_yet_exported" \
    >"$work/prometheus_check.out" 2>&1 || prom_status=$?
  # 2: a metric is missing, which waiting does not fix.
  [ "$prom_status" -eq 0 ] || [ "$prom_status" -eq 2 ] && break
  sleep 0.5
done
cat "$work/prometheus_check.out"
if [ "$prom_status" -ne 0 ]; then
  echo "smoke: Prometheus check failed (it waits up to 30 s for the scrape); its log:"
  tail -n 20 "$work/prometheus.log"
  exit 1
fi
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
# The test-clock walkthrough (disputes) against contract-service with
# --test-clock on a fresh database.
target/debug/contract-service --dev --test-clock --listen 127.0.0.1:50051 \
  --database-url "sqlite://$work/contract-clock.db" >"$work/clock-server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  grpcurl -plaintext localhost:50051 list >/dev/null 2>&1 && break
  sleep 0.1
done
walkthrough walkthrough-test-clock TestClockService "$work/clock-out.txt" "$work/clock-server.log"
for want in "dispute: dsp_" '"state": "DISPUTE_STATE_RESOLVED"' '"acceptedMinutes": 10' '"disputeAdjustment"'; do
  grep -q -- "$want" "$work/clock-out.txt" || { echo "smoke: test-clock walkthrough did not print: $want"; exit 1; }
done
kill -TERM "$server"
wait "$server" || true
echo "smoke: README walkthrough, metrics, Prometheus scrape and rules, and SIGTERM OK"
