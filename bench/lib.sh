# Shared by the bench scripts: tools, the Sluice binary, and the routing every proxy is given.
# Source it after setting `root` (the checkout) and `work` (a scratch directory).

# Installs the Debian packages `$2...` when one of the tools in `$1` (space-separated) is
# missing and this runs as root; otherwise says what to install and exits.
require() {
  local tools=$1 tool missing=()
  shift
  for tool in $tools; do command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
    else
      echo "missing: ${missing[*]} (apt-get install $*)" >&2; exit 1
    fi
  fi
  PATH=$PATH:/usr/sbin
}

# Sets `sluice` to $SLUICE, or builds the release binary and points at it.
sluice_binary() {
  if [ -n "${SLUICE:-}" ]; then
    sluice=$SLUICE
  else
    cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p sluice
    sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
  fi
}

# nginx's `location /` for the bench: round robin over the `bench` upstream with keep-alive, and
# the same forwarded headers Sluice sets (as Traefik does), so every proxy sends the origin the
# same request and gets the same answer back.
nginx_location() {
  cat <<'NGINX'
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Server $hostname;
      proxy_set_header X-Real-IP $remote_addr;
    }
NGINX
}

# Writes to `$1` the dynamic configuration of the bench: `Host: bench.local` to the origins at
# `$2` and `$3`, round robin.
bench_routes() {
  cat > "$1" <<YAML
http:
  routers:
    bench:
      rule: "Host(\`bench.local\`)"
      service: bench
  services:
    bench:
      loadBalancer:
        servers:
          - url: "http://$2"
          - url: "http://$3"
YAML
}

# A scratch directory in `work`, and `pids` for background processes: on exit the processes are
# stopped and the directory removed.
scratch() {
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

# Starts two whoami origins at PORT_BASE+1 and +2 (their addresses in O1 and O2) and writes the
# bench routes to $work/dynamic/bench.yaml.
origins() {
  O1=127.0.0.1:$((PORT_BASE + 1)) O2=127.0.0.1:$((PORT_BASE + 2))
  "$sluice" whoami --name o1 --listen "$O1" >/dev/null 2>&1 & pids+=($!)
  "$sluice" whoami --name o2 --listen "$O2" >/dev/null 2>&1 & pids+=($!)
  mkdir -p "$work/dynamic"
  bench_routes "$work/dynamic/bench.yaml" "$O1" "$O2"
}

# Starts Sluice with WORKERS workers (default 2) listening on `$1`, over the bench routes; its
# pid in sluice_pid.
start_sluice() {
  SLUICE_WORKERS=${WORKERS:-2} "$sluice" --entryPoints.web.address="$1" \
    --providers.file.directory="$work/dynamic" --log.level=ERROR >"$work/sluice.log" 2>&1 & pids+=($!)
  sluice_pid=$!
}

# Writes to `$1` an nginx configuration with `$2` worker processes listening on `$3`, proxying
# to O1 and O2 like Sluice.
nginx_conf() {
  cat > "$1" <<NGINX
worker_processes $2;
pid $work/nginx.pid;
error_log $work/nginx-error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  upstream bench { server $O1; server $O2; keepalive 128; }
  server {
    listen $3 reuseport;
    server_name bench.local;
$(nginx_location)
  }
}
NGINX
}

# Waits (up to 5 s each) until every address given accepts connections.
wait_listening() {
  local addr
  for addr in "$@"; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/${addr%:*}/${addr#*:}) 2>/dev/null && break; sleep 0.05; done
  done
}
