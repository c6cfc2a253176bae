//! The crate's error types. Each variant carries what failed (path, module,
//! errno) and its `Display` is written for an operator reading the serial
//! console: what is wrong, where, and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::device::Device;
use crate::parse::ParseError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An errno value returned by a syscall, shown in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENOEXEC: Errno = Errno(libc::ENOEXEC);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const EPERM: Errno = Errno(libc::EPERM);
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // io::Error renders as "Exec format error (os error 8)"; keep the words.
        let text = io::Error::from_raw_os_error(self.0).to_string();
        let words = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{words} (errno {})", self.0)
    }
}

/// Why one module could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadFailure {
    /// modules.dep names a file that is not in the image.
    FileMissing { path: PathBuf },
    /// The file exists but could not be opened.
    Open { path: PathBuf, errno: Errno },
    /// finit_module(2) refused it.
    Kernel { path: PathBuf, errno: Errno },
    /// The module's init found nothing to drive (ENODEV, ENXIO): `acpi_cpufreq` in a VM
    /// without CPU frequency control. Not an error: the hardware is absent, not broken.
    NoDevice { path: PathBuf, errno: Errno },
    /// A compressed module and a kernel without CONFIG_MODULE_DECOMPRESS.
    CompressedUnsupported { path: PathBuf },
    /// A module it depends on (modules.dep) failed first.
    Dependency { dependency: String },
    /// An alias or softdep names it, but modules.dep does not list it.
    Unlisted { dir: PathBuf },
    /// There is no usable module tree at all.
    NoTree { reason: String },
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadFailure::FileMissing { path } => write!(
                f,
                "module file {} is listed in modules.dep but missing from the image",
                path.display()
            ),
            LoadFailure::Open { path, errno } => write!(f, "cannot open {}: {errno}", path.display()),
            LoadFailure::Kernel { path, errno } => {
                write!(f, "finit_module({}) failed: {errno}", path.display())?;
                match *errno {
                    Errno::ENOEXEC => write!(f, "; the module was built for another kernel"),
                    Errno::ENOENT => write!(f, "; unknown symbol, a dependency is missing or mismatched"),
                    Errno::ENODEV => write!(f, "; the hardware or CPU feature it drives is absent"),
                    Errno::EPERM => write!(f, "; module loading is disabled or unsigned modules are refused"),
                    _ => Ok(()),
                }
            }
            LoadFailure::NoDevice { path, errno } => write!(
                f,
                "{} found no device to drive ({errno}); not loaded",
                path.display()
            ),
            LoadFailure::CompressedUnsupported { path } => write!(
                f,
                "kernel cannot load compressed module {} (no CONFIG_MODULE_DECOMPRESS); \
                 ship uncompressed .ko files",
                path.display()
            ),
            LoadFailure::Dependency { dependency } => {
                write!(f, "its dependency {dependency} failed to load")
            }
            LoadFailure::Unlisted { dir } => write!(
                f,
                "named in the indexes of {} but absent from modules.dep (stale indexes: rerun depmod)",
                dir.display()
            ),
            LoadFailure::NoTree { reason } => write!(f, "no usable module tree: {reason}"),
        }
    }
}

/// A device left without a driver, and the drivers it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub device: Device,
    pub drivers: Vec<String>,
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} at {} ({}) wants {}",
            self.device.class(),
            self.device.location(),
            self.device.modalias,
            self.drivers.join(" then ")
        )
    }
}

