//! The supervisor's side effects: starting processes, wiring their pipes and notify sockets
//! into the loop, running readiness probes and carrying out the machines' actions.

use std::io::{ErrorKind, Read};
use std::time::Instant;

use guest_config::Ready;
use mio::{Interest, Token};

use crate::machine::{deadline_after, Action};
use crate::notify::{parse_message, sender_belongs, NotifySocket, MAX_PER_WAKE};
use crate::output::LineAssembler;
use crate::probe::{ExecRun, Pending, PollProbe, PROBE_TIMEOUT};
use crate::spawn::{self, Spec};
use crate::status::{ExitStatus, ServiceState};
use crate::supervisor::{Pipe, Service, Supervisor};
use crate::users;

/// One read from a service's pipe, on the stack.
const PIPE_READ: usize = 8192;
/// Reads per readiness event of a pipe.
const READS_PER_EVENT: u32 = 16;
/// Reads when the writer exited: enough for a full pipe at Linux's largest default size
/// (`pipe-max-size`, 1 MiB = 128 reads), with room for a descendant still writing.
const READS_AT_EXIT: u32 = 160;
/// How often a held start checks again that the previous run's cgroup is empty: killed
/// processes are gone within a few ms once reaped.
const HOLD_RETRY: std::time::Duration = std::time::Duration::from_millis(20);
/// Retry delay for console output a slow sink did not take.
const CONSOLE_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

impl Supervisor {
    /// Brings every service forward as far as `now` allows, until nothing changes.
    pub(crate) fn advance(&mut self, now: Instant, registry: &mio::Registry) {
        for _ in 0..=self.services.len() {
            let mut changed = false;
            for i in 0..self.services.len() {
                changed |= self.step(i, now, registry);
            }
            if !changed {
                break;
            }
        }
        self.flush_console(now);
    }

    /// One service: start, probe, tick, stop. Returns true if something happened that may
    /// unblock another service.
    fn step(&mut self, i: usize, now: Instant, registry: &mio::Registry) -> bool {
        let mut changed = false;
        if self.services[i].m.is_waiting() && self.deps_met(i) {
            if let Some(Action::Spawn) = self.services[i].m.deps_ready() {
                self.spawn_service(i, now, registry);
                changed = true;
            }
        }
        changed |= self.run_probe(i, now);
        if let Some(action) = self.services[i].m.tick(now) {
            self.act(i, action, now, registry);
            changed = true;
        }
        if self.shutting_down
            && self.services[i].m.is_up_for_stop()
            && self.services[i]
                .dependents
                .iter()
                .all(|&d| self.services[d].m.is_down())
        {
            if let Some(action) = self.services[i].m.stop(now) {
                log::info!("stopping service {}", self.services[i].name);
                self.act(i, action, now, registry);
                changed = true;
            }
        }
        changed
    }

    fn deps_met(&self, i: usize) -> bool {
        let s = &self.services[i];
        (!s.needs_network || self.network_up)
            && s.deps.iter().all(|&d| self.services[d].m.counts_as_ready())
    }

    fn act(&mut self, i: usize, action: Action, now: Instant, registry: &mio::Registry) {
        match action {
            Action::Spawn => self.spawn_service(i, now, registry),
            Action::KillGroup { pid, signal } => {
                let s = &self.services[i];
                if let Some(why) =
                    s.m.last_exit()
                        .filter(|_| signal == libc::SIGKILL && !s.m.is_stopping())
                {
                    log::warn!("service {}: {why}; killing it ({})", s.name, s.m.state());
                }
                if let Err(e) = spawn::kill_group(pid, signal) {
                    log::warn!("service {}: kill(-{pid}, {signal}) failed: {e}", s.name);
                }
                // SIGKILL means the whole service: what left the process group too.
                if signal == libc::SIGKILL {
                    self.kill_cgroup(i);
                }
            }
        }
    }

