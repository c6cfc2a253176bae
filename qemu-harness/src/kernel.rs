//! The test kernel: Debian's `linux-image-amd64` (or, for arm64 guests,
//! `linux-image-arm64`), fetched once into a cache that other tools read
//! directly, or a kernel the user names.
//!
//! Cache layout (`$VMINIT_KERNEL_CACHE`, default `<root>/.cache/kernel/`):
//! `<release>/boot/vmlinuz` (bzImage), `<release>/boot/vmlinux` (the ELF
//! extracted from it, booted through PVH), `<release>/lib/modules/<release>/`
//! (the module tree with depmod indexes), `<release>/kernel.version`
//! (package, version, release), and `current -> <release>`.
//! The arm64 cache (`$VMINIT_KERNEL_CACHE_ARM64`, default `.cache/kernel-arm64/`)
//! has the same layout without `vmlinux`: Debian's arm64 `vmlinuz` is the
//! uncompressed `Image` that QEMU's `-kernel` boots as it is.
//! A release directory is assembled under a temporary name and renamed into
//! place, under an exclusive `flock` on `.lock`, so concurrent test
//! processes fetch once and never see half a tree.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::bzimage;
use crate::cmd;
use crate::error::{Error, Result};
use crate::paths::workspace_root;

/// Overrides the cache directory.
pub const CACHE_ENV: &str = "VMINIT_KERNEL_CACHE";
/// Overrides the arm64 cache directory.
pub const CACHE_ARM64_ENV: &str = "VMINIT_KERNEL_CACHE_ARM64";
/// Overrides the Debian package fetched (default: what `linux-image-amd64` depends on).
pub const PACKAGE_ENV: &str = "VMINIT_KERNEL_PACKAGE";
/// A user's kernel (bzImage or ELF vmlinux) instead of the cached one.
pub const KERNEL_ENV: &str = "VMINIT_KERNEL";
/// The module tree (`.../lib/modules/<release>`) of the user's kernel.
pub const MODULES_DIR_ENV: &str = "VMINIT_MODULES_DIR";

/// The package whose dependency names the current kernel, per architecture. The arm64 one is
/// a foreign package on an amd64 host: apt knows it once `dpkg --add-architecture arm64` and
/// `apt-get update` have run (scripts/setup.sh).
fn meta_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "linux-image-amd64",
        Arch::Aarch64 => "linux-image-arm64:arm64",
    }
}

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The bzImage (for a user's ELF-only kernel, the ELF itself).
    pub vmlinuz: PathBuf,
    /// The uncompressed ELF, booted through PVH (arm64: the `Image`, as `vmlinuz`).
    pub vmlinux: PathBuf,
    /// `.../lib/modules/<release>`, with depmod indexes; `None` for a user's
    /// kernel given without one.
    pub modules_dir: Option<PathBuf>,
}

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    cache_dir_for(Arch::X86_64)
}

/// The cache directory of `arch`'s kernel.
pub fn cache_dir_for(arch: Arch) -> PathBuf {
    let (env, default) = match arch {
        Arch::X86_64 => (CACHE_ENV, ".cache/kernel"),
        Arch::Aarch64 => (CACHE_ARM64_ENV, ".cache/kernel-arm64"),
    };
    match std::env::var_os(env) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(default),
    }
}

impl Kernel {
    /// The kernel named by `$VMINIT_KERNEL`/`$VMINIT_MODULES_DIR`, else the
    /// cached Debian kernel, fetched if absent.
    pub fn get() -> Result<Kernel> {
        let env_path = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        match env_path(KERNEL_ENV) {
            Some(kernel) => Self::from_paths(&kernel, env_path(MODULES_DIR_ENV).as_deref()),
            None => Self::cached(&cache_dir()),
        }
    }

    /// The test kernel of `arch`: [`Kernel::get`] for x86_64; for arm64 the cached Debian
    /// kernel (the user-kernel variables name an x86 kernel).
    pub fn get_for(arch: Arch) -> Result<Kernel> {
        match arch {
            Arch::X86_64 => Self::get(),
            Arch::Aarch64 => Self::cached_for(&cache_dir_for(arch), arch),
        }
    }

