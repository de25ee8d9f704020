#!/usr/bin/env bash
# Validates deploy/: every manifest with `kubectl apply --dry-run=client`, and the Helm chart
# rendered (`helm template`, or scripts/render-chart.go when helm is absent) then dry-run the
# same way. No cluster is needed: kubectl talks to a local discovery stub through a throwaway
# kubeconfig (scripts/kube-discovery-stub.py), so schema validation is off (--validate=false).
# Skips, saying so, when kubectl or python3 is missing; skips the chart when neither helm nor
# go (with Debian's golang-github-masterminds-sprig-dev and golang-gopkg-yaml.v3-dev) is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kubectl >/dev/null || ! command -v python3 >/dev/null; then
  echo "validate-deploy: SKIPPED (kubectl or python3 not installed)"
  exit 0
fi
work=$(mktemp -d)
python3 scripts/kube-discovery-stub.py "$work/port" &
stub=$!
trap 'kill "$stub" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
cat > "$work/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: stub, cluster: {server: "http://127.0.0.1:$port"}}]
users: [{name: stub, user: {}}]
contexts: [{name: stub, context: {cluster: stub, user: stub}}]
current-context: stub
KUBECONFIG
dry_run() {
  KUBECONFIG="$work/kubeconfig" kubectl apply --dry-run=client --validate=false -f "$1" >"$work/out" 2>&1 \
    || { cat "$work/out"; echo "validate-deploy: FAILED on $1"; exit 1; }
  echo "validate-deploy: $1: $(grep -c 'created (dry run)' "$work/out") objects OK"
}
for f in deploy/*.yaml deploy/daemonset/*.yaml deploy/crds/*.yaml; do
  dry_run "$f"
done

chart=deploy/helm/sluice
if command -v helm >/dev/null; then
  helm template sluice "$chart" --namespace sluice >"$work/chart.yaml"
  helm template sluice "$chart" --namespace sluice --set kind=DaemonSet --set acme.enabled=true >"$work/chart-ds.yaml"
elif command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/Masterminds/sprig ]; then
  render() { GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/render-chart.go "$@"; }
  render "$chart" >"$work/chart.yaml"
  printf 'kind: DaemonSet\nacme:\n  enabled: true\n  resolvers:\n    le:\n      acme:\n        email: ops@example.com\n        tlsChallenge: {}\n' >"$work/ds.yaml"
  render "$chart" "$work/ds.yaml" >"$work/chart-ds.yaml"
else
  echo "validate-deploy: chart SKIPPED (neither helm nor go with sprig/yaml.v3 installed)"
  exit 0
fi
dry_run "$work/chart.yaml"
dry_run "$work/chart-ds.yaml"
grep -q "kind: DaemonSet" "$work/chart-ds.yaml" || { echo "validate-deploy: kind=DaemonSet not rendered"; exit 1; }
grep -q "resources: \[secrets\]" "$work/chart-ds.yaml" || { echo "validate-deploy: ACME secret access not rendered"; exit 1; }
echo "validate-deploy: OK"
