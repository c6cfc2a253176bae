//! The files netconf writes in the guest (`/etc/resolv.conf`): written whole or not at all,
//! and never through a symlink. A reader (a resolver in a service starting at that moment)
//! sees the old file or the new one, never half of one.
//!
//! A symlink at the target (systemd-resolved's `/etc/resolv.conf -> ../run/systemd/resolve/
//! stub-resolv.conf`, common in images built from systemd distributions) is **replaced** by
//! a regular file, with a warning naming where it pointed: under vminit no systemd-resolved
//! runs, so the stub it points to is absent or stale, and the network source's servers are
//! what the guest must use. Writing through the link instead would let the image (or
//! whoever controls the link) aim the write at any file PID 1 can write; `rename(2)` replaces
//! the directory entry itself and never follows it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Files larger than this are not worth comparing: rewrite them.
const COMPARE_MAX: u64 = 64 * 1024;

/// What [`write_atomic`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The file already held exactly this content (a regular file): left alone.
    Unchanged,
    /// Created or replaced.
    Written,
    /// A symlink (pointing at the path given) was replaced by a regular file.
    ReplacedSymlink(PathBuf),
}

/// A failed step of [`write_atomic`]: which one, and the errno.
pub type WriteError = (&'static str, io::Error);

/// Writes `content` to `path` atomically: a temporary file in the same directory (same
/// filesystem, so the rename is atomic), then `rename(2)` over the target. A regular file
/// already holding `content` is left alone (idempotent bring-up). Mode 0644.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<WriteOutcome, WriteError> {
    let name = path.file_name().ok_or((
        "name the file",
        io::Error::from(io::ErrorKind::InvalidInput),
    ))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut replaced_link = None;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            replaced_link = Some(fs::read_link(path).unwrap_or_default());
        }
        Ok(m) if m.is_file() && read_regular(path).is_some_and(|old| old == content) => {
            return Ok(WriteOutcome::Unchanged);
        }
        // Anything else (absent, a FIFO...) is simply replaced; a directory makes the
        // rename fail with EISDIR, which is reported.
        _ => {}
    }
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".vminit-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A leftover of an earlier attempt that died between create and rename. remove_file
    // unlinks a symlink itself, never its target.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(("remove a stale temporary file", e)),
    }
    let write = || -> Result<(), WriteError> {
        // create_new (O_EXCL) with O_NOFOLLOW: a link planted at the temporary name is
        // refused, not followed.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| ("create the temporary file", e))?;
        f.write_all(content)
            .map_err(|e| ("write the temporary file", e))?;
        // No fsync: the file is rewritten at every boot, and a crash right after leaves the
        // old or the new content either way (rename is atomic); a sync would cost the boot
        // a disk flush for nothing.
        drop(f);
        fs::rename(&tmp, path).map_err(|e| ("rename the temporary file over it", e))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(match replaced_link {
        Some(target) => WriteOutcome::ReplacedSymlink(target),
        None => WriteOutcome::Written,
    })
}

/// The content of `path` if it is a regular file of at most [`COMPARE_MAX`] bytes; opened
/// without following a symlink and without blocking on a FIFO.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    let f: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() > COMPARE_MAX {
        return None;
    }
    let mut buf = Vec::new();
    f.take(COMPARE_MAX.saturating_add(1))
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tmpdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("vminit-netconf-files-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_then_leaves_identical_content_alone() {
        let d = tmpdir("plain");
        let p = d.join("resolv.conf");
        assert_eq!(
            write_atomic(&p, b"nameserver 192.0.2.53\n").unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(fs::read(&p).unwrap(), b"nameserver 192.0.2.53\n");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            write_atomic(&p, b"nameserver 192.0.2.53\n").unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(
            write_atomic(&p, b"nameserver 192.0.2.54\n").unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(fs::read(&p).unwrap(), b"nameserver 192.0.2.54\n");
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_symlink_is_replaced_and_its_target_untouched() {
        let d = tmpdir("link");
        let target = d.join("stub-resolv.conf");
        fs::write(&target, b"nameserver 127.0.0.53\n").unwrap();
        let p = d.join("resolv.conf");
        symlink(&target, &p).unwrap();
        // Even identical content through the link does not count as "in place".
        let r = write_atomic(&p, b"nameserver 127.0.0.53\n").unwrap();
        assert_eq!(r, WriteOutcome::ReplacedSymlink(target.clone()));
        assert!(fs::symlink_metadata(&p).unwrap().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"nameserver 127.0.0.53\n");
        // A dangling link (the stub's /run directory absent) is replaced the same way.
        let q = d.join("other.conf");
        symlink(d.join("missing"), &q).unwrap();
        assert!(matches!(
            write_atomic(&q, b"x\n").unwrap(),
            WriteOutcome::ReplacedSymlink(_)
        ));
        assert!(!d.join("missing").exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_planted_temporary_link_is_not_followed() {
        let d = tmpdir("planted");
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        let tmp = d.join(format!(".resolv.conf.vminit-{}", std::process::id()));
        symlink(&victim, &tmp).unwrap();
        let p = d.join("resolv.conf");
        assert_eq!(write_atomic(&p, b"new\n").unwrap(), WriteOutcome::Written);
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&p).unwrap(), b"new\n");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn failures_name_the_step() {
        let d = tmpdir("fail");
        let p = d.join("no-such-dir").join("resolv.conf");
        let (op, e) = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(op, "create the temporary file");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let sub = d.join("a-dir");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("f"), b"").unwrap();
        let (op, _) = write_atomic(&sub, b"x").unwrap_err();
        assert_eq!(op, "rename the temporary file over it");
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "temporary file removed"
        );
        fs::remove_dir_all(d).unwrap();
    }
}