    /// Kills whatever is left in service `i`'s cgroup.
    fn kill_cgroup(&self, i: usize) {
        kill_left(&self.services[i]);
    }

    /// A start must wait while processes of the previous run are in the cgroup (a
    /// restarted server would find its port taken). Kills them and holds the start: returns
    /// true if held.
    fn hold_start(&mut self, i: usize, now: Instant) -> bool {
        let s = &self.services[i];
        let Some(cg) = &s.cgroup else { return false };
        if cg.is_empty() {
            self.services[i].hold_until = None;
            return false;
        }
        if s.hold_until.is_none() {
            log::warn!(
                "service {}: processes of its previous run are still alive; killing them before the start",
                s.name
            );
        }
        self.kill_cgroup(i);
        self.services[i].hold_until = deadline_after(now, HOLD_RETRY);
        true
    }

    fn spawn_service(&mut self, i: usize, now: Instant, registry: &mio::Registry) {
        if self.hold_start(i, now) {
            return;
        }
        let s = &self.services[i];
        let creds = match users::resolve(
            &s.name,
            s.cfg.user.as_deref(),
            s.cfg.group.as_deref(),
            &self.etc_dir,
        ) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}");
                self.services[i].m.spawn_failed(e.to_string(), now);
                return;
            }
        };
        let notify = s.notify.as_ref().map(|n| n.path.clone());
        let spec = Spec {
            argv: &s.cfg.command,
            env: &s.cfg.env,
            creds: creds.as_ref(),
            workdir: s.cfg.workdir.as_deref(),
            notify_socket: notify.as_deref(),
            capture: true,
            no_new_privs: s.cfg.no_new_privileges,
            cgroup_procs: None,
            nofile: None,
        };
        let cgroup_procs = match s.cgroup.as_ref().map(|c| c.open_procs()) {
            Some(Ok(fd)) => Some(fd),
            // The service still starts, in the init's cgroup: unconfined, but running.
            Some(Err(e)) => {
                log::error!("service {}: starts outside its cgroup: {e}", s.name);
                None
            }
            None => None,
        };
        let spec = Spec {
            cgroup_procs,
            nofile: s.cfg.nofile.map(|n| n.0),
            ..spec
        };
        let oom_base = s.cgroup.as_ref().and_then(|c| c.oom_kills());
        let program = s.cfg.command.first().cloned().unwrap_or_default();
        let t0 = std::time::Instant::now();
        let spawned = spawn::spawn(spec);
        // fork to execve, the child's set-up included (the program is prefetched early).
        log::debug!(
            "service {}: spawn took {} ms",
            s.name,
            t0.elapsed().as_millis()
        );
        match spawned {
            Err(e) => {
                // The child's setup reports only an errno: say where else it may come from.
                let why = match &s.cfg.workdir {
                    Some(dir) => format!(
                        "{program}: {e} (the command, or workdir {} as the service's user)",
                        dir.display()
                    ),
                    None => format!("{program}: {e}"),
                };
                log::error!("service {}: cannot start {why}", s.name);
                self.services[i].m.spawn_failed(why, now);
            }
            Ok(started) => {
                log::info!("service {} started as pid {}", s.name, started.pid);
                for rx in [started.stdout, started.stderr].into_iter().flatten() {
                    self.add_pipe(i, rx, registry);
                }
                let s = &mut self.services[i];
                s.oom_base = oom_base;
                s.m.spawned(started.pid, now);
                s.pending = None;
                s.next_probe = Some(now);
                s.probe_wait = crate::probe::FIRST_WAIT;
                if s.cfg.ready == Ready::Started {
                    s.m.ready();
                }
            }
        }
    }

    fn add_pipe(
        &mut self,
        svc: usize,
        mut rx: mio::unix::pipe::Receiver,
        registry: &mio::Registry,
    ) {
        let token = Token(self.next_token);
        // One token per pipe ever opened: 2^64 of them is out of reach, and saturating
        // keeps even that from panicking.
        self.next_token = self.next_token.saturating_add(1);
        match registry.register(&mut rx, token, Interest::READABLE) {
            Ok(()) => {
                self.pipes.insert(
                    token,
                    Pipe {
                        svc,
                        rx,
                        asm: LineAssembler::default(),
                    },
                );
            }
            // Dropping the read end makes the service's writes fail with EPIPE instead of
            // blocking it; its output is lost, which we say.
            Err(e) => log::error!(
                "service {}: cannot watch its output: {e}",
                self.services[svc].name
            ),
        }
    }

    /// A pipe became readable: reads a bounded amount, so one chatty service cannot starve
    /// the loop.
    pub(crate) fn read_pipe(&mut self, token: Token, registry: &mio::Registry) {
        self.read_pipe_upto(token, registry, READS_PER_EVENT);
    }

    /// Service `svc`'s process exited: everything it wrote is in its pipes by now (a
    /// write(2) to a pipe is complete before the writer can exit), so read it all before the
    /// exit is reported, and a shutdown never powers off with a last line unread. Stops at
    /// EOF (no writer left), when the pipe is empty (a live descendant may still write
    /// later: the pipe stays watched) or after [`READS_AT_EXIT`] reads.
    pub(crate) fn drain_pipes_of(&mut self, svc: usize, registry: &mio::Registry) {
        let tokens: Vec<Token> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.svc == svc)
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            self.read_pipe_upto(token, registry, READS_AT_EXIT);
        }
    }

    fn read_pipe_upto(&mut self, token: Token, registry: &mio::Registry, max_reads: u32) {
        let Some(pipe) = self.pipes.get_mut(&token) else {
            return;
        };
        let name = &self.services[pipe.svc].name;
        let mut buf = [0u8; PIPE_READ];
        // The edge-triggered registration would lose what is left when we stop early, so
        // re-register then.
        let mut eof = false;
        let mut rounds = 0u32;
        loop {
            match pipe.rx.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let console = &mut self.console;
                    pipe.asm
                        .feed(&buf[..n], &mut |l, cut| console.line(name, l, cut));
                    rounds = rounds.saturating_add(1);
                    if rounds >= max_reads {
                        let _ = registry.reregister(&mut pipe.rx, token, Interest::READABLE);
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            let console = &mut self.console;
            pipe.asm.finish(&mut |l, cut| console.line(name, l, cut));
            if let Some(mut p) = self.pipes.remove(&token) {
                let _ = registry.deregister(&mut p.rx);
            }
        }
    }

    pub(crate) fn bind_notify(&mut self, i: usize, registry: &mio::Registry) {
        let path = self
            .notify_dir
            .join(format!("{}.notify", self.services[i].name));
        match NotifySocket::bind(&path) {
            Ok(mut n) => {
                let Some(token) = self.token_base.checked_add(i).map(Token) else {
                    return;
                };
                if let Err(e) = registry.register(&mut n.sock, token, Interest::READABLE) {
                    log::error!(
                        "service {}: cannot watch {}: {e}",
                        self.services[i].name,
                        path.display()
                    );
                }
                self.services[i].notify = Some(n);
            }
            // The service still starts; without the socket it cannot become ready and its
            // ready_timeout will show that.
            Err(e) => log::error!(
                "service {}: cannot create notify socket {}: {e}",
                self.services[i].name,
                path.display()
            ),
        }
    }

    /// Handles at most [`MAX_PER_WAKE`] datagrams of service `i`'s socket; if more may be
    /// queued, re-arms the socket (edge-triggered) so the loop comes back after its other work.
    pub(crate) fn read_notify(&mut self, i: usize, now: Instant, registry: &mio::Registry) {
        let Some(mut sock) = self.services[i].notify.take() else {
            return;
        };
        let s = &mut self.services[i];
        let proc_dir = &self.proc_dir;
        let more = sock.recv_some(MAX_PER_WAKE, &mut |sender, payload| {
            let Some(main) = s.m.main_pid() else { return };
            if !sender_belongs(sender, main, proc_dir) {
                if let Some(suppressed) = s.notify_warn.hit(now) {
                    let also = if suppressed > 0 {
                        format!(" ({suppressed} more not logged)")
                    } else {
                        String::new()
                    };
                    log::warn!(
                        "service {}: ignored notify message from pid {sender}, not one of its processes{also}",
                        s.name
                    );
                }
                return;
            }
            let msg = parse_message(payload);
            if msg.status.is_some() {
                s.notify_status = msg.status;
            }
            if msg.ready && !s.m.is_proven_ready() {
                log::info!("service {} is ready (notify)", s.name);
                s.m.ready();
            }
        });
        if more {
            if let Some(token) = self.token_base.checked_add(i).map(Token) {
                if let Err(e) = registry.reregister(&mut sock.sock, token, Interest::READABLE) {
                    log::error!("service {}: cannot re-arm its notify socket: {e}", s.name);
                }
            }
        }
        self.services[i].notify = Some(sock);
    }

    /// Whether `s` is waiting for a polled readiness proof.
    pub(crate) fn probing(&self, s: &Service) -> bool {
        s.probe.is_some()
            && s.m.main_pid().is_some()
            && !s.m.is_proven_ready()
            && !self.shutting_down
    }

    /// Advances a polled probe. Returns true when the service became ready.
    fn run_probe(&mut self, i: usize, now: Instant) -> bool {
        if !self.probing(&self.services[i]) {
            self.services[i].pending = None;
            return false;
        }
        let s = &mut self.services[i];
        let Some(probe) = s.probe.clone() else {
            return false;
        };
        let due = s.next_probe.is_some_and(|t| now >= t);
        let ok = match &probe {
            PollProbe::Http(_) | PollProbe::Tcp(_) => {
                // An answer is read as soon as it is there (the probe wakes the loop), and a
                // refused attempt is followed by the next one at this tick if it is due, so
                // attempts come at the tick rate.
                let answer = s.pending.as_ref().and_then(Pending::poll);
                if let Some(a) = answer {
                    log::trace!("service {}: probe answered {a}", s.name);
                    s.pending = None;
                }
                if answer != Some(true) && s.pending.is_none() && due {
                    log::trace!("service {}: probe attempt", s.name);
                    s.pending = Pending::start(&probe, self.waker.clone());
                }
                answer == Some(true)
            }
            PollProbe::File(path) => due && path.exists(),
            PollProbe::Exec(argv) => {
                if let Some(run) = s.exec_run {
                    if run.deadline.is_some_and(|d| now >= d) {
                        let _ = spawn::kill_group(run.pid, libc::SIGKILL);
                        // Its exit arrives through on_exit; no need to wake before then.
                        s.exec_run = Some(ExecRun {
                            pid: run.pid,
                            deadline: deadline_after(now, PROBE_TIMEOUT),
                        });
                    }
                } else if due {
                    s.exec_run = start_exec(s, argv, &self.etc_dir, now);
                }
                false
            }
        };
        if ok {
            log::info!("service {} is ready", s.name);
            s.m.ready();
            return true;
        }
        if due || s.next_probe.is_none() {
            // A probe still in flight at a due tick is not doubled: its answer wakes the
            // loop, and the tick after that starts the next one.
            s.next_probe = deadline_after(now, s.probe_wait);
            s.probe_wait = crate::probe::next_wait(s.probe_wait);
        }
        false
    }

    /// Returns true if the pid was ours (a service's process or an `exec` probe).
    pub(crate) fn handle_exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        now: Instant,
        registry: &mio::Registry,
    ) -> bool {
        if status != ExitStatus::NotExited {
            if let Some(i) = self.services.iter().position(|s| s.m.owns(pid)) {
                self.drain_pipes_of(i, registry);
            }
        }
        for s in &mut self.services {
            if s.exec_run.is_some_and(|r| r.pid == pid) {
                if status == ExitStatus::NotExited {
                    return true;
                }
                s.exec_run = None;
                if status == ExitStatus::Code(0)
                    && s.m.main_pid().is_some()
                    && !s.m.is_proven_ready()
                {
                    log::info!("service {} is ready (exec probe)", s.name);
                    s.m.ready();
                }
                return true;
            }
            if s.m.owns(pid) {
                let was_main = s.m.main_pid() == Some(pid);
                let oom_now = s.cgroup.as_ref().and_then(|c| c.oom_kills());
                // An unreadable count at the start is 0: `None < Some(0)` would name an OOM
                // kill that never happened.
                let oom = was_main && oom_now.unwrap_or(0) > s.oom_base.unwrap_or(0);
                s.m.exited_with(pid, status, oom, now);
                if status != ExitStatus::NotExited {
                    // The whole service goes with its main process (a `setsid` grandchild
                    // included), unless it finished for good with success: a `restart =
                    // "never"` job may leave a daemon behind on purpose.
                    if s.m.state() != ServiceState::Exited {
                        kill_left(s);
                    }
                }
                if was_main && status != ExitStatus::NotExited {
                    let mut why = s.m.last_exit().map(|e| e.to_string()).unwrap_or_default();
                    if s.m.last_exit() == Some(&crate::LastExit::OomKill(true)) {
                        let limit = match &s.cfg.memory_max {
                            Some(m) => format!(" (memory_max = {m})"),
                            None => " (no memory_max: the guest ran out of memory)".to_string(),
                        };
                        why.push_str(&limit);
                    }
                    let state = s.m.state();
                    match state {
                        ServiceState::Failed => log::error!(
                            "service {} (pid {pid}) {why}: failed, {} crashes, no more restarts",
                            s.name,
                            s.m.failures()
                        ),
                        ServiceState::Backoff => log::warn!(
                            "service {} (pid {pid}) {why}: restarting after backoff",
                            s.name
                        ),
                        _ => log::info!("service {} (pid {pid}) {why}: {state}", s.name),
                    }
                }
                return true;
            }
        }
        false
    }

    fn flush_console(&mut self, now: Instant) {
        self.console_retry = self
            .console
            .flush()
            .then(|| deadline_after(now, CONSOLE_RETRY))
            .flatten();
    }
}

