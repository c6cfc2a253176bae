//! A small event loop for running a `Supervisor` off PID 1 in the host tests (the init has
//! its own, `init/src/event_loop.rs`). It reaps with `waitpid(-1, WNOHANG)` on a short poll timeout
//! instead of a SIGCHLD handler (so it installs no signal handler), and can make the process
//! a child subreaper so orphaned grandchildren come back to it. It reaps every child of the
//! process: run one loop per process at a time.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use supervisor::{ExitStatus, Supervisor};

/// How often children are reaped while nothing else wakes the loop.
const REAP_EVERY: Duration = Duration::from_millis(20);

/// Makes this process the reaper of its orphaned descendants (prctl(2)
/// `PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

pub struct HostLoop {
    poll: Poll,
    events: Events,
    pub supervisor: Supervisor,
    /// Pids reaped that were not the supervisor's.
    pub orphans_reaped: Vec<i32>,
}

impl HostLoop {
    pub fn new(supervisor: Supervisor) -> io::Result<HostLoop> {
        Ok(HostLoop {
            poll: Poll::new()?,
            events: Events::with_capacity(64),
            supervisor,
            orphans_reaped: Vec::new(),
        })
    }

    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    pub fn start(&mut self) {
        self.supervisor.start(Instant::now(), self.poll.registry());
    }

    pub fn set_network_up(&mut self, up: bool) {
        self.supervisor
            .set_network_up(up, Instant::now(), self.poll.registry());
    }

    pub fn begin_shutdown(&mut self) {
        self.supervisor
            .begin_shutdown(Instant::now(), self.poll.registry());
    }

    /// One iteration: wait for events or the next deadline (at most [`REAP_EVERY`]), reap,
    /// dispatch.
    pub fn turn(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let timeout = self.supervisor.next_deadline().map_or(REAP_EVERY, |d| {
            d.saturating_duration_since(now).min(REAP_EVERY)
        });
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        let now = Instant::now();
        for ev in self.events.iter() {
            self.supervisor.on_event(ev, now, self.poll.registry());
        }
        self.reap(now);
        self.supervisor.on_timer(now, self.poll.registry());
        Ok(())
    }

    fn reap(&mut self, now: Instant) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(st) => {
                    let Some(pid) = st.pid() else { continue };
                    let status = ExitStatus::from_wait_status(st);
                    if !self
                        .supervisor
                        .on_exit(pid.as_raw(), status, now, self.poll.registry())
                    {
                        self.orphans_reaped.push(pid.as_raw());
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Turns until `done` holds (true) or `timeout` passes (false).
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut HostLoop) -> bool,
    ) -> io::Result<bool> {
        let end = Instant::now().checked_add(timeout);
        loop {
            if done(self) {
                return Ok(true);
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                return Ok(false);
            }
            self.turn()?;
        }
    }
}
