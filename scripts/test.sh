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
