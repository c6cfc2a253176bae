#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian/Ubuntu machine, builds the
# static binaries and fetches the test kernel. Idempotent: a second run only checks.
#   - Debian packages: QEMU (x86_64 and aarch64), cpio, depmod (kmod),
#     mtools/dosfstools/genisoimage/e2fsprogs for config drives, xz for the kernel, iproute2
#     for the netconf namespace tests.
#   - the musl target (fallback: the gnu target with +crt-static, contract §1);
#   - `vminit`, `test-agent`, `trivial-init` built static, release;
#   - the same for arm64 guests: `aarch64-unknown-linux-musl`, linked by rust-lld
#     (.cargo/config.toml), into target/aarch64-unknown-linux-musl/release;
#   - Debian's kernel packages into .cache/kernel and .cache/kernel-arm64 (qemu-harness
#     fetch-kernel); the arm64 one needs the arm64 architecture added to dpkg.
#   - rust-vmm's vhost-device-vsock 0.3.0 (the host side of the guests' vsock device under
#     QEMU without /dev/vhost-vsock; built once per machine, ~3-8 min on 2 cores).
#   - a Debian bookworm rootfs (mmdebstrap) for the real-image guest test, into
#     .cache/debian-rootfs (scripts/debian-rootfs.sh; once per machine, ~5-10 min).
# Prints the export line for VMINIT_STATIC_DIR when the fallback target is used.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_pkgs=()
for pair in qemu-system-x86_64:qemu-system-x86 qemu-system-aarch64:qemu-system-arm \
            cpio:cpio depmod:kmod mcopy:mtools \
            mkfs.vfat:dosfstools genisoimage:genisoimage mkfs.ext4:e2fsprogs xz:xz-utils \
            ip:iproute2 busybox:busybox-static blkid:util-linux apt-get:apt \
            mmdebstrap:mmdebstrap debugfs:e2fsprogs; do
    cmd=${pair%%:*}; pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
    exit 1
fi

target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    rustup target add "$target" >/dev/null 2>&1 || true
fi
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    cargo build --release --locked --target "$target" -p vminit -p test-agent
else
    # Fallback of contract §1: glibc, statically linked.
    target=x86_64-unknown-linux-gnu
    echo "setup: musl target unavailable; building $target with +crt-static"
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --locked --target "$target" -p vminit -p test-agent
fi
export VMINIT_STATIC_DIR="$PWD/target/$target/release"
echo "$VMINIT_STATIC_DIR" > target/static-dir

# arm64 guests (issue 16). No gnu fallback here: that would need a cross C toolchain, and
# rust-lld with musl's self-contained objects needs none.
arm64=aarch64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$arm64"; then
    rustup target add "$arm64"
fi
cargo build --release --locked --target "$arm64" -p vminit -p test-agent

# The kernel comes from Debian's archive: make sure the package lists know it.
if [ ! -e .cache/kernel/current ] && ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    $SUDO apt-get update -qq
fi
cargo run --release --locked -q -p qemu-harness -- fetch-kernel

if [ ! -e .cache/kernel-arm64/current ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        $SUDO dpkg --add-architecture arm64
    fi
    if ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
        $SUDO apt-get update -qq
    fi
fi
cargo run --release --locked -q -p qemu-harness -- fetch-kernel --arch arm64

# The vsock daemon: QEMU's vhost-user-vsock device is served by it (qemu-harness --vsock, the
# vsock guest tests, the demo). Skipped when present; a failed install is not fatal to the
# rest of the setup, only the vsock tests then say how to get it.
vsock_bin=.cache/vhost-device-vsock/bin/vhost-device-vsock
# Built once per machine (outside the checkout, so a fresh clone on the same machine reuses it).
vsock_root="${XDG_CACHE_HOME:-$HOME/.cache}/vminit/vhost-device-vsock"
if [ ! -x "$vsock_bin" ]; then
    if [ ! -x "$vsock_root/bin/vhost-device-vsock" ]; then
        echo "setup: installing vhost-device-vsock 0.3.0 into $vsock_root"
        cargo install vhost-device-vsock --locked --version 0.3.0 --root "$vsock_root" -q \
            || echo "setup: vhost-device-vsock could not be installed; vsock tests will fail" >&2
    fi
    if [ -x "$vsock_root/bin/vhost-device-vsock" ]; then
        mkdir -p "$(dirname "$vsock_bin")"
        cp "$vsock_root/bin/vhost-device-vsock" "$vsock_bin"
    fi
fi

# The Debian rootfs of the Debian guest test (issue 18), cached under .cache/debian-rootfs;
# a no-op once built. Without it only that test fails, saying how to build it.
scripts/debian-rootfs.sh \
    || echo "setup: Debian rootfs could not be built; tests/tests/qemu_debian.rs will fail" >&2
