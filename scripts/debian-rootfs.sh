#!/usr/bin/env bash
# Builds the cached Debian bookworm rootfs of the Debian guest test (issue 18): mmdebstrap
# minbase + linux-image-amd64 (brings initramfs-tools and an initrd) + busybox, no systemd
# as init. vminit is NOT baked in: the test copies the current binary into a per-run copy
# and makes the ext4 image with mkfs.ext4 -d, so every run tests the freshly built vminit.
#
#   scripts/debian-rootfs.sh [OUT_DIR]     (default .cache/debian-rootfs)
#
# Writes OUT_DIR/rootfs/ (the tree), OUT_DIR/vmlinuz, OUT_DIR/initrd.img, then OUT_DIR/complete
# last; with the marker present it does nothing. Needs root and the Debian archive.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-.cache/debian-rootfs}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -f "$out/complete" ]; then
    echo "debian rootfs: $out already built"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "debian rootfs: needs root (mmdebstrap in root mode)" >&2
    exit 1
fi
command -v mmdebstrap >/dev/null || {
    echo "debian rootfs: installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
}

# Build into OUT_DIR.tmp and rename at the end, so an interrupted build never looks done.
# An interrupted mmdebstrap may leave its /proc, /sys and /dev mounts behind: unmount them
# before removing anything, and never let rm cross into another filesystem.
tmp="$out.tmp"
clean_tmp() {
    awk -v p="$(realpath -m "$tmp")/" 'index($2, p) == 1 { print $2 }' /proc/mounts \
        | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$tmp"
}
clean_tmp
rm -rf --one-file-system "$out"
mkdir -p "$tmp"
root="$tmp/rootfs"
echo "debian rootfs: mmdebstrap bookworm into $root (a few minutes, once per machine)"
mmdebstrap --variant=minbase --include=linux-image-amd64,busybox,kmod \
    bookworm "$root" "$mirror" >"$tmp/mmdebstrap.log" 2>&1 || {
    tail -20 "$tmp/mmdebstrap.log" >&2
    echo "debian rootfs: mmdebstrap failed (log: $tmp/mmdebstrap.log)" >&2
    exit 1
}
# The kernel and initrd the package installed, named without the version for the test.
vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -1)
initrd=$(ls "$root"/boot/initrd.img-* | head -1)
[ -s "$vmlinuz" ] && [ -s "$initrd" ] || {
    echo "debian rootfs: no /boot/vmlinuz-* or /boot/initrd.img-* in $root" >&2
    exit 1
}
cp "$vmlinuz" "$tmp/vmlinuz"
cp "$initrd" "$tmp/initrd.img"
echo "/dev/vda / ext4 defaults 0 1" >"$root/etc/fstab"
echo vminit-debian >"$root/etc/hostname"
touch "$tmp/complete"
mv "$tmp" "$out"
echo "debian rootfs: $out/rootfs, $out/vmlinuz, $out/initrd.img"
