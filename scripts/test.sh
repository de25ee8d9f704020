#!/usr/bin/env bash
# The whole test suite. Installs what the tests need on a fresh Debian machine, then runs them.
# Conformance tests read ../shared/conformance when it exists beside the checkout and print
# plainly that they were skipped when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
# The ACME tests run a real pebble; they print "skipped" without it.
if ! command -v pebble >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update && apt-get install -y pebble
fi
# --nocapture shows the figures the tests measure (conformance counts, RSS, reload latency).
cargo test --workspace --all-targets -- --nocapture
# Deployment manifests and the Helm chart through kubectl (client-side dry run). Renders the
# chart with scripts/render-chart.go when helm is absent; installs Go and the two libraries it
# needs from Debian when possible, else that part says it was skipped.
if ! command -v helm >/dev/null && ! command -v go >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq >/dev/null 2>&1 || true; }
  apt-get install -y -qq golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev >/dev/null 2>&1 \
    || echo "validate-deploy: could not install Go from Debian; the chart check will be skipped"
fi
bash scripts/validate-deploy.sh
