//! Starting a command: its own session and process group, the configured identity, a clean
//! environment, stdin from `/dev/null`, stdout/stderr into non-blocking pipes (or
//! `/dev/null`). Never waits for the child: the init's loop reaps it.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use mio::unix::pipe::{self, Receiver};

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

/// fork + exec. The error names nothing: the caller adds the service and command.
pub fn spawn(spec: &Spec<'_>) -> io::Result<Started> {
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
    if let Some(dir) = spec.workdir {
        cmd.current_dir(dir);
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
    let ids = spec.creds.map(|c| (c.uid, c.gid, c.groups.clone()));
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe syscalls (setsid, setgroups, setgid, setuid) on values prepared
    // before the fork; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                    || libc::setgid(*gid) < 0
                    || libc::setuid(*uid) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
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
/// (already gone) is not an error.
pub fn kill_group(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 1 {
        return Ok(());
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is passed.
    // pid > 1, so this never targets every process (-1) or our own group (0).
    let rc = unsafe { libc::kill(pid.saturating_neg(), signal) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}
