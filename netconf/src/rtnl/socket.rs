//! rtnetlink request/response plumbing over a `netlink-sys` socket: one request at a time,
//! matched to its replies by sequence number, acknowledged (`NLM_F_ACK`) or dumped
//! (`NLM_F_DUMP`). Also the link-event monitor (RTNLGRP_LINK multicast) the wait loops poll.
//! Owns no policy: the typed operations live in `ops.rs`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

/// Big enough for any single datagram of a link dump (the kernel sizes dump parts to fit
/// the reader's buffer up to 32 KiB).
const RECV_BUF: usize = 64 * 1024;
/// A kernel that does not answer an rtnetlink request within this is broken; PID 1 must not
/// hang on it forever.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// `RTNLGRP_LINK` (linux/rtnetlink.h): link created, deleted, flags or carrier changed.
const RTNLGRP_LINK: u32 = 1;

/// A synchronous rtnetlink request socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        crate::sys::set_recv_timeout(&sock, REPLY_TIMEOUT)?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends `msg` with `NLM_F_ACK` and waits for the kernel's verdict.
    pub fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags | NLM_F_ACK).map(drop)
    }

    /// Sends a dump request and collects every reply until `NLMSG_DONE`.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut out = vec![0; nl.buffer_len()];
        nl.serialize(&mut out);
        let kernel = SocketAddr::new(0, 0);
        self.sock.send_to(&out, &kernel, 0)?;

        let mut replies = Vec::new();
        loop {
            let n = {
                let mut slice: &mut [u8] = &mut self.buf[..];
                self.sock.recv(&mut slice, 0)?
            };
            let mut rest = self.buf.get(..n).unwrap_or(&self.buf);
            while !rest.is_empty() {
                let len = NetlinkBuffer::new_checked(rest)
                    .map(|b| b.length() as usize)
                    .map_err(|e| invalid(format!("bad netlink header: {e}")))?;
                if len == 0 || len > rest.len() {
                    return Err(invalid(format!(
                        "netlink message length {len} out of bounds"
                    )));
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
                    .map_err(|e| invalid(format!("cannot parse rtnetlink reply: {e}")))?;
                // Messages are 4-byte aligned; the last one's padding may be missing.
                rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
                if parsed.header.sequence_number != seq {
                    continue; // a late reply to an earlier, timed-out request
                }
                match parsed.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }
}

/// A socket subscribed to link events. Subscribing before reading the state, then re-reading
/// the state after every wake-up, means no event between the two can be missed.
pub struct LinkMonitor {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkMonitor {
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.add_membership(RTNLGRP_LINK)?;
        sock.set_non_blocking(true)?;
        Ok(LinkMonitor {
            sock,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sleeps until a link event arrives or `timeout` passes; drains whatever is queued.
    /// Returns whether anything arrived. The events themselves are not decoded: the caller
    /// re-reads the state it cares about, which also covers an overrun (ENOBUFS).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if !crate::sys::poll_readable(&self.sock, timeout)? {
            return Ok(false);
        }
        self.drain()?;
        Ok(true)
    }

    /// Reads and drops every queued event (an overrun, ENOBUFS, counts as drained: the
    /// caller re-reads the state anyway).
    pub fn drain(&mut self) -> io::Result<()> {
        loop {
            let mut slice: &mut [u8] = &mut self.buf[..];
            match self.sock.recv(&mut slice, 0) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for LinkMonitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
