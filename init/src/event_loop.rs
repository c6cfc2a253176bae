//! The init's one event loop: a `mio` poll over signals (SIGCHLD, SIGTERM, SIGINT, SIGPWR),
//! a waker (health `/livez` pings and network state changes), and the supervisor's sources.
//! It sleeps until the next event or the supervisor's next deadline: idle, it does not wake.
//!
//! It is the only place that calls `waitpid`: every child, orphans included, is reaped here
//! and its status handed to the supervisor, so no exit status is ever stolen.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use supervisor::Supervisor;

use crate::health::{self, HealthDoc, NetworkDoc};
use crate::shutdown::{self, Phase};
use guest_config::ShutdownMode;
use libc::SIGPWR;
use netconf::NetworkState;

use crate::sys;

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
// Tokens from 1000 up belong to the supervisor (`supervisor::Options::token_base`).

/// Everything the loop publishes besides the services: filled by the boot sequence, updated by
/// the network thread.
pub struct Published {
    pub doc: HealthDoc,
    /// The network thread's view; copied into the document on each wake-up.
    pub network: Arc<Mutex<NetworkState>>,
    /// A network source is configured (so `ok` needs it `up`).
    pub network_configured: bool,
    pub config_drive_error: bool,
}

pub struct EventLoop {
    poll: Poll,
    signals: Signals,
    supervisor: Supervisor,
    shared: Arc<health::Shared>,
    published: Published,
    pid1: bool,
    shutdown_mode: ShutdownMode,
    phase: Option<Phase>,
    notified_ready: bool,
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
                phase: None,
                notified_ready: false,
            },
            waker,
        ))
    }

    pub fn published_mut(&mut self) -> &mut Published {
        &mut self.published
    }

    /// Hands the configured services to the loop and starts those with no pending dependency.
    pub fn start_services(&mut self, supervisor: Supervisor) {
        self.supervisor = supervisor;
        self.supervisor.start(Instant::now(), self.poll.registry());
        self.publish(Instant::now());
    }

    /// Runs until a shutdown completes. As PID 1 it never returns (it reboots); off PID 1 it
    /// returns after the services stopped.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut network_up = false;
        loop {
            let now = Instant::now();
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("event loop: poll failed: {e}; retrying");
                    // Avoid a hot loop if the poll fd itself is broken.
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.on_signals(now),
                    WAKER => self.shared.pong(),
                    _ => {
                        self.supervisor.on_event(ev, now, self.poll.registry());
                    }
                }
            }
            // A wake-up may carry a network change: feed it to the supervisor (`after =
            // ["network"]`).
            let (net, _) = self.network_doc();
            // Services `after = ["network"]` wait for `up`; with no source (or `ip=off`)
            // there is nothing to wait for.
            let up = matches!(net.state, "up" | "unconfigured");
            if up != network_up {
                network_up = up;
                self.supervisor
                    .set_network_up(up, now, self.poll.registry());
            }
            self.supervisor.on_timer(now, self.poll.registry());
            self.shared.pong();
            if let Some(phase) = self.phase {
                let next = shutdown::step(
                    phase,
                    now,
                    self.supervisor.is_stopped(),
                    self.children_left(),
                    self.pid1,
                );
                self.phase = Some(next);
                if next == Phase::Done {
                    self.publish(now);
                    if self.pid1 {
                        shutdown::finish_pid1(self.shutdown_mode);
                    }
                    log::info!("all services stopped; exiting");
                    return;
                }
            }
            self.publish(now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let sup = self.supervisor.next_deadline();
        let sh = self.phase.and_then(Phase::deadline);
        match (sup, sh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            match sig {
                SIGCHLD => self.reap(now),
                SIGTERM | SIGINT | SIGPWR => self.begin_shutdown(sig, now),
                _ => {}
            }
        }
    }

    /// Reaps every exited child. Statuses of supervised processes go to the supervisor; the
    /// rest are orphans re-parented to us, reaped and logged.
    fn reap(&mut self, now: Instant) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let raw = supervisor::ExitStatus::from_wait_status(status);
                    if !self
                        .supervisor
                        .on_exit(pid.as_raw(), raw, now, self.poll.registry())
                    {
                        log::debug!("reaped orphan {pid}: {status:?}");
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    log::warn!("waitpid failed: {}", e.desc());
                    return;
                }
            }
        }
    }

    fn children_left(&mut self) -> bool {
        // Reap first, so that a child that just died does not count.
        self.reap(Instant::now());
        sys::has_children()
    }

    fn begin_shutdown(&mut self, sig: i32, now: Instant) {
        if self.phase.is_some() {
            log::info!("shutdown already in progress (signal {sig} ignored)");
            return;
        }
        let name = signal_hook::low_level::signal_name(sig).unwrap_or("signal");
        log::info!(
            "{name} received: shutting down ({})",
            self.shutdown_mode.as_str()
        );
        self.published.doc.shutting_down = true;
        self.supervisor.begin_shutdown(now, self.poll.registry());
        let grace = self.supervisor.max_stop_timeout() + Duration::from_secs(2);
        self.phase = Some(Phase::StoppingServices {
            deadline: now + grace,
        });
    }

    fn network_state(&self) -> NetworkState {
        self.published
            .network
            .lock()
            .map(|n| n.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn network_doc(&self) -> (NetworkDoc, Option<u64>) {
        let n = self.network_state();
        let doc = NetworkDoc {
            source: n.source.as_str(),
            state: n.state.as_str(),
            interface: n.interface,
            addresses: n.addresses,
            error: n.error,
        };
        (doc, n.timings.configured_ms)
    }

    /// Recomputes the document and hands it to the health server.
    fn publish(&mut self, now: Instant) {
        let (net, network_ms) = self.network_doc();
        let services = self.supervisor.snapshot(now);
        let status = supervisor::overall_status(
            &services,
            supervisor::NetworkHealth {
                configured: self.published.network_configured,
                up: net.state == "up",
                error: net.state == "error",
            },
            self.published.config_drive_error || !self.published.doc.errors.is_empty(),
        );
        let doc = &mut self.published.doc;
        doc.status = status.as_str();
        doc.network = net;
        doc.boot.network_ms = network_ms;
        doc.services = services
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        if doc.boot.ready_ms.is_none() && doc.status == "ok" {
            doc.boot.ready_ms = Some(sys::boottime_ms());
            log::info!("ready: all required services ready");
        }
        // The boot's own work is over once the network has an outcome (or the status has left
        // `starting`): the health thread stops yielding to it. Services still starting are
        // not the boot's work: polls are answered at normal priority next to them.
        if doc.status != "starting" || doc.network.state != "down" {
            self.shared.mark_settled();
        }
        if !self.notified_ready && doc.status != "starting" {
            self.notified_ready = true;
            if !self.pid1 {
                let state = [
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(doc.status),
                ];
                let _ = sd_notify::notify(false, &state);
            }
        }
        self.shared.publish(doc.clone());
    }
}
