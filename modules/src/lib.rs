//! Kernel module loading for vminit, without libkmod or udev.
//!
//! Owns: reading a module tree's depmod indexes ([`ModuleIndex`]), turning a
//! name, alias or modalias into an ordered load plan, loading it through
//! `finit_module(2)` ([`Loader`]), coldplug over sysfs ([`Coldplug`]), and
//! saying in words what is missing ([`Report`], [`diagnose_network`],
//! [`Error::MissingTree`]).
//!
//! Does not own: parsing the kernel cmdline or the image config (the init
//! hands over module parameters as a map), mounting `/proc` and `/sys`, or
//! deciding what to do when a module is missing (the init logs and goes on).
//!
//! The only syscalls are in `sys.rs` (module loading, the uevent socket);
//! everything else is pure or reads files under injectable paths, and is
//! tested with fake kernels and sysfs trees.
// PID 1 code, where an overflow panic is a kernel panic: arithmetic is checked or saturating,
// and a provably bounded index allowed narrowly with a `// why:` (docs/DESIGN.md).
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]
#![deny(unsafe_code)]

mod alias;
mod bin_index;
mod coldplug;
mod device;
mod error;
pub mod glob;
mod index;
mod kernel;
mod loader;
pub mod parse;
mod report;
mod sys;
mod uevent;

#[cfg(test)]
mod tests;

pub use alias::AliasIndex;
pub use bin_index::BinIndex;
pub use coldplug::{Coldplug, Stage};
pub use device::{
    class_of, expected_drivers, is_essential, scan as scan_devices, virtio_id, Device,
};
pub use error::{Errno, Error, LoadFailure, Result, Wanted};
pub use index::{ModuleIndex, Plan, Step, StepKind};
pub use kernel::{
    kernel_release, Clock, DeviceEvents, InitFlags, Kernel, KernelError, SystemClock, SystemKernel,
};
pub use loader::{Loader, LIB_MODULES, PROC_MODULES};
pub use report::{diagnose_network, DeviceEntry, Failed, Loaded, Report};
pub use uevent::{Uevent, UeventAction};
