//! Thin wrappers over the process-wide syscalls PID 1 makes: clocks, the console, reaping, the
//! subreaper bit, ctrl-alt-del, `reboot(2)`. Each says which man page it wraps. Mounting is in
//! [`crate::mounts`]; everything else goes through `nix`, which is safe Rust.
//!
//! # Safety
//! The only `unsafe` in the init is here: `dup2(2)` onto the standard descriptors, which nix
//! exposes only for `OwnedFd` targets (and fds 0–2 must never be owned and closed by Rust), and
//! `setpriority(2)` for one thread, which nix does not wrap.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use guest_config::ShutdownMode;
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Milliseconds since kernel start (CLOCK_BOOTTIME), as the health document's `boot.*_ms`
/// fields are defined: netconf's clock, so the network's timings and the boot's are one
/// timeline. 0 if the clock cannot be read (it always can on Linux ≥ 2.6.39).
pub fn boottime_ms() -> u64 {
    netconf::boottime_ms().unwrap_or(0)
}

/// True when fd is open (`fcntl(2)` F_GETFD).
fn fd_is_open(fd: i32) -> bool {
    nix::fcntl::fcntl(
        // SAFETY: the fd is only borrowed for the duration of the fcntl call, which merely
        // queries its flags; if it is not open the call fails with EBADF and nothing is touched.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_ok()
}

/// Makes `/dev/console` the init's stdin/stdout/stderr where those are not open: the kernel
/// opens the console for init only if `/dev/console` exists in the initial root, which an
/// initramfs or a rootfs without a populated `/dev` may lack. Called after devtmpfs is mounted.
pub fn ensure_console_stdio() -> io::Result<()> {
    if (0..=2).all(fd_is_open) {
        return Ok(());
    }
    let console = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")?;
    for fd in 0..=2 {
        if !fd_is_open(fd) {
            // SAFETY: `console` is a valid open fd for the duration of the call, and 0..=2 are
            // the process's standard descriptors, which no Rust object owns; dup2 atomically
            // makes them refer to the console. The duplicate outlives `console` by design.
            let r = unsafe { libc::dup2(console.as_raw_fd(), fd) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// `setpriority(2)` for the calling thread only: on Linux, PRIO_PROCESS with `who` 0 is the
/// calling thread's nice value, not the whole process's. Raising it back (a lower value)
/// needs CAP_SYS_NICE, which PID 1 has.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes three integers and touches no memory; `who` 0 is the caller.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(2)` PR_SET_CHILD_SUBREAPER: orphans of our services are re-parented to us, so that
/// off PID 1 the supervisor still reaps (and sees) every descendant.
pub fn set_child_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// `reboot(2)` LINUX_REBOOT_CMD_CAD_OFF: ctrl-alt-del sends SIGINT to PID 1 instead of
/// rebooting at once, so it can shut down cleanly (contract §5).
pub fn disable_cad_reboot() -> nix::Result<()> {
    nix::sys::reboot::set_cad_enabled(false)
}

/// `sync(2)` then `reboot(2)` with RB_POWER_OFF or RB_AUTOBOOT. Returns only on failure.
pub fn final_reboot(mode: ShutdownMode) -> nix::Error {
    nix::unistd::sync();
    let how = match mode {
        ShutdownMode::Poweroff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        ShutdownMode::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
    };
    match nix::sys::reboot::reboot(how) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// True while any child process exists, exited or not (`waitid(2)` P_ALL with WNOWAIT, so
/// nothing is reaped here).
pub fn has_children() -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED;
    !matches!(waitid(Id::All, flags), Err(nix::errno::Errno::ECHILD))
}

/// Reaps every exited child without blocking (`waitpid(2)` -1, WNOHANG), handing each pid and
/// status to `on_exit`. The one reap loop of the init: the event loop feeds the supervisor
/// from it, the fallback loop only reaps.
pub fn reap_all(mut on_exit: impl FnMut(Pid, WaitStatus)) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    on_exit(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                log::warn!("waitpid failed: {}", e.desc());
                return;
            }
        }
    }
}

/// Waits for any child (`waitpid(2)` -1, blocking); false when there is none.
pub fn reap_blocking() -> bool {
    !matches!(waitpid(Pid::from_raw(-1), None), Err(Errno::ECHILD))
}

/// The console on a file description of its own, non-blocking, for the init's log lines and
/// the services' output: a slow or stalled serial line then makes writers drop (and count)
/// lines instead of blocking PID 1. Off PID 1 it is a new description of our stderr.
pub fn open_console(pid1: bool) -> io::Result<std::fs::File> {
    let path = if pid1 {
        "/dev/console"
    } else {
        "/proc/self/fd/2"
    };
    OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}
