//! The crate's only syscalls: `finit_module(2)` and `uname(2)`.
//!
//! # Safety
//!
//! Both calls pass the kernel pointers to memory owned by this function for
//! the whole call: a `CString` (NUL-terminated, immutable, read by the kernel)
//! and a `utsname` on our stack (written by the kernel, read after it
//! returns). File descriptors are borrowed from an open `File` that outlives
//! the call. Nothing is retained by the kernel after the call returns.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>` (Linux 5.17+):
/// the kernel decompresses the file itself.
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// finit_module(2): load the module in `file` with parameter string `params`.
/// Returns the raw errno on failure.
pub fn finit_module(file: &File, params: &str, flags: u32) -> Result<(), i32> {
    // A NUL inside the parameters cannot be passed on; refuse as the kernel would.
    let params = CString::new(params).map_err(|_| libc::EINVAL)?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the duration (borrowed from `file`); `params`
    // is a valid NUL-terminated string that lives until the end of this
    // function; `flags` is a plain integer the kernel validates. The syscall
    // reads only, and retains neither pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            libc::c_long::from(fd),
            params.as_ptr(),
            libc::c_long::from(flags),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// uname(2)'s `release` field: the running kernel's release, e.g. `6.1.0-56-amd64`.
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: `utsname` is plain old data (arrays of c_char), so all-zero is
    // a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable, properly aligned `utsname` on our
    // stack; the kernel fills it and keeps no reference.
    let rc = unsafe { libc::uname(&mut uts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel NUL-terminates every field within its
    // array, and `uts` outlives the borrow (we copy out before returning).
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    Ok(release.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_matches_proc() {
        let ours = kernel_release().unwrap();
        let proc = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(ours, proc.trim());
    }

    /// The real syscall path, on a file that is not a module: the kernel
    /// must refuse it (ENOEXEC), or refuse us (EPERM) when unprivileged.
    #[test]
    fn finit_module_rejects_non_module() {
        let file = File::open("/proc/self/exe").unwrap();
        let err = finit_module(&file, "", 0).unwrap_err();
        assert!(
            [
                libc::ENOEXEC,
                libc::EPERM,
                libc::EINVAL,
                libc::ENOSYS,
                libc::EKEYREJECTED,
                libc::ENOKEY,
                libc::EBADMSG
            ]
            .contains(&err),
            "unexpected errno {err}"
        );
    }
}
