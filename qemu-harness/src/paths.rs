//! Where things are: the workspace root, the static guest binaries, the
//! kernel cache. Environment variables override every default so that the
//! harness works from an installed copy as well as from the source tree.

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::error::{Error, Result};

/// Environment variable naming the directory with the static guest binaries.
pub const STATIC_DIR_ENV: &str = "VMINIT_STATIC_DIR";
/// The same for the arm64 guest binaries.
pub const STATIC_DIR_ARM64_ENV: &str = "VMINIT_STATIC_DIR_ARM64";

/// The Cargo workspace this crate was built from.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The directory searched for `vminit`, `test-agent` and `trivial-init`:
/// `$VMINIT_STATIC_DIR`, else `<root>/target/x86_64-unknown-linux-musl/release`.
pub fn static_dir() -> PathBuf {
    match std::env::var_os(STATIC_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target/x86_64-unknown-linux-musl/release"),
    }
}

/// [`static_dir`] for the guests of `arch`: for arm64, `$VMINIT_STATIC_DIR_ARM64`, else
/// `<root>/target/aarch64-unknown-linux-musl/release`.
pub fn static_dir_for(arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => static_dir(),
        Arch::Aarch64 => match std::env::var_os(STATIC_DIR_ARM64_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => workspace_root()
                .join("target")
                .join(arch.rust_target())
                .join("release"),
        },
    }
}

/// The path of the static guest binary `name`, or an error that says how to
/// build it.
pub fn static_binary(name: &str) -> Result<PathBuf> {
    static_binary_for(name, Arch::X86_64)
}

/// [`static_binary`] for the guests of `arch`.
pub fn static_binary_for(name: &str, arch: Arch) -> Result<PathBuf> {
    let path = static_dir_for(arch).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name: name.to_string(),
            searched: path,
        })
    }
}
