//! The guest architectures the harness boots: x86_64 (q35, microvm) and aarch64 (virt). Each
//! has its own static binaries, Debian kernel package, kernel cache and QEMU program; this
//! module names them, the rest of the harness asks it.

use crate::error::{Error, Result};

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    #[default]
    X86_64,
    Aarch64,
}

impl Arch {
    /// The QEMU system emulator for this guest.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Rust target the static guest binaries are built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// Debian's name for it (packages, dpkg architectures).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The default module list of a test guest ([`crate::Modules::Virtio`]): on x86_64
    /// [`crate::VIRTIO_MODULES`]; on arm64 the same without `button` (Debian's arm64 kernel
    /// has the ACPI button built in, and a direct `-kernel` boot on virt has no ACPI) and with
    /// the virt machine's power button instead: `gpio-keys` on the PL061 GPIO (built in), read
    /// through `evdev`.
    pub fn virtio_modules(self) -> Vec<&'static str> {
        let common = crate::VIRTIO_MODULES.iter().copied();
        match self {
            Arch::X86_64 => common.collect(),
            Arch::Aarch64 => common
                .filter(|m| *m != "button")
                .chain(["gpio_keys"])
                .collect(),
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(Error::Invalid(format!(
                "unknown architecture `{other}` (x86_64 or arm64)"
            ))),
        }
    }
}
