//! DHCPv4 messages this client sends (RFC 2131 §4.4.1 table 5) and the classification of what
//! comes back. Pure: builds and reads `dhcproto` messages, no sockets.

use std::borrow::Cow;
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

/// Option 61 as sent when the plan names none: hardware type 1 (Ethernet), then the MAC.
pub fn default_client_id(mac: &[u8; 6]) -> Vec<u8> {
    let mut id = Vec::with_capacity(7);
    id.push(1);
    id.extend_from_slice(mac);
    id
}

/// Options every message of this client carries, whatever its kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ident<'a> {
    /// Option 12.
    pub hostname: Option<&'a str>,
    /// Option 61's payload (type byte, then value); `None`: [`default_client_id`]. The same
    /// in every message of a lease's life: servers key leases on it (RFC 2131 §4.2).
    pub client_id: Option<&'a [u8]>,
}

fn base(xid: u32, mac: &[u8; 6], kind: MessageType, broadcast: bool, id: Ident<'_>) -> Message {
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
    let client_id = id
        .client_id
        .map_or_else(|| default_client_id(mac), <[u8]>::to_vec);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::ParameterRequestList(PARAMS.to_vec()));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    if let Some(h) = id.hostname {
        opts.insert(DhcpOption::Hostname(h.to_string()));
    }
    m
}

/// DHCPDISCOVER. The broadcast flag asks for broadcast replies: until the address is
/// configured the kernel would drop a unicast reply to it.
pub fn discover(xid: u32, mac: &[u8; 6], id: Ident<'_>) -> Message {
    base(xid, mac, MessageType::Discover, true, id)
}

pub fn request(xid: u32, mac: &[u8; 6], kind: RequestKind, id: Ident<'_>) -> Message {
    match kind {
        RequestKind::Selecting { offered, server } => {
            let mut m = base(xid, mac, MessageType::Request, true, id);
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(offered));
            m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
            m
        }
        RequestKind::Renewing { ciaddr } => {
            let mut m = base(xid, mac, MessageType::Request, false, id);
            m.set_ciaddr(ciaddr);
            m
        }
        RequestKind::Rebinding { ciaddr } => {
            let mut m = base(xid, mac, MessageType::Request, true, id);
            m.set_ciaddr(ciaddr);
            m
        }
    }
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
    /// `refused`: the string options set aside before decoding (see [`quarantine_non_utf8`]).
    Ack {
        msg: Box<Message>,
        refused: Vec<String>,
    },
    Nak {
        server: Option<Ipv4Addr>,
        text: Option<String>,
    },
}

/// Decodes a datagram; `None` unless it is a BOOTREPLY for our `xid` and `mac` of a kind we
/// act on (other clients' traffic and junk on port 68 are dropped silently).
pub fn classify(bytes: &[u8], xid: u32, mac: &[u8; 6]) -> Option<Reply> {
    let (bytes, refused) = quarantine_non_utf8(bytes);
    let m = Message::decode(&mut Decoder::new(&bytes)).ok()?;
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
        MessageType::Ack => Some(Reply::Ack {
            msg: Box::new(m),
            refused,
        }),
        MessageType::Nak => {
            let text = match m.opts().get(OptionCode::Message) {
                // The server's text goes to the console and /health: escaped here, once.
                Some(DhcpOption::Message(t)) => Some(super::names::escape(t.as_bytes())),
                _ => None,
            };
            Some(Reply::Nak { server, text })
        }
        _ => None,
    }
}

/// Where the options start: the fixed BOOTP header (236 bytes), then the magic cookie (4).
const OPTIONS_AT: usize = 240;
/// A site-specific code (RFC 3942: 224 to 254) that the decoder keeps as an unknown option
/// and nothing here reads.
const QUARANTINE: u8 = 254;

