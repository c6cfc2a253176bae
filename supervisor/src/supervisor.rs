//! The [`Supervisor`]: all services of one boot, driven by the init's event loop. It owns the
//! services' pipes and notify sockets (registered on the loop's `mio::Registry` with tokens
//! from `Options::token_base` up) and decides through each service's [`Machine`]. It never
//! reaps (the loop hands it every `(pid, status)`), never installs signal handlers and never
//! reads the clock: every entry point takes `now`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_config::service::AFTER_NETWORK;
use guest_config::{Ready, ServiceConfig};
use mio::unix::pipe::Receiver;
use mio::Token;

use crate::cgroup::{Hierarchy, ServiceCgroup};
use crate::error::Error;
use crate::machine::Machine;
use crate::notify::{NotifySocket, WarnLimit};
use crate::output::{Console, LineAssembler};
use crate::probe::{ExecRun, Pending, PollProbe};
use crate::status::{ExitStatus, ServiceStatus, ServicesHealth};

/// How the supervisor is wired into the init.
pub struct Options {
    /// Where `notify` sockets are created (`<dir>/<name>.notify`).
    pub notify_dir: PathBuf,
    /// Where `passwd` and `group` are read.
    pub etc_dir: PathBuf,
    /// procfs, to check notify senders' sessions.
    pub proc_dir: PathBuf,
    /// Tokens `token_base..` belong to the supervisor.
    pub token_base: usize,
    /// Service output goes here. Should be non-blocking (`WouldBlock` is handled by
    /// buffering); a blocking sink would block the loop while the console is slow.
    pub console: Box<dyn Write + Send>,
    /// The cgroup layout ([`Hierarchy::set_up`]); `None`: services run in process groups
    /// only, unconfined.
    pub cgroups: Option<Hierarchy>,
    /// The loop's waker: a network probe that finishes wakes the loop, so its answer is
    /// read at once. `None`: answers are read at the next probe tick.
    pub waker: Option<Arc<mio::Waker>>,
}

impl Options {
    /// `/run/vminit`, `/etc`, `/proc`, tokens from 1000.
    pub fn new(console: Box<dyn Write + Send>) -> Options {
        Options {
            notify_dir: PathBuf::from("/run/vminit"),
            etc_dir: PathBuf::from("/etc"),
            proc_dir: PathBuf::from("/proc"),
            token_base: 1000,
            console,
            cgroups: None,
            waker: None,
        }
    }
}

pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) cfg: ServiceConfig,
    pub(crate) m: Machine,
    /// Indices of the services this one waits for.
    pub(crate) deps: Vec<usize>,
    pub(crate) needs_network: bool,
    /// Indices of the services waiting for this one (stopped before it).
    pub(crate) dependents: Vec<usize>,
    pub(crate) probe: Option<PollProbe>,
    pub(crate) pending: Option<Pending>,
    pub(crate) exec_run: Option<ExecRun>,
    pub(crate) next_probe: Option<Instant>,
    /// The wait before the next probe tick: [`crate::probe::FIRST_WAIT`] at each start,
    /// growing by half to [`crate::probe::POLL_INTERVAL`].
    pub(crate) probe_wait: Duration,
    pub(crate) notify: Option<NotifySocket>,
    pub(crate) notify_status: Option<String>,
    /// Warnings about foreign notify senders, rate-limited.
    pub(crate) notify_warn: WarnLimit,
    /// The service's own cgroup, when the layout exists.
    pub(crate) cgroup: Option<ServiceCgroup>,
    /// `oom_kill` of its `memory.events` when the current run started.
    pub(crate) oom_base: Option<u64>,
    /// A start is held until then: processes of the previous run are still in the cgroup.
    pub(crate) hold_until: Option<Instant>,
}

pub(crate) struct Pipe {
    pub(crate) svc: usize,
    pub(crate) rx: Receiver,
    pub(crate) asm: LineAssembler,
}

/// All services of one boot.
pub struct Supervisor {
    pub(crate) services: Vec<Service>,
    pub(crate) pipes: HashMap<Token, Pipe>,
    pub(crate) next_token: usize,
    pub(crate) token_base: usize,
    pub(crate) console: Console,
    /// Set while console output waits for a slow sink.
    pub(crate) console_retry: Option<Instant>,
    pub(crate) notify_dir: PathBuf,
    pub(crate) etc_dir: PathBuf,
    pub(crate) proc_dir: PathBuf,
    pub(crate) network_up: bool,
    pub(crate) shutting_down: bool,
    pub(crate) cgroups: Option<Hierarchy>,
    pub(crate) waker: Option<Arc<mio::Waker>>,
    /// Problems for `/health` `errors[]` not yet taken ([`Supervisor::take_errors`]).
    pub(crate) errors: Vec<String>,
}

