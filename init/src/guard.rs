//! Panics contained: every part of the init (each boot step, each turn of the event loop, the
//! health thread) runs under a guard. A panic is a bug in vminit, but a dead PID 1 is a kernel
//! panic and the whole VM is lost with its `/health`; so the guard logs the panic with its
//! location (the hook in [`crate::panic`]), hands back a message for `/health` `errors[]`,
//! and the caller goes on: a boot step falls back to its default, the loop takes its next turn
//! with the supervisor (and the services' pipes) intact, a thread starts its work again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Duration;

/// The last panic's message and location, left by the hook for the guard that catches it.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Called by the panic hook.
pub fn record_panic(text: String) {
    *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
}

/// Runs `f`; a panic becomes `Err` with a message that names `what` and where it panicked.
pub fn catch<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| panic_message(what, "vminit went on without it"))
}

/// The `errors[]` line for a panic of `what` just caught (by [`catch`], or by a crate's own
/// guard, such as the network thread's): its message and location, as the hook left them,
/// and what happens `next`.
pub fn panic_message(what: &str, next: &str) -> String {
    let detail = LAST_PANIC
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_else(|| "no message".to_string());
    format!("BUG: {what} panicked ({detail}); {next}")
}

/// How long a thread whose work keeps panicking waits before it tries again: 1 s doubling to
/// 30 s, so a panic on every attempt costs the VM nothing noticeable.
pub fn restart_delay(panics: u32) -> Duration {
    let secs = 1u64
        .checked_shl(panics.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs.min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_message_naming_the_part_and_the_place() {
        crate::panic::install_hook();
        let r: Result<(), String> = catch("the test step", || panic!("boom at {}", 7));
        let msg = r.unwrap_err();
        assert!(msg.contains("the test step"), "{msg}");
        assert!(msg.contains("boom at 7"), "{msg}");
        assert!(msg.contains("guard.rs"), "location missing: {msg}");
        assert_eq!(catch("fine", || 3), Ok(3));
    }

    #[test]
    fn restarts_back_off_and_stay_bounded() {
        assert_eq!(restart_delay(1), Duration::from_secs(1));
        assert_eq!(restart_delay(2), Duration::from_secs(2));
        assert_eq!(restart_delay(6), Duration::from_secs(30));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(30));
    }
}