/// String options (host name 12, domain name 15, message 56) whose bytes are not UTF-8 are
/// set aside before decoding: `dhcproto` stops reading options at the first one it cannot
/// decode, which would lose every option after it (lease time, server id) and with them the
/// whole ACK. Their code is changed to [`QUARANTINE`], and each is described, escaped, for
/// the log. Returns the bytes to decode (borrowed when nothing was changed).
pub fn quarantine_non_utf8(bytes: &[u8]) -> (Cow<'_, [u8]>, Vec<String>) {
    let mut out = Cow::Borrowed(bytes);
    let mut refused = Vec::new();
    let mut i = OPTIONS_AT;
    while let Some(&code) = bytes.get(i) {
        match code {
            0 => {
                i = i.saturating_add(1);
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = bytes.get(i.saturating_add(1)) else {
            break;
        };
        let start = i.saturating_add(2);
        let end = start.saturating_add(usize::from(len));
        let Some(value) = bytes.get(start..end) else {
            break; // truncated: the decoder drops it too
        };
        let what = match code {
            12 => Some("host name (option 12)"),
            15 => Some("domain name (option 15)"),
            56 => Some("message (option 56)"),
            _ => None,
        };
        if let Some(what) = what {
            if std::str::from_utf8(value).is_err() {
                if let Some(c) = out.to_mut().get_mut(i) {
                    *c = QUARANTINE;
                }
                refused.push(format!(
                    "{what} \"{}\": not UTF-8",
                    super::names::escape(value)
                ));
            }
        }
        i = end;
    }
    (out, refused)
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
        let d = discover(
            7,
            &MAC,
            Ident {
                hostname: Some("vm1"),
                client_id: None,
            },
        );
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
        let s = request(
            1,
            &MAC,
            RequestKind::Selecting { offered, server },
            Ident::default(),
        );
        assert!(s.ciaddr().is_unspecified());
        assert!(s.opts().contains(OptionCode::RequestedIpAddress));
        assert!(s.opts().contains(OptionCode::ServerIdentifier));
        let r = request(
            1,
            &MAC,
            RequestKind::Renewing { ciaddr: offered },
            Ident::default(),
        );
        assert_eq!(r.ciaddr(), offered);
        assert!(!r.flags().broadcast());
        assert!(!r.opts().contains(OptionCode::ServerIdentifier));
        assert!(!r.opts().contains(OptionCode::RequestedIpAddress));
        let b = request(
            1,
            &MAC,
            RequestKind::Rebinding { ciaddr: offered },
            Ident::default(),
        );
        assert!(b.flags().broadcast());
    }

    /// Option 61 of `m` as it goes on the wire.
    fn client_id_sent(m: &Message) -> Vec<u8> {
        let bytes = encode(m).unwrap();
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        match back.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) => id.clone(),
            other => panic!("no client identifier: {other:?}"),
        }
    }

    #[test]
    fn the_planned_client_id_goes_in_every_message() {
        let ours: &[u8] = b"\x00vm-42";
        let id = Ident {
            hostname: None,
            client_id: Some(ours),
        };
        let ciaddr = Ipv4Addr::new(10, 0, 2, 15);
        let server = Ipv4Addr::new(10, 0, 2, 2);
        let all = [
            discover(1, &MAC, id),
            request(
                1,
                &MAC,
                RequestKind::Selecting {
                    offered: ciaddr,
                    server,
                },
                id,
            ),
            request(1, &MAC, RequestKind::Renewing { ciaddr }, id),
            request(1, &MAC, RequestKind::Rebinding { ciaddr }, id),
        ];
        for m in &all {
            assert_eq!(client_id_sent(m), ours, "{:?}", m.opts().msg_type());
        }
        // Without one: hardware type 1 and the MAC, as before.
        let d = discover(1, &MAC, Ident::default());
        assert_eq!(client_id_sent(&d), [1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn classify_filters_foreign_replies() {
        let d = discover(42, &MAC, Ident::default());
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
        assert!(matches!(classify(&ack, 42, &MAC), Some(Reply::Ack { .. })));
    }

    #[test]
    fn a_non_utf8_string_option_is_set_aside_and_the_rest_still_read() {
        let d = discover(42, &MAC, Ident::default());
        let mut r = d.clone();
        r.set_opcode(Opcode::BootReply)
            .set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        r.opts_mut().clear();
        let mut bytes = encode(&r).unwrap();
        // Options by hand, in the order a hostile server picks: the bad host name first.
        bytes.truncate(OPTIONS_AT);
        bytes.extend_from_slice(&[12, 4, b'v', 0xff, b'\x1b', b'm']);
        bytes.extend_from_slice(&[53, 1, 5]); // ACK
        bytes.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
        bytes.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]);
        bytes.push(255);
        let Some(Reply::Ack { msg, refused }) = classify(&bytes, 42, &MAC) else {
            panic!("the ACK was lost")
        };
        assert_eq!(
            refused,
            vec!["host name (option 12) \"v\\xff\\x1bm\": not UTF-8"]
        );
        assert!(msg.opts().get(OptionCode::AddressLeaseTime).is_some());
        assert!(msg.opts().get(OptionCode::Hostname).is_none());
        // Without the quarantine the decoder loses everything after the bad option.
        let plain = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(plain.opts().msg_type(), None);
        // Junk and truncation never panic.
        for n in 0..bytes.len() {
            let _ = quarantine_non_utf8(&bytes[..n]);
        }
        let mut long = bytes.clone();
        long.truncate(242);
        long.push(200);
        assert_eq!(quarantine_non_utf8(&long).1.len(), 0);
    }
}
