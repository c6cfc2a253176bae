//! What keeps PID 1 alive when its own code fails: a panic hook that logs on the console (and
//! leaves the message for [`crate::guard`]), and a fallback loop for when the event loop cannot
//! even be created. The fallback still reaps every child and still honours SIGTERM/SIGINT/SIGPWR
//! with a clean power-off; the health thread keeps serving the last document with the failure
//! added.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_config::ShutdownMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};

use crate::health;
use crate::status::Status;

/// Logs panics through the console logger, with their location.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        log::error!("BUG: thread '{name}' panicked: {info}");
        crate::guard::record_panic(info.to_string());
    }));
}

/// Marks the health document failed with `reason`.
pub fn publish_failure(shared: &Arc<health::Shared>, reason: &str) {
    let mut doc = (*shared.doc()).clone();
    doc.status = Status::Failed;
    doc.errors.push(reason.to_string());
    doc.generation = doc.generation.saturating_add(1);
    shared.publish(doc);
}

/// The PID 1 fallback: reap, and on a shutdown signal stop everything and power off.
pub fn fallback_loop(mode: ShutdownMode) -> ! {
    log::error!("entering the fallback loop: reaping and waiting for a shutdown signal");
    let signals = signal_hook::iterator::Signals::new([SIGCHLD, SIGTERM, SIGINT, libc::SIGPWR]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            log::error!("fallback: cannot register signals ({e}); only reaping");
            loop {
                if !crate::sys::reap_blocking() {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    };
    loop {
        for sig in signals.wait() {
            if sig == SIGCHLD {
                crate::sys::reap_all(|_, _| {});
                continue;
            }
            log::info!("fallback: signal {sig}: stopping all processes");
            let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
            let end = crate::shutdown::deadline(Instant::now(), crate::shutdown::LEFTOVER_GRACE);
            while Instant::now() < end {
                crate::sys::reap_all(|_, _| {});
                if !crate::sys::has_children() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            crate::sys::reap_all(|_, _| {});
            crate::shutdown::finish_pid1(mode);
        }
    }
}
