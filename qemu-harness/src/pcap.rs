//! Reads the pcap files QEMU's `filter-dump` writes ([`crate::VmBuilder::capture_nic`]):
//! the classic format (a 24-byte file header, then a 16-byte header per frame), either byte
//! order, Ethernet frames. Owns the file format and the ARP fields tests look at; what a
//! capture must contain is the tests' business.

use std::net::Ipv4Addr;

/// Every frame of a pcap capture, in order. A frame cut short by a capture still being
/// written ends the list; a file that is not pcap (or not yet its header) has no frames.
pub fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let Some(magic) = bytes.get(..4) else {
        return Vec::new();
    };
    let u32_at = |b: &[u8], at: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => u32::from_le_bytes(w),
            _ => u32::from_be_bytes(w),
        } as usize)
    };
    if !matches!(magic, [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4]) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut at = 24;
    // Record header: seconds, microseconds, captured length, original length.
    while let Some(len) = u32_at(bytes, at + 8) {
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else {
            break;
        };
        out.push(frame);
        at += 16 + len;
    }
    out
}

/// An ARP frame's operation (1 request, 2 reply), sender and target addresses; `None` for
/// anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

pub fn arp(frame: &[u8]) -> Option<Arp> {
    if frame.get(12..14)? != [0x08, 0x06] {
        return None;
    }
    let a = frame.get(14..42)?;
    let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
    Some(Arp {
        op: u16::from_be_bytes([a[6], a[7]]),
        sender_mac: a[8..14].try_into().ok()?,
        sender_ip: ip(14),
        target_ip: ip(24),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arp_frame(op: u16, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06]);
        f.extend([0, 1, 8, 0, 6, 4]);
        f.extend(op.to_be_bytes());
        f.extend([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        f.extend(sender);
        f.extend([0; 6]);
        f.extend(target);
        f
    }

    fn pcap(frames: &[Vec<u8>], le: bool) -> Vec<u8> {
        let w = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut out = w(0xa1b2_c3d4).to_vec();
        out.extend([0; 20]);
        for f in frames {
            out.extend(w(1));
            out.extend(w(2));
            out.extend(w(f.len() as u32));
            out.extend(w(f.len() as u32));
            out.extend(f);
        }
        out
    }

    #[test]
    fn frames_in_either_byte_order_and_a_cut_last_one() {
        let a = arp_frame(1, [10, 0, 2, 15], [10, 0, 2, 15]);
        let b = arp_frame(2, [10, 0, 2, 2], [10, 0, 2, 15]);
        for le in [true, false] {
            let file = pcap(&[a.clone(), b.clone()], le);
            assert_eq!(frames(&file), [&a[..], &b[..]]);
            assert_eq!(
                frames(&file[..file.len() - 3]),
                [&a[..]],
                "cut while written"
            );
        }
        assert!(frames(b"not a pcap file at all, really").is_empty());
        assert!(frames(&[]).is_empty());
    }

    #[test]
    fn arp_fields() {
        let got = arp(&arp_frame(1, [10, 0, 2, 15], [10, 0, 2, 2])).unwrap();
        assert_eq!(got.op, 1);
        assert_eq!(got.sender_mac, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(got.sender_ip, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(got.target_ip, Ipv4Addr::new(10, 0, 2, 2));
        let mut ip = arp_frame(1, [1; 4], [2; 4]);
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(arp(&ip), None);
        assert_eq!(arp(&ip[..20]), None);
    }
}
