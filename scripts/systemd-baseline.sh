#!/usr/bin/env bash
# Builds the "Debian + systemd-networkd" baseline of the boot benchmark (issue 7): a minimal
# Debian 12 root filesystem (debootstrap minbase + systemd-sysv + udev) on an ext4 image, with
# Debian's own initramfs (initramfs-tools) for the same kernel the other images boot.
# It does the same job as vminit in the benchmark: systemd-networkd sets 10.0.2.15/24 via
# 10.0.2.2 on the NIC, and a unit ordered after network-online.target serves a static health
# file on port 8900 with busybox httpd.
#
#   scripts/systemd-baseline.sh [OUT_DIR]     (default .cache/bench/debian-systemd)
#
# Writes OUT_DIR/rootfs.img and OUT_DIR/initrd.img; a second run with both present does
# nothing. Needs root (debootstrap, chroot), debootstrap and network access to the Debian
# mirror. Takes a few minutes and ~600 MB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-.cache/bench/debian-systemd}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -s "$out/rootfs.img" ] && [ -s "$out/initrd.img" ]; then
    echo "systemd baseline: $out/rootfs.img and $out/initrd.img already built"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "systemd baseline: needs root (debootstrap and chroot)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    echo "systemd baseline: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

kdir=$(readlink -f .cache/kernel/current)
release=$(sed -n 's/^release=//p' "$kdir/kernel.version")
[ -n "$release" ] && [ -d "$kdir/lib/modules/$release" ] || {
    echo "systemd baseline: no cached kernel in .cache/kernel/current; run scripts/setup.sh first" >&2
    exit 1
}

mkdir -p "$out"
root="$out/rootfs"
if [ ! -x "$root/lib/systemd/systemd" ]; then
    rm -rf "$root"
    echo "systemd baseline: debootstrap bookworm into $root"
    debootstrap --variant=minbase \
        --include=systemd-sysv,systemd,udev,kmod,initramfs-tools,busybox,zstd \
        bookworm "$root" "$mirror" >"$out/debootstrap.log" 2>&1 || {
        tail -20 "$out/debootstrap.log" >&2
        echo "systemd baseline: debootstrap failed (log: $out/debootstrap.log)" >&2
        exit 1
    }
fi

# The benchmark's kernel, modules and config, as the linux-image package would install them.
rm -rf "$root/lib/modules/$release"
mkdir -p "$root/lib/modules" "$root/boot"
cp -a "$kdir/lib/modules/$release" "$root/lib/modules/"
cp "$kdir/boot/config" "$root/boot/config-$release"
cp "$kdir/boot/System.map" "$root/boot/System.map-$release"

# The job: static address from systemd-networkd, then a health file served after
# network-online.target, as an operator would write it.
echo vminit-baseline >"$root/etc/hostname"
echo "/dev/vda / ext4 defaults 0 1" >"$root/etc/fstab"
cat >"$root/etc/systemd/network/10-nic.network" <<'EOF'
[Match]
Type=ether

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
EOF
mkdir -p "$root/srv/www"
echo '{"status":"ok"}' >"$root/srv/www/health"
cat >"$root/etc/systemd/system/health.service" <<'EOF'
[Unit]
Description=Static health file on port 8900
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/bin/busybox httpd -f -p 8900 -h /srv/www

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable systemd-networkd.service health.service >/dev/null 2>&1
chroot "$root" systemctl enable systemd-networkd-wait-online.service >/dev/null 2>&1 || true

echo "systemd baseline: mkinitramfs for $release"
chroot "$root" mkinitramfs -o "/boot/initrd.img-$release" "$release"
cp "$root/boot/initrd.img-$release" "$out/initrd.img.tmp"

echo "systemd baseline: ext4 image"
rm -f "$out/rootfs.img.tmp"
mkfs.ext4 -q -L rootfs -d "$root" "$out/rootfs.img.tmp" 1536M
mv "$out/rootfs.img.tmp" "$out/rootfs.img"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "systemd baseline: $out/rootfs.img, $out/initrd.img"
