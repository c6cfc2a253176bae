//! The crate's only syscalls: `finit_module(2)`, `uname(2)`, and the uevent
//! netlink socket (`socket`, `setsockopt`, `bind`, `recvfrom`).
//!
//! # Safety
//!
//! Every call passes the kernel pointers to memory owned by the calling
//! function for the whole call: a `CString` (NUL-terminated, immutable, read
//! by the kernel), a `utsname`, `sockaddr_nl` or `c_int` on our stack, or a
//! caller's buffer with its true length. File descriptors are borrowed from an
//! open `File` or `OwnedFd` that outlives the call. Nothing is retained by the
//! kernel after the call returns.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// `NETLINK_KOBJECT_UEVENT`'s multicast group for the kernel's own events (udev re-sends on 2).
const UEVENT_KERNEL_GROUP: u32 = 1;
/// Room for the bursts a module load causes (module, driver, device, bind events) even if
/// they are read late: 1 MiB, as udev asks for.
const UEVENT_RCVBUF: libc::c_int = 1 << 20;

/// A non-blocking socket on the kernel's uevent multicast group.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    pub fn open() -> io::Result<UeventSocket> {
        // SAFETY: plain integer arguments; the kernel returns a new descriptor or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor the kernel just returned to us and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = UEVENT_RCVBUF;
        // SAFETY: `size` is a c_int on our stack and its true length is passed. Forcing the
        // size needs CAP_NET_ADMIN (PID 1 has it); without it the default buffer is kept.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: `sockaddr_nl` is plain old data; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = UEVENT_KERNEL_GROUP;
        // SAFETY: `addr` is a valid `sockaddr_nl` on our stack and its true length is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UeventSocket { fd })
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// One datagram from the kernel into `buf`: its length, or `None` when none is queued.
    /// Datagrams from anything but the kernel (port id 0) are skipped. An overflow since
    /// the last read is an error (`ENOBUFS`): events were lost.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: `sockaddr_nl` is plain old data; all-zero is valid.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: `buf` is writable for `buf.len()` bytes; `from` and `len` are on our
            // stack with `len` holding `from`'s true size. The kernel keeps no pointer.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.nl_pid == 0 {
                return Ok(Some(n as usize));
            }
        }
    }
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

    /// The real socket: a veth pair made in a network namespace of our own sends its `add`
    /// uevents only to sockets in that namespace (the host's udev never sees them).
    #[test]
    fn uevent_socket_receives_the_kernels_events() {
        use std::process::Command;
        use std::time::{Duration, Instant};

        struct Netns(String);
        impl Drop for Netns {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let name = format!("vmt-uev-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
        let ns = Netns(name);
        let path = format!("/run/netns/{}", ns.0);
        let name = ns.0.clone();
        let got = std::thread::spawn(move || {
            let f = File::open(&path).unwrap();
            // SAFETY: `f` is an open namespace file for the whole call; only this thread
            // moves, and it ends with the test.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let sock = UeventSocket::open().unwrap();
            let ok = Command::new("ip")
                .args([
                    "-n", &name, "link", "add", "vmt0", "type", "veth", "peer", "name", "vmt1",
                ])
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "ip link add vmt0");
            let mut buf = vec![0u8; 8192];
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                match sock.recv(&mut buf).unwrap() {
                    Some(n) => {
                        let e = crate::Uevent::parse(&buf[..n]);
                        if e.as_ref().is_some_and(|e| e.devpath.ends_with("/net/vmt0")) {
                            return e;
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            None
        })
        .join()
        .unwrap();
        let e = got.expect("no uevent for vmt0 within 30 s");
        assert_eq!(e.action, crate::UeventAction::Add);
        assert_eq!(e.subsystem.as_deref(), Some("net"));
        assert_eq!(e.name(), "vmt0");
        drop(ns);
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
