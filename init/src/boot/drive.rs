//! Mounting the config drive: the init's half of the config-drive source. Finding the drive
//! and reading labels is `guest_config::drive`'s job, reading the file `guest_config::hostfile`'s;
//! this module mounts the chosen device, reads `vminit.toml` from its root, and unmounts it
//! again, so nothing of the host's drive stays mounted in the guest.
//!
//! The drive is host input: it is mounted `ro,nodev,nosuid,noexec,nosymfollow` (the last where
//! the kernel has it, Linux 5.10+), ext4 with `noload` so a dirty journal is never replayed onto
//! the host's media, and the file is read only if it is a regular file of at most 1 MiB, opened
//! without following a symlink and without blocking (a FIFO or a device node is refused, named).

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};

use guest_config::hostfile::{self, HostFileError};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// Where the drive is mounted while it is read.
const MOUNT_POINT: &str = "/run/vminit/drive";

#[derive(Debug)]
pub enum DriveError {
    MountPoint(PathBuf, std::io::Error),
    Mount {
        device: PathBuf,
        fstype: String,
        errno: rustix::io::Errno,
    },
    File {
        device: PathBuf,
        error: HostFileError,
    },
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveError::MountPoint(p, e) => {
                write!(f, "config drive: cannot create {}: {e}", p.display())
            }
            DriveError::Mount {
                device,
                fstype,
                errno,
            } => write!(
                f,
                "config drive {}: mount as {fstype} (read-only) failed: {errno}",
                device.display(),
            ),
            DriveError::File { device, error } => {
                write!(f, "config drive {}: {error}", device.display())
            }
        }
    }
}

/// The mount flags and data for a host's drive of file system `fstype`.
fn mount_options(fstype: &str) -> (MountFlags, Option<&'static CStr>) {
    let flags = MountFlags::RDONLY
        | MountFlags::NOSUID
        | MountFlags::NODEV
        | MountFlags::NOEXEC
        | MountFlags::NOSYMFOLLOW;
    // Without `noload` a read-only ext4 mount still replays a dirty journal onto the device.
    let data = (fstype == "ext4").then_some(c"noload");
    (flags, data)
}

/// Mounts `device` read-only; a kernel older than 5.10 refuses `nosymfollow` with EINVAL, so
/// the mount is tried once more without it (the file itself is still opened with
/// `O_NOFOLLOW`).
fn mount_drive(device: &Path, mp: &Path, fstype: &str) -> rustix::io::Result<()> {
    let (flags, data) = mount_options(fstype);
    match mount(device, mp, fstype, flags, data) {
        Err(rustix::io::Errno::INVAL) => {
            log::debug!("config drive: mount without nosymfollow (kernel older than 5.10?)");
            let flags = flags.difference(MountFlags::NOSYMFOLLOW);
            mount(device, mp, fstype, flags, data)
        }
        other => other,
    }
}

/// Mounts `device` (filesystem `fstype`) read-only, returns the text of `vminit.toml` at its
/// root, and unmounts it whatever happened.
pub fn read_config(device: &Path, fstype: &str) -> Result<String, DriveError> {
    let mp = Path::new(MOUNT_POINT);
    std::fs::create_dir_all(mp).map_err(|e| DriveError::MountPoint(mp.to_path_buf(), e))?;
    mount_drive(device, mp, fstype).map_err(|errno| DriveError::Mount {
        device: device.to_path_buf(),
        fstype: fstype.to_string(),
        errno,
    })?;
    let file = mp.join(guest_config::drive::FILE);
    let result = hostfile::read_host_file(&file, hostfile::MAX_HOST_FILE).map_err(|error| {
        DriveError::File {
            device: device.to_path_buf(),
            error,
        }
    });
    if let Err(e) = unmount(mp, UnmountFlags::empty()) {
        log::warn!(
            "config drive {}: unmount failed: {e}; detaching",
            device.display()
        );
        let _ = unmount(mp, UnmountFlags::DETACH);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_drives_are_mounted_inert_and_ext4_without_its_journal() {
        let (flags, data) = mount_options("ext4");
        for f in [
            MountFlags::RDONLY,
            MountFlags::NOSUID,
            MountFlags::NODEV,
            MountFlags::NOEXEC,
            MountFlags::NOSYMFOLLOW,
        ] {
            assert!(flags.contains(f), "{f:?} missing");
        }
        assert_eq!(data, Some(c"noload"));
        assert_eq!(mount_options("vfat").1, None);
        assert_eq!(mount_options("iso9660").1, None);
    }
}
