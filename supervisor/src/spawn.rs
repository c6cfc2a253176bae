//! Starting a command: its own session and process group, the configured identity, a clean
//! environment, stdin from `/dev/null`, stdout/stderr into non-blocking pipes (or
//! `/dev/null`). Never waits for the child: the init's loop reaps it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

use mio::unix::pipe::{self, Receiver};
use rustix::process::{Gid, Pid, Signal, Uid};

use crate::sys::{self, ChildSetup};
use crate::users::Creds;

/// The only inherited environment: services see this `PATH` plus their own `env`.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to start.
pub struct Spec<'a> {
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub creds: Option<&'a Creds>,
    pub workdir: Option<&'a Path>,
    pub notify_socket: Option<&'a Path>,
    /// Pipe stdout/stderr back (else `/dev/null`).
    pub capture: bool,
    /// `PR_SET_NO_NEW_PRIVS` (the `no_new_privileges` key).
    pub no_new_privs: bool,
    /// The child writes itself here before `execve` (the service's `cgroup.procs`).
    pub cgroup_procs: Option<OwnedFd>,
    /// RLIMIT_NOFILE of the child (the `nofile` key).
    pub nofile: Option<u64>,
}

/// A started process and the read ends of its output pipes.
pub struct Started {
    pub pid: i32,
    pub stdout: Option<Receiver>,
    pub stderr: Option<Receiver>,
}

fn output_pipe() -> io::Result<(Stdio, Receiver)> {
    let (tx, rx) = pipe::new()?;
    // The child's end must block: a service writing to a full pipe should wait, not fail.
    tx.set_nonblocking(false)?;
    Ok((Stdio::from(OwnedFd::from(tx)), rx))
}

/// fork + exec, the child set up clean ([`sys::set_up_child`]: its cgroup and RLIMIT_NOFILE,
/// default signal dispositions
/// and an empty mask, its own session, the identity, then `workdir` as that identity).
/// The error names nothing: the caller adds the service and command.
pub fn spawn(spec: Spec<'_>) -> io::Result<Started> {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args).env_clear().env("PATH", BASE_PATH);
    if let Some(c) = spec.creds {
        if let (Some(home), Some(user)) = (&c.home, &c.user) {
            cmd.env("HOME", home).env("USER", user).env("LOGNAME", user);
        }
    }
    cmd.envs(spec.env);
    if let Some(sock) = spec.notify_socket {
        cmd.env("NOTIFY_SOCKET", sock);
    }
    cmd.stdin(Stdio::null());
    let (mut out_rx, mut err_rx) = (None, None);
    if spec.capture {
        let (out, rx) = output_pipe()?;
        cmd.stdout(out);
        out_rx = Some(rx);
        let (err, rx) = output_pipe()?;
        cmd.stderr(err);
        err_rx = Some(rx);
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let workdir = match spec.workdir {
        Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "workdir holds a NUL byte")
        })?),
        None => None,
    };
    let ids = spec.creds.map(|c| {
        let groups = c.groups.iter().copied().map(Gid::from_raw).collect();
        (Uid::from_raw(c.uid), Gid::from_raw(c.gid), groups)
    });
    sys::set_up_child(
        &mut cmd,
        ChildSetup {
            ids,
            workdir,
            no_new_privs: spec.no_new_privs,
            cgroup_procs: spec.cgroup_procs,
            nofile: spec.nofile,
            // Only where it was changed: off PID 1 the init's own score is inherited as is.
            reset_oom_score: rustix::process::getpid().is_init(),
        },
    );
    let child = cmd.spawn()?;
    // The std handle is dropped without waiting: the loop reaps every pid.
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    Ok(Started {
        pid,
        stdout: out_rx,
        stderr: err_rx,
    })
}

/// Sends `signal` to the process group led by `pid` (services are session leaders). ESRCH
/// (already gone) is not an error. A pid of 1 or less is refused (nothing is sent): it
/// would mean every process, or our own group.
pub fn kill_group(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 1 {
        return Ok(());
    }
    let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(signal)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no such signal {signal}"),
        ));
    };
    match rustix::process::kill_process_group(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
