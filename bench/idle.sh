#!/usr/bin/env bash
# Memory per idle keep-alive client connection: the growth of Sluice's RSS with CONNECTIONS
# connections open, each after one answered request. 127.0.0.1 only.
#
#   bash bench/idle.sh                       # 5000 connections, 2 workers
#   CONNECTIONS=2000 SLUICE=/path/to/sluice bash bench/idle.sh
#
# Needs python3 (the client) and a file-descriptor limit above CONNECTIONS.
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-5000}
WORKERS=${WORKERS:-2}
PORT_BASE=${PORT_BASE:-9500}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
scratch
require python3 python3
sluice_binary

S=127.0.0.1:$((PORT_BASE + 10))
origins
start_sluice "$S"
wait_listening "$O1" "$O2" "$S"

python3 - "$sluice_pid" "$CONNECTIONS" "${S%:*}" "${S#*:}" <<'PY'
import socket, sys, time
pid, count, host, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def rss_kib():
    with open(f"/proc/{pid}/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))
before = rss_kib()
open_connections = []
for _ in range(count):
    s = socket.create_connection((host, port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
    s.settimeout(5)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(65536)
    open_connections.append(s)
time.sleep(1)
after = rss_kib()
print(f"RSS {before} KiB -> {after} KiB with {count} idle keep-alive connections: "
      f"{(after - before) * 1024 / count:.0f} bytes per connection")
PY
