//! The shutdown sequence of contract §5 as a small state machine the event loop drives:
//! services stop (the supervisor, in reverse dependency order), then leftover processes get
//! SIGTERM, then SIGKILL, then filesystems are synced and unmounted, then `reboot(2)`.
//! Off PID 1 only the services are stopped and the process returns.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use guest_config::ShutdownMode;

use crate::sys;

/// How long leftover processes get between SIGTERM and SIGKILL.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(3);
/// Waiting for the last SIGKILLed processes to be reaped before powering off anyway.
const KILL_REAP_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The supervisor is stopping services; force on after `deadline`.
    StoppingServices {
        deadline: Instant,
    },
    /// SIGTERM sent to everything left; SIGKILL at `deadline`.
    TermSent {
        deadline: Instant,
    },
    /// SIGKILL sent; power off once reaped or at `deadline`.
    KillSent {
        deadline: Instant,
    },
    Done,
}

impl Phase {
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Phase::StoppingServices { deadline }
            | Phase::TermSent { deadline }
            | Phase::KillSent { deadline } => Some(deadline),
            Phase::Done => None,
        }
    }
}

/// Advances the sequence. `services_stopped`: the supervisor reports all services down;
/// `children_left`: some child process still exists. PID 1 signals every process (`kill(-1)`
/// spares the caller); off PID 1 nothing beyond the services is touched.
pub fn step(
    phase: Phase,
    now: Instant,
    services_stopped: bool,
    children_left: bool,
    pid1: bool,
) -> Phase {
    match phase {
        Phase::StoppingServices { deadline } if services_stopped || now >= deadline => {
            if !pid1 {
                return Phase::Done;
            }
            if !services_stopped {
                log::warn!("shutdown: services did not stop in time; signalling everything");
            }
            if !children_left {
                return Phase::Done;
            }
            log::info!("shutdown: sending SIGTERM to all remaining processes");
            let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
            Phase::TermSent {
                deadline: now + LEFTOVER_GRACE,
            }
        }
        Phase::TermSent { deadline } if !children_left => {
            let _ = deadline;
            Phase::Done
        }
        Phase::TermSent { deadline } if now >= deadline => {
            log::warn!(
                "shutdown: processes left after SIGTERM: {}; sending SIGKILL",
                children_of_init().join(", ")
            );
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            Phase::KillSent {
                deadline: now + KILL_REAP_WAIT,
            }
        }
        Phase::KillSent { deadline } if !children_left || now >= deadline => Phase::Done,
        other => other,
    }
}

/// `pid (comm)` of every process whose parent is us, from `/proc/*/stat`, to name what did
/// not stop.
fn children_of_init() -> Vec<String> {
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
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat.get(open + 1..close)?;
            let ppid = stat.get(close + 2..)?.split_whitespace().nth(1)?;
            (ppid == me).then(|| format!("{name} ({comm})"))
        })
        .collect()
}

/// The last step as PID 1: unmount, sync, reboot. Never returns; if `reboot(2)` itself fails
/// there is nothing left to do but say so and wait to be killed.
pub fn finish_pid1(mode: ShutdownMode) -> ! {
    log::info!("shutdown: syncing and unmounting filesystems");
    nix::unistd::sync();
    crate::mounts::unmount_all();
    log::info!("shutdown: {}", mode.as_str());
    let err = sys::final_reboot(mode);
    log::error!("reboot(2) failed: {}; halting here", err.desc());
    loop {
        std::thread::park();
    }
}
