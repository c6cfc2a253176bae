//! Bounded waits for link state (the interface appearing, carrier) without spinning: the
//! caller's check runs once, then again after every RTNLGRP_LINK event, until it yields or
//! the deadline passes. The deadline decisions take `now` from the injected [`Clock`].

use std::time::{Duration, Instant};

use crate::error::{NetError, Result};
use crate::rtnl::{LinkMonitor, Rtnl};
use crate::Clock;

/// Even without events the state is re-read this often: a safety net should the kernel drop
/// an event (the monitor also reports ENOBUFS overruns as events).
pub const RECHECK: Duration = Duration::from_secs(1);

/// How long to sleep before the next check, or `None` when the deadline has passed.
pub fn next_sleep(deadline: Instant, now: Instant) -> Option<Duration> {
    (now < deadline).then(|| deadline.saturating_duration_since(now).min(RECHECK))
}

/// `now + d`, or the latest instant the clock can hold: a huge timeout (from configuration
/// or a server) means "wait very long", never a panic on overflow.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// Runs `check` until it returns `Some`, sleeping on link events in between. `Ok(None)` when
/// `timeout` passes first (after one last check).
pub fn wait_for<T>(
    rtnl: &mut Rtnl,
    monitor: &mut LinkMonitor,
    clock: &dyn Clock,
    timeout: Duration,
    mut check: impl FnMut(&mut Rtnl) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = deadline(clock.now(), timeout);
    loop {
        if let Some(v) = check(rtnl)? {
            return Ok(Some(v));
        }
        let Some(sleep) = next_sleep(deadline, clock.now()) else {
            return Ok(None);
        };
        monitor.wait(sleep).map_err(|source| NetError::Socket {
            what: "wait for link events on the rtnetlink monitor socket",
            source,
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_are_capped_and_end_at_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(2500);
        assert_eq!(next_sleep(deadline, t0), Some(RECHECK));
        assert_eq!(
            next_sleep(deadline, t0 + Duration::from_millis(2000)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(next_sleep(deadline, deadline), None);
        assert_eq!(
            next_sleep(deadline, deadline + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn deadlines_never_overflow() {
        let t0 = Instant::now();
        assert_eq!(
            deadline(t0, Duration::from_secs(2)),
            t0 + Duration::from_secs(2)
        );
        assert!(deadline(t0, Duration::MAX) > t0);
    }
}
