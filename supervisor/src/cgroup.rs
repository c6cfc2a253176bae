//! A cgroup v2 per service (contract §3): `<base>/vminit/<name>` with the service's limits,
//! and `<base>/vminit/init` for the init itself, protected (`cpu.weight`, `memory.min`), so
//! that a runaway service cannot starve `/health`. `<base>` is the cgroup2 mount for PID 1,
//! or the cgroup vminit was started in when that one is delegated to it ([`delegation`]).
//!
//! Owns the layout, the limit files and what is read back (emptiness, `memory.events`, the
//! live figures). Every path is built from the `base` given in, so the decisions are tested
//! over a plain directory tree (like Firecracker's jailer `cgroup.rs`); the real kernel path
//! is tested in the guest (`tests/tests/qemu_cgroups.rs`). It does not decide when to kill
//! or restart (the supervisor does) and has no `unsafe`: a child joins its cgroup through the
//! fd opened here ([`ServiceCgroup::open_procs`]), written in `sys.rs`.

pub mod delegation;

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use guest_config::ServiceConfig;
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal};

/// The controllers vminit uses, in the order they are enabled.
pub const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The init's `cpu.weight`: ten times a service's default (100), so a spinning service
/// leaves the init (and `/health`) about 90% of a contended CPU.
pub const INIT_CPU_WEIGHT: u32 = 1000;

/// The init's `memory.min`: its working set (a few MiB of RSS, the health server's buffers)
/// with room, never reclaimed under a service's memory pressure. Written on `vminit/` and on
/// `vminit/init`: a child's protection is capped by its parent's.
pub const INIT_MEMORY_MIN: u64 = 16 << 20;

/// Why there is no cgroup layout: services then run in process groups only.
#[derive(Debug)]
pub enum Unavailable {
    /// No cgroup2 at `path` (`cgroup.controllers` absent).
    NoCgroup2 { path: PathBuf },
    /// Off PID 1, the cgroup we run in is not ours to divide; `why` is
    /// [`delegation::Facts::why_not`].
    NotDelegated { path: PathBuf, why: String },
    /// A step of the layout failed.
    Setup {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoCgroup2 { path } => {
                write!(
                    f,
                    "no cgroup v2 at {} (no cgroup.controllers)",
                    path.display()
                )
            }
            Unavailable::NotDelegated { path, why } => write!(
                f,
                "cgroup {} is not delegated to vminit ({why})",
                path.display()
            ),
            Unavailable::Setup { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
        }
    }
}

/// Whose cgroup the layout goes in.
#[derive(Debug, Clone)]
pub enum Scope {
    /// PID 1: the cgroup2 mount, all ours.
    Pid1,
    /// Off PID 1: the cgroup we were started in, used only if [`delegation::decide`] says
    /// it was delegated to us.
    Started(delegation::Facts),
}

/// The `vminit/` cgroup and the controllers enabled below it.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    dir: PathBuf,
    delegated: Option<delegation::Delegated>,
    enabled: Vec<String>,
    missing: Vec<String>,
    /// What went wrong without making the layout unusable (a controller that would not
    /// enable, the init's protection): for the log and `/health`.
    pub problems: Vec<String>,
}

/// The cgroup `/proc/<pid>/cgroup` names for the unified hierarchy (`0::/path`).
pub fn own_cgroup(proc_self_cgroup: &Path) -> Option<String> {
    let text = fs::read_to_string(proc_self_cgroup).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    // No O_CREAT: on cgroupfs a missing file means a missing feature, which must not be
    // papered over by creating a plain file (and the fake trees in tests hold the files).
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
}

fn mkdir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

