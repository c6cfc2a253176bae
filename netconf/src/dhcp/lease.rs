//! A DHCPv4 lease as read from an ACK, and the pure timer decisions of RFC 2131 §4.4.5:
//! renew (unicast to the server) from T1, rebind (broadcast) from T2, give the address up at
//! expiry. No I/O and no clock: `now` is always passed in.
//!
//! The reply is input from whoever answers on the segment: names are checked
//! (`names.rs`) and the timers clamped ([`LeaseLimits`]) here, before anything acts on them.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use guest_config::IpNet;

use super::names;

/// The lease time the server sends for "forever" (RFC 2131 §3.3).
const INFINITE: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Checked domains for resolv.conf's `search`: option 15, then option 119.
    pub search: Vec<String>,
    pub mtu: Option<u16>,
    /// The server's host name for us, if it passed the check.
    pub hostname: Option<String>,
    /// One line per value of the reply that was refused or overridden (escaped, with the
    /// reason: a bad name, a lease time under the floor); the caller logs them. Never
    /// fatal: the lease stands without (or with the floor instead of) those values.
    pub refused: Vec<String>,
    /// The server identifier: where renewals go.
    pub server: Ipv4Addr,
    /// `None` for an infinite lease.
    pub lease_time: Option<Duration>,
    pub t1: Duration,
    pub t2: Duration,
    pub acquired: Instant,
}

/// The floors put under a server's timers: a lease of a few seconds (broken or hostile
/// server) would otherwise have the client renew in a tight loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLimits {
    /// A shorter lease counts as this long (default 60 s).
    pub min_lease: Duration,
    /// A shorter T1 counts as this long (default 10 s); T2 then lies between T1 and the lease.
    pub min_t1: Duration,
}

impl Default for LeaseLimits {
    fn default() -> Self {
        LeaseLimits {
            min_lease: Duration::from_secs(60),
            min_t1: Duration::from_secs(10),
        }
    }
}

/// Where a lease stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePhase {
    /// Before T1: nothing to do until `until`.
    Bound { until: Instant },
    /// T1..T2: unicast REQUEST to the server until `until` (T2).
    Renewing { until: Instant },
    /// T2..expiry: broadcast REQUEST to any server until `until` (expiry).
    Rebinding { until: Instant },
    /// Past expiry: the address must go.
    Expired,
}

impl Lease {
    /// Reads a lease from a DHCPACK. `acquired` is when the REQUEST that got it was sent
    /// (RFC 2131 §4.4.1 counts the lease from then, erring on the safe side).
    pub fn from_ack(
        msg: &Message,
        acquired: Instant,
        limits: LeaseLimits,
    ) -> Result<Lease, String> {
        if msg.opts().msg_type() != Some(MessageType::Ack) {
            return Err("not a DHCPACK".to_string());
        }
        let address = msg.yiaddr();
        if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            return Err(format!("ACK offers unusable address {address}"));
        }
        let server = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => *s,
            _ => return Err("ACK has no server identifier (option 54)".to_string()),
        };
        let prefix_len = match msg.opts().get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => mask_to_prefix(*m)
                .ok_or_else(|| format!("ACK has a non-contiguous subnet mask {m}"))?,
            _ => classful_prefix(address),
        };
        let router = match msg.opts().get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.iter().copied().find(|r| !r.is_unspecified()),
            _ => None,
        };
        let dns = match msg.opts().get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => d.clone(),
            _ => Vec::new(),
        };
        let mut refused = Vec::new();
        let (search, hostname) = checked_names(msg, &mut refused);
        // RFC 2132 §5.1: the minimum legal MTU is 68; anything less is a broken server.
        let mtu = match msg.opts().get(OptionCode::InterfaceMtu) {
            Some(DhcpOption::InterfaceMtu(m)) if *m >= 68 => Some(*m),
            _ => None,
        };
        let lease_secs = match msg.opts().get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => *t,
            _ => return Err("ACK has no lease time (option 51)".to_string()),
        };
        let t1 = match msg.opts().get(OptionCode::Renewal) {
            Some(DhcpOption::Renewal(t)) => Some(*t),
            _ => None,
        };
        let t2 = match msg.opts().get(OptionCode::Rebinding) {
            Some(DhcpOption::Rebinding(t)) => Some(*t),
            _ => None,
        };
        let (lease_time, t1, t2) = timers(lease_secs, t1, t2, limits);
        if lease_secs != INFINITE && Duration::from_secs(u64::from(lease_secs)) < limits.min_lease {
            refused.push(format!(
                "lease time of {lease_secs} s: under the floor, held for {} s (T1 {} s)",
                limits.min_lease.as_secs(),
                t1.as_secs()
            ));
        }
        Ok(Lease {
            address,
            prefix_len,
            router,
            dns,
            search,
            mtu,
            hostname,
            refused,
            server,
            lease_time,
            t1,
            t2,
            acquired,
        })
    }

    pub fn net(&self) -> IpNet {
        IpNet {
            addr: self.address.into(),
            prefix_len: self.prefix_len,
        }
    }

    pub fn phase(&self, now: Instant) -> LeasePhase {
        // Checked: an instant past what the clock can hold is "never", and an infinite lease
        // is re-examined once a day.
        let far = || now.checked_add(Duration::from_secs(86_400)).unwrap_or(now);
        let at = |d: Duration| self.acquired.checked_add(d);
        let Some(lease) = self.lease_time else {
            return LeasePhase::Bound { until: far() };
        };
        let (Some(t1), Some(t2), Some(end)) = (at(self.t1), at(self.t2), at(lease)) else {
            return LeasePhase::Bound { until: far() };
        };
        if now < t1 {
            LeasePhase::Bound { until: t1 }
        } else if now < t2 {
            LeasePhase::Renewing { until: t2 }
        } else if now < end {
            LeasePhase::Rebinding { until: end }
        } else {
            LeasePhase::Expired
        }
    }
}

