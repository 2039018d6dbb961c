#!/usr/bin/env bash
# Renders every kustomize overlay under deploy/k8s/overlays and checks it:
#   1. `kubernetes-validate --strict` against the Kubernetes API schemas
#      (unknown fields and unknown kinds fail);
#   2. every liveness/readiness/startup probe port is a number, not a name;
#   3. house rules: hardened pods, no dev mode or test clock, no Secret
#      objects outside dev, prod keeps at least 3 pods per Deployment
#      (replicas or HPA minimum).
# Needs kubectl (for `kubectl kustomize`) and python3; installs
# kubernetes-validate into .ci/.tools/k8s-venv on first use.
#
#   bash .ci/k8s.sh                         # validate against 1.30 and 1.33
#   K8S_VERSIONS="1.31.0" bash .ci/k8s.sh   # other versions
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.ci/.tools/k8s-venv
overlay_root=deploy/k8s/overlays
# Oldest supported (native gRPC probes are GA since 1.27, the preStop sleep
# action is on by default since 1.30) and a current release.
read -r -a versions <<<"${K8S_VERSIONS:-1.30.0 1.33.0}"

echo "== tools"
command -v kubectl >/dev/null || { echo "k8s: kubectl not found" >&2; exit 1; }
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
echo "kubectl $(kubectl version --client 2>/dev/null | awk '/Client Version/ {print $3}'), kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

overlays=()
for dir in "$overlay_root"/*/; do
  [ -f "$dir/kustomization.yaml" ] && overlays+=("$(basename "$dir")")
done
[ "${#overlays[@]}" -gt 0 ] || { echo "k8s: no overlays under $overlay_root" >&2; exit 1; }

failed=()
summary=()
for name in "${overlays[@]}"; do
  rendered="$work/$name.yaml"
  echo "== $name: render"
  if ! kubectl kustomize "$overlay_root/$name" >"$rendered"; then
    failed+=("$name: kustomize render")
    summary+=("$name: RENDER FAILED")
    continue
  fi

  echo "== $name: kubernetes-validate --strict (${versions[*]})"
  args=()
  for v in "${versions[@]}"; do args+=(-k "$v"); done
  status=OK
  if ! "$venv/bin/kubernetes-validate" --strict --quiet "${args[@]}" "$rendered" >"$work/$name.validate" 2>&1; then
    status=FAILED
    failed+=("$name: schema validation")
  fi
  # A kind without a schema is only a warning to the tool; here it is an error.
  if grep -q '^WARN' "$work/$name.validate"; then
    status=FAILED
    failed+=("$name: unknown kind or apiVersion")
  fi
  sed 's/^/   /' "$work/$name.validate"

  echo "== $name: probes and house rules"
  if ! report=$("$venv/bin/python" - "$rendered" "$name" <<'PY'
import sys
import yaml

path, overlay = sys.argv[1], sys.argv[2]
with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]

errors = []
probes = 0
kinds = {}
pod_kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
# Dev-only switches: the public dev signing key and the movable test clock.
FORBIDDEN_ENV = {"DEV_MODE", "TEST_CLOCK"}
FORBIDDEN_FLAGS = {"--dev", "--test-clock"}


def where(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_spec(doc):
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind in pod_kinds:
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


hpa_min = {}
for doc in docs:
    kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    if doc["kind"] == "HorizontalPodAutoscaler":
        ref = doc["spec"]["scaleTargetRef"]
        hpa_min[(ref["kind"], ref["name"])] = doc["spec"].get("minReplicas", 1)

for doc in docs:
    name = where(doc)
    if doc["kind"] == "Secret" and overlay != "dev":
        errors.append(f"{name}: Secret objects belong outside git (reference them by name)")
    spec = pod_spec(doc)
    if spec is None:
        continue
    pod_sc = spec.get("securityContext") or {}
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errors.append(f"{name}: pod seccompProfile must be RuntimeDefault")
    if pod_sc.get("runAsNonRoot") is not True:
        errors.append(f"{name}: pod runAsNonRoot must be true")
    if spec.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken must be false")
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        cname = f"{name} container {c['name']}"
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(probe_name)
            if not probe:
                continue
            for handler in ("grpc", "httpGet", "tcpSocket"):
                if handler in probe:
                    probes += 1
                    port = probe[handler].get("port")
                    if not isinstance(port, int) or isinstance(port, bool):
                        errors.append(f"{cname}: {probe_name}.{handler}.port is {port!r}, not a number")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{cname}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{cname}: readOnlyRootFilesystem must be true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{cname}: capabilities must drop ALL")
        for env in c.get("env", []):
            if env["name"] in FORBIDDEN_ENV:
                errors.append(f"{cname}: {env['name']} must not be set in Kubernetes")
            if env["name"] == "DATABASE_URL" and "valueFrom" not in env:
                errors.append(f"{cname}: DATABASE_URL must come from a Secret")
        for a in c.get("args", []) + c.get("command", []):
            if a.split("=", 1)[0] in FORBIDDEN_FLAGS:
                errors.append(f"{cname}: {a} must not be used in Kubernetes")
    if doc["kind"] == "Deployment" and overlay == "prod":
        replicas = doc["spec"].get("replicas")
        floor = hpa_min.get(("Deployment", doc["metadata"]["name"]))
        if not ((replicas or 0) >= 3 or (floor or 0) >= 3):
            errors.append(f"{name}: prod needs at least 3 pods (replicas {replicas}, HPA minimum {floor})")
        if replicas is not None and floor is not None:
            errors.append(f"{name}: spec.replicas is set although an HPA scales it")

for doc in docs:
    if doc["kind"] == "ConfigMap":
        for key in (doc.get("data") or {}):
            if key in FORBIDDEN_ENV:
                errors.append(f"{where(doc)}: {key} must not be set in Kubernetes")

for e in errors:
    print(f"ERROR {e}")
print(f"{len(docs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); {probes} probe ports numeric" if not errors else f"{len(errors)} rule violation(s)")
sys.exit(1 if errors else 0)
PY
  ); then
    status=FAILED
    failed+=("$name: probes/house rules")
  fi
  echo "$report" | sed 's/^/   /'
  summary+=("$name: $status; $(echo "$report" | tail -n 1)")
done

echo
echo "== summary (Kubernetes ${versions[*]})"
for line in "${summary[@]}"; do echo "  $line"; done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "k8s: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "k8s: all ${#overlays[@]} overlays render and validate"