    /// A user's kernel: a bzImage (its vmlinux is extracted into the cache,
    /// keyed by size and mtime) or an ELF vmlinux, plus an optional module tree.
    pub fn from_paths(kernel: &Path, modules_dir: Option<&Path>) -> Result<Kernel> {
        let image = std::fs::read(kernel).map_err(Error::io("read kernel", kernel))?;
        let modules_dir = modules_dir.map(Path::to_path_buf);
        let dir_release = modules_dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        if bzimage::is_elf(&image) {
            return Ok(Kernel {
                release: dir_release.unwrap_or_else(|| "unknown".into()),
                vmlinuz: kernel.to_path_buf(),
                vmlinux: kernel.to_path_buf(),
                modules_dir,
            });
        }
        let release = bzimage::release(&image)
            .or(dir_release)
            .unwrap_or_else(|| "unknown".into());
        let meta = std::fs::metadata(kernel).map_err(Error::io("stat", kernel))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let dir = cache_dir()
            .join("custom")
            .join(format!("{release}-{}-{mtime}", meta.len()));
        let vmlinux = dir.join("vmlinux");
        if !vmlinux.is_file() {
            std::fs::create_dir_all(&dir).map_err(Error::io("create dir", &dir))?;
            bzimage::extract_vmlinux(kernel, &vmlinux)?;
        }
        Ok(Kernel {
            release,
            vmlinuz: kernel.to_path_buf(),
            vmlinux,
            modules_dir,
        })
    }

    /// The cached Debian kernel in `cache`, fetched under the lock if absent.
    pub fn cached(cache: &Path) -> Result<Kernel> {
        Self::cached_for(cache, Arch::X86_64)
    }

    /// [`Kernel::cached`] for `arch` (`$VMINIT_KERNEL_PACKAGE` applies to x86_64 only).
    pub fn cached_for(cache: &Path, arch: Arch) -> Result<Kernel> {
        std::fs::create_dir_all(cache).map_err(Error::io("create cache dir", cache))?;
        let _lock = Lock::exclusive(&cache.join(".lock"))?;
        let wanted = match arch {
            Arch::X86_64 => std::env::var(PACKAGE_ENV).ok().filter(|p| !p.is_empty()),
            Arch::Aarch64 => None,
        };
        if let Some(kernel) = Self::in_cache(cache, wanted.as_deref(), arch) {
            return Ok(kernel);
        }
        let package = match wanted {
            Some(p) => p,
            None => current_package(arch)?,
        };
        fetch(cache, &package, arch)
    }

    /// The kernel `current` points at, if complete and (when `package` is
    /// given) from that package.
    fn in_cache(cache: &Path, package: Option<&str>, arch: Arch) -> Option<Kernel> {
        let release = std::fs::read_link(cache.join("current")).ok()?;
        let release = release.to_string_lossy().into_owned();
        let dir = cache.join(&release);
        let recorded = std::fs::read_to_string(dir.join("kernel.version")).ok()?;
        if let Some(package) = package {
            if !recorded.lines().any(|l| l == format!("package={package}")) {
                return None;
            }
        }
        Some(layout(&dir, &release, arch))
    }
}

fn layout(dir: &Path, release: &str, arch: Arch) -> Kernel {
    let vmlinux = match arch {
        Arch::X86_64 => "boot/vmlinux",
        Arch::Aarch64 => "boot/vmlinuz",
    };
    Kernel {
        release: release.to_string(),
        vmlinuz: dir.join("boot/vmlinuz"),
        vmlinux: dir.join(vmlinux),
        modules_dir: Some(dir.join("lib/modules").join(release)),
    }
}

/// The package `arch`'s meta package (`linux-image-amd64`) depends on, per `apt-cache depends`.
fn current_package(arch: Arch) -> Result<String> {
    let meta = meta_package(arch);
    let out = cmd::run(Command::new("apt-cache").args(["depends", meta]))?;
    parse_depends(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        let hint = match arch {
            Arch::X86_64 => format!("run `apt-get update` or set {PACKAGE_ENV}"),
            Arch::Aarch64 => {
                "run `dpkg --add-architecture arm64 && apt-get update` (scripts/setup.sh does)"
                    .to_string()
            }
        };
        Error::Invalid(format!(
            "`apt-cache depends {meta}` names no linux-image package; {hint}"
        ))
    })
}

/// The first `Depends: linux-image-*` of `apt-cache depends` output.
pub fn parse_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
        .map(str::to_string)
}

