//! The shutdown sequence as a pure state machine, like the supervisor's `Machine`: every input
//! carries its `Instant`, [`Shutdown`] returns [`ShutdownAction`]s, the event loop acts. Services stop
//! first (the supervisor, in reverse dependency order), then leftover processes get SIGTERM,
//! then SIGKILL, then the loop finishes: filesystems synced and unmounted under a deadline, then
//! `reboot(2)` ([`finish_pid1`]). A second request skips what is left of the grace periods.
//! Off PID 1 only the services are stopped and the process returns.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use guest_config::ShutdownMode;

use crate::sys;

/// How long leftover processes get between SIGTERM and SIGKILL.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(3);
/// Waiting for the last SIGKILLed processes to be reaped before powering off anyway.
const KILL_REAP_WAIT: Duration = Duration::from_secs(2);
/// Longest wait for sync and unmount: a disk that hangs them must not stop the power-off.
const SYNC_DEADLINE: Duration = Duration::from_secs(10);
/// Added to the longest `stop_timeout` before leftovers are signalled.
const SERVICES_SLACK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShutdownStage {
    /// The supervisor is stopping services; force on after `deadline`.
    StoppingServices {
        deadline: Instant,
    },
    /// SIGTERM sent to everything left; SIGKILL at `deadline`.
    TermSent {
        deadline: Instant,
    },
    /// SIGKILL sent; finish once reaped or at `deadline`.
    KillSent {
        deadline: Instant,
    },
    Done,
}

/// What the event loop must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownAction {
    Wait,
    /// Second request: SIGKILL every service's process group now.
    KillServices,
    /// SIGTERM to every process left (`kill(-1)` spares PID 1). `services_late`: the services
    /// did not all stop within their grace.
    TermLeftovers {
        services_late: bool,
    },
    /// SIGKILL to every process left.
    KillLeftovers,
    /// Everything is stopped: sync, unmount, reboot (PID 1), or return.
    Finish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    phase: ShutdownStage,
    pid1: bool,
}

impl Shutdown {
    /// The first request: services get their longest `stop_timeout` plus a little.
    pub fn begin(now: Instant, max_stop_timeout: Duration, pid1: bool) -> Shutdown {
        let grace = max_stop_timeout.saturating_add(SERVICES_SLACK);
        Shutdown {
            phase: ShutdownStage::StoppingServices {
                deadline: deadline(now, grace),
            },
            pid1,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            ShutdownStage::StoppingServices { deadline }
            | ShutdownStage::TermSent { deadline }
            | ShutdownStage::KillSent { deadline } => Some(deadline),
            ShutdownStage::Done => None,
        }
    }

    /// A second request: skip what is left of the grace periods.
    pub fn hurry(&mut self, now: Instant) -> ShutdownAction {
        match self.phase {
            ShutdownStage::StoppingServices { .. } | ShutdownStage::TermSent { .. }
                if self.pid1 =>
            {
                self.phase = ShutdownStage::KillSent {
                    deadline: deadline(now, KILL_REAP_WAIT),
                };
                ShutdownAction::KillLeftovers
            }
            ShutdownStage::StoppingServices { .. } => {
                self.phase = ShutdownStage::StoppingServices {
                    deadline: deadline(now, KILL_REAP_WAIT),
                };
                ShutdownAction::KillServices
            }
            ShutdownStage::TermSent { .. }
            | ShutdownStage::KillSent { .. }
            | ShutdownStage::Done => ShutdownAction::Wait,
        }
    }

    /// Advances the sequence. `services_stopped`: the supervisor reports all services down;
    /// `children_left`: some child process still exists.
    pub fn step(
        &mut self,
        now: Instant,
        services_stopped: bool,
        children_left: bool,
    ) -> ShutdownAction {
        let (next, action) = match self.phase {
            ShutdownStage::StoppingServices { deadline: d } if services_stopped || now >= d => {
                if !self.pid1 || !children_left {
                    (ShutdownStage::Done, ShutdownAction::Finish)
                } else {
                    let term = ShutdownStage::TermSent {
                        deadline: deadline(now, LEFTOVER_GRACE),
                    };
                    let services_late = !services_stopped;
                    (term, ShutdownAction::TermLeftovers { services_late })
                }
            }
            ShutdownStage::TermSent { .. } if !children_left => {
                (ShutdownStage::Done, ShutdownAction::Finish)
            }
            ShutdownStage::TermSent { deadline: d } if now >= d => {
                let kill = ShutdownStage::KillSent {
                    deadline: deadline(now, KILL_REAP_WAIT),
                };
                (kill, ShutdownAction::KillLeftovers)
            }
            ShutdownStage::KillSent { deadline: d } if !children_left || now >= d => {
                (ShutdownStage::Done, ShutdownAction::Finish)
            }
            other => (other, ShutdownAction::Wait),
        };
        self.phase = next;
        action
    }
}

