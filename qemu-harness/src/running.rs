//! A running QEMU: its console, its monitor, HTTP to the guest, waiting
//! for it to end. Dropping a [`Vm`] kills QEMU (SIGKILL by PID) and reaps
//! it, on every path including panics.
//!
//! Waits poll a condition at a short interval until a deadline; none sleeps
//! for a fixed time in the hope that something happened.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http;
use crate::monitor;
use crate::spawn::spawn_tied;
use crate::vm::{LaunchPlan, HEALTH_PORT};

/// The default deadline for a boot: a TCG boot on a busy 2-core machine
/// can take three times its usual ~3 s, and more under load.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of console shown in errors.
const TAIL_LINES: usize = 40;
/// Interval between condition checks.
const POLL: Duration = Duration::from_millis(10);
/// A new HTTP probe starts this often while waiting ...
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// ... each with this connect/read timeout, at most this many at once:
/// probes made before the guest listens hang until their timeout (slirp
/// accepts on the host side, then retransmits its SYN to the guest on a
/// seconds-long timer), so overlapping them keeps the first success close to
/// when it became possible.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Above `PROBE_TIMEOUT / PROBE_INTERVAL`, so the cap is never what delays a
/// probe: with a cap below it, no probe started for part of every timeout
/// cycle, and a guest that became ready then was seen only hundreds of
/// milliseconds later (the busybox baseline's old ~2.1 s cluster).
const MAX_PROBES: usize = 64;
/// Timeout of a single GET made once the guest is known to listen.
const GET_TIMEOUT: Duration = Duration::from_secs(5);
const _: () = assert!(MAX_PROBES as u128 > PROBE_TIMEOUT.as_millis() / PROBE_INTERVAL.as_millis());

/// A launched QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    exit: Option<ExitStatus>,
    plan: LaunchPlan,
    args: Vec<String>,
    launched: Instant,
    /// The vsock daemon; dropped (killed) after QEMU, as fields drop after `Drop::drop`.
    vsock: Option<crate::vsock::Daemon>,
    // Holds the console and monitor socket; removed when the Vm is dropped.
    _workdir: tempfile::TempDir,
}