/// Downloads `package`, assembles `<cache>/<release>` and points `current` at it.
fn fetch(cache: &Path, package: &str, arch: Arch) -> Result<Kernel> {
    let staging = cache.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(Error::io("create dir", &staging))?;
    let result = assemble(cache, &staging, package, arch);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn assemble(cache: &Path, staging: &Path, package: &str, arch: Arch) -> Result<Kernel> {
    cmd::run(
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(staging),
    )?;
    let deb = find_deb(staging)?;
    let root = staging.join("root");
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let version = cmd::run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let release = single_release(&root)?;
    let out = staging.join(&release);
    std::fs::create_dir_all(out.join("boot")).map_err(Error::io("create dir", &out))?;
    std::fs::create_dir_all(out.join("lib/modules")).map_err(Error::io("create dir", &out))?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    let boot = out.join("boot");
    std::fs::rename(&vmlinuz, boot.join("vmlinuz")).map_err(Error::io("move", &vmlinuz))?;
    for (from, to) in [("config", "config"), ("System.map", "System.map")] {
        let _ = std::fs::rename(root.join(format!("boot/{from}-{release}")), boot.join(to));
    }
    let modules = root.join("lib/modules").join(&release);
    let dest = out.join("lib/modules").join(&release);
    std::fs::rename(&modules, &dest).map_err(Error::io("move", &modules))?;
    cmd::run(Command::new("depmod").arg("-b").arg(&out).arg(&release))?;
    if arch == Arch::X86_64 {
        bzimage::extract_vmlinux(&boot.join("vmlinuz"), &boot.join("vmlinux"))?;
    }
    let record = format!("package={package}\nversion={version}\nrelease={release}\n");
    std::fs::write(out.join("kernel.version"), record)
        .map_err(Error::io("write", out.join("kernel.version")))?;
    let final_dir = cache.join(&release);
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&out, &final_dir).map_err(Error::io("move into cache", &final_dir))?;
    let link_tmp = cache.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(&release, &link_tmp).map_err(Error::io("symlink", &link_tmp))?;
    std::fs::rename(&link_tmp, cache.join("current"))
        .map_err(Error::io("rename", cache.join("current")))?;
    Ok(layout(&final_dir, &release, arch))
}

fn find_deb(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("read dir", dir))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| Error::Kernel {
            path: dir.to_path_buf(),
            reason: "apt-get download left no .deb".into(),
        })
}

fn single_release(root: &Path) -> Result<String> {
    let dir = root.join("lib/modules");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(Error::io("read dir", &dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match (names.pop(), names.is_empty()) {
        (Some(release), true) => Ok(release),
        _ => Err(Error::Kernel {
            path: dir,
            reason: "expected exactly one release directory".into(),
        }),
    }
}

/// An exclusive `flock(2)`, released when dropped (the fd closes).
struct Lock {
    _file: File,
}

impl Lock {
    fn exclusive(path: &Path) -> Result<Lock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io("open lock file", path))?;
        loop {
            // SAFETY: the fd belongs to `file`, which outlives the call;
            // flock only changes lock state on it.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("flock", path)(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_parsing_picks_the_image_package() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n  Recommends: x\n";
        assert_eq!(
            parse_depends(text).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(parse_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn depends_parsing_keeps_a_foreign_architecture() {
        let text = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-57-arm64:arm64\n";
        assert_eq!(
            parse_depends(text).as_deref(),
            Some("linux-image-6.1.0-57-arm64:arm64")
        );
    }

    #[test]
    fn the_arm64_layout_boots_the_image_as_it_is() {
        let k = layout(Path::new("/c/r"), "r", Arch::Aarch64);
        assert_eq!(k.vmlinux, PathBuf::from("/c/r/boot/vmlinuz"));
        assert_eq!(k.vmlinuz, k.vmlinux);
    }

    #[test]
    fn in_cache_needs_the_version_record_and_matching_package() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("6.1.0-x", tmp.path().join("current")).unwrap();
        std::fs::create_dir_all(tmp.path().join("6.1.0-x")).unwrap();
        assert_eq!(Kernel::in_cache(tmp.path(), None, Arch::X86_64), None);
        std::fs::write(
            tmp.path().join("6.1.0-x/kernel.version"),
            "package=linux-image-6.1.0-x\nversion=1\nrelease=6.1.0-x\n",
        )
        .unwrap();
        let k = Kernel::in_cache(tmp.path(), None, Arch::X86_64).unwrap();
        assert_eq!(k.vmlinux, tmp.path().join("6.1.0-x/boot/vmlinux"));
        assert_eq!(
            k.modules_dir,
            Some(tmp.path().join("6.1.0-x/lib/modules/6.1.0-x"))
        );
        assert!(Kernel::in_cache(tmp.path(), Some("linux-image-other"), Arch::X86_64).is_none());
        assert!(Kernel::in_cache(tmp.path(), Some("linux-image-6.1.0-x"), Arch::X86_64).is_some());
    }
}
