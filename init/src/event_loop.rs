//! The init's one event loop: a `mio` poll over signals (SIGCHLD, SIGTERM, SIGINT, SIGPWR),
//! the power buttons ([`crate::power_button`]), a waker (health `/livez` pings, network state
//! changes, faults and the late module report from other threads), and the
//! supervisor's sources. It sleeps until the next event or the next deadline: idle, it does
//! not wake.
//!
//! It is the only place that reaps (through [`sys::reap_all`]): every child, orphans included,
//! and each status goes to the supervisor, so no exit status is ever stolen. Each turn runs
//! under [`crate::guard`]: a panic (a bug) is logged and published, and the next turn runs
//! with the same supervisor, so the services keep their processes and pipes.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guest_config::ShutdownMode;
use libc::SIGPWR;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use netconf::NetworkState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use supervisor::Supervisor;

use crate::health::{self, HealthDoc};
use crate::power_button::Buttons;
use crate::publish::{self, NetworkGate};
use crate::shutdown::{self, Shutdown, ShutdownAction};
use crate::{guard, sys};

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
/// The kernel's device events: a new input device may be a power button.
const DEVICES: Token = Token(2);
/// Power buttons: `BUTTONS + i`.
const BUTTONS: usize = 100;
/// Tokens from here up belong to the supervisor (`supervisor::Options::token_base`).
const SUPERVISOR_TOKENS: usize = 1000;

/// Without device events, looking again for a power button while none is found: the `button`
/// driver may bind after the loop starts. First after 1 s, doubling, last after 32 s.
const BUTTON_RESCAN_FIRST: Duration = Duration::from_secs(1);
const BUTTON_RESCAN_LAST: Duration = Duration::from_secs(32);

/// The signals that ask for a shutdown.
pub const SHUTDOWN_SIGNALS: [i32; 3] = [SIGTERM, SIGINT, SIGPWR];

/// Everything the loop publishes besides the services: filled by the boot sequence, updated by
/// the network thread.
pub struct Published {
    pub doc: HealthDoc,
    /// The network thread's view; copied into the document on each wake-up.
    pub network: Arc<Mutex<NetworkState>>,
    /// A network source is configured (so `ok` needs it `up`).
    pub network_configured: bool,
}

pub struct EventLoop {
    poll: Poll,
    signals: Signals,
    supervisor: Supervisor,
    shared: Arc<health::Shared>,
    published: Published,
    pid1: bool,
    shutdown_mode: ShutdownMode,
    shutdown: Option<Shutdown>,
    network_gate: NetworkGate,
    notified_ready: bool,
    panics: u32,
    buttons: Buttons,
    /// Without device events: when to look for a power button again, and the wait after that.
    button_rescan: Option<(Instant, Duration)>,
}

/// Signal names for the console.
pub fn signal_name(sig: i32) -> &'static str {
    signal_hook::low_level::signal_name(sig).unwrap_or("signal")
}

