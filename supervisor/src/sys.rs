//! The crate's only `unsafe`: what a service's child process does between `fork` and
//! `execve` (its cgroup, RLIMIT_NOFILE, signal dispositions and mask, session, identity,
//! working directory, `no_new_privs`), installed with `CommandExt::pre_exec`. Every other syscall in the crate
//! goes through rustix's, nix's or std's safe wrappers.
//!
//! # Safety
//!
//! The closure given to `pre_exec` runs in the forked child of a multi-threaded process, where
//! only async-signal-safe work is sound: no allocation, no lock, no `std` I/O. It only makes
//! raw syscalls (rustix's linux_raw backend, or libc's thin `sigaction`/`sigprocmask`
//! wrappers) on values prepared before the fork: the ids and groups in a `Vec` the closure
//! owns, the working directory as a `CString`, the cgroup's `cgroup.procs` as an fd opened
//! by the parent, plain integers. The `sigaction` and `sigset_t`
//! values are on the child's stack, zero-initialised (valid for these plain C structs) and
//! outlive each call; the kernel keeps no pointer to them.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{Gid, Resource, Rlimit, Uid};

/// Linux's signal numbers are 1..NSIG (65 on x86_64 and aarch64: 64 signals).
const NSIG: libc::c_int = 65;

/// How the child of a service is set up before `execve`, prepared in the parent.
pub(crate) struct ChildSetup {
    /// uid, gid, supplementary groups.
    pub(crate) ids: Option<(Uid, Gid, Vec<Gid>)>,
    /// Entered after the identity switch, so it is checked with the service's permissions.
    pub(crate) workdir: Option<CString>,
    pub(crate) no_new_privs: bool,
    /// The service's `cgroup.procs`, opened write-only and close-on-exec by the parent.
    pub(crate) cgroup_procs: Option<OwnedFd>,
    /// RLIMIT_NOFILE, soft and hard.
    pub(crate) nofile: Option<u64>,
    /// Set `/proc/self/oom_score_adj` back to 0 (the init's -1000 is inherited).
    pub(crate) reset_oom_score: bool,
}

/// Installs `setup` on `cmd`, in this order: the cgroup first (so that nothing the child
/// does, allocation included, escapes the service's limits, and while it still has the
/// init's rights to write there), RLIMIT_NOFILE (raising the hard limit needs the init's
/// CAP_SYS_RESOURCE, lost with the identity switch), a new session (services are process-group
/// leaders, so a stop signals the whole group), every signal disposition to default and an
/// empty mask (the init ignores and blocks signals, and ignored ones survive `execve`), the
/// groups, gid and uid, then the working directory, then `PR_SET_NO_NEW_PRIVS`.
pub(crate) fn set_up_child(cmd: &mut Command, setup: ChildSetup) {
    let child = move || -> io::Result<()> {
        if let Some(fd) = &setup.cgroup_procs {
            // "0" is the writer itself (cgroup-v2.rst, cgroup.procs): no formatting of our
            // pid is needed, and one write(2) of 1 byte is complete or failed.
            rustix::io::write(fd, b"0")?;
        }
        if setup.reset_oom_score {
            // The init runs at oom_score_adj -1000 and children inherit it: a service left
            // at -1000 cannot be OOM-killed, and its memory.max then stalls it forever
            // ("no killable processes"). Raising the value needs no privilege. Without
            // /proc the service still starts: a start is worth more than its OOM score.
            if let Ok(fd) = rustix::fs::open(
                c"/proc/self/oom_score_adj",
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                let _ = rustix::io::write(&fd, b"0");
            }
        }
        if let Some(n) = setup.nofile {
            let lim = Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            rustix::process::setrlimit(Resource::Nofile, lim)?;
        }
        rustix::process::setsid()?;
        reset_signals()?;
        if let Some((uid, gid, groups)) = &setup.ids {
            // Raw per-thread syscalls are right here: the forked child has one thread.
            rustix::thread::set_thread_groups(groups)?;
            rustix::thread::set_thread_gid(*gid)?;
            rustix::thread::set_thread_uid(*uid)?;
        }
        if let Some(dir) = &setup.workdir {
            rustix::process::chdir(dir.as_c_str())?;
        }
        if setup.no_new_privs {
            rustix::thread::set_no_new_privs(true)?;
        }
        Ok(())
    };
    // SAFETY: see the module header: `child` runs between fork and exec and only makes
    // async-signal-safe syscalls on values moved in before the fork; it allocates nothing
    // (the `?` conversions build `io::Error` from a raw errno, without allocating).
    unsafe {
        cmd.pre_exec(child);
    }
}

/// Every catchable signal to `SIG_DFL`, then an empty signal mask. The raw
/// rt_sigaction(2) is used because glibc's `sigaction` refuses the signals it reserves (32
/// and 33), and an ignored 32 was seen inherited by services. SIGKILL and SIGSTOP fail with
/// EINVAL and are left as they are (they cannot be ignored anyway).
fn reset_signals() -> io::Result<()> {
    // The kernel's `struct sigaction` (handler, flags, restorer, mask): all zero is SIG_DFL
    // with no flags and an empty mask, whatever the field order.
    let dfl = [0u64; 4];
    for sig in 1..NSIG {
        // SAFETY: `dfl` is a 32-byte, 8-aligned, all-zero kernel sigaction on our stack that
        // outlives the call; the old action is not asked for (null); 8 is the kernel's
        // sigset size on Linux. An invalid `sig` is EINVAL, ignored.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                libc::c_long::from(sig),
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8 as libc::c_long,
            )
        };
    }
    // SAFETY: `sigset_t` is plain data; zeroed, then made empty by sigemptyset.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty` is a valid, writable sigset_t on our stack.
    unsafe { libc::sigemptyset(&mut empty) };
    // SAFETY: `empty` is an initialised sigset_t that outlives the call; the old mask is
    // not asked for (null).
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
