//! `trivial-init`: the baseline for the boot benchmark.
//!
//! A static PID 1 that does the least a userspace can do: print one line,
//! `trivial-init: reached userspace`, on the console, then sync and power the
//! machine off. The time from QEMU launch to that line is what "booting the
//! kernel" costs; vminit's time to its first `/health` 200 is compared with it.
//!
//! It owns nothing else: no mounts beyond `/dev` (only when the console is not
//! already open), no reaping, no signals. It never returns, because PID 1
//! exiting is a kernel panic.

use std::ffi::CStr;

const LINE: &[u8] = b"trivial-init: reached userspace\n";

fn main() {
    if !fd_is_open(1) {
        open_console();
    }
    write_all(1, LINE);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) with a valid command constant; on success it does not
    // return, on failure it returns -1 and we fall through to the idle loop.
    let rc = unsafe { libc::reboot(libc::RB_POWER_OFF) };
    if rc != 0 {
        write_all(2, b"trivial-init: reboot(RB_POWER_OFF) failed; idling\n");
    }
    loop {
        // SAFETY: pause(2) has no preconditions; it only returns on a signal.
        unsafe { libc::pause() };
    }
}

/// Whether `fd` refers to an open file description (F_GETFD succeeds).
fn fd_is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; an unused fd gives
    // EBADF and no side effect.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Makes fds 0, 1 and 2 the console when the kernel could not open it for us
/// (an initramfs without `/dev/console`): mount devtmpfs on `/dev`, open
/// `/dev/console`, and dup it over the standard descriptors.
fn open_console() {
    let dev: &CStr = c"/dev";
    let console: &CStr = c"/dev/console";
    let devtmpfs: &CStr = c"devtmpfs";
    // SAFETY: all pointers are NUL-terminated string literals that outlive the
    // calls; the data argument may be NULL for devtmpfs. Failures (EEXIST,
    // EBUSY when already mounted) are fine: the open below is what matters.
    unsafe {
        libc::mkdir(dev.as_ptr(), 0o755);
        libc::mount(
            devtmpfs.as_ptr(),
            dev.as_ptr(),
            devtmpfs.as_ptr(),
            0,
            std::ptr::null(),
        );
    }
    // SAFETY: console is a NUL-terminated literal; open returns a new fd or -1.
    let fd = unsafe { libc::open(console.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return;
    }
    for target in 0..3 {
        if fd != target {
            // SAFETY: fd is an open descriptor we own; dup2 onto 0..2 replaces
            // whatever (nothing) was there.
            unsafe { libc::dup2(fd, target) };
        }
    }
    if fd > 2 {
        // SAFETY: fd is ours and now duplicated onto 0..2; closing it drops
        // only the extra reference.
        unsafe { libc::close(fd) };
    }
}

/// Writes all of `buf` to `fd`, retrying on short writes and EINTR; gives up
/// silently on any other error (there is nowhere else to report it).
fn write_all(fd: libc::c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; the kernel reads at most buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let written = usize::try_from(n).unwrap_or(buf.len());
        buf = &buf[written.min(buf.len())..];
    }
}
