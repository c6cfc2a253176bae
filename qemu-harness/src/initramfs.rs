//! Building an initramfs: an init binary as `/init`, an optional vminit
//! config, extra files and directories, and a chosen subset of kernel
//! modules with indexes rebuilt by `depmod` for exactly that subset (so
//! that `modules.dep` never names a file the image lacks).
//!
//! The archive is uncompressed cpio newc: the kernel unpacks it without
//! a decompressor, which is faster under TCG than saving the bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::cmd;
use crate::cpio::{self, Node};
use crate::error::{Error, Result};
use crate::moddep::ModIndex;
use crate::paths::static_binary_for;

/// The modules a virtio guest needs for its NIC, its disks and the config
/// drive file systems; their dependencies are added by the closure.
pub const VIRTIO_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_net",
    "virtio_blk",
    "vfat",
    "isofs",
    "ext4",
    // vfat asks for its codepage and iocharset at mount time (request_module, answered by
    // vminit's modprobe helper mode).
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    // The ACPI power button and the evdev node it is read through: QEMU's system_powerdown
    // reaches the init only with both.
    "button",
    "evdev",
    // virtio-vsock: the health endpoint's host-only channel (coldplug binds the transport by
    // its modalias; the core modules come with it).
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
];

/// Where the vminit image config lives (contract §2).
pub const CONFIG_PATH: &str = "/etc/vminit/vminit.toml";

/// Which kernel modules go into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modules {
    /// No `/lib/modules` at all.
    None,
    /// [`crate::Arch::virtio_modules`] and their dependencies.
    Virtio,
    /// These names (or aliases) and their dependencies.
    Names(Vec<String>),
}

