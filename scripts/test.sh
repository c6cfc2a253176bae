#!/usr/bin/env bash
# The test command (README, .ci/run): sets up what is missing, then runs every test, including
# the QEMU boots of the real binary with Debian's kernel. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VMINIT_STATIC_DIR="$(cat target/static-dir)"
export VMINIT_STATIC_DIR
cargo build --locked -p test-agent   # the supervisor's host tests run the debug test-agent
cargo test --locked --workspace "$@"
