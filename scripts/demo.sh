#!/usr/bin/env bash
# The demo: boots a VM with the example agent config and a config drive that sets the network,
# prints its health JSON, reads /health again over vsock (the host-only channel: a hybrid vsock
# socket served by vhost-device-vsock, as Firecracker and Cloud Hypervisor offer), and keeps it
# up until Ctrl-C (which powers the guest off cleanly). While it runs, another terminal can
# read it with the printed `qemu-harness health --vsock SOCKET` line.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VMINIT_STATIC_DIR="$(cat target/static-dir)"
export VMINIT_STATIC_DIR
exec cargo run --release --locked -q -p qemu-harness -- run \
    --config examples/agents.toml --drive-config examples/drive.toml --drive-fs vfat \
    --test-agent --forward 8080 --vsock "$@"
