#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each, starting from the
# committed corpora in fuzz/corpus (plus filesystem superblocks made here with mkfs tools),
# with libFuzzer through cargo-fuzz. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 20).
# cargo-fuzz needs unstable rustc flags: on a stable-only toolchain RUSTC_BOOTSTRAP=1 enables
# them for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked -q
if ! rustc --version | grep -q nightly; then export RUSTC_BOOTSTRAP=1; fi

# Binary seeds for the label readers: real superblocks, truncated to what the probe reads.
seeds=fuzz/corpus/fs_label
if [ ! -e "$seeds/vfat" ]; then
    tmp=$(mktemp -d)
    mkfs.vfat -C -n VMINIT "$tmp/vfat" 1440 >/dev/null && head -c 4096 "$tmp/vfat" > "$seeds/vfat"
    mkfs.ext4 -q -L VMINIT "$tmp/ext4" 1M && head -c 4096 "$tmp/ext4" > "$seeds/ext4"
    mkdir "$tmp/iso" && genisoimage -quiet -V VMINIT -o "$tmp/iso.img" "$tmp/iso" \
        && head -c 36864 "$tmp/iso.img" > "$seeds/iso9660"
    rm -rf "$tmp"
fi

cd fuzz
for target in $(cargo fuzz list); do
    echo "== fuzz $target for ${secs}s"
    # New inputs go to work/ (ignored); corpus/ keeps the committed seeds. To refresh the
    # seeds: cargo fuzz cmin TARGET corpus/TARGET.
    mkdir -p "work/$target"
    log="work/$target.log"
    if ! cargo fuzz run --sanitizer none "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target failed (crash input, if any, in fuzz/artifacts/$target)" >&2
        exit 1
    fi
    grep -E "^Done|number_of_executed_units" "$log" || true
done
echo "fuzz: all targets ran ${secs}s without a crash"