/// `now + d`, capped at a year from now where `d` would overflow the clock (config durations
/// are refused past 365 days, so only a bug gets here).
pub(crate) fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// `pid (comm)` of every process whose parent is us, from `/proc/*/stat`, to name what did
/// not stop.
pub fn children_of_init() -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let (head, tail) = stat.rsplit_once(')')?;
            let (_, comm) = head.split_once('(')?;
            let ppid = tail.get(1..)?.split_whitespace().nth(1)?;
            (ppid == me).then(|| format!("{name} ({comm})"))
        })
        .collect()
}

/// The last step as PID 1: sync and unmount (on a thread of their own, waited for at most
/// [`SYNC_DEADLINE`]: a hung disk must not keep the VM up), then `reboot(2)`. Never returns;
/// if `reboot(2)` itself fails there is nothing left to do but say so and wait to be killed.
pub fn finish_pid1(mode: ShutdownMode) -> ! {
    log::info!("shutdown: syncing and unmounting filesystems");
    let (tx, rx) = mpsc::channel();
    let started = std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || {
            nix::unistd::sync();
            crate::mounts::unmount_all();
            let _ = tx.send(());
        });
    match started {
        Ok(_) => {
            if rx.recv_timeout(SYNC_DEADLINE).is_err() {
                log::error!(
                    "shutdown: sync/unmount still running after {}s; going on without it",
                    SYNC_DEADLINE.as_secs()
                );
            }
        }
        Err(e) => log::error!("shutdown: cannot start the sync thread ({e}); skipping sync"),
    }
    log::info!("shutdown: {}", mode.as_str());
    crate::logger::flush(Duration::from_secs(2));
    let err = sys::final_reboot(mode);
    log::error!("reboot(2) failed: {}; halting here", err.desc());
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn services_then_leftovers_then_finish() {
        let t0 = Instant::now();
        let mut s = Shutdown::begin(t0, 10 * SEC, true);
        assert_eq!(s.deadline(), Some(t0 + 12 * SEC));
        assert_eq!(s.step(t0 + SEC, false, true), ShutdownAction::Wait);
        assert_eq!(
            s.step(t0 + 2 * SEC, true, true),
            ShutdownAction::TermLeftovers {
                services_late: false
            }
        );
        assert_eq!(s.step(t0 + 3 * SEC, true, true), ShutdownAction::Wait);
        assert_eq!(
            s.step(t0 + 2 * SEC + LEFTOVER_GRACE, true, true),
            ShutdownAction::KillLeftovers
        );
        assert_eq!(s.step(t0 + 6 * SEC, true, false), ShutdownAction::Finish);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn late_services_are_forced_on_at_the_deadline() {
        let t0 = Instant::now();
        let mut s = Shutdown::begin(t0, SEC, true);
        assert_eq!(
            s.step(t0 + 3 * SEC, false, true),
            ShutdownAction::TermLeftovers {
                services_late: true
            }
        );
        // Nothing left after SIGTERM: no SIGKILL needed.
        assert_eq!(s.step(t0 + 4 * SEC, true, false), ShutdownAction::Finish);
    }

    #[test]
    fn nothing_left_finishes_at_once_and_off_pid1_leftovers_are_not_ours() {
        let t0 = Instant::now();
        let mut s = Shutdown::begin(t0, SEC, true);
        assert_eq!(s.step(t0, true, false), ShutdownAction::Finish);
        let mut s = Shutdown::begin(t0, SEC, false);
        assert_eq!(s.step(t0, true, true), ShutdownAction::Finish);
    }

    #[test]
    fn a_second_request_skips_the_grace_periods() {
        let t0 = Instant::now();
        let mut s = Shutdown::begin(t0, 3600 * SEC, true);
        assert_eq!(s.hurry(t0 + SEC), ShutdownAction::KillLeftovers);
        assert_eq!(s.deadline(), Some(t0 + SEC + KILL_REAP_WAIT));
        assert_eq!(s.step(t0 + 2 * SEC, true, false), ShutdownAction::Finish);
        // Off PID 1 only the services are ours.
        let mut s = Shutdown::begin(t0, 3600 * SEC, false);
        assert_eq!(s.hurry(t0 + SEC), ShutdownAction::KillServices);
        assert_eq!(s.step(t0 + 2 * SEC, true, true), ShutdownAction::Finish);
        // Once SIGKILL is out, a third request changes nothing.
        let mut s = Shutdown::begin(t0, SEC, true);
        s.hurry(t0);
        assert_eq!(s.hurry(t0), ShutdownAction::Wait);
    }

    #[test]
    fn an_absurd_stop_timeout_cannot_overflow_the_clock() {
        let t0 = Instant::now();
        let mut s = Shutdown::begin(t0, Duration::MAX, true);
        assert!(s.deadline().unwrap() > t0 + 3600 * SEC);
        assert_eq!(s.step(t0, true, false), ShutdownAction::Finish);
    }
}
