//! Finding the config drive without udev: walk `/sys/class/block`, probe each candidate's
//! superblock through its node under `/dev`, keep the ones labelled `VMINIT`. Both roots
//! are parameters so tests use a fake tree.
//!
//! Skipped: `ram*`, `zram*`, loop devices with no backing file, and devices of size 0
//! (an empty CD drive). A device that cannot be opened or read is logged and skipped: an
//! unrelated broken disk must not hide the config drive.
//!
//! One filesystem can show up twice: mtools' `mformat` writes a partition entry that starts
//! at sector 0, so the kernel shows `vda` and `vda1` for the same FAT volume. Devices with
//! the same filesystem type and volume identity are one drive; the whole disk is preferred
//! over its partitions (it is the device the image builder wrote, and its size is the
//! filesystem's). Two different filesystems labelled `VMINIT` are an error naming both.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::superblock::{probe_device, FsType, VolumeId};
use super::LABEL;

/// The config drive found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDrive {
    /// The device node to mount, e.g. `/dev/vdb`.
    pub device: PathBuf,
    /// The kernel's name, e.g. `vdb`.
    pub name: String,
    pub fs: FsType,
    pub id: VolumeId,
    /// Other names of the same filesystem (e.g. `vdb1`), not used.
    pub aliases: Vec<String>,
}

impl FoundDrive {
    /// `"/dev/vdb (vfat)"`, for messages and the conflict error.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.device.display(), self.fs)
    }
}

#[derive(Debug)]
pub enum FindError {
    /// The sysfs directory could not be listed.
    Sysfs { path: PathBuf, error: io::Error },
    /// Two different filesystems carry the label.
    Ambiguous { first: String, second: String },
}

impl fmt::Display for FindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindError::Sysfs { path, error } => {
                write!(f, "config drive: cannot list {}: {error}", path.display())
            }
            FindError::Ambiguous { first, second } => write!(
                f,
                "config drive: two different filesystems are labelled {LABEL}: {first} and \
                 {second}; attach only one (neither is used)"
            ),
        }
    }
}

impl std::error::Error for FindError {}

struct Candidate {
    name: String,
    partition: bool,
    fs: FsType,
    id: VolumeId,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Whether the block device `name` (directory `dir` in sysfs) is worth probing.
fn wanted(name: &str, dir: &Path) -> bool {
    if name.starts_with("ram") || name.starts_with("zram") {
        return false;
    }
    if name.starts_with("loop")
        && read_trim(&dir.join("loop/backing_file")).is_none_or(|b| b.is_empty())
    {
        return false;
    }
    read_trim(&dir.join("size")).is_none_or(|s| s != "0")
}

/// Looks for the `VMINIT` filesystem under `sys_root/class/block`, probing nodes in
/// `dev_root`. `Ok(None)`: no config drive.
pub fn find(sys_root: &Path, dev_root: &Path) -> Result<Option<FoundDrive>, FindError> {
    let class = sys_root.join("class/block");
    let entries = fs::read_dir(&class).map_err(|error| FindError::Sysfs {
        path: class.clone(),
        error,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut found: Vec<Candidate> = Vec::new();
    for name in names {
        let dir = class.join(&name);
        if !wanted(&name, &dir) {
            continue;
        }
        let node = dev_root.join(&name);
        match probe_device(&node) {
            Ok(Some(p)) if p.label == LABEL => found.push(Candidate {
                partition: dir.join("partition").exists(),
                name,
                fs: p.fs,
                id: p.id,
            }),
            Ok(_) => {}
            // an empty removable drive; nothing to say
            Err(e) if e.raw_os_error() == Some(libc::ENOMEDIUM) => {}
            Err(e) => log::warn!(
                "config drive search: cannot read {}: {e}; skipped",
                node.display()
            ),
        }
    }
    // whole disks first, so the first of each identity is the preferred device
    found.sort_by(|a, b| (a.partition, &a.name).cmp(&(b.partition, &b.name)));
    let Some(first) = found.first() else {
        return Ok(None);
    };
    let describe =
        |c: &Candidate| format!("{} ({}, {})", dev_root.join(&c.name).display(), c.fs, c.id);
    if let Some(other) = found.iter().find(|c| (c.fs, c.id) != (first.fs, first.id)) {
        return Err(FindError::Ambiguous {
            first: describe(first),
            second: describe(other),
        });
    }
    Ok(Some(FoundDrive {
        device: dev_root.join(&first.name),
        name: first.name.clone(),
        fs: first.fs,
        id: first.id,
        aliases: found[1..].iter().map(|c| c.name.clone()).collect(),
    }))
}

#[cfg(test)]
mod tests;
