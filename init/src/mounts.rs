//! The early mounts PID 1 owes the rest of the system, and the unmounting at shutdown.
//! Each mount is skipped when something is already mounted there (the kernel may have mounted
//! devtmpfs, an initramfs `/init` wrapper may have mounted `/proc`), so the init works the same
//! from an initramfs and from a rootfs.

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount that failed, with what was attempted.
#[derive(Debug)]
pub struct MountError {
    pub target: &'static str,
    pub fstype: &'static str,
    pub source: nix::Error,
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mount {} on {} failed: {} (errno {})",
            self.fstype,
            self.target,
            self.source.desc(),
            self.source as i32
        )
    }
}

struct Early {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
    /// Missing kernel support is expected for some (cgroup2 on old kernels): warn, not error.
    optional: bool,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

const EARLY: &[Early] = &[
    Early {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: false,
    },
    Early {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: false,
    },
    Early {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        optional: false,
    },
    Early {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
        optional: true,
    },
    Early {
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        optional: true,
    },
    Early {
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        optional: false,
    },
    Early {
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: true,
    },
];

/// True when something is mounted on `target`: its device differs from its parent's, the
/// classic mountpoint test. Two `stat`s instead of reading `/proc/self/mounts`, which is not
/// there before the first mount and costs milliseconds of cold code under TCG. A bind mount
/// of the parent's own filesystem is not seen; mounting over it is harmless.
fn is_mountpoint(target: &Path) -> bool {
    match (fs::metadata(target), fs::metadata(target.join(".."))) {
        (Ok(t), Ok(parent)) => t.dev() != parent.dev(),
        _ => false,
    }
}

/// Mounts what is not mounted yet. Returns the errors of the mounts that failed (each is also
/// what the health `errors` list shows) and the optional ones skipped as warnings.
pub fn mount_early() -> (Vec<MountError>, Vec<MountError>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for m in EARLY {
        let target = Path::new(m.target);
        if is_mountpoint(target) {
            continue;
        }
        if !target.exists() {
            if let Err(e) = fs::create_dir_all(target) {
                log::debug!("cannot create {}: {e}", m.target);
            }
        }
        if let Err(source) = mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, m.data) {
            let err = MountError {
                target: m.target,
                fstype: m.fstype,
                source,
            };
            if m.optional {
                warnings.push(err);
            } else {
                errors.push(err);
            }
        }
    }
    (errors, warnings)
}

/// Filesystems to leave alone at shutdown: the kernel's own, and the root (remounted
/// read-only instead).
fn is_virtual(fstype: &str) -> bool {
    matches!(
        fstype,
        "proc"
            | "sysfs"
            | "devtmpfs"
            | "devpts"
            | "cgroup2"
            | "cgroup"
            | "rootfs"
            | "ramfs"
            | "tmpfs"
            | "securityfs"
            | "debugfs"
            | "tracefs"
            | "bpf"
            | "mqueue"
            | "pstore"
    )
}

/// Unmounts real filesystems in reverse mount order, lazily detaching any that are busy, then
/// remounts `/` read-only. Errors are logged: at this point nothing else can be done.
pub fn unmount_all() {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let entries: Vec<(String, String)> = table
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let _src = it.next()?;
            let target = it.next()?.to_string();
            let fstype = it.next()?.to_string();
            Some((target, fstype))
        })
        .collect();
    for (target, fstype) in entries.iter().rev() {
        if target == "/" || is_virtual(fstype) {
            continue;
        }
        if let Err(e) = umount2(target.as_str(), MntFlags::empty()) {
            log::warn!(
                "unmount {target} ({fstype}) failed: {}; detaching it",
                e.desc()
            );
            let _ = umount2(target.as_str(), MntFlags::MNT_DETACH);
        }
    }
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Err(e) = mount(None::<&str>, "/", None::<&str>, ro, None::<&str>) {
        // An initramfs root (rootfs/ramfs) cannot be read-only; that is expected there.
        log::debug!("remount / read-only: {}", e.desc());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountpoint_test_sees_mounts_and_plain_directories() {
        // The test host has /proc mounted, as every Linux system that runs cargo does.
        assert!(is_mountpoint(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("plain");
        fs::create_dir(&sub).unwrap();
        assert!(!is_mountpoint(&sub));
        assert!(!is_mountpoint(&dir.path().join("missing")));
    }
}