impl Hierarchy {
    /// Lays out `<base>/vminit/{init}`, moves process `self_pid` into `vminit/init`, enables
    /// the [`CONTROLLERS`] the kernel offers in `<base>` and `vminit/`, and protects the init.
    /// `base` is the cgroup2 mount ([`Scope::Pid1`]) or the cgroup we were started in
    /// ([`Scope::Started`]: then only if it was delegated to us).
    pub fn set_up(base: &Path, scope: Scope, self_pid: u32) -> Result<Hierarchy, Unavailable> {
        let controllers = base.join("cgroup.controllers");
        let offered = fs::read_to_string(&controllers).map_err(|_| Unavailable::NoCgroup2 {
            path: base.to_path_buf(),
        })?;
        let delegated = match scope {
            Scope::Pid1 => None,
            Scope::Started(facts) => match delegation::decide(&facts) {
                Some(d) => Some(d),
                None => {
                    return Err(Unavailable::NotDelegated {
                        path: base.to_path_buf(),
                        why: facts.why_not(),
                    })
                }
            },
        };
        let subtree = base.join("cgroup.subtree_control");
        let dir = base.join("vminit");
        let init = dir.join("init");
        for d in [&dir, &init] {
            mkdir(d).map_err(|source| Unavailable::Setup {
                what: "create cgroup",
                path: d.clone(),
                source,
            })?;
        }
        // First out of `base`: a cgroup with processes cannot enable controllers for its
        // children (the "no internal processes" rule; the root is exempt, a delegated
        // cgroup is not).
        let procs = init.join("cgroup.procs");
        write_file(&procs, &self_pid.to_string()).map_err(|source| Unavailable::Setup {
            what: "move vminit into",
            path: procs.clone(),
            source,
        })?;
        let mut h = Hierarchy {
            dir,
            delegated,
            enabled: Vec::new(),
            missing: Vec::new(),
            problems: Vec::new(),
        };
        let offered: Vec<&str> = offered.split_whitespace().collect();
        for c in CONTROLLERS {
            if !offered.contains(&c) {
                h.missing.push(c.to_string());
                continue;
            }
            // One write per controller: a combined write fails whole on one refusal.
            let on = [&subtree, &h.dir.join("cgroup.subtree_control")]
                .into_iter()
                .try_for_each(|p| {
                    write_file(p, &format!("+{c}")).map_err(|e| {
                        format!(
                            "cannot enable cgroup controller {c} in {}: {e}",
                            p.display()
                        )
                    })
                });
            match on {
                Ok(()) => h.enabled.push(c.to_string()),
                Err(e) => {
                    h.problems.push(e);
                    h.missing.push(c.to_string());
                }
            }
        }
        if h.has("cpu") {
            h.protect(&init.join("cpu.weight"), &INIT_CPU_WEIGHT.to_string());
        }
        if h.has("memory") {
            // Every level vminit made, parent first: the kernel caps a cgroup's effective
            // `memory.min` by its ancestors' (cgroup-v2.rst, "memory.min"), so the init's
            // alone would protect nothing while `vminit/` has 0.
            let min = INIT_MEMORY_MIN.to_string();
            for d in [h.dir.clone(), init.clone()] {
                h.protect(&d.join("memory.min"), &min);
            }
        }
        Ok(h)
    }

    fn protect(&mut self, path: &Path, value: &str) {
        if let Err(e) = write_file(path, value) {
            self.problems.push(format!(
                "cannot protect the init: {} = {value}: {e}",
                path.display()
            ));
        }
    }

    /// Whether controller `c` is enabled for the services.
    pub fn has(&self, c: &str) -> bool {
        self.enabled.iter().any(|e| e == c)
    }
    /// Controllers enabled for the services.
    pub fn enabled(&self) -> &[String] {
        &self.enabled
    }
    /// Controllers of [`CONTROLLERS`] the kernel does not offer (or refused to enable).
    pub fn missing(&self) -> &[String] {
        &self.missing
    }
    /// `vminit/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Off PID 1, why the cgroup we were started in counted as ours (`None` as PID 1).
    pub fn delegated(&self) -> Option<delegation::Delegated> {
        self.delegated
    }

