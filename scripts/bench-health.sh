#!/usr/bin/env bash
# Benchmark of the health endpoint (issue 7): /health requests per second and latency under
# `wrk -t2 -c50 -d10s`, idle and with 200 stalled connections held open (a staller reopens
# any the server closes, so 200 are stalled for the whole run). Loopback only.
#
#   scripts/bench-health.sh [host|vm|both]     (default both)
#
# host: the same server code, run off PID 1 on the host: the server's own ceiling.
# vm:   the demo VM (examples/agents.toml, services running, otherwise idle) through QEMU's
#       slirp hostfwd, what a host controller sees. Baseline in the same VM and the same
#       run: the HTTP agent on guest port 8080 (test-agent, a plain responder), so the
#       ratio separates vminit's cost from slirp's and TCG's.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-both}
case "$mode" in host | vm | both) ;; *)
    echo "usage: $0 [host|vm|both]" >&2
    exit 2
    ;;
esac
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
static_dir=${VMINIT_STATIC_DIR:-$(cat target/static-dir 2>/dev/null || echo target/x86_64-unknown-linux-musl/release)}
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

# wrk's figures on one line: requests/s, p50, p99, errors.
load() {
    wrk -t2 -c50 -d10s --latency "$1" >"$dir/wrk" 2>&1 || true
    local rps p50 p99 errs
    rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk")
    p50=$(awk '$1 == "50%" {print $2}' "$dir/wrk")
    p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk")
    errs=$(grep -E "Socket errors|Non-2xx" "$dir/wrk" | tr -s ' ' | paste -sd ';' - || true)
    printf '%-58s %10s req/s  p50 %8s  p99 %8s  %s\n' "$2" "${rps:-?}" "${p50:-?}" "${p99:-?}" "${errs:-no errors}"
}

# Holds 200 connections with an unfinished request head on 127.0.0.1:$1 until killed.
stall() {
    python3 - "$1" <<'PY' &
import selectors, socket, sys
port = int(sys.argv[1])
sel = selectors.DefaultSelector()
def open_one():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    except OSError:
        pass
for _ in range(200):
    open_one()
while True:
    for key, _ in sel.select(timeout=1):
        sel.unregister(key.fileobj)
        key.fileobj.close()
        open_one()
    while len(sel.get_map()) < 200:
        open_one()
PY
    stall_pid=$!
    pids+=("$stall_pid")
    sleep 2
}

unstall() {
    kill "$stall_pid" 2>/dev/null || true
    wait "$stall_pid" 2>/dev/null || true
}

if [ "$mode" != vm ]; then
    echo "== host: vminit off PID 1 on the host, loopback"
    echo "# no services" >"$dir/vminit.toml"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$static_dir/vminit" --config "$dir/vminit.toml" --health "127.0.0.1:$port" --run-dir "$dir/run" 2>"$dir/log" &
    host_pid=$!
    pids+=("$host_pid")
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null 2>&1 && break; sleep 0.1; done
    load "http://127.0.0.1:$port/health" "host /health, idle"
    stall "$port"
    load "http://127.0.0.1:$port/health" "host /health, 200 stalled connections"
    unstall
    echo "vminit RSS after: $(awk '/VmRSS/ {print $2 " " $3}' "/proc/$host_pid/status")"
fi

if [ "$mode" != host ]; then
    echo "== vm: the demo VM under $( [ -w /dev/kvm ] && echo 'KVM if usable, else TCG' || echo TCG ), through slirp hostfwd"
    VMINIT_STATIC_DIR="$static_dir" cargo run --release --locked -q -p qemu-harness -- run \
        --config examples/agents.toml --drive-config examples/drive.toml --drive-fs vfat \
        --test-agent --forward 8080 >"$dir/vm.out" 2>"$dir/vm.err" &
    vm_pid=$!
    pids+=("$vm_pid")
    for _ in $(seq 1800); do
        grep -q "VM is up" "$dir/vm.err" 2>/dev/null && break
        kill -0 "$vm_pid" 2>/dev/null || { cat "$dir/vm.err" >&2; exit 1; }
        sleep 0.1
    done
    grep -q "VM is up" "$dir/vm.err" || { echo "the VM did not come up" >&2; exit 1; }
    health=$(sed -n 's/^health: curl //p' "$dir/vm.err")
    agent_port=$(sed -n 's/^guest port 8080 -> 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/vm.err")
    hport=${health##*:}
    hport=${hport%%/*}
    load "$health" "vm /health (vminit), idle"
    load "http://127.0.0.1:$agent_port/health" "vm agent :8080 (baseline, same path), idle"
    stall "$hport"
    load "$health" "vm /health (vminit), 200 stalled connections"
    unstall
    metrics=$(curl -sf "${health%/health}/metrics" || true)
    rss=$(echo "$metrics" | awk '/^process_resident_memory_bytes/ {printf "%d KiB", $2/1024}')
    cpu=$(echo "$metrics" | awk '/^process_cpu_seconds_total/ {print $2 " s"}')
    echo "vminit in the guest after the runs: RSS $rss, CPU since boot $cpu"
    curl -sf "$health" | python3 -c '
import json, sys
h = json.load(sys.stdin)
states = ", ".join(n + " " + s["state"] for n, s in h["services"].items())
print("status after the runs:", h["status"], "| services:", states)' || true
fi