/// The search list (options 15 and 119) and host name (option 12) of a reply, each checked
/// (`names.rs`); what fails a check is described in `refused` and left out.
fn checked_names(msg: &Message, refused: &mut Vec<String>) -> (Vec<String>, Option<String>) {
    let domain = match msg.opts().get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(d)) => Some(d.as_str()),
        _ => None,
    };
    let search_opt: Vec<String> = match msg.opts().get(OptionCode::DomainSearch) {
        Some(DhcpOption::DomainSearch(names)) => names.iter().map(|n| n.to_ascii()).collect(),
        _ => Vec::new(),
    };
    let search = names::search_list(domain, &search_opt, refused);
    let hostname = match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => match names::check_dhcp_hostname(h) {
            Ok(name) => Some(name.to_string()),
            Err(why) => {
                refused.push(format!(
                    "host name (option 12) \"{}\": {why}",
                    names::escape(h.as_bytes())
                ));
                None
            }
        },
        _ => None,
    };
    (search, hostname)
}

/// Lease, T1 and T2 from the options, with RFC 2131 §4.4.5's defaults (0.5 and 0.875 of the
/// lease) where the server sent none or sent an inconsistent ordering, then clamped by
/// `limits`: the lease to at least `min_lease`, T1 to at least `min_t1` (and at most the
/// lease), T2 between T1 and the lease. The server's own T1/T2 are kept where they clear the
/// floors, so a 30 s lease with T1 = 15 s becomes 60 s with T1 = 15 s.
pub fn timers(
    lease: u32,
    t1: Option<u32>,
    t2: Option<u32>,
    limits: LeaseLimits,
) -> (Option<Duration>, Duration, Duration) {
    if lease == INFINITE {
        return (None, Duration::MAX, Duration::MAX);
    }
    let l = u64::from(lease);
    // u32 values in u64: neither product can overflow; saturating all the same.
    let def_t2 = l.saturating_mul(7) / 8;
    let t2 = t2.map(u64::from).filter(|t| *t <= l).unwrap_or(def_t2);
    let t1 = t1
        .map(u64::from)
        .filter(|t| *t <= t2)
        .unwrap_or((l / 2).min(t2));
    let lease = Duration::from_secs(l).max(limits.min_lease);
    let t1 = Duration::from_secs(t1).max(limits.min_t1).min(lease);
    // max then min rather than clamp(): t1 <= lease holds, but clamp() would panic if not.
    let t2 = Duration::from_secs(t2).max(t1).min(lease);
    (Some(lease), t1, t2)
}

/// `255.255.255.0` → 24; `None` for a mask with holes.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then(|| u8::try_from(ones).unwrap_or(32))
}