    /// Creates service `name`'s cgroup and writes its limits. Returns the cgroup (unless it
    /// could not be created) and one message per limit not applied, naming the key, value
    /// and why: the service runs without that limit.
    pub fn service(&self, name: &str, cfg: &ServiceConfig) -> (Option<ServiceCgroup>, Vec<String>) {
        let dir = self.dir.join(name);
        if let Err(e) = mkdir(&dir) {
            let why = format!(
                "service {name}: cannot create cgroup {}: {e}",
                dir.display()
            );
            return (None, vec![why]);
        }
        let mut errors = Vec::new();
        let limits: [(&str, &str, &str, Option<String>, String); 5] = [
            (
                "memory_max",
                "memory",
                "memory.max",
                cfg.memory_max.as_ref().map(|b| b.bytes.to_string()),
                cfg.memory_max
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            (
                "memory_high",
                "memory",
                "memory.high",
                cfg.memory_high.as_ref().map(|b| b.bytes.to_string()),
                cfg.memory_high
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            (
                "cpu_max",
                "cpu",
                "cpu.max",
                cfg.cpu_max.as_ref().map(|c| c.cgroup_line()),
                cfg.cpu_max
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            (
                "cpu_weight",
                "cpu",
                "cpu.weight",
                cfg.cpu_weight.map(|w| w.0.to_string()),
                cfg.cpu_weight.map(|w| w.0.to_string()).unwrap_or_default(),
            ),
            (
                "pids_max",
                "pids",
                "pids.max",
                cfg.pids_max.map(|p| p.0.to_string()),
                cfg.pids_max.map(|p| p.0.to_string()).unwrap_or_default(),
            ),
        ];
        for (key, controller, file, value, shown) in limits {
            let Some(value) = value else { continue };
            if !self.has(controller) {
                errors.push(format!(
                    "service {name}: {key} = {shown} not applied: no {controller} cgroup controller"
                ));
                continue;
            }
            let path = dir.join(file);
            if let Err(e) = write_file(&path, &value) {
                errors.push(format!(
                    "service {name}: {key} = {shown} not applied: writing {value:?} to {}: {e}",
                    path.display()
                ));
            }
        }
        (Some(ServiceCgroup { dir }), errors)
    }
}

/// How a cgroup's processes were killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// Nothing was left.
    Empty,
    /// `cgroup.kill` (Linux 5.14+): the kernel kills every member, forks racing included.
    CgroupKill,
    /// SIGKILL to each pid in `cgroup.procs` (older kernels); `n` pids.
    EachPid(usize),
}

/// Live resource use of a service, as `/health` and `/metrics` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub memory_bytes: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub pids: Option<u64>,
    pub oom_kills: Option<u64>,
}

/// One service's cgroup.
#[derive(Debug, Clone)]
pub struct ServiceCgroup {
    dir: PathBuf,
}

/// The value of `key` in a flat-keyed cgroup file (`memory.events`, `cpu.stat`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl ServiceCgroup {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `cgroup.procs`, opened for the child to join with one `write(2)` of `"0"` (the
    /// writer itself) between fork and exec. Close-on-exec: the service never sees it.
    pub fn open_procs(&self) -> io::Result<OwnedFd> {
        let path = self.dir.join("cgroup.procs");
        rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("open {}: {e}", path.display()),
            )
        })
    }

    /// The pids in the cgroup (empty if the cgroup is gone).
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        match fs::read_to_string(self.dir.join("cgroup.procs")) {
            Ok(t) => Ok(t.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// No process of the service is left. An unreadable `cgroup.procs` counts as empty: a
    /// restart must not wait forever on a file it cannot read.
    pub fn is_empty(&self) -> bool {
        self.pids().map(|p| p.is_empty()).unwrap_or(true)
    }

    /// Kills everything in the cgroup: `cgroup.kill`, else SIGKILL to each pid listed.
    pub fn kill(&self) -> io::Result<Killed> {
        let pids = self.pids()?;
        if pids.is_empty() {
            return Ok(Killed::Empty);
        }
        match write_file(&self.dir.join("cgroup.kill"), "1") {
            Ok(()) => return Ok(Killed::CgroupKill),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}/cgroup.kill: {e}; killing each pid", self.dir.display()),
        }
        let mut n = 0usize;
        // Pids 0 and 1 are never sent anything: 0 would be our own group, 1 ourselves.
        for pid in pids
            .into_iter()
            .filter(|&p| p > 1)
            .filter_map(Pid::from_raw)
        {
            if rustix::process::kill_process(pid, Signal::KILL).is_ok() {
                n = n.saturating_add(1);
            }
        }
        Ok(Killed::EachPid(n))
    }

    /// `oom_kill` of `memory.events`: processes of the service killed by the OOM killer.
    pub fn oom_kills(&self) -> Option<u64> {
        keyed(
            &fs::read_to_string(self.dir.join("memory.events")).ok()?,
            "oom_kill",
        )
    }

    /// The live figures: each `None` when its file is missing (controller not enabled).
    pub fn figures(&self) -> Figures {
        let cpu_ms = fs::read_to_string(self.dir.join("cpu.stat"))
            .ok()
            .and_then(|t| keyed(&t, "usage_usec"))
            .map(|us| us / 1000);
        Figures {
            memory_bytes: read_u64(&self.dir.join("memory.current")),
            cpu_ms,
            pids: read_u64(&self.dir.join("pids.current")),
            oom_kills: self.oom_kills(),
        }
    }
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