impl EventLoop {
    /// The signal handlers, installed as the very first thing the init does: the kernel
    /// drops signals to PID 1 that have no handler, so a ctrl-alt-delete during boot would
    /// otherwise be lost. Pending signals wait in the handler's pipe until the loop runs.
    pub fn install_signals() -> std::io::Result<Signals> {
        Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGPWR])
    }

    /// Creates the poll and registers the signals installed by [`Self::install_signals`].
    pub fn new(
        mut signals: Signals,
        pid1: bool,
        shared: Arc<health::Shared>,
        published: Published,
        mode: ShutdownMode,
    ) -> std::io::Result<(EventLoop, Arc<Waker>)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        shared.set_main_waker(Arc::clone(&waker));
        let supervisor = Supervisor::empty();
        Ok((
            EventLoop {
                poll,
                signals,
                supervisor,
                shared,
                published,
                pid1,
                shutdown_mode: mode,
                shutdown: None,
                network_gate: NetworkGate::default(),
                notified_ready: false,
                panics: 0,
                buttons: Buttons::default(),
                button_rescan: None,
            },
            waker,
        ))
    }

    pub fn published_mut(&mut self) -> &mut Published {
        &mut self.published
    }

    /// Takes the power buttons the boot opened (and its device events) and polls them; a
    /// press the boot has not read yet is reported by the first poll. Without device events, the
    /// loop looks for buttons again on a timer while there is none.
    pub fn take_buttons(&mut self, buttons: Buttons) {
        self.buttons = buttons;
        if let Some(events) = self.buttons.events() {
            let fd = events.as_fd().as_raw_fd();
            let registered =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), DEVICES, Interest::READABLE);
            if let Err(e) = registered {
                log::warn!(
                    "power button: cannot poll device events ({e}); looking again on a timer"
                );
                self.button_rescan = Some((Instant::now(), BUTTON_RESCAN_FIRST));
            }
        } else if self.pid1 && self.buttons.is_empty() {
            self.button_rescan = Some((Instant::now(), BUTTON_RESCAN_FIRST));
        }
        for slot in 0..self.buttons.slots() {
            self.register_button(slot);
        }
    }

    fn register_button(&mut self, slot: usize) {
        let Some(b) = self.buttons.button(slot) else {
            return;
        };
        let fd = b.file.as_raw_fd();
        let token = Token(BUTTONS.saturating_add(slot));
        if token.0 >= SUPERVISOR_TOKENS {
            log::warn!(
                "power button {}: too many input devices to poll",
                b.path.display()
            );
            return;
        }
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            log::warn!("power button {}: cannot poll: {e}", b.path.display());
        }
    }

    /// Hands the configured services to the loop and starts those with no pending dependency;
    /// `early_shutdown` lists the shutdown requests the boot read: then the services are
    /// handed over already stopping, none is started, and a second request hurries the
    /// shutdown as it would in the loop. Runs under the guard: a panic leaves the supervisor
    /// with the loop, and is published.
    pub fn start_services(&mut self, supervisor: Supervisor, early_shutdown: &[String]) {
        self.supervisor = supervisor;
        let started = guard::catch("starting the services", || {
            let now = Instant::now();
            if early_shutdown.is_empty() {
                self.supervisor.start(now, self.poll.registry());
            } else {
                log::info!("shutdown requested during boot: no service is started");
                for what in early_shutdown {
                    self.begin_shutdown(what, now);
                }
            }
        });
        if let Err(msg) = started {
            self.published.doc.errors.push(msg);
        }
        self.publish(Instant::now());
    }

    /// Runs until a shutdown completes. As PID 1 it never returns (it reboots); off PID 1 it
    /// returns after the services stopped.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        // Children that exited before the loop ran (the boot may have read their SIGCHLD, or
        // a service started just now already exited): their statuses go to the supervisor.
        // (A press queued before the buttons were registered needs nothing here: epoll
        // reports a source that is already readable when it is added.)
        let first = guard::catch("the event loop's first reap", || self.reap(Instant::now()));
        if let Err(msg) = first {
            self.published.doc.errors.push(msg);
        }
        loop {
            match guard::catch("the event loop", || self.turn(&mut events)) {
                Ok(true) => return,
                Ok(false) => {}
                Err(msg) => {
                    self.panics = self.panics.saturating_add(1);
                    self.published.doc.errors.push(msg);
                    self.publish(Instant::now());
                    // A bug that panics on every turn must not spin the vCPU.
                    std::thread::sleep(guard::restart_delay(self.panics));
                }
            }
        }
    }

    /// One wake-up: poll, handle what arrived, advance deadlines, publish. True when a
    /// shutdown off PID 1 has completed.
    fn turn(&mut self, events: &mut Events) -> bool {
        let now = Instant::now();
        let timeout = self
            .next_deadline()
            .map(|d| d.saturating_duration_since(now));
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("event loop: poll failed: {e}; retrying");
                // Avoid a hot loop if the poll fd itself is broken.
                std::thread::sleep(Duration::from_millis(100));
            }
            return false;
        }
        let now = Instant::now();
        for ev in events.iter() {
            match ev.token() {
                SIGNALS => self.on_signals(now),
                // A ping is answered after this turn's publish (below), so a poll that
                // waited for the pong reads a document published after it asked.
                WAKER => {}
                DEVICES => {
                    if self.buttons.devices_changed() {
                        for slot in self.buttons.scan() {
                            self.register_button(slot);
                        }
                    }
                }
                Token(t) if (BUTTONS..SUPERVISOR_TOKENS).contains(&t) => {
                    self.on_button(t.saturating_sub(BUTTONS), now)
                }
                _ => {
                    self.supervisor.on_event(ev, now, self.poll.registry());
                }
            }
        }
        self.rescan_buttons(now);
        self.gate_network(now);
        self.supervisor.on_timer(now, self.poll.registry());
        if self.advance_shutdown(now) {
            return true;
        }
        let (ping, waiting) = self.shared.pings();
        self.publish_for(now, waiting);
        self.shared.pong(ping);
        false
    }

    /// Services `after = ["network"]` wait for `up` ([`NetworkGate`]).
    fn gate_network(&mut self, now: Instant) {
        if let Some(up) = self.network_gate.observe(self.network_state().state) {
            self.supervisor
                .set_network_up(up, now, self.poll.registry());
        }
    }

    /// Steps the shutdown and carries out its action; true once done off PID 1.
    fn advance_shutdown(&mut self, now: Instant) -> bool {
        let Some(mut sd) = self.shutdown else {
            return false;
        };
        let stopped = self.supervisor.is_stopped();
        let children = self.children_left();
        let action = sd.step(now, stopped, children);
        self.shutdown = Some(sd);
        self.act(action, now)
    }

    fn act(&mut self, action: ShutdownAction, now: Instant) -> bool {
        match action {
            ShutdownAction::Wait => false,
            ShutdownAction::KillServices => {
                self.supervisor.hurry_shutdown();
                false
            }
            ShutdownAction::TermLeftovers { services_late } => {
                if services_late {
                    log::warn!("shutdown: services did not stop in time; signalling everything");
                }
                log::info!("shutdown: sending SIGTERM to all remaining processes");
                let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
                false
            }
            ShutdownAction::KillLeftovers => {
                log::warn!(
                    "shutdown: sending SIGKILL to what is left: {}",
                    shutdown::children_of_init().join(", ")
                );
                let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
                false
            }
            ShutdownAction::Finish => {
                self.publish(now);
                if self.pid1 {
                    shutdown::finish_pid1(self.shutdown_mode);
                }
                log::info!("all services stopped; exiting");
                true
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.supervisor.next_deadline(),
            self.shutdown.and_then(|s| s.deadline()),
            self.button_rescan.map(|(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Without device events: opens and registers the power buttons found; while there is
    /// none, looks again later.
    fn rescan_buttons(&mut self, now: Instant) {
        let Some((at, wait)) = self.button_rescan else {
            return;
        };
        if now < at {
            return;
        }
        for slot in self.buttons.scan() {
            self.register_button(slot);
        }
        self.button_rescan = if !self.buttons.is_empty() || wait > BUTTON_RESCAN_LAST {
            if self.buttons.is_empty() {
                log::info!("no power button (no input device reports KEY_POWER)");
            }
            None
        } else {
            now.checked_add(wait).map(|at| (at, wait.saturating_mul(2)))
        };
    }

    fn on_button(&mut self, slot: usize, now: Instant) {
        if let Some(path) = self.buttons.read(slot) {
            let what = format!("power button ({})", path.display());
            self.begin_shutdown(&what, now);
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            match sig {
                SIGCHLD => self.reap(now),
                s if SHUTDOWN_SIGNALS.contains(&s) => {
                    self.begin_shutdown(&format!("{} received", signal_name(s)), now)
                }
                _ => {}
            }
        }
    }

    /// Reaps every exited child. Statuses of supervised processes go to the supervisor; the
    /// rest are orphans re-parented to us, reaped and logged.
    fn reap(&mut self, now: Instant) {
        let (sup, registry) = (&mut self.supervisor, self.poll.registry());
        sys::reap_all(|pid, status| {
            let raw = supervisor::ExitStatus::from_wait_status(status);
            if !sup.on_exit(pid.as_raw(), raw, now, registry) {
                log::debug!("reaped orphan {pid}: {status:?}");
            }
        });
    }

    fn children_left(&mut self) -> bool {
        // Reap first, so that a child that just died does not count.
        self.reap(Instant::now());
        sys::has_children()
    }

    /// A shutdown request; `what` names it for the console ("SIGTERM received").
    fn begin_shutdown(&mut self, what: &str, now: Instant) {
        if let Some(mut sd) = self.shutdown {
            log::info!("{what}: second shutdown request; skipping the remaining grace periods");
            let action = sd.hurry(now);
            self.shutdown = Some(sd);
            self.act(action, now);
            return;
        }
        log::info!("{what}: shutting down ({})", self.shutdown_mode.as_str());
        self.published.doc.shutting_down = true;
        self.supervisor.begin_shutdown(now, self.poll.registry());
        let max_stop = self.supervisor.max_stop_timeout();
        self.shutdown = Some(Shutdown::begin(now, max_stop, self.pid1));
    }

    fn network_state(&self) -> NetworkState {
        self.published
            .network
            .lock()
            .map(|n| n.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The services for a publication. Their live figures are read only when a poll waits
    /// for this publication (the figures are for pollers, and a loop turn driven by a probe
    /// tick or a line of output should not read four cgroup files per service); otherwise
    /// the last figures read are kept.
    fn services(
        &self,
        now: Instant,
        figures: bool,
    ) -> std::collections::BTreeMap<String, supervisor::ServiceStatus> {
        if figures {
            return self.supervisor.snapshot(now);
        }
        let mut services = self.supervisor.snapshot_without_figures(now);
        for (name, st) in &mut services {
            if let Some(prev) = self.published.doc.services.get(name) {
                st.memory_bytes = prev.memory_bytes;
                st.cpu_ms = prev.cpu_ms;
                st.pids = prev.pids;
                st.oom_kills = prev.oom_kills;
            }
        }
        services
    }

    /// Recomputes the document ([`publish::assemble`]), carries out the milestones it
    /// crossed, and hands it to the health server.
    fn publish(&mut self, now: Instant) {
        self.publish_for(now, true);
    }

    /// [`Self::publish`], reading the services' figures only if `figures` (a poll waits).
    fn publish_for(&mut self, now: Instant, figures: bool) {
        let mut faults = self.shared.take_faults();
        faults.extend(self.supervisor.take_errors());
        let inputs = publish::Inputs {
            network: self.network_state(),
            network_configured: self.published.network_configured,
            services: self.services(now, figures),
            faults,
            late_modules: self.shared.take_modules(),
        };
        let doc = &mut self.published.doc;
        let m = publish::assemble(doc, inputs, sys::boottime_ms);
        if m.became_ready {
            log::info!("ready: all required services ready");
        }
        if m.settled {
            // The health thread stops yielding to the boot.
            self.shared.mark_settled();
        }
        if m.left_starting {
            // The rest of the drivers wait for this (crate::late_modules).
            self.shared.mark_left_starting();
            if !self.notified_ready {
                self.notified_ready = true;
                if !self.pid1 {
                    let state = [
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(doc.status.as_str()),
                    ];
                    let _ = sd_notify::notify(false, &state);
                }
            }
        }
        doc.generation = publish::generation(doc, &self.shared.doc());
        self.shared.publish(doc.clone());
    }
}