/// RFC 2131 §3.3 leaves a missing mask to the client; the classful default is what every
/// client does.
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Opcode;

    /// No floors: the RFC's own timer rules alone.
    const NONE: LeaseLimits = LeaseLimits {
        min_lease: Duration::ZERO,
        min_t1: Duration::ZERO,
    };
    const LIM: LeaseLimits = LeaseLimits {
        min_lease: Duration::from_secs(60),
        min_t1: Duration::from_secs(10),
    };

    fn ack(opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Ack));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    fn qemu_ack() -> Message {
        ack(vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 2, 3)]),
            DhcpOption::AddressLeaseTime(86_400),
            DhcpOption::InterfaceMtu(1400),
        ])
    }

    #[test]
    fn parses_a_qemu_style_ack() {
        let now = Instant::now();
        let l = Lease::from_ack(&qemu_ack(), now, LIM).unwrap();
        assert_eq!(l.net().to_string(), "10.0.2.15/24");
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(l.server, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(l.mtu, Some(1400));
        assert_eq!(l.t1, Duration::from_secs(43_200));
        assert_eq!(l.t2, Duration::from_secs(75_600));
        assert_eq!(l.hostname, None);
    }

    #[test]
    fn rejects_acks_missing_what_a_lease_needs() {
        let now = Instant::now();
        let no_server = ack(vec![DhcpOption::AddressLeaseTime(60)]);
        assert!(Lease::from_ack(&no_server, now, LIM)
            .unwrap_err()
            .contains("54"));
        let no_time = ack(vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(
            10, 0, 2, 2,
        ))]);
        assert!(Lease::from_ack(&no_time, now, LIM)
            .unwrap_err()
            .contains("51"));
        let holes = ack(vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)),
            DhcpOption::AddressLeaseTime(60),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)),
        ]);
        assert!(Lease::from_ack(&holes, now, LIM)
            .unwrap_err()
            .contains("255.0.255.0"));
        let mut offer = qemu_ack();
        offer
            .opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Offer));
        assert!(Lease::from_ack(&offer, now, LIM).is_err());
    }

    #[test]
    fn timers_default_and_sanitise() {
        let s = Duration::from_secs;
        assert_eq!(timers(100, None, None, NONE), (Some(s(100)), s(50), s(87)));
        assert_eq!(
            timers(100, Some(10), Some(20), NONE),
            (Some(s(100)), s(10), s(20))
        );
        // T2 beyond the lease and T1 beyond T2 are ignored.
        assert_eq!(
            timers(100, Some(90), Some(200), NONE),
            (Some(s(100)), s(50), s(87))
        );
        assert_eq!(
            timers(100, Some(60), Some(40), NONE),
            (Some(s(100)), s(40), s(40))
        );
        assert_eq!(timers(u32::MAX, Some(1), Some(2), LIM).0, None);
        assert_eq!(LeaseLimits::default(), LIM);
    }

    #[test]
    fn short_leases_and_timers_are_clamped() {
        let s = Duration::from_secs;
        // A 4 s lease (T1 2 s, T2 3 s by default) counts as 60 s with T1 = T2 = 10 s.
        assert_eq!(timers(4, None, None, LIM), (Some(s(60)), s(10), s(10)));
        assert_eq!(
            timers(0, Some(0), Some(0), LIM),
            (Some(s(60)), s(10), s(10))
        );
        // A lease of 59 s is clamped, 60 s is not.
        assert_eq!(timers(59, None, None, LIM).0, Some(s(60)));
        assert_eq!(timers(60, None, None, LIM), (Some(s(60)), s(30), s(52)));
        // T1 under 10 s on a long lease: raised to 10 s, T2 kept.
        assert_eq!(
            timers(3600, Some(1), Some(3000), LIM),
            (Some(s(3600)), s(10), s(3000))
        );
        // T2 under the raised T1 follows it.
        assert_eq!(
            timers(3600, Some(2), Some(5), LIM),
            (Some(s(3600)), s(10), s(10))
        );
        // Server T1/T2 that clear the floors are kept under a clamped lease.
        assert_eq!(
            timers(30, Some(15), Some(25), LIM),
            (Some(s(60)), s(15), s(25))
        );
        // Floors larger than each other still give T1 <= T2 <= lease.
        let odd = LeaseLimits {
            min_lease: s(5),
            min_t1: s(100),
        };
        let (l, t1, t2) = timers(1, None, None, odd);
        assert_eq!((l, t1, t2), (Some(s(5)), s(5), s(5)));
        // Every combination keeps the order.
        for lease in [0, 1, 9, 10, 59, 60, 61, 3600, u32::MAX - 1] {
            for t1 in [None, Some(0), Some(5), Some(30), Some(u32::MAX)] {
                for t2 in [None, Some(0), Some(8), Some(45), Some(u32::MAX)] {
                    let (l, a, b) = timers(lease, t1, t2, LIM);
                    let l = l.unwrap();
                    assert!(
                        l >= s(60) && a >= s(10) && a <= b && b <= l,
                        "{lease} {t1:?} {t2:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_ack_with_hostile_strings_keeps_the_lease_without_them() {
        let mut m = qemu_ack();
        m.opts_mut()
            .insert(DhcpOption::Hostname("vm\u{1b}]0;pwned\u{7}".into()));
        m.opts_mut().insert(DhcpOption::DomainName(
            "corp.example\nnameserver 6.6.6.6".into(),
        ));
        let l = Lease::from_ack(&m, Instant::now(), LIM).unwrap();
        assert_eq!(l.hostname, None);
        assert!(l.search.is_empty(), "{:?}", l.search);
        assert_eq!(l.refused.len(), 2, "{:?}", l.refused);
        assert!(l.refused.iter().any(|r| r.contains("\\x1b]0;pwned\\x07")));
        assert!(l.refused.iter().all(|r| !r.chars().any(char::is_control)));

        let mut m = qemu_ack();
        m.opts_mut()
            .insert(DhcpOption::Hostname("leased-vm".into()));
        m.opts_mut()
            .insert(DhcpOption::DomainName("example.internal.".into()));
        m.opts_mut()
            .insert(DhcpOption::DomainSearch(vec!["lab.example."
                .parse()
                .unwrap()]));
        let l = Lease::from_ack(&m, Instant::now(), LIM).unwrap();
        assert_eq!(l.hostname.as_deref(), Some("leased-vm"));
        assert_eq!(l.search, vec!["example.internal", "lab.example"]);
        assert!(l.refused.is_empty());
    }

    #[test]
    fn a_short_ack_lease_is_clamped() {
        let mut m = qemu_ack();
        m.opts_mut().insert(DhcpOption::AddressLeaseTime(4));
        let l = Lease::from_ack(&m, Instant::now(), LIM).unwrap();
        assert_eq!(l.lease_time, Some(Duration::from_secs(60)));
        assert_eq!(l.t1, Duration::from_secs(10));
        assert_eq!(
            l.refused,
            vec!["lease time of 4 s: under the floor, held for 60 s (T1 10 s)"]
        );
        // A lease at the floor says nothing.
        assert!(Lease::from_ack(&qemu_ack(), Instant::now(), LIM)
            .unwrap()
            .refused
            .is_empty());
    }

    #[test]
    fn phases_never_overflow_the_clock() {
        let t0 = Instant::now();
        let mut l = Lease::from_ack(&qemu_ack(), t0, LIM).unwrap();
        l.lease_time = Some(Duration::MAX);
        l.t1 = Duration::MAX;
        l.t2 = Duration::MAX;
        assert!(matches!(l.phase(t0), LeasePhase::Bound { .. }));
    }

    #[test]
    fn phases_follow_t1_t2_and_expiry() {
        let t0 = Instant::now();
        let mut l = Lease::from_ack(&qemu_ack(), t0, LIM).unwrap();
        l.lease_time = Some(Duration::from_secs(100));
        l.t1 = Duration::from_secs(50);
        l.t2 = Duration::from_secs(87);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(l.phase(at(0)), LeasePhase::Bound { until: at(50) });
        assert_eq!(l.phase(at(50)), LeasePhase::Renewing { until: at(87) });
        assert_eq!(l.phase(at(90)), LeasePhase::Rebinding { until: at(100) });
        assert_eq!(l.phase(at(100)), LeasePhase::Expired);
        l.lease_time = None;
        assert!(matches!(l.phase(at(1_000_000)), LeasePhase::Bound { .. }));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 128, 0)), Some(17));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(classful_prefix(Ipv4Addr::new(10, 1, 2, 3)), 8);
        assert_eq!(classful_prefix(Ipv4Addr::new(192, 168, 1, 3)), 24);
    }
}
