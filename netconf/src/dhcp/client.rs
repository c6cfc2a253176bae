//! The DHCPv4 client's I/O: a UDP socket on port 68 bound to the interface, the
//! DISCOVER → OFFER → REQUEST → ACK exchange with retransmits under an overall deadline, and
//! the renew/rebind exchange. Decisions (messages, timers) are in `msg.rs` and `lease.rs`.
//!
//! A UDP socket rather than AF_PACKET: with `SO_BINDTODEVICE` and `SO_BROADCAST`, Linux sends
//! from 0.0.0.0 to 255.255.255.255 out of an interface that has no address yet, and delivers
//! broadcast replies (we set the BOOTP broadcast flag) to it. That holds while reverse-path
//! filtering is off or loose on the interface (the kernel default); with `rp_filter=1` the
//! replies would be dropped before the address is configured, and AF_PACKET would be needed.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::lease::{Lease, LeaseLimits};
use super::msg::{self, Ident, Reply, RequestKind};
use crate::error::{NetError, Result};
use crate::Clock;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

/// Delay before the `attempt`-th retransmission (0-based): 1, 2, 4, 8 s then 8 s each. RFC
/// 2131 §4.1 suggests starting at 4 s; a microVM on a local bridge answers in milliseconds
/// and boot time matters more than the medium's load.
pub fn retransmit_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(3))
}

/// What the client asks the server for and what it accepts of the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOpts<'a> {
    /// Sent as option 12, so the server may register it.
    pub hostname: Option<&'a str>,
    /// Option 61's payload (type byte, then value: [`guest_config::DhcpClientId::to_bytes`]);
    /// `None` sends hardware type 1 and the MAC.
    pub client_id: Option<&'a [u8]>,
    /// Floors under the lease's timers.
    pub limits: LeaseLimits,
}

impl ClientOpts<'_> {
    fn ident(&self) -> Ident<'_> {
        Ident {
            hostname: self.hostname,
            client_id: self.client_id,
        }
    }
}

pub struct DhcpSocket {
    sock: UdpSocket,
    interface: String,
}

impl DhcpSocket {
    pub fn open(interface: &str) -> Result<Self> {
        let err = |op, source| NetError::DhcpSocket {
            interface: interface.to_string(),
            op,
            source,
        };
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))
            .map_err(|e| err("bind to port 68", e))?;
        sock.set_broadcast(true)
            .map_err(|e| err("set SO_BROADCAST", e))?;
        crate::sys::bind_to_device(&sock, interface).map_err(|e| err("set SO_BINDTODEVICE", e))?;
        Ok(DhcpSocket {
            sock,
            interface: interface.to_string(),
        })
    }

    fn err(&self, op: &'static str, source: io::Error) -> NetError {
        NetError::DhcpSocket {
            interface: self.interface.clone(),
            op,
            source,
        }
    }

    fn send(&self, m: &dhcproto::v4::Message, to: Ipv4Addr) -> Result<()> {
        let bytes = msg::encode(m)
            .map_err(|e| self.err("encode", io::Error::new(io::ErrorKind::InvalidData, e)))?;
        self.sock
            .send_to(&bytes, SocketAddrV4::new(to, SERVER_PORT))
            .map_err(|e| self.err("send", e))?;
        Ok(())
    }

    /// Waits until `until` for a reply to `xid`; other datagrams are skipped.
    fn recv_reply(
        &self,
        xid: u32,
        mac: &[u8; 6],
        until: Instant,
        clock: &dyn Clock,
    ) -> Result<Option<Reply>> {
        let mut buf = [0u8; 1500];
        loop {
            let now = clock.now();
            if now >= until {
                return Ok(None);
            }
            let wait = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.sock
                .set_read_timeout(Some(wait))
                .map_err(|e| self.err("set receive timeout", e))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(r) = msg::classify(&buf[..n], xid, mac) {
                        return Ok(Some(r));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.err("receive", e)),
            }
        }
    }
}