/// Indexes dependency edges. The service set comes validated from the config layer
/// (`guest_config::merge_services` refuses unknown `after` names and cycles, with their
/// location); an unknown name here is still refused, since an edge must have an index.
fn resolve_deps(names: &[String], cfgs: &[&ServiceConfig]) -> Result<Vec<Vec<usize>>, Error> {
    let mut deps = Vec::with_capacity(cfgs.len());
    for (i, cfg) in cfgs.iter().enumerate() {
        let mut d = Vec::new();
        for a in cfg.after.iter().filter(|a| a.as_str() != AFTER_NETWORK) {
            let j = names
                .iter()
                .position(|n| n == a)
                .ok_or_else(|| Error::UnknownDependency {
                    service: names[i].clone(),
                    after: a.clone(),
                })?;
            if !d.contains(&j) {
                d.push(j);
            }
        }
        deps.push(d);
    }
    Ok(deps)
}

impl Supervisor {
    /// Takes the validated services. Fails only on what would make them unrunnable as a set:
    /// an empty command, an unknown `after` name, a cycle.
    pub fn new(services: BTreeMap<String, ServiceConfig>, opts: Options) -> Result<Self, Error> {
        let names: Vec<String> = services.keys().cloned().collect();
        let cfgs: Vec<&ServiceConfig> = services.values().collect();
        if let Some((n, _)) = services.iter().find(|(_, c)| c.command.is_empty()) {
            return Err(Error::EmptyCommand { service: n.clone() });
        }
        let deps = resolve_deps(&names, &cfgs)?;
        let mut list = Vec::with_capacity(names.len());
        for (i, (name, cfg)) in services.into_iter().enumerate() {
            let probe = match PollProbe::from_config(&cfg.ready) {
                Ok(p) => p,
                Err(url) => {
                    // Validation should have caught it; the service will miss its
                    // ready_timeout and show that, rather than the supervisor refusing to run.
                    log::error!(
                        "service {name}: ready http URL {url:?} is not http://HOST[:PORT]/PATH"
                    );
                    None
                }
            };
            let dependents = (0..deps.len()).filter(|&j| deps[j].contains(&i)).collect();
            list.push(Service {
                m: Machine::new(&cfg),
                needs_network: cfg.after.iter().any(|a| a == AFTER_NETWORK),
                deps: deps[i].clone(),
                dependents,
                probe,
                pending: None,
                exec_run: None,
                next_probe: None,
                probe_wait: crate::probe::FIRST_WAIT,
                notify: None,
                notify_status: None,
                notify_warn: WarnLimit::default(),
                cgroup: None,
                oom_base: None,
                hold_until: None,
                name,
                cfg,
            });
        }
        let mut errors = Vec::new();
        if let Some(h) = &opts.cgroups {
            for s in &mut list {
                let (cg, problems) = h.service(&s.name, &s.cfg);
                s.cgroup = cg;
                errors.extend(problems);
            }
        }
        let mut sup = Self::with(list, opts);
        for e in &errors {
            log::error!("{e}");
        }
        sup.errors = errors;
        Ok(sup)
    }

    /// No services (the init before configuration is read).
    pub fn empty() -> Supervisor {
        Self::with(Vec::new(), Options::new(Box::new(std::io::sink())))
    }

    fn with(list: Vec<Service>, opts: Options) -> Supervisor {
        let n = list.len();
        Supervisor {
            services: list,
            pipes: HashMap::new(),
            next_token: opts.token_base.saturating_add(n),
            token_base: opts.token_base,
            console: Console::new(opts.console),
            console_retry: None,
            notify_dir: opts.notify_dir,
            etc_dir: opts.etc_dir,
            proc_dir: opts.proc_dir,
            network_up: false,
            shutting_down: false,
            cgroups: opts.cgroups,
            waker: opts.waker,
            errors: Vec::new(),
        }
    }

