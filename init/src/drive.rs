//! Mounting the config drive: the init's half of contract §2's config-drive row. Finding the
//! drive and reading labels is `guest_config::drive`'s job; this module mounts the chosen
//! device read-only, reads `vminit.toml` from its root, and unmounts it again, so nothing of
//! the host's drive stays mounted in the guest.

use std::fmt;
use std::path::{Path, PathBuf};

use guest_config::drive::{self, FoundDrive};
use guest_config::DriveConfig;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where the drive is mounted while it is read.
const MOUNT_POINT: &str = "/run/vminit/drive";
/// Largest `vminit.toml` read from a drive: it is host input, and small by nature.
const MAX_CONFIG: u64 = 1024 * 1024;

#[derive(Debug)]
pub enum DriveError {
    MountPoint(PathBuf, std::io::Error),
    Mount {
        device: PathBuf,
        fstype: String,
        errno: nix::Error,
    },
    Read {
        device: PathBuf,
        path: PathBuf,
        error: std::io::Error,
    },
    TooLarge {
        device: PathBuf,
        size: u64,
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
                "config drive {}: mount as {fstype} (read-only) failed: {}",
                device.display(),
                errno.desc()
            ),
            DriveError::Read {
                device,
                path,
                error,
            } => write!(
                f,
                "config drive {}: cannot read {}: {error}",
                device.display(),
                path.display()
            ),
            DriveError::TooLarge { device, size } => write!(
                f,
                "config drive {}: vminit.toml is {size} bytes, more than the {MAX_CONFIG} allowed",
                device.display()
            ),
        }
    }
}

/// Mounts `device` (filesystem `fstype`) read-only, returns the text of `vminit.toml` at its
/// root, and unmounts it whatever happened.
pub fn read_config(device: &Path, fstype: &str) -> Result<String, DriveError> {
    let mp = Path::new(MOUNT_POINT);
    std::fs::create_dir_all(mp).map_err(|e| DriveError::MountPoint(mp.to_path_buf(), e))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(device), mp, Some(fstype), flags, None::<&str>).map_err(|errno| {
        DriveError::Mount {
            device: device.to_path_buf(),
            fstype: fstype.to_string(),
            errno,
        }
    })?;
    let result = read_bounded(device, &mp.join("vminit.toml"));
    if let Err(e) = umount2(mp, MntFlags::empty()) {
        log::warn!(
            "config drive {}: unmount failed: {}; detaching",
            device.display(),
            e.desc()
        );
        let _ = umount2(mp, MntFlags::MNT_DETACH);
    }
    result
}

fn read_bounded(device: &Path, path: &Path) -> Result<String, DriveError> {
    let err = |error| DriveError::Read {
        device: device.to_path_buf(),
        path: path.to_path_buf(),
        error,
    };
    let size = std::fs::metadata(path).map_err(err)?.len();
    if size > MAX_CONFIG {
        return Err(DriveError::TooLarge {
            device: device.to_path_buf(),
            size,
        });
    }
    std::fs::read_to_string(path).map_err(err)
}

/// Finds, mounts and reads the config drive. Returns the parsed drive and whether the drive
/// was present but unusable (an error in `/health`; services still start from the image).
pub fn find_and_read(
    loader: &mut modules::Loader<modules::SystemKernel, modules::SystemClock>,
    errors: &mut Vec<String>,
) -> (Option<(DriveConfig, FoundDrive)>, bool) {
    let found = match drive::find(Path::new("/sys"), Path::new("/dev")) {
        Ok(Some(f)) => f,
        Ok(None) => {
            log::debug!("no config drive labelled {}", drive::LABEL);
            return (None, false);
        }
        Err(e) => {
            let msg = format!("config drive: {e}");
            log::error!("{msg}");
            errors.push(msg);
            return (None, true);
        }
    };
    let desc = found.describe();
    log::info!("config drive: {desc}");
    if let Err(e) = loader.load_fs(found.fs.as_str()) {
        log::warn!(
            "config drive {desc}: loading {}: {e}",
            found.fs.module_alias()
        );
    }
    let text = match read_config(&found.device, found.fs.as_str()) {
        Ok(t) => t,
        Err(e) => {
            log::error!("{e}");
            errors.push(e.to_string());
            return (None, true);
        }
    };
    let file = found.device.join(drive::FILE);
    match DriveConfig::parse(&text, &file) {
        Ok(d) => (Some((d, found)), false),
        Err(errs) => {
            for e in errs {
                log::error!("config drive: {e}");
                errors.push(format!("config drive: {e}"));
            }
            (None, true)
        }
    }
}