/// Runs DISCOVER → OFFER → REQUEST → ACK until a lease or `timeout`. A NAK to our REQUEST
/// starts over with a new DISCOVER while time remains.
pub fn acquire(
    sock: &DhcpSocket,
    mac: &[u8; 6],
    opts: ClientOpts<'_>,
    clock: &dyn Clock,
    timeout: Duration,
) -> Result<Lease> {
    let start = clock.now();
    let deadline = crate::wait::deadline(start, timeout);
    let mut last_nak: Option<(Ipv4Addr, String)> = None;
    let mut attempt = 0u32;
    while clock.now() < deadline {
        let xid = new_xid(mac, attempt);
        sock.send(&msg::discover(xid, mac, opts.ident()), Ipv4Addr::BROADCAST)?;
        let wait_until =
            crate::wait::deadline(clock.now(), retransmit_delay(attempt)).min(deadline);
        attempt = attempt.saturating_add(1);
        let Some(Reply::Offer { offered, server }) =
            sock.recv_reply(xid, mac, wait_until, clock)?
        else {
            continue;
        };
        log::info!(
            "network: DHCP offer of {offered} from {server} on {}",
            sock.interface
        );
        // RFC 2131 table 5: the REQUEST answering an OFFER carries the OFFER's xid.
        let kind = RequestKind::Selecting { offered, server };
        match request(
            sock,
            mac,
            xid,
            kind,
            Ipv4Addr::BROADCAST,
            opts,
            clock,
            deadline,
            4,
        )? {
            Some(Ok(lease)) => return Ok(lease),
            Some(Err(text)) => {
                last_nak = Some((server, text));
                // A server that NAKs every REQUEST would otherwise get a DISCOVER back at
                // once, in a tight loop until the deadline: pause as for a retransmission.
                let now = clock.now();
                let pause = retransmit_delay(attempt).min(deadline.saturating_duration_since(now));
                std::thread::sleep(pause);
            }
            None => last_nak = Some((server, "no DHCPACK to the REQUEST".to_string())),
        }
    }
    match last_nak {
        Some((server, detail)) => Err(NetError::DhcpNoAck {
            interface: sock.interface.clone(),
            server,
            detail,
        }),
        None => Err(NetError::DhcpNoOffer {
            interface: sock.interface.clone(),
            waited: timeout,
        }),
    }
}

/// Renews (unicast to `lease.server`) or rebinds (broadcast) until `until`.
/// `Ok(Some(Ok(lease)))` on ACK, `Ok(Some(Err(text)))` on NAK (the lease is void),
/// `Ok(None)` if nobody answered in time.
pub fn extend(
    sock: &DhcpSocket,
    mac: &[u8; 6],
    lease: &Lease,
    rebinding: bool,
    opts: ClientOpts<'_>,
    clock: &dyn Clock,
    until: Instant,
) -> Result<Option<std::result::Result<Lease, String>>> {
    let (kind, to) = if rebinding {
        (
            RequestKind::Rebinding {
                ciaddr: lease.address,
            },
            Ipv4Addr::BROADCAST,
        )
    } else {
        (
            RequestKind::Renewing {
                ciaddr: lease.address,
            },
            lease.server,
        )
    };
    let xid = new_xid(mac, u32::from(rebinding) | 0x8000_0000);
    request(sock, mac, xid, kind, to, opts, clock, until, u32::MAX)
}

#[allow(clippy::too_many_arguments)]
/// Sends the REQUEST (same xid on every retransmission, so a late answer to an earlier copy
/// still counts) until an ACK/NAK, `max_attempts` or `deadline`.
fn request(
    sock: &DhcpSocket,
    mac: &[u8; 6],
    xid: u32,
    kind: RequestKind,
    to: Ipv4Addr,
    opts: ClientOpts<'_>,
    clock: &dyn Clock,
    deadline: Instant,
    max_attempts: u32,
) -> Result<Option<std::result::Result<Lease, String>>> {
    let mut attempt = 0u32;
    while attempt < max_attempts && clock.now() < deadline {
        let sent = clock.now();
        sock.send(&msg::request(xid, mac, kind, opts.ident()), to)?;
        let wait_until = crate::wait::deadline(sent, retransmit_delay(attempt)).min(deadline);
        attempt = attempt.saturating_add(1);
        match sock.recv_reply(xid, mac, wait_until, clock)? {
            Some(Reply::Ack { msg, refused }) => match Lease::from_ack(&msg, sent, opts.limits) {
                Ok(mut l) => {
                    l.refused.extend(refused);
                    return Ok(Some(Ok(l)));
                }
                Err(e) => log::warn!(
                    "DHCP on {}: ignoring a bad ACK: {}",
                    sock.interface,
                    super::names::escape(e.as_bytes())
                ),
            },
            Some(Reply::Nak { text, .. }) => {
                return Ok(Some(Err(format!(
                    "DHCPNAK{}",
                    text.map(|t| format!(": {t}")).unwrap_or_default()
                ))))
            }
            Some(Reply::Offer { .. }) | None => {}
        }
    }
    Ok(None)
}

/// A transaction id that differs per client and per attempt; it only has to avoid matching
/// some other client's exchange on the same segment.
fn new_xid(mac: &[u8; 6], attempt: u32) -> u32 {
    let t = crate::state::boottime_ms().unwrap_or(0);
    let mut h: u32 = 0x811c_9dc5;
    for b in mac
        .iter()
        .copied()
        .chain(t.to_le_bytes())
        .chain(attempt.to_le_bytes())
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h ^ std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmits_back_off_and_cap() {
        let d: Vec<u64> = (0..6).map(|a| retransmit_delay(a).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(retransmit_delay(u32::MAX), Duration::from_secs(8));
    }

    #[test]
    fn xids_vary_by_attempt() {
        let mac = [2, 0, 0, 0, 0, 1];
        assert_ne!(new_xid(&mac, 0), new_xid(&mac, 1));
    }
}
