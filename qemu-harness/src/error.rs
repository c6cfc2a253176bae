//! The harness's error type: one variant per kind of failing operation, each
//! carrying what failed (path, command, deadline) and, for a VM, the tail of
//! its console, because "timed out" alone never explains a boot.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything the harness can fail with.
#[derive(Debug)]
pub enum Error {
    /// A file-system operation on `path` failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// An external program could not be started (not installed?).
    Spawn { program: String, source: io::Error },
    /// An external program ran and failed.
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A static guest binary is not where the harness looks for it.
    MissingBinary { name: String, searched: PathBuf },
    /// The kernel image or package is not what the harness can use.
    Kernel { path: PathBuf, reason: String },
    /// A named kernel module is not in the module tree.
    ModuleNotFound { name: String, modules_dir: PathBuf },
    /// Bad input from the caller (CLI argument, file name, label).
    Invalid(String),
    /// A wait on a running VM passed its deadline.
    Timeout {
        what: String,
        after: Duration,
        console_tail: String,
    },
    /// QEMU ended while the harness was still waiting for something.
    VmExited {
        waiting_for: String,
        status: ExitStatus,
        console_tail: String,
    },
    /// QEMU is alive but the guest can never go on (e.g. "KVM internal error").
    VmStopped {
        waiting_for: String,
        reason: String,
        console_tail: String,
    },
    /// The QEMU monitor socket did not accept or answer a command.
    Monitor { command: String, source: io::Error },
    /// An HTTP request to the guest failed or the reply was not HTTP.
    Http { url: String, reason: String },
}

/// Result alias for the harness.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Io`] in `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Spawn { program, source } => {
                write!(f, "cannot run `{program}` (is it installed?): {source}")
            }
            Error::Command {
                command,
                status,
                stderr,
            } => write!(f, "`{command}` failed ({status}): {}", stderr.trim_end()),
            Error::MissingBinary { name, searched } => write!(
                f,
                "static binary `{name}` not found at {}; build it with `./scripts/setup.sh` \
                 (`cargo build --release --target x86_64-unknown-linux-musl` or \
                 `aarch64-unknown-linux-musl`, `-p vminit -p test-agent`) or point \
                 VMINIT_STATIC_DIR (VMINIT_STATIC_DIR_ARM64) at the directory holding it",
                searched.display()
            ),
            Error::Kernel { path, reason } => write!(f, "kernel {}: {reason}", path.display()),
            Error::ModuleNotFound { name, modules_dir } => write!(
                f,
                "kernel module `{name}` is neither in {}/modules.dep nor an alias in modules.alias",
                modules_dir.display()
            ),
            Error::Invalid(msg) => f.write_str(msg),
            Error::Timeout {
                what,
                after,
                console_tail,
            } => write!(
                f,
                "timed out after {after:.1?} waiting for {what}; console tail:\n{console_tail}"
            ),
            Error::VmExited {
                waiting_for,
                status,
                console_tail,
            } => write!(
                f,
                "QEMU exited ({status}) while waiting for {waiting_for}; console tail:\n{console_tail}"
            ),
            Error::VmStopped {
                waiting_for,
                reason,
                console_tail,
            } => write!(
                f,
                "the guest stopped ({reason}) while waiting for {waiting_for}; \
                 try VMINIT_ACCEL=tcg; console tail:\n{console_tail}"
            ),
            Error::Monitor { command, source } => {
                write!(f, "QEMU monitor command `{command}` failed: {source}")
            }
            Error::Http { url, reason } => write!(f, "GET {url}: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Spawn { source, .. } => Some(source),
            Error::Monitor { source, .. } => Some(source),
            _ => None,
        }
    }
}
