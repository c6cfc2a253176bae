//! vminit's own `NOTIFY_SOCKET` (sd_notify protocol): one unix datagram socket per `notify`
//! service at a filesystem path, with `SO_PASSCRED` so the kernel stamps each datagram with
//! the sender's pid. A message counts only if that pid is the service's main process or in
//! its session (services are session leaders, so session id == main pid). Owns the socket and
//! the message parsing; the state change is the supervisor's.

use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mio::net::UnixDatagram;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixCredentials,
};

/// What one datagram said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub ready: bool,
    pub status: Option<String>,
}

/// Parses `KEY=VALUE` lines; unknown keys are ignored, as sd_notify requires.
pub fn parse_message(payload: &[u8]) -> Message {
    let mut m = Message::default();
    for line in String::from_utf8_lossy(payload).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => m.ready = true,
            Some(("STATUS", s)) => m.status = Some(s.chars().take(256).collect()),
            _ => {}
        }
    }
    m
}

/// The session id from `/proc/<pid>/stat` text (field 6; the command name may hold spaces
/// and parentheses, so parse after the last `)`).
pub fn parse_stat_session(stat: &str) -> Option<i32> {
    let (_, after) = stat.rsplit_once(')')?;
    // state ppid pgrp session
    after.split_whitespace().nth(3)?.parse().ok()
}

/// Whether `sender` belongs to the service whose main process is `main` (a session leader).
pub fn sender_belongs(sender: i32, main: i32, proc_root: &Path) -> bool {
    if sender == main {
        return true;
    }
    fs::read_to_string(proc_root.join(sender.to_string()).join("stat"))
        .ok()
        .and_then(|s| parse_stat_session(&s))
        == Some(main)
}

/// The bound socket.
pub struct NotifySocket {
    pub sock: UnixDatagram,
    pub path: PathBuf,
}

impl NotifySocket {
    /// Binds at `path`, replacing a stale socket file from an earlier run.
    pub fn bind(path: &Path) -> io::Result<NotifySocket> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let sock = UnixDatagram::bind(path)?;
        setsockopt(&sock, sockopt::PassCred, &true).map_err(io::Error::from)?;
        // Services may run as any user; sending needs write permission on the socket file.
        // Who may speak is decided per message by the kernel-stamped sender pid instead.
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
        Ok(NotifySocket {
            sock,
            path: path.to_path_buf(),
        })
    }

    /// Drains the queue: `(sender pid, payload)` for every datagram that carried credentials.
    pub fn recv_all(&self) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut buf = vec![0u8; 4096];
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let (len, pid) = match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let pid = msg.cmsgs().ok().and_then(|mut it| {
                        it.find_map(|c| match c {
                            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                            _ => None,
                        })
                    });
                    (msg.bytes, pid)
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if let Some(pid) = pid {
                buf.truncate(len);
                out.push((pid, buf));
            }
        }
        out
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            parse_message(b"READY=1\nSTATUS=listening on 8080\n"),
            Message {
                ready: true,
                status: Some("listening on 8080".into())
            }
        );
        assert_eq!(parse_message(b"READY=0\nWATCHDOG=1"), Message::default());
        assert_eq!(parse_message(b"STATUS=a=b").status.as_deref(), Some("a=b"));
    }

    #[test]
    fn stat_session() {
        assert_eq!(parse_stat_session("42 (a) b) S 1 42 40 0 -1"), Some(40));
        assert_eq!(parse_stat_session("42 (x) S 1"), None);
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        // SAFETY: getsid(0) only reads the caller's session id.
        let sid = unsafe { libc::getsid(0) };
        assert_eq!(parse_stat_session(&own), Some(sid));
    }

    #[test]
    fn credentials_identify_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.notify");
        let s = NotifySocket::bind(&path).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.send_to(b"READY=1", &path).unwrap();
        let got = s.recv_all();
        assert_eq!(got, vec![(std::process::id() as i32, b"READY=1".to_vec())]);
        assert!(sender_belongs(got[0].0, got[0].0, Path::new("/proc")));
        // SAFETY: getsid(0) only reads the caller's session id.
        let sid = unsafe { libc::getsid(0) };
        assert!(sender_belongs(got[0].0, sid, Path::new("/proc")));
        assert!(!sender_belongs(got[0].0, 999_999_999, Path::new("/proc")));
        drop(s);
        assert!(!path.exists(), "socket file removed with the socket");
    }
}
