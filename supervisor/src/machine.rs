//! The per-service state machine of contract §3, pure: every input carries its `Instant`, no
//! clock is read and no syscall made. It decides (returns [`Action`]s); the supervisor acts.
//!
//! Choices documented here:
//! - A crash is a non-success exit, a death by signal, a spawn failure or a missed
//!   `ready_timeout`. More than `burst` crashes within the sliding `interval` window put the
//!   service in `failed`; crashes older than `interval` leave the window (that is the budget's
//!   reset). Under `restart = "never"` the first crash is final.
//! - Backoff: `initial`, doubling per consecutive crash, capped at `max`. A run that stayed up
//!   for [`STABLE_RUN`] resets the doubling to `initial`.
//! - A success exit under `restart = "always"` is restarted after [`IDLE_RESTART_DELAY`],
//!   not counted, and a service that was ready stays "ready-equivalent" (`ready: true`)
//!   through the restart until it proves readiness again or crashes, so `/health` stays `ok`.
//!   A service that exits successfully faster than [`QUICK_EXIT`] is restarted with the
//!   backoff progression instead (still not counted): a command that exits 0 at once must not
//!   spin the VM.
//! - Time is checked arithmetic only: every configured duration is clamped to [`MAX_DELAY`]
//!   (the config layer refuses more, but the machine does not rely on it), and a deadline
//!   the clock cannot represent is "never" (`None`), not a panic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use guest_config::{Restart, ServiceConfig};

use crate::status::{ExitStatus, LastExit, ServiceState};

/// A run this long resets the backoff doubling.
pub const STABLE_RUN: Duration = Duration::from_secs(10);
/// Delay before restarting an idle-exited `restart = "always"` service.
pub const IDLE_RESTART_DELAY: Duration = Duration::from_millis(100);
/// A success exit sooner than this after the start is not an idle exit but a quick one.
pub const QUICK_EXIT: Duration = Duration::from_secs(1);

/// The longest delay or timeout the machine schedules (the config layer's own bound): for a
/// VM a year is "never", and `Instant + MAX_DELAY` stays far inside the clock's range.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `now + d`, or `None` ("never") when the clock cannot represent it.
pub fn deadline_after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// A configured duration as the machine uses it: at most [`MAX_DELAY`].
fn bounded(d: Duration) -> Duration {
    d.min(MAX_DELAY)
}

