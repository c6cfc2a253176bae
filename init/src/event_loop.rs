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

use std::os::fd::AsRawFd;
use std::path::Path;
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
use crate::power_button::{self, Button};
use crate::publish::{self, NetworkGate};
use crate::shutdown::{self, Shutdown, ShutdownAction};
use crate::{guard, sys};

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
/// Power buttons: `BUTTONS + i`.
const BUTTONS: usize = 100;
// Tokens from 1000 up belong to the supervisor (`supervisor::Options::token_base`).

/// Looking again for a power button while none is found: the `button` driver may bind after
/// the loop starts. First after 1 s, doubling, last after 32 s.
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
    buttons: Vec<Button>,
    /// When to look for a power button again, and the wait after that.
    button_rescan: Option<(Instant, Duration)>,
}

/// Signal names for the console.
fn signal_name(sig: i32) -> &'static str {
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
                buttons: Vec::new(),
                button_rescan: None,
            },
            waker,
        ))
    }

    pub fn published_mut(&mut self) -> &mut Published {
        &mut self.published
    }

    /// Hands the configured services to the loop and starts those with no pending dependency;
    /// `early_shutdown` is a shutdown signal the boot read: then the services are handed over
    /// already stopping, and none is started.
    pub fn start_services(&mut self, supervisor: Supervisor, early_shutdown: Option<i32>) {
        self.supervisor = supervisor;
        let now = Instant::now();
        if let Some(sig) = early_shutdown {
            let what = format!("{} received during boot", signal_name(sig));
            self.begin_shutdown(&what, now);
            log::info!("shutdown requested during boot: no service is started");
        } else {
            self.supervisor.start(now, self.poll.registry());
        }
        self.publish(now);
    }

    /// Runs until a shutdown completes. As PID 1 it never returns (it reboots); off PID 1 it
    /// returns after the services stopped.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        // Children that exited before the loop ran (the boot may have read their SIGCHLD, or
        // a service started just now already exited): their statuses go to the supervisor.
        self.reap(Instant::now());
        if self.pid1 {
            self.button_rescan = Some((Instant::now(), BUTTON_RESCAN_FIRST));
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
                Token(t) if (BUTTONS..BUTTONS + self.buttons.len()).contains(&t) => {
                    self.on_button(t - BUTTONS, now)
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
        self.publish(now);
        self.shared.pong();
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

    /// Opens and registers the power buttons found; while there is none, looks again later.
    fn rescan_buttons(&mut self, now: Instant) {
        let Some((at, wait)) = self.button_rescan else {
            return;
        };
        if now < at {
            return;
        }
        for path in power_button::find(Path::new("/sys/class/input"), Path::new("/dev/input")) {
            if self.buttons.iter().any(|b| b.path == path) {
                continue;
            }
            match Button::open(&path) {
                Ok(b) => {
                    let token = Token(BUTTONS + self.buttons.len());
                    let fd = b.file.as_raw_fd();
                    let registered = self.poll.registry().register(
                        &mut SourceFd(&fd),
                        token,
                        Interest::READABLE,
                    );
                    match registered {
                        Ok(()) => {
                            log::info!("power button: listening on {}", path.display());
                            self.buttons.push(b);
                        }
                        Err(e) => log::warn!("power button {}: cannot poll: {e}", path.display()),
                    }
                }
                Err(e) => log::warn!("power button {}: cannot open: {e}", path.display()),
            }
        }
        self.button_rescan = if !self.buttons.is_empty() || wait > BUTTON_RESCAN_LAST {
            if self.buttons.is_empty() {
                log::info!("no power button (no input device reports KEY_POWER)");
            }
            None
        } else {
            Some((now + wait, wait.saturating_mul(2)))
        };
    }

    fn on_button(&mut self, i: usize, now: Instant) {
        let Some(b) = self.buttons.get_mut(i) else {
            return;
        };
        if b.pressed() {
            let what = format!("power button ({})", b.path.display());
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

    /// Recomputes the document ([`publish::assemble`]), carries out the milestones it
    /// crossed, and hands it to the health server.
    fn publish(&mut self, now: Instant) {
        let mut faults = self.shared.take_faults();
        faults.extend(self.supervisor.take_errors());
        let inputs = publish::Inputs {
            network: self.network_state(),
            network_configured: self.published.network_configured,
            services: self.supervisor.snapshot(now),
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
