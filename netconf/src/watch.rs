//! What the network thread sleeps on between steps: its stop pipe (the handle closes the
//! write end) and an RTNLGRP_LINK socket, in one poll(2), so that a stop request or a link
//! event wakes it at once and nothing else does.

use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::rtnl::LinkMonitor;
use crate::wait::{deadline, RECHECK};
use crate::{sys, Clock};

/// Why [`Watch::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The handle asked the thread to end (or was dropped).
    Stop,
    /// Something happened to a link (any link: the caller re-reads the one it follows).
    Link,
    /// The time asked for passed.
    Timeout,
}

pub struct Watch {
    stop: OwnedFd,
    /// `None` when the subscription failed: the link is then re-read every second instead.
    monitor: Option<LinkMonitor>,
}

impl Watch {
    /// `stop` is the read end of the handle's pipe.
    pub fn new(stop: OwnedFd) -> Self {
        let monitor = match LinkMonitor::open() {
            Ok(m) => Some(m),
            Err(e) => {
                log::warn!(
                    "network: cannot subscribe to link events ({e}); carrier changes are \
                     noticed within a second instead"
                );
                None
            }
        };
        Watch { stop, monitor }
    }

    /// Sleeps up to `d`, until a stop request or a link event.
    pub fn wait(&mut self, d: Duration) -> Wake {
        let Some(m) = self.monitor.as_mut() else {
            // No events: wake every RECHECK to re-read the link, as if one had come.
            let slice = d.min(RECHECK);
            return match sys::poll_readable(&self.stop, slice) {
                Ok(true) => Wake::Stop,
                Ok(false) if slice < d => Wake::Link,
                Ok(false) => Wake::Timeout,
                Err(e) => {
                    log::warn!("network: cannot wait on the stop pipe: {e}");
                    // Never hot: sleep the slice the poll did not.
                    std::thread::sleep(slice);
                    Wake::Timeout
                }
            };
        };
        match sys::poll_either(&self.stop, &*m, d) {
            Ok((true, _)) => Wake::Stop,
            Ok((false, true)) => {
                if let Err(e) = m.drain() {
                    log::warn!("network: link event socket failed ({e}); polling instead");
                    self.monitor = None;
                }
                Wake::Link
            }
            Ok((false, false)) => Wake::Timeout,
            Err(e) => {
                log::warn!("network: cannot wait for link events ({e}); polling instead");
                self.monitor = None;
                Wake::Link
            }
        }
    }

    /// Sleeps `d` unless a stop arrives (link events do not cut it short); true means stop.
    pub fn stopped(&mut self, d: Duration, clock: &dyn Clock) -> bool {
        let end = deadline(clock.now(), d);
        loop {
            let now = clock.now();
            if now >= end {
                return false;
            }
            if self.wait(end.saturating_duration_since(now)) == Wake::Stop {
                return true;
            }
        }
    }

    /// Whether a stop request is pending, without waiting.
    pub fn stop_requested(&self) -> bool {
        sys::poll_readable(&self.stop, Duration::ZERO).unwrap_or(false)
    }
}
