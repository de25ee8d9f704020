#!/usr/bin/env bash
# User-space instructions per proxied request, Sluice against nginx, counted by valgrind's
# callgrind: unlike requests/s and CPU time, the count does not move with other load on the
# machine, so small changes to the request path show. Kernel time is not counted (see load.sh for
# the whole cost). 127.0.0.1 only, a fixed number of requests.
#
#   bash bench/instructions.sh                  # 4000 requests over 8 connections, each proxy
#   REQUESTS=10000 bash bench/instructions.sh
#   SLUICE=/path/to/sluice bash bench/instructions.sh   # that binary, no build
#
# Both proxies run one worker under callgrind and route `Host: bench.local` to two whoami
# origins, sending the same forwarded headers; h2load (HTTP/1.1, keep-alive) is the client. The
# counters are zeroed after a warm-up of 500 requests.
#
# Needs valgrind, h2load (nghttp2-client) and nginx (Debian packages; installed when missing and
# running as root).
set -euo pipefail

REQUESTS=${REQUESTS:-4000}
PORT_BASE=${PORT_BASE:-9400}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
scratch
require "valgrind h2load nginx" valgrind nghttp2-client nginx-light
sluice_binary

S=127.0.0.1:$((PORT_BASE + 10)) N=127.0.0.1:$((PORT_BASE + 11))
origins
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log error;
events { worker_connections 1024; }
http {
  access_log off;
  upstream bench { server $O1; server $O2; keepalive 128; }
  server {
    listen $N;
    server_name bench.local;
$(nginx_location)
  }
}
NGINX

# Instructions per request of the proxy started by the command in "$@", listening on $1.
count() {
  local addr=$1 name=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 400); do (exec 3<>/dev/tcp/${addr%:*}/${addr#*:}) 2>/dev/null && break; sleep 0.1; done
  h2load --h1 -n 500 -c 8 -H ':authority: bench.local' "http://$addr/" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local done
  done=$(h2load --h1 -n "$REQUESTS" -c 8 -H ':authority: bench.local' "http://$addr/" | awk '/^status codes:/ {print $3}')
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid" 2>/dev/null || true
  local total=0 file
  file=$(ls -t "$work/$name".out.* | head -1)
  total=$(awk '/^summary:/ {print $2}' "$file")
  if [ "$done" != "$REQUESTS" ]; then
    echo "$name: only $done of $REQUESTS requests got a 2xx" >&2; exit 1
  fi
  echo "$name $((total / REQUESTS))" >> "$work/results"
  printf '| %-7s | %12s |\n' "$name" "$((total / REQUESTS))"
}

echo "h2load --h1 -n $REQUESTS -c 8, one worker each, user-space instructions per request"
printf '| %-7s | %12s |\n' proxy "instructions"
printf '|%s|%s|\n' "---------" "--------------"
export SLUICE_WORKERS=1
count "$S" sluice "$sluice" --entryPoints.web.address=$S \
  --providers.file.directory="$work/dynamic" --log.level=ERROR
count "$N" nginx nginx -c "$work/nginx.conf"
awk '{r[$1]=$2} END {if (r["nginx"]>0) printf "sluice/nginx instructions: %.2f\n", r["sluice"]/r["nginx"]}' "$work/results"