/// What the supervisor must do for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the command now (then call [`Machine::spawned`] or [`Machine::spawn_failed`]).
    Spawn,
    /// Send this signal to the process group of `pid`.
    KillGroup { pid: i32, signal: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RunPhase {
    Waiting,
    Up {
        pid: i32,
        since: Instant,
        ready: bool,
    },
    /// A restart is due `at` (`None`: never, the clock cannot represent it). `crashed`: backoff after a crash (else an idle restart).
    /// `dying`: the old process was killed (missed readiness) and is not reaped yet.
    Restarting {
        at: Option<Instant>,
        crashed: bool,
        dying: Option<i32>,
    },
    Exited,
    Failed {
        dying: Option<i32>,
    },
    /// `kill_at`: when to escalate to SIGKILL (None once sent).
    Stopping {
        pid: i32,
        kill_at: Option<Instant>,
        was_ready: bool,
    },
    Stopped,
}

/// One service's lifecycle.
#[derive(Debug, Clone)]
pub struct Machine {
    restart: Restart,
    burst: u32,
    interval: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    success_exit: Vec<i32>,
    ready_timeout: Duration,
    stop_signal: i32,
    stop_timeout: Duration,
    phase: RunPhase,
    /// Crash times within the budget window, oldest first.
    crashes: VecDeque<Instant>,
    /// Consecutive crashes since the last stable run (the backoff exponent).
    streak: u32,
    /// Consecutive quick success exits (their restart delay's exponent).
    quick_streak: u32,
    restarts: u32,
    failures: u32,
    started_once: bool,
    last_exit: Option<LastExit>,
    /// Ready-equivalent across an idle restart.
    sticky_ready: bool,
    ever_ready: bool,
    shutting_down: bool,
}

impl Machine {
    pub fn new(cfg: &ServiceConfig) -> Machine {
        Machine {
            restart: cfg.restart,
            burst: cfg.restart_limit.burst,
            interval: bounded(cfg.restart_limit.interval.get()),
            backoff_initial: bounded(cfg.backoff.initial.get()),
            backoff_max: bounded(cfg.backoff.max.get().max(cfg.backoff.initial.get())),
            success_exit: cfg.success_exit.clone(),
            ready_timeout: bounded(cfg.ready_timeout.get()),
            stop_signal: cfg.stop_signal.number,
            stop_timeout: bounded(cfg.stop_timeout.get()),
            phase: RunPhase::Waiting,
            crashes: VecDeque::new(),
            streak: 0,
            quick_streak: 0,
            restarts: 0,
            failures: 0,
            started_once: false,
            last_exit: None,
            sticky_ready: false,
            ever_ready: false,
            shutting_down: false,
        }
    }

    /// The dependencies are ready: leave `waiting`.
    pub fn deps_ready(&mut self) -> Option<Action> {
        (self.phase == RunPhase::Waiting && !self.shutting_down).then_some(Action::Spawn)
    }

    pub fn is_waiting(&self) -> bool {
        self.phase == RunPhase::Waiting
    }

    /// The command was started as `pid`.
    pub fn spawned(&mut self, pid: i32, now: Instant) {
        if self.started_once {
            self.restarts = self.restarts.saturating_add(1);
        }
        self.started_once = true;
        self.phase = RunPhase::Up {
            pid,
            since: now,
            ready: false,
        };
    }

    /// The command could not be started: a crash with that reason.
    pub fn spawn_failed(&mut self, reason: String, now: Instant) {
        if self.started_once {
            self.restarts = self.restarts.saturating_add(1);
        }
        self.started_once = true;
        self.crash(LastExit::SpawnError(reason), now, now, None);
    }

    /// Readiness was proven (for `ready = "started"`, call right after `spawned`).
    pub fn ready(&mut self) {
        if let RunPhase::Up { ready, .. } = &mut self.phase {
            *ready = true;
            self.sticky_ready = true;
            self.ever_ready = true;
        }
    }

    /// The main process (or a killed one) is gone. Returns true if `pid` was this service's.
    pub fn exited(&mut self, pid: i32, status: ExitStatus, now: Instant) -> bool {
        self.exited_with(pid, status, false, now)
    }

    /// As [`Machine::exited`], knowing whether the OOM killer killed a process of the
    /// service during this run (`memory.events` `oom_kill` grew). A run that ends in failure
    /// after an OOM kill is a crash with `last_exit` `{"oom_kill": true}`: the exit code or
    /// signal is the consequence, the OOM kill the cause. A success exit stays a success (a
    /// worker was killed and the service coped).
    pub fn exited_with(
        &mut self,
        pid: i32,
        status: ExitStatus,
        oom_killed: bool,
        now: Instant,
    ) -> bool {
        if status == ExitStatus::NotExited {
            return self.main_pid() == Some(pid) || self.dying_pid() == Some(pid);
        }
        match self.phase.clone() {
            RunPhase::Up { pid: p, since, .. } if p == pid => {
                let ok = matches!(status, ExitStatus::Code(c) if self.success_exit.contains(&c));
                let why = if oom_killed && !ok {
                    LastExit::OomKill(true)
                } else {
                    LastExit::from_status(status)
                };
                self.last_exit = Some(why.clone());
                if self.shutting_down {
                    self.phase = RunPhase::Stopped;
                } else if !ok {
                    self.crash(why, since, now, None);
                } else if self.restart == Restart::Always {
                    let delay = if now.saturating_duration_since(since) >= QUICK_EXIT {
                        self.quick_streak = 0;
                        IDLE_RESTART_DELAY
                    } else {
                        let d = self
                            .backoff_delay(self.quick_streak)
                            .max(IDLE_RESTART_DELAY);
                        self.quick_streak = self.quick_streak.saturating_add(1);
                        d
                    };
                    self.phase = RunPhase::Restarting {
                        at: deadline_after(now, delay),
                        crashed: false,
                        dying: None,
                    };
                } else {
                    self.phase = RunPhase::Exited;
                    self.ever_ready = true;
                }
                true
            }
            RunPhase::Restarting {
                at,
                crashed,
                dying: Some(p),
            } if p == pid => {
                self.phase = RunPhase::Restarting {
                    at,
                    crashed,
                    dying: None,
                };
                true
            }
            RunPhase::Failed { dying: Some(p) } if p == pid => {
                self.phase = RunPhase::Failed { dying: None };
                true
            }
            RunPhase::Stopping { pid: p, .. } if p == pid => {
                self.last_exit = Some(LastExit::from_status(status));
                self.phase = RunPhase::Stopped;
                true
            }
            _ => false,
        }
    }

    fn crash(&mut self, why: LastExit, since: Instant, now: Instant, dying: Option<i32>) {
        self.failures = self.failures.saturating_add(1);
        self.last_exit = Some(why);
        self.sticky_ready = false;
        self.crashes.push_back(now);
        self.prune(now);
        if now.saturating_duration_since(since) >= STABLE_RUN {
            self.streak = 0;
        }
        if self.crashes.len() > self.burst as usize || self.restart == Restart::Never {
            self.phase = RunPhase::Failed { dying };
            return;
        }
        let delay = self.backoff_delay(self.streak);
        self.streak = self.streak.saturating_add(1);
        self.phase = RunPhase::Restarting {
            at: deadline_after(now, delay),
            crashed: true,
            dying,
        };
    }

    /// When a run that started at `since` misses its readiness deadline (`None`: never).
    fn ready_deadline(&self, since: Instant) -> Option<Instant> {
        deadline_after(since, self.ready_timeout)
    }

    /// `initial * 2^exponent`, capped at `max` (saturating: no overflow for any exponent).
    fn backoff_delay(&self, exponent: u32) -> Duration {
        self.backoff_initial
            .saturating_mul(2u32.saturating_pow(exponent.min(31)))
            .min(self.backoff_max)
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&t) = self.crashes.front() {
            if now.saturating_duration_since(t) >= self.interval {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
    }

    /// Time passed: restarts due, readiness deadline missed, stop escalation.
    pub fn tick(&mut self, now: Instant) -> Option<Action> {
        match self.phase.clone() {
            RunPhase::Up {
                pid,
                since,
                ready: false,
            } if self.ready_deadline(since).is_some_and(|d| now >= d) => {
                let why = LastExit::ReadyTimeout(fmt_duration(self.ready_timeout));
                self.crash(why, since, now, Some(pid));
                Some(Action::KillGroup {
                    pid,
                    signal: libc::SIGKILL,
                })
            }
            RunPhase::Restarting {
                at: Some(at),
                dying: None,
                ..
            } if now >= at && !self.shutting_down => Some(Action::Spawn),
            RunPhase::Stopping {
                pid,
                kill_at: Some(t),
                was_ready,
            } if now >= t => {
                self.phase = RunPhase::Stopping {
                    pid,
                    kill_at: None,
                    was_ready,
                };
                Some(Action::KillGroup {
                    pid,
                    signal: libc::SIGKILL,
                })
            }
            _ => None,
        }
    }

    /// The next instant [`Machine::tick`] has something to do, if any. Nothing waiting on a
    /// reap has a deadline: the exit arrives as an event.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            RunPhase::Up {
                since,
                ready: false,
                ..
            } => self.ready_deadline(since),
            RunPhase::Restarting {
                at, dying: None, ..
            } if !self.shutting_down => at,
            RunPhase::Stopping { kill_at, .. } => kill_at,
            _ => None,
        }
    }

    /// Shutdown begins: no more restarts. Services without a live process are stopped now.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        self.phase = match self.phase.clone() {
            RunPhase::Restarting {
                dying: Some(pid), ..
            }
            | RunPhase::Failed { dying: Some(pid) } => RunPhase::Stopping {
                pid,
                kill_at: None,
                was_ready: false,
            },
            RunPhase::Up { .. } | RunPhase::Stopping { .. } => return,
            RunPhase::Failed { dying: None } => return,
            _ => RunPhase::Stopped,
        };
    }

    /// Stops a running service (its dependents are down): `stop_signal`, SIGKILL later.
    pub fn stop(&mut self, now: Instant) -> Option<Action> {
        if let RunPhase::Up { pid, ready, .. } = self.phase {
            self.phase = RunPhase::Stopping {
                pid,
                // Never escalating is the fallback only for a clock at its end; the init's
                // own shutdown deadline still ends the wait.
                kill_at: deadline_after(now, self.stop_timeout),
                was_ready: ready,
            };
            return Some(Action::KillGroup {
                pid,
                signal: self.stop_signal,
            });
        }
        None
    }

    /// No process of this service is alive (or can start again).
    pub fn is_down(&self) -> bool {
        match self.phase {
            RunPhase::Up { .. } | RunPhase::Stopping { .. } => false,
            RunPhase::Restarting { dying, .. } | RunPhase::Failed { dying } => dying.is_none(),
            _ => true,
        }
    }

    pub fn is_up_for_stop(&self) -> bool {
        matches!(self.phase, RunPhase::Up { .. })
    }

    /// Ready, exited, or ready-equivalent across an idle restart: dependents may start.
    pub fn counts_as_ready(&self) -> bool {
        match self.phase {
            RunPhase::Up { ready, .. } => ready || self.sticky_ready,
            RunPhase::Restarting { crashed: false, .. } => self.sticky_ready,
            RunPhase::Exited => true,
            _ => false,
        }
    }

    pub fn is_proven_ready(&self) -> bool {
        matches!(self.phase, RunPhase::Up { ready: true, .. })
    }

    /// The live main process, if any.
    pub fn main_pid(&self) -> Option<i32> {
        match self.phase {
            RunPhase::Up { pid, .. } | RunPhase::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    fn dying_pid(&self) -> Option<i32> {
        match self.phase {
            RunPhase::Restarting { dying, .. } | RunPhase::Failed { dying } => dying,
            _ => None,
        }
    }

    /// Any pid this machine waits to reap.
    pub fn owns(&self, pid: i32) -> bool {
        self.main_pid() == Some(pid) || self.dying_pid() == Some(pid)
    }

    /// The service's state as the health document shows it.
    pub fn state(&self) -> ServiceState {
        match self.phase {
            RunPhase::Waiting => ServiceState::Waiting,
            RunPhase::Up { ready: true, .. }
            | RunPhase::Stopping {
                was_ready: true, ..
            } => ServiceState::Ready,
            RunPhase::Up { .. } | RunPhase::Stopping { .. } => ServiceState::Running,
            RunPhase::Restarting { crashed: true, .. } => ServiceState::Backoff,
            RunPhase::Restarting { crashed: false, .. } => ServiceState::Starting,
            RunPhase::Exited => ServiceState::Exited,
            RunPhase::Failed { .. } => ServiceState::Failed,
            RunPhase::Stopped => ServiceState::Stopped,
        }
    }

    pub fn is_stopping(&self) -> bool {
        matches!(self.phase, RunPhase::Stopping { .. })
    }

    /// When the scheduled restart is due.
    pub fn next_retry(&self) -> Option<Instant> {
        match self.phase {
            RunPhase::Restarting { at, .. } if !self.shutting_down => at,
            _ => None,
        }
    }

    /// Crashes still allowed in the window as of `now`.
    pub fn budget_left(&self, now: Instant) -> u32 {
        let recent = self
            .crashes
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < self.interval)
            .count();
        let left = (self.burst as usize).saturating_sub(recent);
        u32::try_from(left).unwrap_or(u32::MAX)
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    pub fn failures(&self) -> u32 {
        self.failures
    }
    pub fn last_exit(&self) -> Option<&LastExit> {
        self.last_exit.as_ref()
    }
    pub fn ever_ready(&self) -> bool {
        self.ever_ready
    }
    /// At most [`MAX_DELAY`], so a caller may add a grace period to it.
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
    }
}

/// `30s`, `250ms`, `1.5s` for messages.
pub fn fmt_duration(d: Duration) -> String {
    if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
