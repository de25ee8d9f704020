#!/usr/bin/env bash
# Load benchmark: requests/s and p99 latency through Sluice, nginx and HAProxy, and straight to
# the origin, in one run, on 127.0.0.1 only. Every proxy routes `Host: bench.local` to the same
# two origins (round robin, keep-alive to the origins) with the same number of worker threads.
#
#   bash bench/load.sh                 # 10 s per target, 2 wrk threads, 64 connections
#   DURATION=30s CONNECTIONS=128 bash bench/load.sh
#   CARGO_TARGET_DIR=/tmp/t bash bench/load.sh   # builds and runs Sluice from that target dir
#   SLUICE=/path/to/sluice bash bench/load.sh     # runs that binary, no build
#   PORT_BASE=19100 bash bench/load.sh            # other ports, when 9101-9112 are taken
#
# Besides requests/s and p99, every row shows the CPU time the proxy's processes used per request
# (user+system from /proc, all threads and worker processes): less sensitive to other load on the
# machine than requests/s.
#
# Needs wrk, nginx and haproxy (Debian packages; installed when missing and running as root).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}          # wrk threads
WORKERS=${WORKERS:-2}          # proxy worker threads/processes, the same for every proxy
ROUTERS=${ROUTERS:-1000}       # extra Host routers in Sluice's table, to show lookup cost does not matter
PORT_BASE=${PORT_BASE:-9100}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
scratch
require "wrk nginx haproxy" wrk nginx-light haproxy
sluice_binary

O1=127.0.0.1:$((PORT_BASE + 1)) O2=127.0.0.1:$((PORT_BASE + 2))
S=127.0.0.1:$((PORT_BASE + 10)) N=127.0.0.1:$((PORT_BASE + 11)) H=127.0.0.1:$((PORT_BASE + 12))

"$sluice" whoami --name o1 --listen $O1 >/dev/null 2>&1 & pids+=($!); origin_pid=$!
"$sluice" whoami --name o2 --listen $O2 >/dev/null 2>&1 & pids+=($!)

# Sluice
mkdir -p "$work/dynamic"
{
  echo "http:"
  echo "  routers:"
  echo "    bench:"
  echo "      rule: \"Host(\`bench.local\`)\""
  echo "      service: bench"
  # The same route behind a chain of five common middlewares (compress is configured but wrk
  # sends no Accept-Encoding, so nothing is compressed), to measure the chain's overhead.
  echo "    bench-chain:"
  echo "      rule: \"Host(\`bench-chain.local\`)\""
  echo "      middlewares: [headers, strip, limit, allow, compress]"
  echo "      service: bench"
  for i in $(seq 1 "$ROUTERS"); do
    echo "    r$i:"
    echo "      rule: \"Host(\`svc-$i.example.com\`) && PathPrefix(\`/api\`)\""
    echo "      service: bench"
  done
  echo "  middlewares:"
  echo "    headers:"
  echo "      headers: {customRequestHeaders: {X-Bench: chain}, customResponseHeaders: {X-Served-By: sluice}}"
  echo "    strip:"
  echo "      stripPrefix: {prefixes: [/api]}"
  echo "    limit:"
  echo "      rateLimit: {average: 100000000, burst: 100000000}"
  echo "    allow:"
  echo "      ipAllowList: {sourceRange: [127.0.0.1/32]}"
  echo "    compress:"
  echo "      compress: {}"
  echo "  services:"
  echo "    bench:"
  echo "      loadBalancer:"
  echo "        servers:"
  echo "          - url: \"http://$O1\""
  echo "          - url: \"http://$O2\""
} > "$work/dynamic/bench.yaml"
SLUICE_WORKERS=$WORKERS "$sluice" --entryPoints.web.address=$S \
  --providers.file.directory="$work/dynamic" --log.level=ERROR >"$work/sluice.log" 2>&1 & pids+=($!)
sluice_pid=$!

# nginx
nginx_conf "$work/nginx.conf" "$WORKERS" "$N"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
nginx_pid=$!

# HAProxy
cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread $WORKERS
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
  option forwardfor
frontend web
  bind $H
  acl bench hdr(host) -i bench.local
  use_backend bench if bench
backend bench
  balance roundrobin
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Server %[hostname]
  http-request set-header X-Real-IP %[src]
  server o1 $O1
  server o2 $O2
HAPROXY
haproxy -f "$work/haproxy.cfg" -q & pids+=($!)
haproxy_pid=$!

for addr in $O1 $O2 $S $N $H; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/${addr%:*}/${addr#*:}) 2>/dev/null && break; sleep 0.05; done
done
sleep 0.5

# CPU clock ticks (user + system) used so far by a process and its direct children.
ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    # Fields 14 and 15 (utime, stime), counted after the `(comm)` field, which may hold spaces.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

run() {
  local name=$1 addr=$2 pid=$3 host=${4:-bench.local} path=${5:-/} out before after
  before=$(ticks "$pid")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Host: $host" "http://$addr$path" 2>&1)
  after=$(ticks "$pid")
  local rps p99 errors requests cpu
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="${requests:-0}" \
    'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-"}')
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  printf '| %-14s | %12s | %9s | %13s | %s\n' "$name" "$rps" "$p99" "$cpu" "${errors:-}"
  echo "$name $rps" >> "$work/results"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, proxies with $WORKERS workers, Sluice with $ROUTERS extra routers"
printf '| %-14s | %12s | %9s | %13s |\n' target "requests/s" "p99" "CPU µs/req"
printf '|%s|%s|%s|%s|\n' "----------------" "--------------" "-----------" "---------------"
run "direct origin" $O1 "$origin_pid"
run "sluice" $S "$sluice_pid"
run "nginx" $N "$nginx_pid"
run "haproxy" $H "$haproxy_pid"
run "sluice+chain" $S "$sluice_pid" bench-chain.local /api/
awk '{r[$1]=$2} END {if (r["sluice+chain"]>0) printf "5-middleware chain: %.2f of plain sluice throughput\n", r["sluice+chain"]/r["sluice"]; if (r["nginx"]>0) printf "sluice/nginx throughput ratio: %.2f\n", r["sluice"]/r["nginx"]; if (r["haproxy"]>0) printf "sluice/haproxy throughput ratio: %.2f\n", r["sluice"]/r["haproxy"]}' "$work/results"
