#!/usr/bin/env bash
# Sluice against nginx in alternating runs, so that other load on the machine hits both alike:
# requests/s and user/system CPU µs per request of each proxy in every round, then the totals.
# Same origins, same routing and forwarded headers, same number of workers. 127.0.0.1 only,
# bounded by ROUNDS x 2 runs of DURATION.
#
#   bash bench/alternate.sh                 # 4 rounds of 6 s, 2 workers, wrk -t2 -c64
#   ROUNDS=6 DURATION=10s SLUICE=/path/to/sluice bash bench/alternate.sh
set -euo pipefail

ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-6s}
WORKERS=${WORKERS:-2}
PORT_BASE=${PORT_BASE:-9600}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
scratch
require "wrk nginx" wrk nginx-light
sluice_binary

S=127.0.0.1:$((PORT_BASE + 10)) N=127.0.0.1:$((PORT_BASE + 11))
origins
start_sluice "$S"
nginx_conf "$work/nginx.conf" "$WORKERS" "$N"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
nginx_pid=$!
wait_listening "$O1" "$O2" "$S" "$N"

# User and system clock ticks of a process and its direct children.
ticks() {
  local user=0 system=0 p u s
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    read -r u s < <(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
    user=$((user + u)) system=$((system + s))
  done
  echo "$user $system"
}
hz=$(getconf CLK_TCK)

run() {
  local name=$1 addr=$2 pid=$3 u0 s0 u1 s1 out requests rps
  read -r u0 s0 < <(ticks "$pid")
  out=$(wrk -t2 -c64 -d"$DURATION" -H "Host: bench.local" "http://$addr/" 2>&1)
  read -r u1 s1 < <(ticks "$pid")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  awk -v n="$name" -v r="$rps" -v q="$requests" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" \
    'BEGIN {printf "| %-6s | %10s | %8.1f | %8.1f |\n", n, r, u / hz * 1e6 / q, s / hz * 1e6 / q}'
  echo "$name $rps" >> "$work/results"
}

echo "wrk -t2 -c64 -d$DURATION, $WORKERS workers each, $ROUNDS rounds"
printf '| %-6s | %10s | %8s | %8s |\n' proxy "requests/s" "user µs" "sys µs"
printf '|%s|%s|%s|%s|\n' "--------" "------------" "----------" "----------"
for _ in $(seq "$ROUNDS"); do
  run sluice "$S" "$sluice_pid"
  run nginx "$N" "$nginx_pid"
done
awk '{t[$1] += $2} END {printf "total requests/s: sluice %.0f, nginx %.0f, ratio %.2f\n", t["sluice"], t["nginx"], t["sluice"] / t["nginx"]}' "$work/results"
