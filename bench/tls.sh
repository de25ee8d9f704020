#!/usr/bin/env bash
# TLS handshake benchmark: full and resumed handshakes per second against Sluice and nginx,
# serving the same ECDSA P-256 certificate with the same number of workers, on 127.0.0.1 only.
#
#   bash bench/tls.sh                  # 10 s per measurement
#   SECONDS_PER_RUN=20 bash bench/tls.sh
#   SLUICE=/path/to/sluice bash bench/tls.sh   # that binary, no build
#   PORT_BASE=19200 bash bench/tls.sh
#
# The client is `openssl s_time` (one process): `-new` makes a full handshake per connection,
# `-reuse` resumes the first session on every later connection. Besides handshakes/s, each row
# shows the CPU time the server's processes used per handshake (user+system from /proc), which
# depends less on the client sharing the machine's cores.
#
# Needs openssl and nginx (Debian packages; installed when missing and running as root).
set -euo pipefail

RUN=${SECONDS_PER_RUN:-10}
WORKERS=${WORKERS:-2}
PORT_BASE=${PORT_BASE:-9200}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

need=()
for tool in openssl nginx; do command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openssl nginx-light >/dev/null
  else
    echo "missing: ${need[*]} (apt-get install openssl nginx-light)" >&2; exit 1
  fi
fi
PATH=$PATH:/usr/sbin

if [ -n "${SLUICE:-}" ]; then
  sluice=$SLUICE
else
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p sluice
  sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
fi

O=127.0.0.1:$((PORT_BASE + 1)) S=127.0.0.1:$((PORT_BASE + 10)) N=127.0.0.1:$((PORT_BASE + 11))
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=bench.local" -addext "subjectAltName=DNS:bench.local" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

"$sluice" whoami --name o1 --listen $O >/dev/null 2>&1 & pids+=($!)

# Sluice: s_time sends no SNI, so the certificate is the default store's default certificate.
mkdir -p "$work/dynamic"
cat > "$work/dynamic/bench.yaml" <<EOF
http:
  routers:
    bench:
      rule: "PathPrefix(\`/\`)"
      service: bench
      tls: {}
  services:
    bench:
      loadBalancer:
        servers: [{url: "http://$O"}]
tls:
  stores:
    default:
      defaultCertificate: {certFile: "$work/cert.pem", keyFile: "$work/key.pem"}
EOF
SLUICE_WORKERS=$WORKERS "$sluice" run --entryPoints.websecure.address=$S \
  --providers.file.directory="$work/dynamic" --log.level=ERROR >"$work/sluice.log" 2>&1 &
pids+=($!); sluice_pid=$!

# nginx: same certificate, protocols, session cache and tickets on.
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/nginx/error.log error;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen $N ssl reuseport;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / { proxy_pass http://$O; }
  }
}
EOF
nginx -c "$work/nginx.conf" >/dev/null 2>&1 & pids+=($!); nginx_pid=$!

for addr in $S $N; do
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then break; fi
    sleep 0.1
  done
done

# CPU ticks (user+system) of a process and its threads/children.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $total
}
hz=$(getconf CLK_TCK)

measure() { # name pid addr mode version
  local name=$1 pid=$2 addr=$3 mode=$4 version=$5 before after out count secs
  before=$(cpu_ticks "$pid")
  out=$(openssl s_time -connect "$addr" "-$mode" "-$version" -time "$RUN" 2>&1 || true)
  after=$(cpu_ticks "$pid")
  # "N connections in T real seconds, ..."
  count=$(echo "$out" | awk '/connections in .* real seconds/ {print $1; exit}')
  secs=$(echo "$out" | awk '/connections in .* real seconds/ {print $4; exit}')
  if [ -z "$count" ] || [ "$count" = 0 ]; then
    printf '| %s | %s | %s | failed | | |\n' "$name" "$version" "$mode"; echo "$out" | tail -3 >&2; return
  fi
  awk -v n="$name" -v v="$version" -v m="$mode" -v c="$count" -v s="$secs" -v t=$((after - before)) -v hz="$hz" \
    'BEGIN { printf "| %s | %s | %s | %d | %.0f | %.0f |\n", n, v, m, c, c / s, t / hz * 1e6 / c }'
}

echo "TLS handshakes, ${RUN}s each, openssl s_time (1 client), $WORKERS workers per server"
echo
echo "| server | version | mode | handshakes | per s | server CPU µs/handshake |"
echo "| --- | --- | --- | --- | --- | --- |"
for version in tls1_3 tls1_2; do
  for mode in new reuse; do
    measure sluice $sluice_pid $S $mode $version
    measure nginx $nginx_pid $N $mode $version
  done
done
