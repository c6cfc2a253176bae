//! ARP on an AF_PACKET socket (packet(7)): one bounded probe of the IPv4 gateway (RFC 826),
//! to tell "configured but the host bridge/TAP forwards nothing" apart from a working link,
//! and the announcement of an address just added (RFC 5227 section 2.3). Owns the frame
//! format and the socket; deciding when to send and what a silent gateway means is
//! `apply.rs`'s.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::sys;

const ETH_P_IP: u16 = 0x0800;
const ARP_LEN: usize = 28;

/// An ARP request "who has `target`? tell `sender_ip`" from `sender_mac`.
pub fn request_frame(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_LEN] {
    let mut f = [0u8; ARP_LEN];
    f[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[4] = 6;
    f[5] = 4;
    f[6..8].copy_from_slice(&1u16.to_be_bytes()); // op: request
    f[8..14].copy_from_slice(&sender_mac);
    f[14..18].copy_from_slice(&sender_ip.octets());
    // target hardware address stays zero
    f[24..28].copy_from_slice(&target.octets());
    f
}

/// An ARP announcement of `ip` from `mac`: a request with `ip` as both sender and target
/// (RFC 5227 section 2.3), which neighbours holding an entry for `ip` take as its new MAC.
pub fn announcement_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; ARP_LEN] {
    request_frame(mac, ip, ip)
}

/// Broadcasts one announcement of `ip` on `ifindex`; waits for nothing.
pub fn announce(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let sock = open(ifindex)?;
    send(&sock, ifindex, &announcement_frame(mac, ip))
}

/// The MAC of `target` if `frame` is an ARP reply from it.
pub fn reply_from(frame: &[u8], target: Ipv4Addr) -> Option<[u8; 6]> {
    let f = frame.get(..ARP_LEN)?;
    let is_reply = f[0..2] == 1u16.to_be_bytes()
        && f[2..4] == ETH_P_IP.to_be_bytes()
        && f[4] == 6
        && f[5] == 4
        && f[6..8] == 2u16.to_be_bytes();
    if !is_reply || f[14..18] != target.octets() {
        return None;
    }
    <[u8; 6]>::try_from(&f[8..14]).ok()
}

/// Asks for `gateway` and waits up to `timeout` for its answer (a second request goes out
/// half-way, in case the first met a bridge still learning). `Ok(None)`: nobody answered.
pub fn probe(
    ifindex: u32,
    mac: [u8; 6],
    our_ip: Ipv4Addr,
    gateway: Ipv4Addr,
    timeout: Duration,
) -> io::Result<Option<[u8; 6]>> {
    let sock = open(ifindex)?;
    let frame = request_frame(mac, our_ip, gateway);
    let start = Instant::now();
    let deadline = crate::wait::deadline(start, timeout);
    let mut resend_at = timeout
        .checked_div(2)
        .and_then(|half| start.checked_add(half));
    send(&sock, ifindex, &frame)?;
    let mut buf = [0u8; 256];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if resend_at.is_some_and(|t| now >= t) {
            send(&sock, ifindex, &frame)?;
            resend_at = None;
        }
        let until = resend_at.unwrap_or(deadline).min(deadline);
        if !sys::poll_readable(&sock, until.saturating_duration_since(now))? {
            continue;
        }
        let Some(n) = sys::recv_nowait(&sock, &mut buf)? else {
            continue;
        };
        if let Some(m) = buf.get(..n).and_then(|f| reply_from(f, gateway)) {
            return Ok(Some(m));
        }
    }
}

fn ifindex_c(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))
}

fn open(ifindex: u32) -> io::Result<OwnedFd> {
    sys::arp_socket(ifindex_c(ifindex)?)
}

fn send(sock: &OwnedFd, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    let to = sys::PacketAddr {
        ifindex: ifindex_c(ifindex)?,
        dest: Some([0xff; 6]),
    };
    sys::send_packet(sock, frame, &to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_frames() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let me = Ipv4Addr::new(10, 0, 2, 15);
        let gw = Ipv4Addr::new(10, 0, 2, 2);
        let req = request_frame(mac, me, gw);
        assert_eq!(&req[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&req[24..], &[10, 0, 2, 2]);
        // Our own request (as a packet socket sees outgoing frames) is not a reply.
        assert_eq!(reply_from(&req, gw), None);
        // The gateway's reply: op 2, sender = gateway.
        let gw_mac = [0x52, 0x55, 10, 0, 2, 2];
        let mut rep = request_frame(gw_mac, gw, me);
        rep[7] = 2;
        assert_eq!(reply_from(&rep, gw), Some(gw_mac));
        assert_eq!(reply_from(&rep, Ipv4Addr::new(10, 0, 2, 3)), None);
        assert_eq!(reply_from(&rep[..20], gw), None);
    }

    #[test]
    fn announcement_names_the_address_twice_and_no_target_mac() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let me = Ipv4Addr::new(10, 0, 2, 15);
        let a = announcement_frame(mac, me);
        assert_eq!(&a[..8], &[0, 1, 8, 0, 6, 4, 0, 1], "an ARP request");
        assert_eq!(&a[8..14], &mac);
        assert_eq!(&a[14..18], &me.octets(), "sender IP");
        assert_eq!(&a[18..24], &[0; 6], "target MAC unknown");
        assert_eq!(&a[24..28], &me.octets(), "target IP = sender IP");
        // Not a reply: the probe never mistakes our own announcement for the gateway.
        assert_eq!(reply_from(&a, me), None);
    }
}
