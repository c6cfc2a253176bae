//! The pure decisions of following the link once bring-up has run (contract: "the network
//! follows link events"): when a failed bring-up is worth retrying before its backoff ends,
//! what a change of carrier means for a configuration in place, and when a silent gateway is
//! probed again. No I/O and no clock: the runner reads the link and passes `now` in.

use std::time::{Duration, Instant};

use crate::error::NetError;
use crate::wait::deadline;

/// Bounded exponential backoff: `first`, then doubling up to `max`. The caller sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the one after is twice as long, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = d.saturating_mul(2).min(self.max);
        d
    }

    /// Back to `first`, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A silent gateway is probed again this often (the contract asks for at least every 30 s).
pub const REPROBE: Duration = Duration::from_secs(10);

/// What the planned interface looks like right now: absent, or present with or without
/// carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSeen {
    Absent,
    NoCarrier,
    Carrier,
}

impl LinkSeen {
    pub fn of(carrier: Option<bool>) -> Self {
        match carrier {
            None => LinkSeen::Absent,
            Some(false) => LinkSeen::NoCarrier,
            Some(true) => LinkSeen::Carrier,
        }
    }
}

/// What a failed bring-up says about the link when it gave up: absent after a
/// [`NetError::NoInterface`], without carrier after a [`NetError::NoCarrier`]; `None` when
/// the failure was about something else (the link as read then is the reference).
pub fn link_at_failure(e: &NetError) -> Option<LinkSeen> {
    match e {
        NetError::NoInterface { .. } => Some(LinkSeen::Absent),
        NetError::NoCarrier { .. } => Some(LinkSeen::NoCarrier),
        _ => None,
    }
}

/// Whether a link change seen while a failed bring-up waits out its backoff is worth a retry
/// now: the interface appeared, or carrier came. Anything else (carrier lost, no change)
/// waits for the backoff, so a flapping link cannot make bring-up run hot.
pub fn worth_retrying(before: LinkSeen, now: LinkSeen) -> bool {
    matches!(
        (before, now),
        (LinkSeen::Absent, LinkSeen::NoCarrier | LinkSeen::Carrier)
            | (LinkSeen::NoCarrier, LinkSeen::Carrier)
    )
}

/// What to do after a wake while the configuration is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Nothing,
    /// Carrier went (or the interface did): state `down`, with the reason.
    CarrierLost,
    /// Carrier is back: run bring-up again (idempotent: it re-applies what the kernel lost,
    /// and probes the gateway again).
    CarrierBack,
    /// The gateway was silent and its next probe is due.
    Probe,
}

/// The held configuration as the runner tracks it between wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    carrier: bool,
    /// While the gateway is silent: when to probe it next.
    next_probe: Option<Instant>,
}

impl Holding {
    /// Right after a successful bring-up: carrier present; a silent gateway is probed again
    /// [`REPROBE`] from now.
    pub fn new(gateway_silent: bool, now: Instant) -> Self {
        Holding {
            carrier: true,
            next_probe: gateway_silent.then(|| deadline(now, REPROBE)),
        }
    }

    pub fn has_carrier(&self) -> bool {
        self.carrier
    }

    /// The link was read again (after an event or a timer).
    pub fn link(&mut self, seen: LinkSeen) -> Act {
        let carrier = seen == LinkSeen::Carrier;
        let act = match (self.carrier, carrier) {
            (true, false) => Act::CarrierLost,
            (false, true) => Act::CarrierBack,
            _ => Act::Nothing,
        };
        self.carrier = carrier;
        act
    }

    /// A timer wake: probe the silent gateway if that is due (and there is carrier to probe
    /// over).
    pub fn timer(&self, now: Instant) -> Act {
        match self.next_probe {
            Some(t) if self.carrier && now >= t => Act::Probe,
            _ => Act::Nothing,
        }
    }

    /// The outcome of a probe: silent again means another in [`REPROBE`]; an answer ends
    /// the probing.
    pub fn probed(&mut self, silent: bool, now: Instant) {
        self.next_probe = silent.then(|| deadline(now, REPROBE));
    }

