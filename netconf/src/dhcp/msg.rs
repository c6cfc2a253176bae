//! DHCPv4 messages this client sends (RFC 2131 §4.4.1 table 5) and the classification of what
//! comes back. Pure: builds and reads `dhcproto` messages, no sockets.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

/// What the client asks servers for.
const PARAMS: [OptionCode; 7] = [
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::DomainName,
    OptionCode::Hostname,
    OptionCode::InterfaceMtu,
    OptionCode::AddressLeaseTime,
];

/// Which REQUEST (RFC 2131 §4.3.2 distinguishes them by ciaddr, option 50 and option 54).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Answering an OFFER: requested address and server id set, ciaddr zero, broadcast.
    Selecting { offered: Ipv4Addr, server: Ipv4Addr },
    /// T1..T2, unicast to the server: ciaddr set, no option 50/54.
    Renewing { ciaddr: Ipv4Addr },
    /// T2..expiry, broadcast: ciaddr set, no option 50/54.
    Rebinding { ciaddr: Ipv4Addr },
}

fn base(xid: u32, mac: &[u8; 6], kind: MessageType, broadcast: bool) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_chaddr(mac)
        .set_flags(if broadcast {
            Flags::default().set_broadcast()
        } else {
            Flags::default()
        });
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8]; // htype ethernet, then the MAC (RFC 2132 §9.14)
    client_id.extend_from_slice(mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::ParameterRequestList(PARAMS.to_vec()));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    m
}

/// DHCPDISCOVER. The broadcast flag asks for broadcast replies: until the address is
/// configured the kernel would drop a unicast reply to it.
pub fn discover(xid: u32, mac: &[u8; 6], hostname: Option<&str>) -> Message {
    let mut m = base(xid, mac, MessageType::Discover, true);
    if let Some(h) = hostname {
        m.opts_mut().insert(DhcpOption::Hostname(h.to_string()));
    }
    m
}

pub fn request(xid: u32, mac: &[u8; 6], kind: RequestKind, hostname: Option<&str>) -> Message {
    let mut m = match kind {
        RequestKind::Selecting { offered, server } => {
            let mut m = base(xid, mac, MessageType::Request, true);
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(offered));
            m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
            m
        }
        RequestKind::Renewing { ciaddr } => {
            let mut m = base(xid, mac, MessageType::Request, false);
            m.set_ciaddr(ciaddr);
            m
        }
        RequestKind::Rebinding { ciaddr } => {
            let mut m = base(xid, mac, MessageType::Request, true);
            m.set_ciaddr(ciaddr);
            m
        }
    };
    if let Some(h) = hostname {
        m.opts_mut().insert(DhcpOption::Hostname(h.to_string()));
    }
    m
}

pub fn encode(m: &Message) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(548);
    m.encode(&mut Encoder::new(&mut buf))
        .map_err(|e| format!("cannot encode DHCP message: {e}"))?;
    Ok(buf)
}

/// A reply to one of our messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Offer {
        offered: Ipv4Addr,
        server: Ipv4Addr,
    },
    Ack(Box<Message>),
    Nak {
        server: Option<Ipv4Addr>,
        text: Option<String>,
    },
}

/// Decodes a datagram; `None` unless it is a BOOTREPLY for our `xid` and `mac` of a kind we
/// act on (other clients' traffic and junk on port 68 are dropped silently).
pub fn classify(bytes: &[u8], xid: u32, mac: &[u8; 6]) -> Option<Reply> {
    let m = Message::decode(&mut Decoder::new(bytes)).ok()?;
    if m.opcode() != Opcode::BootReply || m.xid() != xid || m.chaddr().get(..6)? != mac {
        return None;
    }
    let server = match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    };
    match m.opts().msg_type()? {
        MessageType::Offer => Some(Reply::Offer {
            offered: m.yiaddr(),
            server: server?,
        }),
        MessageType::Ack => Some(Reply::Ack(Box::new(m))),
        MessageType::Nak => {
            let text = match m.opts().get(OptionCode::Message) {
                Some(DhcpOption::Message(t)) => Some(t.clone()),
                _ => None,
            };
            Some(Reply::Nak { server, text })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn reply(of: &Message, kind: MessageType, yiaddr: Ipv4Addr) -> Vec<u8> {
        let mut r = of.clone();
        r.set_opcode(Opcode::BootReply).set_yiaddr(yiaddr);
        r.opts_mut().clear();
        r.opts_mut().insert(DhcpOption::MessageType(kind));
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        encode(&r).unwrap()
    }

    #[test]
    fn discover_round_trips_and_asks_for_broadcast() {
        let d = discover(7, &MAC, Some("vm1"));
        let bytes = encode(&d).unwrap();
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(back.xid(), 7);
        assert!(back.flags().broadcast());
        assert_eq!(back.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(&back.chaddr()[..6], &MAC);
        assert!(back.opts().contains(OptionCode::ParameterRequestList));
    }

    #[test]
    fn requests_differ_by_state() {
        let offered = Ipv4Addr::new(10, 0, 2, 15);
        let server = Ipv4Addr::new(10, 0, 2, 2);
        let s = request(1, &MAC, RequestKind::Selecting { offered, server }, None);
        assert!(s.ciaddr().is_unspecified());
        assert!(s.opts().contains(OptionCode::RequestedIpAddress));
        assert!(s.opts().contains(OptionCode::ServerIdentifier));
        let r = request(1, &MAC, RequestKind::Renewing { ciaddr: offered }, None);
        assert_eq!(r.ciaddr(), offered);
        assert!(!r.flags().broadcast());
        assert!(!r.opts().contains(OptionCode::ServerIdentifier));
        assert!(!r.opts().contains(OptionCode::RequestedIpAddress));
        let b = request(1, &MAC, RequestKind::Rebinding { ciaddr: offered }, None);
        assert!(b.flags().broadcast());
    }

    #[test]
    fn classify_filters_foreign_replies() {
        let d = discover(42, &MAC, None);
        let offer = reply(&d, MessageType::Offer, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(
            classify(&offer, 42, &MAC),
            Some(Reply::Offer {
                offered: Ipv4Addr::new(10, 0, 2, 15),
                server: Ipv4Addr::new(10, 0, 2, 2)
            })
        );
        assert_eq!(classify(&offer, 43, &MAC), None, "other xid");
        assert_eq!(
            classify(&offer, 42, &[1, 2, 3, 4, 5, 6]),
            None,
            "other client"
        );
        assert_eq!(
            classify(&encode(&d).unwrap(), 42, &MAC),
            None,
            "our own request"
        );
        assert_eq!(classify(&[1, 2, 3], 42, &MAC), None, "junk");
        let nak = reply(&d, MessageType::Nak, Ipv4Addr::UNSPECIFIED);
        assert!(matches!(classify(&nak, 42, &MAC), Some(Reply::Nak { .. })));
        let ack = reply(&d, MessageType::Ack, Ipv4Addr::new(10, 0, 2, 15));
        assert!(matches!(classify(&ack, 42, &MAC), Some(Reply::Ack(_))));
    }
}
