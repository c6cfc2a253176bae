#!/usr/bin/env bash
# What the module index costs a boot when the image carries a whole Debian module tree's
# indexes, as a rootfs with the kernel package's /lib/modules does (1.3 MB modules.alias,
# 0.5 MB modules.dep): every index file of the cached Debian kernel, the .ko files of what
# this microvm loads. Two images, booted in turn:
#   binary  the indexes as depmod wrote them: vminit reads the binary tries (modules.*.bin);
#   text    the same with the tries emptied: vminit warns once and parses the text files.
# Prints per boot PID 1 -> ready (from /health's boot section) and the index time from the
# console, then the medians.
# Usage: scripts/bench-index.sh [RUNS]   (default 5; needs scripts/setup.sh's build and kernel)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cargo build -q --release -p qemu-harness
h=target/release/qemu-harness
tree=$($h fetch-kernel | awk '$1 == "modules_dir" { print $2 }')
release=$(basename "$tree")
dst="/lib/modules/$release"
# The modules a Debian rootfs would load on this microvm, besides the virtio set.
modules="virtio_mmio,virtio_net,button,qemu_fw_cfg,pcspkr,serio_raw,psmouse"

common=()
for f in "$tree"/modules.*; do
    case "$f" in *.bin) ;; *) common+=(--file "$f:$dst/$(basename "$f")") ;; esac
done
binary=() text=()
for f in "$tree"/modules.*.bin; do
    binary+=(--file "$f:$dst/$(basename "$f")")
    text+=(--file "/dev/null:$dst/$(basename "$f")")
done

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# One boot: "<PID 1 -> ready ms> <index ms>".
boot() {
    local out="$work/run.out"
    : > "$out"
    $h run --machine microvm --modules "$modules" --append \
        "vminit.log=debug ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off" "${common[@]}" "$@" \
        > "$out" 2>&1 &
    pid=$!
    local deadline=$((SECONDS + 180))
    until grep -q '"ready_ms"' "$out"; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$pid" 2>/dev/null; then
            cat "$out" >&2; echo "bench-index: no /health answer" >&2; exit 1
        fi
        sleep 0.2
    done
    # The body is printed whole once it starts; the console holds the index line by then.
    sleep 0.5
    local console
    console=$(grep -o '/tmp/qemu-harness-[^ ]*/console.log' "$out" | head -1)
    local index
    index=$(grep -o 'modules: index ([a-z ]*) [0-9.]* ms' "$console" | grep -o '[0-9.]* ms' | head -1)
    python3 - "$out" "${index% ms}" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
b = json.loads(t[t.index('{'):t.rindex('}') + 1])["boot"]
print(b["ready_ms"] - b["init_start_ms"], sys.argv[2])
PY
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

printf '%-4s %-7s %14s %9s\n' run index "PID1->ready ms" "index ms"
for i in $(seq 1 "$runs"); do
    for kind in binary text; do
        if [ "$kind" = binary ]; then r=$(boot "${binary[@]}"); else r=$(boot "${text[@]}"); fi
        printf '%-4s %-7s %14s %9s\n' "$i" "$kind" $r
        echo "$kind $r" >> "$work/all"
    done
done
python3 - "$work/all" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for kind in ("binary", "text"):
    ready = [float(r[1]) for r in rows if r[0] == kind]
    index = [float(r[2]) for r in rows if r[0] == kind and len(r) > 2]
    print(f"median {kind:6}: PID 1 -> ready {statistics.median(ready):.0f} ms, "
          f"index {statistics.median(index) if index else float('nan'):.1f} ms ({len(ready)} boots)")
PY