    /// How long the runner may sleep before [`Self::timer`] has something to do, at most
    /// `max` (a safety net: the link is re-read at every wake even without an event).
    pub fn sleep(&self, now: Instant, max: Duration) -> Duration {
        match self.next_probe {
            Some(t) if self.carrier => t.saturating_duration_since(now).min(max),
            _ => max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use LinkSeen::{Absent, Carrier, NoCarrier};

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(60));
        let seq: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), s(1));
        let mut r = Backoff::new(s(5), s(60));
        let seq: Vec<u64> = (0..6).map(|_| r.next_delay().as_secs()).collect();
        assert_eq!(seq, vec![5, 10, 20, 40, 60, 60]);
        // Never overflows, whatever it is given.
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        let mut inverted = Backoff::new(s(10), s(3));
        assert_eq!(inverted.next_delay(), s(3));
    }

    #[test]
    fn retry_early_only_when_the_link_got_better() {
        assert!(worth_retrying(Absent, NoCarrier));
        assert!(worth_retrying(Absent, Carrier));
        assert!(worth_retrying(NoCarrier, Carrier));
        assert!(
            !worth_retrying(Carrier, Carrier),
            "no change: DHCP or ARP trouble"
        );
        assert!(!worth_retrying(Carrier, NoCarrier));
        assert!(!worth_retrying(NoCarrier, NoCarrier));
        assert!(!worth_retrying(NoCarrier, Absent));
        let no_carrier = NetError::NoCarrier {
            interface: "eth0".into(),
            waited: Duration::from_secs(5),
        };
        assert_eq!(link_at_failure(&no_carrier), Some(NoCarrier));
        let no_offer = NetError::DhcpNoOffer {
            interface: "eth0".into(),
            waited: Duration::from_secs(5),
        };
        assert_eq!(link_at_failure(&no_offer), None);
        assert_eq!(LinkSeen::of(None), Absent);
        assert_eq!(LinkSeen::of(Some(false)), NoCarrier);
        assert_eq!(LinkSeen::of(Some(true)), Carrier);
    }

    #[test]
    fn carrier_lost_then_back() {
        let t0 = Instant::now();
        let mut h = Holding::new(false, t0);
        assert_eq!(h.link(Carrier), Act::Nothing);
        assert_eq!(h.link(NoCarrier), Act::CarrierLost);
        assert!(!h.has_carrier());
        assert_eq!(h.link(NoCarrier), Act::Nothing, "reported once");
        assert_eq!(h.link(Absent), Act::Nothing);
        assert_eq!(h.link(Carrier), Act::CarrierBack);
        assert_eq!(
            h.link(Absent),
            Act::CarrierLost,
            "an interface gone loses carrier"
        );
    }

    #[test]
    fn a_silent_gateway_is_probed_every_reprobe_until_it_answers() {
        let t0 = Instant::now();
        let max = Duration::from_secs(60);
        let mut h = Holding::new(true, t0);
        assert_eq!(h.sleep(t0, max), REPROBE);
        assert!(REPROBE <= Duration::from_secs(30), "the contract's bound");
        assert_eq!(h.timer(t0 + Duration::from_secs(9)), Act::Nothing);
        let due = t0 + REPROBE;
        assert_eq!(h.timer(due), Act::Probe);
        h.probed(true, due);
        assert_eq!(h.timer(due + Duration::from_secs(1)), Act::Nothing);
        assert_eq!(h.sleep(due, max), REPROBE);
        assert_eq!(h.timer(due + REPROBE), Act::Probe);
        h.probed(false, due + REPROBE);
        assert_eq!(
            h.timer(due + REPROBE * 5),
            Act::Nothing,
            "answered: no more probes"
        );
        assert_eq!(h.sleep(due, max), max);
    }

    #[test]
    fn no_probe_without_carrier() {
        let t0 = Instant::now();
        let mut h = Holding::new(true, t0);
        h.link(NoCarrier);
        assert_eq!(h.timer(t0 + REPROBE * 2), Act::Nothing);
        assert_eq!(
            h.sleep(t0, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        let healthy = Holding::new(false, t0);
        assert_eq!(healthy.timer(t0 + REPROBE * 100), Act::Nothing);
    }
}
