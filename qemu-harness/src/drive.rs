//! Config drive images: a vfat, iso9660 or ext4 file system with a label
//! (vminit looks for `VMINIT`) holding the given files, made with the usual
//! tools (mkfs.vfat + mtools, genisoimage, mkfs.ext4 -d) without mounting.

use std::path::Path;
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};

/// The label vminit looks for (contract §2).
pub const DEFAULT_LABEL: &str = "VMINIT";

/// A config drive's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveFs {
    Vfat,
    Iso9660,
    Ext4,
}

impl std::str::FromStr for DriveFs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "vfat" | "fat" => Ok(DriveFs::Vfat),
            "iso9660" | "iso" => Ok(DriveFs::Iso9660),
            "ext4" => Ok(DriveFs::Ext4),
            other => Err(Error::Invalid(format!(
                "unknown drive file system `{other}` (vfat, iso9660 or ext4)"
            ))),
        }
    }
}

/// Writes an image of file system `fs` labelled `label` to `out`, holding
/// `files` as (path relative to the root, bytes); subdirectories are created.
pub fn make_drive(fs: DriveFs, label: &str, files: &[(&str, &[u8])], out: &Path) -> Result<()> {
    check_label(fs, label)?;
    for (name, _) in files {
        if name.is_empty() || name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(Error::Invalid(format!(
                "drive file name `{name}` must be a relative path without `..`"
            )));
        }
    }
    let _ = std::fs::remove_file(out);
    match fs {
        DriveFs::Vfat => vfat(label, files, out),
        DriveFs::Iso9660 | DriveFs::Ext4 => {
            let dir = stage(files)?;
            make_drive_from_dir(fs, label, dir.path(), out)
        }
    }
}

/// Writes an image of `fs` labelled `label` holding the tree at `dir` as it is, symlinks,
/// FIFOs and device nodes included (ext4 and iso9660 with Rock Ridge keep them; vfat cannot):
/// the hostile drives a guest must survive.
pub fn make_drive_from_dir(fs: DriveFs, label: &str, dir: &Path, out: &Path) -> Result<()> {
    check_label(fs, label)?;
    let _ = std::fs::remove_file(out);
    match fs {
        DriveFs::Vfat => Err(Error::Invalid(
            "a vfat drive cannot hold special files; use make_drive".into(),
        )),
        DriveFs::Iso9660 => cmd::run(
            Command::new("genisoimage")
                .args(["-quiet", "-R", "-J", "-V", label, "-o"])
                .arg(out)
                .arg(dir),
        )
        .map(drop),
        DriveFs::Ext4 => {
            let size_kb = (tree_bytes(dir) / 1024) * 2 + 2048;
            cmd::run(
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-L", label, "-d"])
                    .arg(dir)
                    .arg(out)
                    .arg(format!("{size_kb}k")),
            )
            .map(drop)
        }
    }
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn check_label(fs: DriveFs, label: &str) -> Result<()> {
    let max = match fs {
        DriveFs::Vfat => 11,
        DriveFs::Iso9660 => 32,
        DriveFs::Ext4 => 16,
    };
    if label.is_empty() || label.len() > max || !label.is_ascii() {
        return Err(Error::Invalid(format!(
            "label `{label}` must be 1 to {max} ASCII characters for {fs:?}"
        )));
    }
    Ok(())
}

fn vfat(label: &str, files: &[(&str, &[u8])], out: &Path) -> Result<()> {
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let size_kb = (total / 1024) * 2 + 2048;
    cmd::run(
        Command::new("mkfs.vfat")
            .args(["-n", label, "-C"])
            .arg(out)
            .arg(size_kb.to_string()),
    )?;
    let dir = stage(files)?;
    let image = format!("{}", out.display());
    let mut made = std::collections::BTreeSet::new();
    for (name, _) in files {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}/{part}")
            };
            if made.insert(prefix.clone()) {
                cmd::run(
                    mtools("mmd")
                        .args(["-i", &image])
                        .arg(format!("::{prefix}")),
                )?;
            }
        }
        cmd::run(
            mtools("mcopy")
                .args(["-o", "-i", &image])
                .arg(dir.path().join(name))
                .arg(format!("::{name}")),
        )?;
    }
    Ok(())
}

fn mtools(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    // mtools refuses images whose geometry it finds odd unless told not to check.
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    cmd
}

/// The files laid out in a temporary directory.
fn stage(files: &[(&str, &[u8])]) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().map_err(Error::io("create temp dir", "/tmp"))?;
    for (name, bytes) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create dir", parent))?;
        }
        std::fs::write(&path, bytes).map_err(Error::io("write", &path))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names_are_checked_before_any_tool_runs() {
        let out = Path::new("/nonexistent/dir/img");
        let err = make_drive(DriveFs::Vfat, "TWELVECHARSX", &[], out).unwrap_err();
        assert!(err.to_string().contains("1 to 11"));
        let err = make_drive(DriveFs::Ext4, "VMINIT", &[("../x", b"")], out).unwrap_err();
        assert!(err.to_string().contains("relative path"));
        assert!("zfs".parse::<DriveFs>().is_err());
        assert_eq!("iso9660".parse::<DriveFs>().unwrap(), DriveFs::Iso9660);
    }
}
