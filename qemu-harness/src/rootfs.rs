//! A real Debian image: the bookworm tree that `scripts/debian-rootfs.sh` caches (mmdebstrap
//! minbase, `linux-image-amd64` with its initramfs-tools initrd, busybox; no systemd), made
//! into an ext4 image per run, with the files of the run written into it.
//!
//! It owns turning the cached tree into a bootable image and the kernel and initrd to boot it
//! with. It does not build the tree (the script does, once per machine) and never changes
//! it: every run gets a fresh image holding the binaries just built.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::paths::workspace_root;

/// Size of the image: the tree is ~450 MB; the rest is room for the guest's writes.
const IMAGE_SIZE: &str = "1536M";

/// What `scripts/debian-rootfs.sh` left in its directory.
#[derive(Debug, Clone)]
pub struct DebianRootfs {
    /// The directory holding `rootfs/`, `vmlinuz`, `initrd.img` and `complete`.
    pub dir: PathBuf,
}

/// One file to put into the image: its path in the guest, its content, its mode.
#[derive(Debug, Clone)]
pub struct GuestFile {
    pub path: String,
    pub content: FileContent,
    pub mode: u32,
}

/// Where a [`GuestFile`]'s bytes come from.
#[derive(Debug, Clone)]
pub enum FileContent {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

impl GuestFile {
    pub fn host(path: &str, from: impl Into<PathBuf>, mode: u32) -> GuestFile {
        GuestFile {
            path: path.into(),
            content: FileContent::Host(from.into()),
            mode,
        }
    }

    pub fn bytes(path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> GuestFile {
        GuestFile {
            path: path.into(),
            content: FileContent::Bytes(bytes.into()),
            mode,
        }
    }
}

impl DebianRootfs {
    /// The cache of this workspace (`.cache/debian-rootfs`), or an error saying how to build it.
    pub fn cached() -> Result<DebianRootfs> {
        DebianRootfs::in_dir(&workspace_root().join(".cache/debian-rootfs"))
    }

    /// The tree in `dir`, once its build completed.
    pub fn in_dir(dir: &Path) -> Result<DebianRootfs> {
        if !dir.join("complete").is_file() {
            return Err(Error::Invalid(format!(
                "no Debian rootfs in {} (build it with scripts/debian-rootfs.sh, which \
                 scripts/setup.sh runs)",
                dir.display()
            )));
        }
        Ok(DebianRootfs { dir: dir.into() })
    }

    pub fn tree(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    /// The image's own kernel (the bzImage the package installed) and its module tree.
    pub fn kernel(&self) -> Result<Kernel> {
        let modules = self.tree().join("lib/modules");
        let release = fs::read_dir(&modules)
            .map_err(Error::io("read directory", &modules))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .ok_or_else(|| Error::Kernel {
                path: modules.clone(),
                reason: "no kernel release directory".into(),
            })?;
        let vmlinuz = self.dir.join("vmlinuz");
        Ok(Kernel {
            modules_dir: Some(modules.join(&release)),
            release,
            vmlinux: vmlinuz.clone(),
            vmlinuz,
        })
    }

    /// Makes `out` (an ext4 image of the tree, labelled `rootfs`) and writes `files` into it
    /// with debugfs, creating missing parent directories and replacing files of the tree.
    pub fn image(&self, out: &Path, files: &[GuestFile]) -> Result<PathBuf> {
        let _ = fs::remove_file(out);
        cmd::run(
            Command::new("mkfs.ext4")
                .args(["-q", "-L", "rootfs", "-d"])
                .arg(self.tree())
                .arg(out)
                .arg(IMAGE_SIZE),
        )?;
        let staging = out.with_extension("files");
        fs::create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;
        let script = self.debugfs_script(&staging, files)?;
        let script_path = staging.join("debugfs.cmds");
        fs::write(&script_path, script).map_err(Error::io("write", &script_path))?;
        let output = cmd::run(
            Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&script_path)
                .arg(out),
        )?;
        // debugfs exits 0 whatever its commands did; each failure is a line on stderr
        // besides its version banner.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
            .collect();
        let _ = fs::remove_dir_all(&staging);
        if !errors.is_empty() {
            return Err(Error::Invalid(format!(
                "debugfs on {}: {}",
                out.display(),
                errors.join("; ")
            )));
        }
        Ok(out.to_path_buf())
    }

    /// The debugfs commands that put `files` in place; contents given as bytes are staged as
    /// files in `staging` first.
    fn debugfs_script(&self, staging: &Path, files: &[GuestFile]) -> Result<String> {
        let tree = self.tree();
        let mut script = String::new();
        let mut made = Vec::<String>::new();
        for (i, f) in files.iter().enumerate() {
            let resolved = resolve_parents(&tree, &f.path);
            let rel = resolved.trim_start_matches('/');
            let mut dir = String::new();
            for part in Path::new(rel).parent().into_iter().flat_map(|p| p.iter()) {
                dir.push('/');
                dir.push_str(&part.to_string_lossy());
                if !tree.join(dir.trim_start_matches('/')).exists() && !made.contains(&dir) {
                    script.push_str(&format!("mkdir {dir}\n"));
                    made.push(dir.clone());
                }
            }
            // `write` refuses an existing name: remove the tree's file first.
            if tree.join(rel).symlink_metadata().is_ok() {
                script.push_str(&format!("rm /{rel}\n"));
            }
            let source = match &f.content {
                FileContent::Host(p) => p.clone(),
                FileContent::Bytes(b) => {
                    let p = staging.join(format!("file{i}"));
                    fs::write(&p, b).map_err(Error::io("write", &p))?;
                    p
                }
            };
            script.push_str(&format!("write {} /{rel}\n", source.display()));
            script.push_str(&format!("sif /{rel} mode 0{:o}\n", 0o100000 | f.mode));
        }
        Ok(script)
    }
}

/// `path` with the symlinks among its parent directories resolved inside `tree` (debugfs
/// follows none: on a merged-/usr Debian `/sbin/init` must be written as `/usr/sbin/init`).
fn resolve_parents(tree: &Path, path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .rev()
        .collect();
    // Bounded: with a symlink loop in the tree the path is given as named, and debugfs's
    // error names it.
    for _ in 0..64 {
        let Some(part) = pending.pop() else { break };
        if pending.is_empty() {
            parts.push(part);
            break;
        }
        match part.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let here = tree.join(parts.join("/")).join(&part);
        match fs::read_link(&here) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    parts.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .rev(),
                );
            }
            Err(_) => parts.push(part),
        }
    }
    if !pending.is_empty() {
        return path.to_string();
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_resolve_through_the_trees_symlinks() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        fs::create_dir_all(t.join("usr/sbin")).unwrap();
        fs::create_dir_all(t.join("etc")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", t.join("sbin")).unwrap();
        std::os::unix::fs::symlink("/usr/sbin", t.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", t.join("loop")).unwrap();
        assert_eq!(resolve_parents(t, "/sbin/init"), "/usr/sbin/init");
        assert_eq!(resolve_parents(t, "/abs/init"), "/usr/sbin/init");
        assert_eq!(
            resolve_parents(t, "/etc/vminit/vminit.toml"),
            "/etc/vminit/vminit.toml"
        );
        // The last component stays as named: the file is replaced, not its link's target.
        assert_eq!(resolve_parents(t, "/sbin"), "/sbin");
        assert_eq!(resolve_parents(t, "/loop/x"), "/loop/x");
    }
}