fn start_exec(
    s: &Service,
    argv: &[String],
    etc: &std::path::Path,
    now: Instant,
) -> Option<ExecRun> {
    let creds = users::resolve(&s.name, s.cfg.user.as_deref(), s.cfg.group.as_deref(), etc).ok()?;
    let spec = Spec {
        argv,
        env: &s.cfg.env,
        creds: creds.as_ref(),
        workdir: s.cfg.workdir.as_deref(),
        notify_socket: None,
        capture: false,
        no_new_privs: s.cfg.no_new_privileges,
        // The probe is the supervisor's, not the service's: it is not counted in the
        // service's cgroup nor killed with it.
        cgroup_procs: None,
        nofile: None,
    };
    match spawn::spawn(spec) {
        Ok(started) => Some(ExecRun {
            pid: started.pid,
            deadline: deadline_after(now, PROBE_TIMEOUT),
        }),
        Err(e) => {
            log::warn!(
                "service {}: readiness probe {:?} cannot start: {e}",
                s.name,
                argv.first()
            );
            None
        }
    }
}

/// Kills whatever is left in `s`'s cgroup (nothing without cgroups); a failure is a warning.
fn kill_left(s: &Service) {
    if let Some(cg) = &s.cgroup {
        if let Err(e) = cg.kill() {
            log::warn!(
                "service {}: cannot kill what is left in cgroup {}: {e}",
                s.name,
                cg.dir().display()
            );
        }
    }
}
