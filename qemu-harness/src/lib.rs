//! qemu-harness: boots vminit (or any static init) under QEMU for tests,
//! benchmarks and demos.
//!
//! It owns: fetching and caching the test kernel ([`Kernel`]), building
//! initramfs images ([`Initramfs`]), config drives ([`make_drive`]) and Debian
//! rootfs images ([`DebianRootfs`]),
//! launching QEMU on q35 or microvm, or an arm64 guest on virt
//! ([`VmBuilder`], [`Arch`]), and talking to the running VM ([`Vm`]:
//! console, monitor, HTTP polling, shutdown, NIC captures read by [`pcap`];
//! [`vsock`]: the vhost-user-vsock daemon and the Firecracker-style hybrid vsock
//! client).
//! It does not own what the guest does: assertions about vminit belong to
//! the tests crate.
//!
//! Host-side code: it runs as a normal process, never as PID 1.

pub mod accel;
mod arch;
pub mod bench;
pub mod bench_agent;
pub mod bench_rootfs;
pub mod bench_vsock;
pub mod boot_split;
pub mod bzimage;
mod cmd;
pub mod cpio;
pub mod drive;
mod error;
pub mod http;
pub mod initramfs;
pub mod kernel;
pub mod moddep;
mod monitor;
mod paths;
pub mod pcap;
pub mod rootfs;
mod running;
mod spawn;
pub mod vm;
pub mod vsock;

pub use accel::Accel;
pub use arch::Arch;
pub use drive::{make_drive, make_drive_from_dir, DriveFs, DEFAULT_LABEL};
pub use error::{Error, Result};
pub use initramfs::{Initramfs, Modules, CONFIG_PATH, VIRTIO_MODULES};
pub use kernel::Kernel;
pub use paths::{
    static_binary, static_binary_for, static_dir, static_dir_for, workspace_root,
    STATIC_DIR_ARM64_ENV, STATIC_DIR_ENV,
};
pub use rootfs::{DebianRootfs, GuestFile};
pub use running::{Vm, BOOT_TIMEOUT};
pub use vm::{KernelKind, Machine, VmBuilder, HEALTH_PORT};
