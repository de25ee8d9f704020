#!/usr/bin/env bash
# A/B of two Sluice binaries on the same origins, alternating runs so that other load on the
# machine hits both alike: requests/s and the proxy's CPU time per request (user+system from
# /proc). 127.0.0.1 only, bounded by ROUNDS x 2 runs of DURATION.
#
#   bash bench/compare.sh OLD_BINARY NEW_BINARY
#   ROUNDS=5 DURATION=10s bash bench/compare.sh a b
set -euo pipefail
A=$1 B=$2
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5s} PORT_BASE=${PORT_BASE:-9300}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
require wrk wrk
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
O1=127.0.0.1:$((PORT_BASE + 1)) O2=127.0.0.1:$((PORT_BASE + 2))
mkdir -p "$work/dynamic"
bench_routes "$work/dynamic/bench.yaml" "$O1" "$O2"
"$A" whoami --name o1 --listen "$O1" >/dev/null 2>&1 & pids+=($!)
"$A" whoami --name o2 --listen "$O2" >/dev/null 2>&1 & pids+=($!)
start() {
  SLUICE_WORKERS=2 "$1" --entryPoints.web.address="127.0.0.1:$2" \
    --providers.file.directory="$work/dynamic" --log.level=ERROR >/dev/null 2>&1 &
  pids+=($!)
  echo $!
}
pa=$(start "$A" $((PORT_BASE + 10)))
pb=$(start "$B" $((PORT_BASE + 11)))
sleep 1
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "| round | binary | requests/s | CPU µs/request |"
echo "| --- | --- | --- | --- |"
for round in $(seq "$ROUNDS"); do
  for which in A B; do
    if [ $which = A ]; then pid=$pa port=$((PORT_BASE + 10)); else pid=$pb port=$((PORT_BASE + 11)); fi
    before=$(cpu "$pid")
    out=$(wrk -t2 -c64 -d"$DURATION" -H 'Host: bench.local' "http://127.0.0.1:$port/")
    after=$(cpu "$pid")
    requests=$(awk '/requests in/{print $1}' <<<"$out")
    rate=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    per=$(awk -v a="$after" -v b="$before" -v t="$ticks" -v n="$requests" 'BEGIN{printf "%.1f", (a-b)*1e6/t/n}')
    echo "| $round | $which | $rate | $per |"
  done
done