impl Modules {
    /// Parses the CLI form: `virtio`, `none`, or `a,b,c`.
    pub fn parse(s: &str) -> Self {
        match s {
            "none" | "" => Modules::None,
            "virtio" => Modules::Virtio,
            list => Modules::Names(
                list.split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        }
    }

    /// The requested names (empty for [`Modules::None`]).
    pub fn names(&self) -> Vec<&str> {
        self.names_for(Arch::X86_64)
    }

    /// The requested names for a guest of `arch`.
    pub fn names_for(&self, arch: Arch) -> Vec<&str> {
        match self {
            Modules::None => Vec::new(),
            Modules::Virtio => arch.virtio_modules(),
            Modules::Names(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// An initramfs being assembled. Paths are absolute guest paths; missing
/// parent directories are created (mode 0755).
#[derive(Debug, Clone)]
pub struct Initramfs {
    entries: BTreeMap<String, (u32, Node)>,
    /// Whose static binaries [`Initramfs::vminit_for`] and [`Initramfs::bin`] add.
    arch: Arch,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Initramfs {
    /// An image with the mount points an init expects and a `/dev/console`
    /// node, so the kernel can open the console before devtmpfs exists.
    pub fn new() -> Self {
        Self::for_arch(Arch::X86_64)
    }

    /// [`Initramfs::new`] for a guest of `arch`.
    pub fn for_arch(arch: Arch) -> Self {
        let mut me = Initramfs {
            entries: BTreeMap::new(),
            arch,
        };
        for dir in ["/dev", "/proc", "/sys", "/run", "/tmp", "/etc", "/mnt"] {
            me.dir(dir, 0o755);
        }
        me.node("/tmp", 0o1777, Node::Dir);
        me.node("/dev/console", 0o600, Node::CharDev(5, 1));
        me.node("/dev/null", 0o666, Node::CharDev(1, 3));
        me
    }

    /// An image whose `/init` is the static `vminit` binary.
    pub fn vminit() -> Result<Self> {
        Self::vminit_for(Arch::X86_64)
    }

    /// An image for a guest of `arch` whose `/init` is that architecture's `vminit`.
    pub fn vminit_for(arch: Arch) -> Result<Self> {
        let mut me = Self::for_arch(arch);
        me.init(&static_binary_for("vminit", arch)?)?;
        Ok(me)
    }

    fn node(&mut self, path: &str, mode: u32, node: Node) -> &mut Self {
        let rel = path.trim_start_matches('/').to_string();
        let mut parent = rel.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            self.entries
                .entry(up.to_string())
                .or_insert((0o755, Node::Dir));
            parent = up;
        }
        self.entries.insert(rel, (mode, node));
        self
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.node(path, mode, Node::Dir)
    }

    /// Adds a file with the given bytes and permission bits.
    pub fn file(&mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.node(path, mode, Node::File(bytes.into()))
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.node(path, 0o777, Node::Symlink(target.to_string()))
    }

    /// Adds a named pipe (FIFO).
    pub fn fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        self.node(path, mode, Node::Fifo)
    }

    /// Adds the host file `src` at `path`.
    pub fn file_from(&mut self, path: &str, src: &Path, mode: u32) -> Result<&mut Self> {
        let bytes = std::fs::read(src).map_err(Error::io("read", src))?;
        Ok(self.file(path, bytes, mode))
    }

    /// Makes the host binary `src` the image's `/init`.
    pub fn init(&mut self, src: &Path) -> Result<&mut Self> {
        self.file_from("/init", src, 0o755)
    }

    /// Adds the image config at [`CONFIG_PATH`].
    pub fn config(&mut self, toml: &str) -> &mut Self {
        self.file(CONFIG_PATH, toml.as_bytes(), 0o644)
    }

    /// Adds the static `name` binary of the image's architecture (from
    /// [`static_binary_for`]) at `/bin/name`, e.g. `bin("test-agent")`.
    pub fn bin(&mut self, name: &str) -> Result<&mut Self> {
        let src = static_binary_for(name, self.arch)?;
        self.file_from(&format!("/bin/{name}"), &src, 0o755)
    }

    /// Adds the modules `names` (and their closure) from the module tree
    /// `modules_dir` (`.../lib/modules/<release>`, with depmod indexes) under
    /// `/lib/modules/<release>/`, with indexes regenerated for the subset.
    pub fn modules(
        &mut self,
        release: &str,
        modules_dir: &Path,
        names: &[&str],
    ) -> Result<&mut Self> {
        if names.is_empty() {
            return Ok(self);
        }
        let read = |name: &str| -> Result<String> {
            let path = modules_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != "modules.dep" => {
                    Ok(String::new())
                }
                Err(e) => Err(Error::io("read", path)(e)),
            }
        };
        let index = ModIndex::parse(
            &read("modules.dep")?,
            &read("modules.alias")?,
            &read("modules.softdep")?,
        );
        let chosen = index.closure(names).map_err(|name| Error::ModuleNotFound {
            name,
            modules_dir: modules_dir.to_path_buf(),
        })?;
        let staging = tempfile::tempdir().map_err(Error::io("create temp dir", "/tmp"))?;
        let tree = staging.path().join("lib/modules").join(release);
        for rel in &chosen {
            copy(&modules_dir.join(rel), &tree.join(rel))?;
        }
        for name in ["modules.builtin", "modules.builtin.modinfo"] {
            let src = modules_dir.join(name);
            if src.exists() {
                copy(&src, &tree.join(name))?;
            }
        }
        let order: String = read("modules.order")?
            .lines()
            .filter(|line| chosen.contains(*line))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(tree.join("modules.order"), order)
            .map_err(Error::io("write", tree.join("modules.order")))?;
        cmd::run(
            Command::new("depmod")
                .arg("-b")
                .arg(staging.path())
                .arg(release),
        )?;
        let prefix = format!("/lib/modules/{release}");
        for (rel, src) in walk(&tree)? {
            self.file_from(&format!("{prefix}/{rel}"), &src, 0o644)?;
        }
        Ok(self)
    }

    /// Whether the image has an entry at the absolute guest `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// The cpio newc bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        cpio::write(
            self.entries
                .iter()
                .map(|(path, (mode, node))| (path.as_str(), *mode, node)),
        )
    }

    /// Writes the archive to `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::write(out, self.to_bytes()).map_err(Error::io("write initramfs", out))
    }
}

fn copy(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("create dir", parent))?;
    }
    std::fs::copy(src, dst).map_err(Error::io("copy", src))?;
    Ok(())
}

/// Every regular file under `root`, as (relative path, full path).
fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(Error::io("read dir", &dir))? {
            let path = entry.map_err(Error::io("read dir", &dir))?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push((rel.to_string_lossy().into_owned(), path.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_sorted_before_children() {
        let mut img = Initramfs::new();
        img.file("/a/b/c.txt", b"x".to_vec(), 0o644);
        assert!(img.contains("/a") && img.contains("/a/b") && img.contains("/a/b/c.txt"));
        let keys: Vec<_> = img.entries.keys().cloned().collect();
        let pos = |k: &str| keys.iter().position(|x| x == k).unwrap();
        assert!(pos("a") < pos("a/b") && pos("a/b") < pos("a/b/c.txt"));
    }

    #[test]
    fn modules_spec_parsing() {
        assert_eq!(Modules::parse("none"), Modules::None);
        assert_eq!(Modules::parse("virtio").names(), VIRTIO_MODULES.to_vec());
        assert_eq!(Modules::parse("a,b,").names(), vec!["a", "b"]);
        let arm64 = Modules::Virtio.names_for(Arch::Aarch64);
        assert!(arm64.contains(&"gpio_keys") && !arm64.contains(&"button"));
    }
}
