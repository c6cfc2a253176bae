//! The host side of virtio-vsock as Firecracker and Cloud Hypervisor expose it ("hybrid
//! vsock"): a Unix socket on the host; a client connects, sends `CONNECT <port>\n`, reads
//! `OK <host port>\n`, and the stream is then the guest's vsock port.
//!
//! Under QEMU without `/dev/vhost-vsock` (no vhost_vsock module, as on CI machines) the device
//! is vhost-user-vsock, served by rust-vmm's `vhost-device-vsock` daemon, which offers the
//! same hybrid socket. [`Daemon`] runs it; it does not exit with QEMU, so it is killed by
//! its pid when dropped. QEMU must share guest memory with it (`memory-backend-memfd` with
//! `share=on`): without that the device appears but every connection times out.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http;
use crate::spawn::spawn_tied;

/// The CID the daemon gives the guest.
pub const GUEST_CID: u32 = 3;
/// Where `scripts/setup.sh` installs the daemon, under the workspace.
pub const DAEMON_CACHE: &str = ".cache/vhost-device-vsock/bin/vhost-device-vsock";
/// Environment variable naming the daemon binary instead.
pub const DAEMON_ENV: &str = "VHOST_DEVICE_VSOCK";
/// How long the daemon has to create its socket.
const DAEMON_START: Duration = Duration::from_secs(30);
/// Largest response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// The daemon binary: `$VHOST_DEVICE_VSOCK`, else the workspace cache.
pub fn daemon_binary() -> Result<PathBuf> {
    let path = match std::env::var_os(DAEMON_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::workspace_root().join(DAEMON_CACHE),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Invalid(format!(
            "vhost-device-vsock not found at {} (run scripts/setup.sh, or set {DAEMON_ENV})",
            path.display()
        )))
    }
}

/// A running `vhost-device-vsock`; killed (SIGKILL by pid) and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Its stdout and stderr.
    log: PathBuf,
    /// The vhost-user socket QEMU connects to.
    pub vhost_user: PathBuf,
    /// The hybrid socket host clients connect to.
    pub uds: PathBuf,
}

impl Daemon {
    /// Starts the daemon with its sockets in `dir` and waits until QEMU can connect.
    pub fn start(dir: &Path) -> Result<Daemon> {
        let bin = daemon_binary()?;
        let vhost_user = dir.join("vsock.vhu");
        let uds = dir.join("vsock.sock");
        let log = dir.join("vhost-device-vsock.log");
        let out = std::fs::File::create(&log).map_err(Error::io("create", &log))?;
        let err = out.try_clone().map_err(Error::io("dup", &log))?;
        let vm = format!(
            "guest-cid={GUEST_CID},socket={},uds-path={}",
            vhost_user.display(),
            uds.display()
        );
        let mut cmd = Command::new(&bin);
        cmd.arg("--vm")
            .arg(vm)
            // Its warnings (a refused connection, a failed epoll change) into the log.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_tied(cmd).map_err(|source| Error::Spawn {
            program: bin.display().to_string(),
            source,
        })?;
        let mut d = Daemon {
            child,
            log: log.clone(),
            vhost_user,
            uds,
        };
        let end = Instant::now() + DAEMON_START;
        while !d.vhost_user.exists() {
            let exited = d.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= end {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(Error::Invalid(format!(
                    "vhost-device-vsock did not create {} ({}): {}",
                    d.vhost_user.display(),
                    exited.map_or("still running".into(), |s| s.to_string()),
                    text.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(d)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs, and the last lines it printed: what a failed wait on the hybrid
    /// socket reports (a daemon that stopped accepting is otherwise only an EAGAIN).
    pub fn describe(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            Ok(None) => "running".to_string(),
            Err(e) => format!("state unknown: {e}"),
        };
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("vhost-device-vsock {state}; its log ends:\n{tail}")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens guest vsock `port` through the hybrid socket `uds`.
pub fn connect(uds: &Path, port: u32, timeout: Duration) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // Byte by byte: what follows the line is the guest's, not the handshake's.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match s.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => {
                return if line.starts_with(b"OK ") {
                    Ok(s)
                } else {
                    Err(std::io::Error::other(format!(
                        "handshake answered {:?}",
                        String::from_utf8_lossy(&line)
                    )))
                };
            }
            _ => line.push(byte[0]),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        format!(
            "no OK to CONNECT {port} (guest not listening?); got {:?}",
            String::from_utf8_lossy(&line)
        ),
    ))
}

/// One GET of `path` on guest vsock `port`; returns the status code and body.
pub fn get(uds: &Path, port: u32, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let url = format!("vsock:{port}{path} via {}", uds.display());
    let fail = |reason: String| Error::Http {
        url: url.clone(),
        reason,
    };
    let mut s = connect(uds, port, timeout).map_err(|e| fail(format!("connect: {e}")))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: vsock\r\nConnection: close\r\nUser-Agent: qemu-harness\r\n\r\n");
    s.write_all(request.as_bytes())
        .map_err(|e| fail(format!("send: {e}")))?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(|e| fail(format!("read: {e}")))?;
    http::parse_response(&raw).map_err(fail)
}

/// GETs `path` until it answers at all (a connect before the guest listens is reset at
/// once, so this retries) and `accept` holds, or `timeout` passes.
pub fn wait_get(
    uds: &Path,
    port: u32,
    path: &str,
    accept: impl Fn(u16, &str) -> bool,
    timeout: Duration,
) -> Result<(u16, String)> {
    let end = Instant::now() + timeout;
    loop {
        let last = match get(uds, port, path, Duration::from_secs(5)) {
            Ok((code, body)) if accept(code, &body) => return Ok((code, body)),
            Ok((code, body)) => format!("{code} {}", body.trim()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= end {
            return Err(Error::Http {
                url: format!("vsock:{port}{path}"),
                reason: format!("not accepted within {timeout:?}; last: {last}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
