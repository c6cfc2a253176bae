//! `bench-vsock`: `/health` over vsock against `/health` over hostfwd TCP, in one VM and one
//! run, and the long poll's delay from a change to its answer.
//!
//! Each transport gets the same load: `requests` GETs, `concurrency` clients, one fresh
//! connection per request (as a controller polls). The change is a service exiting: the host
//! asks the guest's test agent for `GET /exit` (through hostfwd), the supervisor sees the exit,
//! the event loop publishes a new generation, and a `/health?wait=N` over vsock waiting since
//! before the change answers; measured from the `/exit` answer to the long poll's answer.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::{bench, Initramfs, Kernel, Machine, VmBuilder, BOOT_TIMEOUT, HEALTH_PORT};

/// The service whose exits are the changes (restarted each time).
const AGENT: &str = r#"
[services.agent]
command = ["/bin/test-agent", "http", "--port", "8081"]
restart = "always"
"#;
const AGENT_PORT: u16 = 8081;

pub struct Options {
    pub machine: Machine,
    pub requests: usize,
    pub concurrency: usize,
    /// Service exits for the long-poll measurement.
    pub changes: usize,
}

pub struct Load {
    pub transport: &'static str,
    pub answered: usize,
    pub failed: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub struct Report {
    pub machine: Machine,
    pub accel: String,
    pub loads: Vec<Load>,
    /// Change → long-poll answer, one per change.
    pub wake: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `requests` calls of `get` from `concurrency` threads.
fn load(
    transport: &'static str,
    requests: usize,
    concurrency: usize,
    get: impl Fn() -> bool + Send + Sync + 'static,
) -> Load {
    let get = Arc::new(get);
    let times = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let failed = Arc::new(Mutex::new(0usize));
    let per = requests / concurrency.max(1);
    let start = Instant::now();
    let threads: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (get, times, failed) = (Arc::clone(&get), Arc::clone(&times), Arc::clone(&failed));
            std::thread::spawn(move || {
                for _ in 0..per {
                    let t = Instant::now();
                    if get() {
                        times.lock().map(|mut v| v.push(t.elapsed())).ok();
                    } else {
                        failed.lock().map(|mut n| *n += 1).ok();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = start.elapsed();
    let mut times = times.lock().map(|v| v.clone()).unwrap_or_default();
    times.sort();
    let failed = failed.lock().map(|n| *n).unwrap_or(0);
    Load {
        transport,
        answered: times.len(),
        failed,
        per_second: times.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50: percentile(&times, 50),
        p99: percentile(&times, 99),
    }
}

pub fn run(kernel: &Kernel, o: &Options) -> Result<Report> {
    let dir = tempfile::tempdir().map_err(Error::io("create temp dir", "/tmp"))?;
    let initrd = dir.path().join("vminit.cpio");
    let mut img = Initramfs::vminit()?;
    img.bin("test-agent")?;
    img.config(AGENT);
    if let Some(m) = &kernel.modules_dir {
        img.modules(&kernel.release, m, crate::VIRTIO_MODULES)?;
    }
    img.write(&initrd)?;
    let mut vm = VmBuilder::new()
        .machine(o.machine)
        .kernel(kernel.clone())
        .initrd(&initrd)
        .append(&bench::vminit_net_append())
        .nic(true)
        .forward(AGENT_PORT)
        .vsock(true)
        .launch()?;
    vm.wait_health(|h| h["status"] == "ok", BOOT_TIMEOUT)?;
    vm.wait_vsock_health(|h| h["status"] == "ok", BOOT_TIMEOUT)?;
    let accel = vm
        .args()
        .windows(2)
        .find(|w| w[0] == "-accel")
        .map_or("?".into(), |w| w[1].clone());
    let uds = vm
        .vsock_socket()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Invalid("no vsock socket".into()))?;
    let tcp =
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, vm.health_port().unwrap_or(0)));
    let timeout = Duration::from_secs(10);
    let port = u32::from(HEALTH_PORT);
    let mut loads = Vec::new();
    let u = uds.clone();
    loads.push(load("vsock", o.requests, o.concurrency, move || {
        crate::vsock::get(&u, port, "/health", timeout).is_ok_and(|(c, _)| c == 200)
    }));
    loads.push(load("hostfwd TCP", o.requests, o.concurrency, move || {
        crate::http::get(tcp, "/health", timeout).is_ok_and(|(c, _)| c == 200)
    }));
    let agent = std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        vm.host_port(AGENT_PORT).unwrap_or(0),
    ));
    let mut wake = Vec::new();
    for _ in 0..o.changes {
        // The agent is back (restarted after its last exit) and listening.
        let up = |c: u16, _: &str| c == 200;
        crate::vsock::wait_get(&uds, port, "/livez", up, BOOT_TIMEOUT)?;
        let end = Instant::now() + BOOT_TIMEOUT;
        while !crate::http::get(agent, "/health", timeout).is_ok_and(|(c, _)| c == 200) {
            if Instant::now() >= end {
                return Err(Error::Invalid("the agent did not come back".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (_, body) = crate::vsock::get(&uds, port, "/health", timeout)?;
        let doc: serde_json::Value = serde_json::from_str(&body).map_err(|e| Error::Http {
            url: "vsock /health".into(),
            reason: e.to_string(),
        })?;
        let generation = doc["generation"].as_u64().unwrap_or(0);
        let u = uds.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let path = format!("/health?wait={generation}");
            let r = crate::vsock::get(&u, port, &path, Duration::from_secs(40));
            let _ = tx.send((r, Instant::now()));
        });
        // A round trip after starting the waiter gives it time to connect; one that connects
        // after the change is answered at once, which is still change -> answer.
        crate::vsock::get(&uds, port, "/livez", timeout)?;
        crate::http::get(agent, "/exit", timeout)?;
        let changed = Instant::now();
        let (r, at) = rx
            .recv_timeout(Duration::from_secs(40))
            .map_err(|_| Error::Invalid("the long poll never answered".into()))?;
        r?;
        wake.push(at.saturating_duration_since(changed));
    }
    Ok(Report {
        machine: o.machine,
        accel,
        loads,
        wake,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "machine {:?}, accel {}", self.machine, self.accel)?;
        writeln!(f)?;
        writeln!(
            f,
            "| transport | answered | failed | requests/s | p50 | p99 |\n| --- | --- | --- | --- | --- | --- |"
        )?;
        for l in &self.loads {
            writeln!(
                f,
                "| {} | {} | {} | {:.0} | {:.1} ms | {:.1} ms |",
                l.transport,
                l.answered,
                l.failed,
                l.per_second,
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3
            )?;
        }
        let mut w = self.wake.clone();
        w.sort();
        write!(
            f,
            "\nlong poll over vsock, service exit -> answer ({} changes): median {:.1} ms, max {:.1} ms",
            w.len(),
            percentile(&w, 50).as_secs_f64() * 1e3,
            w.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        )
    }
}
