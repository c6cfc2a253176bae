//! Reading a configuration file that the host (or the image) hands to PID 1, by type and by
//! size, without ever blocking (contract §2): only a regular file of at most
//! [`MAX_HOST_FILE`] is read. A FIFO would block the boot forever in `read`, a symlink to
//! `/dev/zero` or a 64 MiB file would run the guest out of memory; each is refused with an
//! error naming the path and what it is.
//!
//! How: `lstat` (or `stat`) first, so a device node or FIFO is not even opened (a driver's
//! `open` can have effects); then `open(O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)`
//! (open(2)), and `fstat(2)` on the descriptor, since the file may have been swapped between
//! the two calls; then a read of at most `limit + 1` bytes, so a file that grows, or that
//! reports a wrong size (procfs, sysfs), is still refused. `O_NOFOLLOW` guards the last path
//! component only: the drive is also mounted `nosymfollow` where the kernel has it.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

/// The largest host file read: a config is a few KiB; this leaves room and bounds memory.
pub const MAX_HOST_FILE: u64 = 1024 * 1024;

/// What a refused file was, when it was not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Directory,
    Symlink,
    Unknown,
}

impl FileKind {
    fn of(t: FileType) -> Option<FileKind> {
        Some(match t {
            FileType::RegularFile => return None,
            FileType::Fifo => FileKind::Fifo,
            FileType::CharacterDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            FileType::Socket => FileKind::Socket,
            FileType::Directory => FileKind::Directory,
            FileType::Symlink => FileKind::Symlink,
            _ => FileKind::Unknown,
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symlink",
            FileKind::Unknown => "not a regular file",
        })
    }
}

/// Why a host file was not read. Every variant names the path.
#[derive(Debug)]
pub enum HostFileError {
    /// Not a regular file (FIFO, device node, socket, directory).
    NotRegular { path: PathBuf, kind: FileKind },
    /// A symlink where none is followed; `target` is what it points to, if readable.
    Symlink {
        path: PathBuf,
        target: Option<PathBuf>,
    },
    /// Larger than `limit`; `at_least` when the size was found by reading past it rather
    /// than by `fstat` (a file that grew or lied about its size).
    TooBig {
        path: PathBuf,
        size: u64,
        limit: u64,
        at_least: bool,
    },
    /// The bytes are not UTF-8; `byte` is the offset of the first bad one.
    NotUtf8 { path: PathBuf, byte: usize },
    /// A syscall failed (missing file, permissions, I/O error).
    Io {
        path: PathBuf,
        syscall: &'static str,
        error: io::Error,
    },
}

impl HostFileError {
    pub fn path(&self) -> &Path {
        match self {
            HostFileError::NotRegular { path, .. }
            | HostFileError::Symlink { path, .. }
            | HostFileError::TooBig { path, .. }
            | HostFileError::NotUtf8 { path, .. }
            | HostFileError::Io { path, .. } => path,
        }
    }

    /// The message without the path: what the file is and why it was not read.
    pub fn reason(&self) -> String {
        match self {
            HostFileError::NotRegular { kind, .. } => {
                format!("is {kind}, not a regular file; not read")
            }
            HostFileError::Symlink {
                target: Some(t), ..
            } => format!(
                "is a symlink to {}; host files are not followed, put the file itself there",
                t.display()
            ),
            HostFileError::Symlink { target: None, .. } => {
                "is a symlink; host files are not followed, put the file itself there".into()
            }
            HostFileError::TooBig {
                size,
                limit,
                at_least,
                ..
            } => format!(
                "is {}{}, over the {} limit; not read",
                if *at_least { "more than " } else { "" },
                human_size(if *at_least { *limit } else { *size }),
                human_size(*limit)
            ),
            HostFileError::NotUtf8 { byte, .. } => format!("is not UTF-8 (byte {byte})"),
            HostFileError::Io { syscall, error, .. } => format!("{syscall} failed: {error}"),
        }
    }
}

impl fmt::Display for HostFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.reason())
    }
}

impl std::error::Error for HostFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostFileError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `70 MiB`, `12 KiB`, or bytes when not a whole number of either.
fn human_size(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Reads a file the host hands over (a drive's `vminit.toml`, a file named by
/// `vminit.config=`): a regular file, not a symlink, of at most `limit` bytes, UTF-8.
pub fn read_host_file(path: &Path, limit: u64) -> Result<String, HostFileError> {
    read_limited(path, limit, false)
}

/// As [`read_host_file`], but follows symlinks: for the image's own default config, which
/// may legitimately be a symlink inside the image. The target is still checked by type and
/// size.
pub fn read_image_file(path: &Path, limit: u64) -> Result<String, HostFileError> {
    read_limited(path, limit, true)
}

fn read_limited(path: &Path, limit: u64, follow: bool) -> Result<String, HostFileError> {
    let at_flags = if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let st = rustix::fs::statat(CWD, path, at_flags).map_err(|e| io_err(path, "stat", e))?;
    if let Some(kind) = FileKind::of(FileType::from_raw_mode(st.st_mode)) {
        return Err(refusal(path, kind));
    }
    open_and_read(path, limit, follow)
}

/// The open, `fstat` and bounded read, on their own so that the tests can show that the
/// `open` alone never blocks or reads what is not a regular file.
fn open_and_read(path: &Path, limit: u64, follow: bool) -> Result<String, HostFileError> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP) if !follow => return Err(symlink_error(path)),
        Err(e) => return Err(io_err(path, "open", e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(path, "fstat", e))?;
    if let Some(kind) = FileKind::of(FileType::from_raw_mode(st.st_mode)) {
        return Err(refusal(path, kind));
    }
    let too_big = |size, at_least| HostFileError::TooBig {
        path: path.to_path_buf(),
        size,
        limit,
        at_least,
    };
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > limit {
        return Err(too_big(size, false));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| HostFileError::Io {
            path: path.to_path_buf(),
            syscall: "read",
            error,
        })?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > limit) {
        return Err(too_big(limit, true));
    }
    String::from_utf8(bytes).map_err(|e| HostFileError::NotUtf8 {
        path: path.to_path_buf(),
        byte: e.utf8_error().valid_up_to(),
    })
}

fn io_err(path: &Path, syscall: &'static str, e: Errno) -> HostFileError {
    HostFileError::Io {
        path: path.to_path_buf(),
        syscall,
        error: e.into(),
    }
}

fn refusal(path: &Path, kind: FileKind) -> HostFileError {
    match kind {
        FileKind::Symlink => symlink_error(path),
        kind => HostFileError::NotRegular {
            path: path.to_path_buf(),
            kind,
        },
    }
}

/// The error for a symlink, naming its target when `readlink(2)` can read it.
fn symlink_error(path: &Path) -> HostFileError {
    let target = rustix::fs::readlink(path, Vec::new())
        .ok()
        .map(|t| PathBuf::from(OsString::from_vec(t.into_bytes())));
    HostFileError::Symlink {
        path: path.to_path_buf(),
        target,
    }
}

#[cfg(test)]
mod tests;
