//! vminit's own `NOTIFY_SOCKET` (sd_notify protocol): one unix datagram socket per `notify`
//! service at a filesystem path, with `SO_PASSCRED` so the kernel stamps each datagram with
//! the sender's pid. A message counts only if that pid is the service's main process or in
//! its session (services are session leaders, so session id == main pid). Owns the socket and
//! the message parsing; the state change is the supervisor's.

use std::fs;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::UnixDatagram;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// Datagrams handled per wake-up. The rest wait for the next turn of the loop (the caller
/// re-arms the socket), so a service flooding its socket cannot hold the loop. The kernel
/// queues at most `net.unix.max_dgram_qlen` datagrams (10 by default, 512 under systemd's
/// sysctl) and then blocks the sender, so this bound matters where the queue is long.
pub const MAX_PER_WAKE: usize = 32;
/// Bytes read of one datagram; sd_notify messages are short, a longer one is cut here.
pub const MAX_DATAGRAM: usize = 4096;
/// At most one warning line about foreign senders per service this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Room for the sender's credentials plus a few descriptors a hostile sender may attach:
/// those are received close-on-exec and closed at once (rustix drops them), and the kernel
/// discards what does not fit, so none leak into PID 1.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmCredentials(1), ScmRights(4));

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
        rustix::net::sockopt::set_socket_passcred(&sock, true)?;
        // Services may run as any user; sending needs write permission on the socket file.
        // Who may speak is decided per message by the kernel-stamped sender pid instead.
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
        Ok(NotifySocket {
            sock,
            path: path.to_path_buf(),
        })
    }

    /// Receives at most `max` datagrams, each into the same stack buffer, and hands
    /// `(sender pid, payload)` to `f` for each one the kernel stamped with credentials.
    /// Returns true when it stopped at `max`: more may be queued, so re-arm the socket.
    pub fn recv_some(&self, max: usize, f: &mut dyn FnMut(i32, &[u8])) -> bool {
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut received = 0usize;
        while received < max {
            let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
            let mut cmsg = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match rustix::net::recvmsg(
                &self.sock,
                &mut iov,
                &mut cmsg,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(rustix::io::Errno::INTR) => continue,
                // Empty (EAGAIN), or an error that retrying now would repeat.
                Err(_) => return false,
            };
            received = received.saturating_add(1);
            // Drain every message, not just up to the credentials: dropping each
            // `ScmRights` closes its descriptors, and rustix 1.1 misaligns a drain resumed
            // after a partial one.
            let mut pid = None;
            for m in cmsg.drain() {
                if let RecvAncillaryMessage::ScmCredentials(c) = m {
                    pid = Some(c.pid.as_raw_nonzero().get());
                }
            }
            // `bytes` is the datagram's full length when it was cut: clamp to what we read.
            let len = msg.bytes.min(buf.len());
            if let (Some(pid), Some(payload)) = (pid, buf.get(..len)) {
                f(pid, payload);
            }
        }
        true
    }
}

/// Rate limit for warnings about foreign senders: the first is logged at once, then at most
/// one per [`WARN_EVERY`], saying how many were not logged in between.
#[derive(Debug, Default, Clone)]
pub struct WarnLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimit {
    /// An event at `now`: `Some(suppressed since the last line)` if a line may be logged.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < WARN_EVERY => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
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

    /// This process's session id as the kernel reports it in `/proc/self/status`. Not
    /// `getsid`: in a container whose session was made outside its PID namespace the id
    /// is 0, which rustix's `Pid` cannot hold (CI runs there).
    fn own_session() -> i32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("NSsid:")).unwrap();
        line.split_whitespace().last().unwrap().parse().unwrap()
    }

    fn recv_all(s: &NotifySocket, max: usize) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        s.recv_some(max, &mut |pid, p| out.push((pid, p.to_vec())));
        out
    }

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
        assert_eq!(parse_stat_session(&own), Some(own_session()));
    }

    #[test]
    fn credentials_identify_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.notify");
        let s = NotifySocket::bind(&path).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.send_to(b"READY=1", &path).unwrap();
        let got = recv_all(&s, MAX_PER_WAKE);
        assert_eq!(got, vec![(std::process::id() as i32, b"READY=1".to_vec())]);
        assert!(sender_belongs(got[0].0, got[0].0, Path::new("/proc")));
        assert!(sender_belongs(got[0].0, own_session(), Path::new("/proc")));
        assert!(!sender_belongs(got[0].0, 999_999_999, Path::new("/proc")));
        drop(s);
        assert!(!path.exists(), "socket file removed with the socket");
    }

    #[test]
    fn a_flood_is_drained_a_bounded_batch_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flood.notify");
        let s = NotifySocket::bind(&path).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        // The kernel's queue may be as short as 10 (`max_dgram_qlen`): send 8 and take 3
        // at a time.
        tx.set_nonblocking(true).unwrap();
        for i in 0..8 {
            tx.send_to(format!("STATUS={i}").as_bytes(), &path).unwrap();
        }
        let mut got = Vec::new();
        let mut take = |p: &[u8]| got.push(String::from_utf8(p.to_vec()).unwrap());
        assert!(s.recv_some(3, &mut |_, p| take(p)), "stopped at the bound");
        assert!(s.recv_some(3, &mut |_, p| take(p)));
        assert!(!s.recv_some(3, &mut |_, p| take(p)), "drained");
        let want: Vec<String> = (0..8).map(|i| format!("STATUS={i}")).collect();
        assert_eq!(got, want);
        // An oversized datagram is cut to the one buffer, not grown into.
        tx.send_to(&vec![b'x'; MAX_DATAGRAM * 3], &path).unwrap();
        let got = recv_all(&s, 1);
        assert_eq!(got[0].1.len(), MAX_DATAGRAM);
    }

    #[test]
    fn attached_descriptors_are_not_kept() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fds.notify");
        let s = NotifySocket::bind(&path).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.connect(&path).unwrap();
        // Count only descriptors of a file no other test opens: tests run on parallel threads
        // of this process, and their descriptors come and go.
        let marker = dir.path().join("marker");
        let f = fs::File::create(&marker).unwrap();
        let open_on_marker = || {
            fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .filter(|target| *target == marker)
                .count()
        };
        let before = open_on_marker();
        assert_eq!(before, 1);
        for _ in 0..10 {
            let fds = [f.as_fd(); 3];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(3))];
            let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
            assert!(anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
            rustix::net::sendmsg(
                &tx,
                &[io::IoSlice::new(b"READY=1")],
                &mut anc,
                rustix::net::SendFlags::empty(),
            )
            .unwrap();
        }
        assert_eq!(recv_all(&s, MAX_PER_WAKE).len(), 10);
        let after = open_on_marker();
        assert_eq!(after, before, "descriptors leaked: {before} -> {after}");
    }

    #[test]
    fn foreign_sender_warnings_are_rate_limited() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = WarnLimit::default();
        assert_eq!(w.hit(at(0)), Some(0), "the first is logged at once");
        for ms in 1..100 {
            assert_eq!(w.hit(at(ms)), None);
        }
        assert_eq!(w.hit(at(9_999)), None);
        assert_eq!(w.hit(at(10_000)), Some(100), "then one line with the count");
        assert_eq!(w.hit(at(10_001)), None);
        assert_eq!(w.hit(at(60_000)), Some(1));
    }
}