    /// Creates the notify sockets and starts every service without pending dependencies.
    pub fn start(&mut self, now: Instant, registry: &mio::Registry) {
        for i in 0..self.services.len() {
            if self.services[i].cfg.ready == Ready::Notify {
                self.bind_notify(i, registry);
            }
        }
        self.advance(now, registry);
    }

    /// The network came up (or went down). Only the first `up` matters for `after`.
    pub fn set_network_up(&mut self, up: bool, now: Instant, registry: &mio::Registry) {
        self.network_up = up;
        self.advance(now, registry);
    }

    /// A reaped child. Returns false if the pid is not a service's (an orphan).
    pub fn on_exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        now: Instant,
        registry: &mio::Registry,
    ) -> bool {
        let ours = self.handle_exit(pid, status, now, registry);
        if ours {
            self.advance(now, registry);
        }
        ours
    }

    /// An event on one of our tokens. Returns false if the token is not ours.
    pub fn on_event(
        &mut self,
        event: &mio::event::Event,
        now: Instant,
        registry: &mio::Registry,
    ) -> bool {
        let Token(t) = event.token();
        let Some(offset) = t.checked_sub(self.token_base) else {
            return false;
        };
        if offset < self.services.len() {
            self.read_notify(offset, now, registry);
        } else {
            self.read_pipe(event.token(), registry);
        }
        self.advance(now, registry);
        true
    }

    /// Restarts due, readiness polls and deadlines, stop escalation, console retries.
    pub fn on_timer(&mut self, now: Instant, registry: &mio::Registry) {
        self.advance(now, registry);
    }

    /// The earliest instant `on_timer` has work; `None` when idle.
    pub fn next_deadline(&self) -> Option<Instant> {
        let probes = self
            .services
            .iter()
            .filter(|s| self.probing(s))
            .filter_map(|s| match s.exec_run {
                Some(run) => run.deadline,
                None => s.next_probe,
            });
        // A held start waits for its hold, not for the (past) restart time.
        let machines = self
            .services
            .iter()
            .filter_map(|s| match (s.m.deadline(), s.hold_until) {
                (Some(d), Some(h)) => Some(d.max(h)),
                (d, _) => d,
            });
        machines.chain(probes).chain(self.console_retry).min()
    }

    /// Stops everything in reverse dependency order; keep calling `on_timer`/`on_exit`
    /// until [`Supervisor::is_stopped`].
    pub fn begin_shutdown(&mut self, now: Instant, registry: &mio::Registry) {
        self.shutting_down = true;
        for s in &mut self.services {
            s.m.begin_shutdown();
            s.pending = None;
            // A service already down may have left processes in its cgroup (a `restart =
            // "never"` job's daemon): they go now, or the shutdown would wait for them.
            if s.m.is_down() {
                if let Some(cg) = &s.cgroup {
                    let _ = cg.kill();
                }
            }
            if let Some(run) = s.exec_run {
                let _ = crate::spawn::kill_group(run.pid, libc::SIGKILL);
            }
        }
        self.advance(now, registry);
    }

    /// A second shutdown request: every service's process group gets SIGKILL now, skipping
    /// what is left of the stop timeouts. Call after [`Supervisor::begin_shutdown`].
    pub fn hurry_shutdown(&mut self) {
        for s in &self.services {
            for pid in s.m.main_pid().into_iter().chain(s.exec_run.map(|r| r.pid)) {
                let _ = crate::spawn::kill_group(pid, libc::SIGKILL);
            }
            if let Some(cg) = &s.cgroup {
                let _ = cg.kill();
            }
        }
    }

    /// Problems found since the last call, for `/health` `errors[]` (each reported once):
    /// limits not applied, and so on.
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    /// The cgroup layout, if any: the controllers enabled and missing.
    pub fn cgroups(&self) -> Option<&Hierarchy> {
        self.cgroups.as_ref()
    }

    /// The services' part in the guest's status.
    pub fn health(&self, now: Instant) -> ServicesHealth {
        ServicesHealth::of(&self.snapshot_without_figures(now))
    }

    /// Every service is down (no process of theirs left to reap) and what they wrote has
    /// reached the console: their pipes were drained when each exit was reaped, and the
    /// console queue is empty. A console that takes nothing keeps this false; the init's
    /// shutdown deadline bounds that wait.
    pub fn is_stopped(&self) -> bool {
        // A service's cgroup must be empty too: a grandchild that left the process group
        // (setsid) is still the service's, and is killed when its main process exits.
        self.services.iter().all(|s| {
            s.m.is_down()
                && s.exec_run.is_none()
                && s.cgroup.as_ref().is_none_or(ServiceCgroup::is_empty)
        }) && self.console.is_empty()
    }

    /// The longest `stop_timeout` (the init's shutdown grace is based on it). At most
    /// [`crate::machine::MAX_DELAY`], so adding a grace period to it cannot overflow.
    pub fn max_stop_timeout(&self) -> Duration {
        self.services
            .iter()
            .map(|s| s.m.stop_timeout())
            .max()
            .unwrap_or_default()
    }

    /// Each service as the health document shows it, with its live figures read from its
    /// cgroup.
    pub fn snapshot(&self, now: Instant) -> BTreeMap<String, ServiceStatus> {
        self.snapshot_with(now, true)
    }

    /// Each service without reading its figures (they are `null`): for a publication that no
    /// poll is waiting for, where reading four cgroup files per service would be wasted.
    pub fn snapshot_without_figures(&self, now: Instant) -> BTreeMap<String, ServiceStatus> {
        self.snapshot_with(now, false)
    }

    fn snapshot_with(&self, now: Instant, figures: bool) -> BTreeMap<String, ServiceStatus> {
        self.services
            .iter()
            .map(|s| {
                let fig = s
                    .cgroup
                    .as_ref()
                    .filter(|_| figures)
                    .map(ServiceCgroup::figures)
                    .unwrap_or_default();
                let st = ServiceStatus {
                    state: s.m.state(),
                    pid: s.m.main_pid(),
                    restarts: s.m.restarts(),
                    failures: s.m.failures(),
                    last_exit: s.m.last_exit().cloned(),
                    ready: s.m.counts_as_ready(),
                    required: s.cfg.required,
                    next_retry_ms: s.m.next_retry().map(|t| {
                        let ms = t.saturating_duration_since(now).as_millis();
                        u64::try_from(ms).unwrap_or(u64::MAX)
                    }),
                    budget_left: s.m.budget_left(now),
                    stopping: s.m.is_stopping(),
                    notify_status: s.notify_status.clone(),
                    ever_ready: s.m.ever_ready(),
                    memory_bytes: fig.memory_bytes,
                    cpu_ms: fig.cpu_ms,
                    pids: fig.pids,
                    oom_kills: fig.oom_kills,
                };
                (s.name.clone(), st)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(after: &[&str]) -> ServiceConfig {
        let after: Vec<String> = after.iter().map(|a| format!("{a:?}")).collect();
        toml::from_str(&format!("command = [\"x\"]\nafter = [{}]", after.join(","))).unwrap()
    }

    fn set(list: &[(&str, &[&str])]) -> BTreeMap<String, ServiceConfig> {
        list.iter().map(|(n, a)| (n.to_string(), cfg(a))).collect()
    }

    fn new(list: &[(&str, &[&str])]) -> Result<Supervisor, Error> {
        Supervisor::new(set(list), Options::new(Box::new(std::io::sink())))
    }

    #[test]
    fn dependencies_are_indexed_both_ways() {
        let s = new(&[("a", &[]), ("b", &["a", "network"]), ("c", &["a", "b"])]).unwrap();
        assert_eq!(s.services[1].deps, vec![0]);
        assert!(s.services[1].needs_network && !s.services[0].needs_network);
        assert_eq!(s.services[0].dependents, vec![1, 2]);
        assert_eq!(s.services[2].deps, vec![0, 1]);
    }

    #[test]
    fn unknown_names_are_refused() {
        let e = new(&[("a", &["ghost"])]).err().unwrap().to_string();
        assert!(e.contains("a") && e.contains("ghost"), "{e}");
    }

    #[test]
    fn empty_supervisor_is_stopped_and_idle() {
        let s = Supervisor::empty();
        assert!(s.is_stopped());
        assert!(s.next_deadline().is_none());
        assert_eq!(s.max_stop_timeout(), Duration::ZERO);
    }

    /// A sink that takes nothing yet.
    struct Stalled;
    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::WouldBlock.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn not_stopped_while_service_output_waits_for_the_console() {
        let mut s = Supervisor::with(Vec::new(), Options::new(Box::new(Stalled)));
        assert!(s.is_stopped());
        s.console.line("svc", b"last words", false);
        assert!(s.console.flush(), "still queued");
        assert!(!s.is_stopped());
    }
}