pub(crate) fn start(
    program: &str,
    args: Vec<String>,
    plan: LaunchPlan,
    workdir: tempfile::TempDir,
    vsock: Option<crate::vsock::Daemon>,
) -> Result<Vm> {
    let stderr_path = workdir.path().join("qemu.stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(Error::io("create", &stderr_path))?;
    let mut cmd = Command::new(program);
    for (i, a) in args.iter().enumerate() {
        let after_append = i > 0 && args.get(i - 1).is_some_and(|p| p == "-append");
        if after_append && !plan.append_raw.is_empty() {
            use std::os::unix::ffi::OsStringExt;
            let mut bytes = a.clone().into_bytes();
            bytes.push(b' ');
            bytes.extend_from_slice(&plan.append_raw);
            cmd.arg(std::ffi::OsString::from_vec(bytes));
        } else {
            cmd.arg(a);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let launched = Instant::now();
    let child = spawn_tied(cmd).map_err(|source| Error::Spawn {
        program: program.into(),
        source,
    })?;
    Ok(Vm {
        child,
        exit: None,
        plan,
        args,
        launched,
        vsock,
        _workdir: workdir,
    })
}

impl Vm {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The QEMU arguments used.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// When QEMU was started.
    pub fn launched(&self) -> Instant {
        self.launched
    }

    /// The host port forwarded to the guest's health port 8900, if a NIC.
    pub fn health_port(&self) -> Option<u16> {
        self.host_port(HEALTH_PORT)
    }

    /// The host port forwarded to `guest_port`.
    pub fn host_port(&self, guest_port: u16) -> Option<u16> {
        self.plan
            .forwards
            .iter()
            .find(|(_, guest)| *guest == guest_port)
            .map(|(host, _)| *host)
    }

    /// The file the serial console is written to.
    pub fn console_path(&self) -> &Path {
        &self.plan.console
    }

    /// Everything the guest wrote to the serial console so far.
    pub fn console_text(&self) -> String {
        std::fs::read(&self.plan.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` console lines, and QEMU's stderr if it wrote any.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console_text();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(n)..].join("\n");
        let stderr = self.plan.console.with_file_name("qemu.stderr");
        if let Ok(err) = std::fs::read_to_string(stderr) {
            if !err.trim().is_empty() {
                tail.push_str("\n--- qemu stderr ---\n");
                tail.push_str(err.trim_end());
            }
        }
        tail
    }

    /// QEMU's exit status, if it has ended (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    fn timeout(&self, what: String, after: Duration) -> Error {
        Error::Timeout {
            what,
            after,
            console_tail: self.console_tail(TAIL_LINES),
        }
    }

    /// A reason the guest will never progress although QEMU still runs:
    /// on an internal KVM error QEMU pauses the VM instead of exiting.
    fn stopped(&self, waiting_for: impl FnOnce() -> String) -> Option<Error> {
        let stderr = self.plan.console.with_file_name("qemu.stderr");
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        let line = text.lines().find(|l| l.contains("KVM internal error"))?;
        Some(Error::VmStopped {
            waiting_for: waiting_for(),
            reason: line.trim().to_string(),
            console_tail: self.console_tail(TAIL_LINES),
        })
    }

    fn exited(&self, waiting_for: String, status: ExitStatus) -> Error {
        Error::VmExited {
            waiting_for,
            status,
            console_tail: self.console_tail(TAIL_LINES),
        }
    }

    /// Waits until `needle` appears on the console; returns the time from
    /// launch to when it was seen (to within the poll interval).
    pub fn wait_console(&mut self, needle: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let what = || format!("`{needle}` on the console");
        let mut offset = 0usize;
        let mut window: Vec<u8> = Vec::new();
        loop {
            let fresh = read_from(&self.plan.console, offset);
            if !fresh.is_empty() {
                // Keep the end of what was already searched so a needle
                // split across two reads is still found.
                let keep = window.len().min(needle.len());
                window.drain(..window.len() - keep);
                window.extend_from_slice(&fresh);
                offset += fresh.len();
                if window
                    .windows(needle.len().max(1))
                    .any(|w| w == needle.as_bytes())
                {
                    return Ok(self.launched.elapsed());
                }
            }
            if let Some(status) = self.try_exit() {
                // The needle may have arrived just before the exit.
                if self.console_text().contains(needle) {
                    return Ok(self.launched.elapsed());
                }
                return Err(self.exited(what(), status));
            }
            if let Some(err) = self.stopped(what) {
                return Err(err);
            }
            if start.elapsed() >= timeout {
                return Err(self.timeout(what(), timeout));
            }
            std::thread::sleep(POLL);
        }
    }

    /// One GET to the guest `path` through the health port forward.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        self.get_port(HEALTH_PORT, path)
    }

    /// One GET to `path` on the guest's `guest_port` (must be forwarded).
    pub fn get_port(&self, guest_port: u16, path: &str) -> Result<(u16, String)> {
        let addr = self.addr(guest_port)?;
        http::get(addr, path, GET_TIMEOUT)
    }

    fn addr(&self, guest_port: u16) -> Result<SocketAddr> {
        let port = self.host_port(guest_port).ok_or_else(|| {
            Error::Invalid(format!(
                "guest port {guest_port} is not forwarded (nic off?)"
            ))
        })?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Polls `path` on the health port with overlapping fresh connections
    /// until `accept(code, body)` holds; returns that response.
    pub fn wait_get(
        &mut self,
        path: &str,
        accept: impl Fn(u16, &str) -> bool,
        timeout: Duration,
    ) -> Result<(u16, String)> {
        let addr = self.addr(HEALTH_PORT)?;
        let start = Instant::now();
        let (tx, rx) = mpsc::channel();
        let mut in_flight = 0usize;
        let mut next_probe = start;
        let mut last = String::from("no response yet");
        loop {
            let now = Instant::now();
            if let Some(status) = self.try_exit() {
                return Err(self.exited(format!("GET {path} (last: {last})"), status));
            }
            if let Some(err) = self.stopped(|| format!("GET {path}")) {
                return Err(err);
            }
            if now.duration_since(start) >= timeout {
                return Err(
                    self.timeout(format!("GET {path} to be accepted (last: {last})"), timeout)
                );
            }
            if in_flight < MAX_PROBES && now >= next_probe {
                let tx = tx.clone();
                let path = path.to_string();
                std::thread::spawn(move || {
                    let _ = tx.send(http::get(addr, &path, PROBE_TIMEOUT));
                });
                in_flight += 1;
                next_probe = now + PROBE_INTERVAL;
            }
            match rx.recv_timeout(POLL) {
                Ok(result) => {
                    in_flight -= 1;
                    match result {
                        Ok((code, body)) if accept(code, &body) => return Ok((code, body)),
                        Ok((code, body)) => last = format!("{code} {}", body.trim()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(_) => continue,
            }
        }
    }

    /// Polls `/health` until its JSON body (200 or 503) satisfies `pred`.
    pub fn wait_health(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let accept = |_code: u16, body: &str| {
            serde_json::from_str::<serde_json::Value>(body).is_ok_and(|json| pred(&json))
        };
        let (_, body) = self.wait_get("/health", accept, timeout)?;
        serde_json::from_str(&body).map_err(|e| Error::Http {
            url: "/health".into(),
            reason: format!("body is not JSON: {e}"),
        })
    }

    /// The hybrid vsock socket on the host, when the VM has a vsock device.
    pub fn vsock_socket(&self) -> Option<&Path> {
        self.vsock.as_ref().map(|d| d.uds.as_path())
    }

    /// The vsock daemon's pid, when the VM has a vsock device.
    pub fn vsock_daemon_pid(&self) -> Option<u32> {
        self.vsock.as_ref().map(crate::vsock::Daemon::pid)
    }

    fn vsock_uds(&self) -> Result<PathBuf> {
        self.vsock_socket()
            .map(Path::to_path_buf)
            .ok_or_else(|| Error::Invalid("the VM has no vsock device (vsock off)".into()))
    }

    /// One GET of `path` on the guest's vsock health port.
    pub fn vsock_get(&self, path: &str) -> Result<(u16, String)> {
        crate::vsock::get(
            &self.vsock_uds()?,
            u32::from(HEALTH_PORT),
            path,
            GET_TIMEOUT,
        )
    }

    /// Polls `/health` over vsock until its JSON satisfies `pred`; retries while the guest
    /// does not listen yet.
    pub fn wait_vsock_health(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let uds = self.vsock_uds()?;
        let accept = |_code: u16, body: &str| {
            serde_json::from_str::<serde_json::Value>(body).is_ok_and(|json| pred(&json))
        };
        let got = crate::vsock::wait_get(&uds, u32::from(HEALTH_PORT), "/health", accept, timeout);
        let (_, body) = match got {
            Ok(r) => r,
            Err(e) => {
                let daemon = self
                    .vsock
                    .as_mut()
                    .map(|d| d.describe())
                    .unwrap_or_default();
                let what = format!("/health over vsock ({e}; {daemon})");
                return Err(match self.try_exit() {
                    Some(status) => self.exited(what, status),
                    None => self.timeout(what, timeout),
                });
            }
        };
        serde_json::from_str(&body).map_err(|e| Error::Http {
            url: "vsock /health".into(),
            reason: format!("body is not JSON: {e}"),
        })
    }

    /// Runs a human-monitor command; returns its output.
    pub fn monitor(&self, command: &str) -> Result<String> {
        monitor::command(&self.plan.monitor, command).map_err(|source| Error::Monitor {
            command: command.into(),
            source,
        })
    }

    /// Presses ctrl-alt-delete on the guest keyboard (vminit shuts down).
    pub fn send_ctrl_alt_del(&self) -> Result<()> {
        self.monitor("sendkey ctrl-alt-delete").map(drop)
    }

    /// Presses the power button (ACPI on x86; the `gpio-keys` KEY_POWER on arm64 virt).
    pub fn system_powerdown(&self) -> Result<()> {
        self.monitor("system_powerdown").map(drop)
    }

    /// Waits for QEMU to end by itself (it does not kill it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return Ok(status);
            }
            if let Some(err) = self.stopped(|| "QEMU to exit".into()) {
                return Err(err);
            }
            if start.elapsed() >= timeout {
                return Err(self.timeout("QEMU to exit".into(), timeout));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills QEMU (SIGKILL) and reaps it; a no-op once it has ended.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        self.exit
    }

    /// The console file's path, kept beyond the Vm's life: copies it to `dest`.
    pub fn save_console(&self, dest: &Path) -> Result<PathBuf> {
        std::fs::copy(&self.plan.console, dest).map_err(Error::io("copy console", dest))?;
        Ok(dest.to_path_buf())
    }
}

/// The bytes of `path` from `offset` on (empty if none or unreadable).
fn read_from(path: &Path, offset: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        if file.seek(SeekFrom::Start(offset as u64)).is_ok() {
            let _ = file.read_to_end(&mut out);
        }
    }
    out
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