#[derive(Debug)]
pub enum Error {
    /// `/lib/modules/<release>` does not exist.
    MissingTree {
        release: String,
        dir: PathBuf,
        wanted: Vec<Wanted>,
    },
    /// An index file could not be read.
    ReadIndex { path: PathBuf, source: io::Error },
    /// An index file is malformed.
    Parse { dir: PathBuf, source: ParseError },
    /// A binary index (`modules.*.bin`) is damaged, at `offset` when one place is to blame.
    DamagedIndex {
        path: PathBuf,
        offset: Option<u64>,
        reason: String,
    },
    /// No module, builtin or alias of that name.
    UnknownModule { name: String, dir: PathBuf },
    /// No `fs-<type>` alias for a filesystem.
    UnknownFilesystem { fstype: String, dir: PathBuf },
    /// `/proc/modules` could not be read.
    ReadProcModules { path: PathBuf, source: io::Error },
    /// The running kernel's release could not be determined.
    Release { source: io::Error },
    /// `<sys>/bus` could not be listed.
    ScanSysfs { path: PathBuf, source: io::Error },
    /// A module (or one it needs) failed to load.
    Load {
        module: String,
        failure: LoadFailure,
    },
}

impl Error {
    /// The module found no hardware to drive ([`LoadFailure::NoDevice`]): worth an info
    /// line, not an error.
    pub fn is_no_device(&self) -> bool {
        matches!(
            self,
            Error::Load {
                failure: LoadFailure::NoDevice { .. },
                ..
            }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingTree { release, dir, wanted } => {
                write!(
                    f,
                    "no kernel modules for the running kernel {release}: {} does not exist \
                     (the image has no module tree, or one for another kernel)",
                    dir.display()
                )?;
                if wanted.is_empty() {
                    return write!(f, "; no device is waiting for a driver");
                }
                write!(f, "; left without a driver: ")?;
                for (i, w) in wanted.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{w}")?;
                }
                Ok(())
            }
            Error::ReadIndex { path, source } if source.kind() == io::ErrorKind::NotFound => write!(
                f,
                "module index {} is missing: the image's module tree has no indexes \
                 (run `depmod -b <root> <release>` when building the image)",
                path.display()
            ),
            Error::ReadIndex { path, source } => {
                write!(f, "cannot read module index {}: {source}", path.display())
            }
            Error::Parse { dir, source } => {
                write!(f, "malformed module index in {}: {source}", dir.display())
            }
            Error::DamagedIndex {
                path,
                offset,
                reason,
            } => {
                write!(f, "damaged module index {}", path.display())?;
                if let Some(at) = offset {
                    write!(f, " at byte {at}")?;
                }
                write!(f, ": {reason} (rerun depmod when building the image)")
            }
            Error::UnknownModule { name, dir } => write!(
                f,
                "no module, built-in or alias named {name} in {}",
                dir.display()
            ),
            Error::UnknownFilesystem { fstype, dir } => write!(
                f,
                "no module provides filesystem {fstype} (no alias fs-{fstype} in {}, and it is not built in)",
                dir.display()
            ),
            Error::ReadProcModules { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Error::Release { source } => {
                write!(f, "cannot tell the running kernel's release (uname): {source}")
            }
            Error::ScanSysfs { path, source } => {
                write!(f, "cannot list devices in {}: {source}", path.display())
            }
            Error::Load { module, failure } => write!(f, "module {module}: {failure}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ReadIndex { source, .. }
            | Error::ReadProcModules { source, .. }
            | Error::Release { source }
            | Error::ScanSysfs { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_in_words() {
        assert_eq!(Errno::ENOEXEC.to_string(), "Exec format error (errno 8)");
    }

    #[test]
    fn failure_messages() {
        let f = LoadFailure::Kernel {
            path: "/lib/modules/r/x.ko".into(),
            errno: Errno::ENOEXEC,
        };
        assert_eq!(
            f.to_string(),
            "finit_module(/lib/modules/r/x.ko) failed: Exec format error (errno 8); the module was built for another kernel"
        );
        let c = LoadFailure::CompressedUnsupported {
            path: "/m/virtio_net.ko.xz".into(),
        };
        assert!(c
            .to_string()
            .contains("kernel cannot load compressed module /m/virtio_net.ko.xz"));
        assert!(c.to_string().contains("ship uncompressed .ko files"));
    }
}
