#!/usr/bin/env bash
# Benchmark of the health endpoint's server (the same code as in the guest), run on the host
# off PID 1 so that slirp's hostfwd does not dominate: /health requests per second and latency
# under `wrk -c 50`, idle and with 200 stalled connections held open. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
bin="${VMINIT_STATIC_DIR:-target/x86_64-unknown-linux-musl/release}/vminit"
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; kill "$stall" 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "# no services" > "$dir/vminit.toml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --config "$dir/vminit.toml" --health "127.0.0.1:$port" --run-dir "$dir/run" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null 2>&1 && break; sleep 0.1; done
echo "== idle: wrk -t2 -c50 -d10s"
wrk -t2 -c50 -d10s --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|50%|99%|Socket errors|Non-2xx"
python3 - "$port" <<'PY' &
import socket, sys, time
conns = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.send(b"GET /health HTTP/1.1\r\nX-Slow: ")
    conns.append(s)
time.sleep(30)
PY
stall=$!
sleep 1
echo "== with 200 stalled connections: wrk -t2 -c50 -d10s"
wrk -t2 -c50 -d10s --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|50%|99%|Socket errors|Non-2xx"
echo "== vminit RSS after: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$pid/status)"
