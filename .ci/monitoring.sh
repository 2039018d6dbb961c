#!/usr/bin/env bash
# Checks deploy/monitoring: the PrometheusRule's rules with `promtool check
# rules`, every alert with `promtool test rules` (deploy/monitoring/tests.yaml),
# the house rules below, the Grafana dashboard JSON, and the kustomization.
#
#   bash .ci/monitoring.sh               # all checks (installs promtool if missing)
#   bash .ci/monitoring.sh install       # only make sure promtool and prometheus exist
#   bash .ci/monitoring.sh extract FILE  # the PrometheusRule's .spec as a plain rule file
#   bash .ci/monitoring.sh metric-names  # metrics the rules read (recorded ones left out)
#
# The PrometheusRule is the one copy of the rules; promtool (and the smoke
# run's Prometheus) read the plain file extracted from it, so the two cannot
# drift. House rules: every alert has a severity (page or ticket), summary,
# description and a runbook_url whose anchor is a heading in
# docs/operations.md; every alert has a unit test in which it fires and one
# in which it does not; every recorded name the dashboard uses is recorded;
# the ServiceMonitor selects both Services and their metrics port.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=deploy/monitoring
rule_crd=$dir/prometheusrule.yaml
tools="$PWD/.ci/.tools"

install_prometheus() {
  command -v promtool >/dev/null && command -v prometheus >/dev/null && return 0
  echo "monitoring: installing Debian's prometheus package (promtool)" >&2
  # The package's maintainer scripts would start a prometheus daemon where an
  # init system runs; policy-rc.d 101 tells invoke-rc.d not to.
  local policy=/usr/sbin/policy-rc.d added=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    added=1
  fi
  local status=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || status=$?
  [ -z "$added" ] || rm -f "$policy"
  [ "$status" -eq 0 ] || { echo "monitoring: apt-get install prometheus failed" >&2; return 1; }
  # Should a daemon have started anyway (systemd), stop it: nothing here needs one.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

# A python3 with PyYAML: the system one, the k8s.sh venv, or a venv made here.
python_yaml() {
  local py
  for py in python3 "$tools/k8s-venv/bin/python" "$tools/venv/bin/python"; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' 2>/dev/null; then
      echo "$py"
      return
    fi
  done
  [ -x "$tools/venv/bin/python" ] || python3 -m venv "$tools/venv" >&2
  "$tools/venv/bin/pip" install -q pyyaml >&2
  echo "$tools/venv/bin/python"
}

# Python helpers: extract, metric-names, house-rules.
helpers() {
  "$(python_yaml)" - "$@" <<'PY'
import json
import os
import re
import sys

import yaml

mode, args = sys.argv[1], sys.argv[2:]
RULE_CRD = "deploy/monitoring/prometheusrule.yaml"


def load_crd():
    with open(RULE_CRD) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if len(docs) != 1 or docs[0].get("kind") != "PrometheusRule" \
            or docs[0].get("apiVersion") != "monitoring.coreos.com/v1":
        sys.exit(f"{RULE_CRD}: expected one monitoring.coreos.com/v1 PrometheusRule")
    return docs[0]


def rules(crd):
    for group in crd["spec"]["groups"]:
        for rule in group["rules"]:
            yield group["name"], rule


class Dumper(yaml.SafeDumper):
    pass


def str_presenter(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


Dumper.add_representer(str, str_presenter)

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan", "sum", "min", "max", "avg",
    "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
}


def metric_names(expr):
    """Metric names an expression reads (a regex approximation of PromQL)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr):
        if m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


crd = load_crd()

if mode == "extract":
    out = {"groups": crd["spec"]["groups"]}
    with open(args[0], "w") as f:
        f.write(f"# Generated from {RULE_CRD} by .ci/monitoring.sh; do not edit.\n")
        yaml.dump(out, f, Dumper=Dumper, sort_keys=False, width=1000)
    sys.exit(0)

recorded = {r["record"] for _, r in rules(crd) if "record" in r}

if mode == "metric-names":
    used = set()
    for _, r in rules(crd):
        used |= metric_names(r["expr"])
    print("\n".join(sorted(used - recorded)))
    sys.exit(0)

assert mode == "house-rules", mode
errors = []

with open("docs/operations.md") as f:
    anchors = {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", f.read(), re.M)}
with open("deploy/monitoring/tests.yaml") as f:
    tests = yaml.safe_load(f)
fires, quiet = set(), set()
for t in tests["tests"]:
    for case in t.get("alert_rule_test") or []:
        (fires if case.get("exp_alerts") else quiet).add(case["alertname"])

names = []
alerts = []
for group, r in rules(crd):
    name = r.get("alert") or r.get("record")
    names.append(name)
    if "record" in r:
        if r["record"].count(":") != 2:
            errors.append(f"recording rule {name}: name it level:metric:operations")
        continue
    alerts.append(name)
    labels, ann = r.get("labels") or {}, r.get("annotations") or {}
    if labels.get("severity") not in ("page", "ticket"):
        errors.append(f"alert {name}: labels.severity must be page or ticket")
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            errors.append(f"alert {name}: annotation {key} missing")
    url = ann.get("runbook_url", "")
    if "docs/operations.md#" not in url:
        errors.append(f"alert {name}: runbook_url must point into docs/operations.md")
    elif url.split("#", 1)[1] not in anchors:
        errors.append(f"alert {name}: runbook anchor #{url.split('#', 1)[1]} is no heading in docs/operations.md")
    if name not in fires:
        errors.append(f"alert {name}: no test in tests.yaml where it fires")
    if name not in quiet:
        errors.append(f"alert {name}: no test in tests.yaml where it stays quiet (exp_alerts: [])")
dupes = sorted({n for n in names if names.count(n) > 1 and n in recorded})
if dupes:
    errors.append(f"recording rules defined twice: {dupes}")
for name in sorted((fires | quiet) - set(alerts)):
    errors.append(f"tests.yaml tests {name}, which is no alert")

# The dashboard: valid JSON, and every recorded name it uses is recorded.
with open("deploy/monitoring/dashboard.json") as f:
    dashboard = json.load(f)
exprs = []
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            exprs.append(node["expr"])
        if isinstance(node.get("query"), str):
            exprs.append(node["query"])
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)
walk(dashboard)
for expr in exprs:
    for n in metric_names(re.sub(r"\$\{?\w+\}?", "x", expr)):
        if ":" in n and n not in recorded:
            errors.append(f"dashboard.json uses {n}, which no rule records")

# The ServiceMonitor selects both Services and names their metrics port.
with open("deploy/monitoring/servicemonitor.yaml") as f:
    sm = yaml.safe_load(f)
want = sm["spec"]["selector"]["matchLabels"]
ports = {e["port"] for e in sm["spec"]["endpoints"]}
for svc_name in ("contract-service", "feedback-service"):
    with open(f"deploy/k8s/base/{svc_name}/service.yaml") as f:
        svc = yaml.safe_load(f)
    have = svc["metadata"].get("labels") or {}
    if any(have.get(k) != v for k, v in want.items()):
        errors.append(f"servicemonitor.yaml: selector {want} does not select Service {svc_name} ({have})")
    missing = ports - {p.get("name") for p in svc["spec"]["ports"]}
    if missing:
        errors.append(f"servicemonitor.yaml: Service {svc_name} has no port named {sorted(missing)}")

for e in errors:
    print(f"ERROR {e}")
if errors:
    sys.exit(1)
print(f"{len(alerts)} alerts, {len(recorded)} recording rules; every alert tested firing and quiet, "
      f"with severity, summary, description and a runbook anchor; {len(exprs)} dashboard queries")
PY
}

case "${1:-check}" in
  install) install_prometheus; exit ;;
  extract) helpers extract "${2:?usage: monitoring.sh extract FILE}"; exit ;;
  metric-names) helpers metric-names; exit ;;
  check) ;;
  *) echo "usage: $0 [install | extract FILE | metric-names]" >&2; exit 2 ;;
esac

echo "== tools"
install_prometheus
promtool --version 2>&1 | head -n 1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== promtool check rules (.spec of $rule_crd)"
helpers extract "$work/rules.yaml"
cp "$dir/tests.yaml" "$work/tests.yaml"
promtool check rules "$work/rules.yaml"

echo "== promtool test rules ($dir/tests.yaml)"
promtool test rules "$work/tests.yaml"

echo "== dashboard JSON"
python3 -m json.tool "$dir/dashboard.json" >/dev/null
echo "$dir/dashboard.json parses"

echo "== house rules (severity, annotations, runbook anchors, every alert tested, dashboard names, ServiceMonitor selector)"
helpers house-rules

echo "== kustomize"
if command -v kubectl >/dev/null; then
  kubectl kustomize "$dir" >"$work/rendered.yaml"
  echo "$(grep -c '^kind:' "$work/rendered.yaml") objects: $(grep '^kind:' "$work/rendered.yaml" | awk '{print $2}' | sort | tr '\n' ' ')"
else
  echo "kubectl not found; skipped"
fi
echo "monitoring: rules, tests, dashboard and manifests OK"
