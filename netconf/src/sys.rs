//! The crate's only system calls beyond what `std` (files, the DHCP UDP socket) and
//! `netlink-sys` (the rtnetlink sockets) wrap: the ARP packet socket (`socket`, `bind`,
//! `sendto`, `recv`), `poll` on sockets, the network thread's stop `pipe`, two socket
//! options (`SO_BINDTODEVICE`, `SO_RCVTIMEO`), `sethostname` and
//! `clock_gettime(CLOCK_BOOTTIME)`. Every wrapper returns `io::Error` with the errno and
//! retries nothing but EINTR where it says so: the caller decides.
//!
//! # Safety
//!
//! The calls go through `rustix`'s safe functions (and `nix`'s for `SO_BINDTODEVICE`,
//! which rustix lacks), which take file descriptors as `AsFd` borrows that outlive each
//! call and buffers as slices with their true length. The one `unsafe` item is the
//! implementation of rustix's `SocketAddrArg` for [`PacketAddr`] (a `sockaddr_ll`, which
//! rustix does not model): it hands the kernel a pointer to a fully initialised
//! `libc::sockaddr_ll` on the stack of `with_sockaddr`, with exactly its size, valid for
//! the duration of the closure, and the kernel keeps no reference after the call.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::addr::{SocketAddrArg, SocketAddrLen, SocketAddrOpaque};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// `ETH_P_ARP` (linux/if_ether.h).
pub const ETH_P_ARP: u16 = 0x0806;

/// A link-layer address (`sockaddr_ll`, packet(7)) for an `AF_PACKET` socket carrying ARP:
/// the interface, and the destination MAC when sending.
#[derive(Debug, Clone, Copy)]
pub struct PacketAddr {
    pub ifindex: i32,
    pub dest: Option<[u8; 6]>,
}

// SAFETY: `with_sockaddr` builds a complete `sockaddr_ll` (zeroed, then every field the
// kernel reads set) on its own stack and calls `f` with a pointer to it and its exact size
// (20 bytes, which fits `SocketAddrLen`); the pointer is valid for reads for the whole call
// of `f`, which is all the trait requires.
unsafe impl SocketAddrArg for PacketAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(*const SocketAddrOpaque, SocketAddrLen) -> R,
    ) -> R {
        // SAFETY: sockaddr_ll is a plain C struct of integers and byte arrays: all-zero is a
        // valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        sa.sll_protocol = ETH_P_ARP.to_be();
        sa.sll_ifindex = self.ifindex;
        if let Some(d) = self.dest {
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&d);
        }
        let len = SocketAddrLen::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(20);
        f(std::ptr::from_ref(&sa).cast(), len)
    }
}

/// socket(2) + bind(2): an `AF_PACKET`/`SOCK_DGRAM` socket for ARP, bound to `ifindex`.
pub fn arp_socket(ifindex: i32) -> io::Result<OwnedFd> {
    // rustix::net::eth::ARP: ETH_P_ARP in network byte order, as packet(7) wants it.
    let fd = rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(rustix::net::eth::ARP),
    )?;
    rustix::net::bind(
        &fd,
        &PacketAddr {
            ifindex,
            dest: None,
        },
    )?;
    Ok(fd)
}

/// sendto(2): one datagram to `to` on a packet socket.
pub fn send_packet(fd: impl AsFd, frame: &[u8], to: &PacketAddr) -> io::Result<()> {
    rustix::net::sendto(fd, frame, SendFlags::empty(), to)?;
    Ok(())
}

/// recv(2) with `MSG_DONTWAIT`: `Ok(None)` when nothing is queued (or a signal interrupted).
pub fn recv_nowait(fd: impl AsFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
        Ok((n, _)) => Ok(Some(n.min(buf.len()))),
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// poll(2) for input on one socket: `Ok(true)` when readable, `Ok(false)` after `timeout`
/// or when a signal interrupted the wait.
pub fn poll_readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    // Rounded up to the next millisecond, as poll(2)'s own timeout would be, so a wait is
    // never shorter than asked.
    let ts =
        Timespec::try_from(timeout.saturating_add(Duration::from_millis(1))).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// poll(2) on two descriptors: which of them is ready (readable, or hung up), both false
/// after `timeout` or when a signal interrupted the wait.
pub fn poll_either(a: impl AsFd, b: impl AsFd, timeout: Duration) -> io::Result<(bool, bool)> {
    let mut fds = [
        PollFd::new(&a, PollFlags::IN),
        PollFd::new(&b, PollFlags::IN),
    ];
    let ts = timespec(timeout);
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(_) => Ok((!fds[0].revents().is_empty(), !fds[1].revents().is_empty())),
        Err(rustix::io::Errno::INTR) => Ok((false, false)),
        Err(e) => Err(e.into()),
    }
}

/// pipe2(2) with `O_CLOEXEC`: (read end, write end). Closing every write end makes the read
/// end report POLLHUP, which is how the network thread hears "stop".
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// setsockopt(2) `SO_BINDTODEVICE` (socket(7)): send out of and receive only from `name`.
pub fn bind_to_device(fd: &impl AsFd, name: &str) -> io::Result<()> {
    nix::sys::socket::setsockopt(
        fd,
        nix::sys::socket::sockopt::BindToDevice,
        &OsString::from(name),
    )
    .map_err(io::Error::from)
}

/// `timeout` for poll(2), plus a millisecond so that a wait is never shorter than asked (the
/// caller's deadline has passed when poll returns); an unrepresentable one is "very long".
fn timespec(timeout: Duration) -> Timespec {
    Timespec::try_from(timeout.saturating_add(Duration::from_millis(1))).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

/// setsockopt(2) `SO_RCVTIMEO` (socket(7)): a blocking receive fails with `EAGAIN` after
/// `timeout`.
pub fn set_recv_timeout(fd: impl AsFd, timeout: Duration) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(
        fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(timeout),
    )?;
    Ok(())
}

/// sethostname(2) on the UTS namespace of the calling thread.
pub fn sethostname(name: &str) -> io::Result<()> {
    rustix::system::sethostname(name.as_bytes())?;
    Ok(())
}

/// clock_gettime(2) `CLOCK_BOOTTIME`: time since kernel start, suspend included.
pub fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos.min(999_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_moves_forward() {
        let a = boottime();
        let b = boottime();
        assert!(a > Duration::ZERO && b >= a);
    }

    #[test]
    fn poll_times_out_on_a_quiet_socket() {
        let (a, _b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        assert!(!poll_readable(&a, Duration::from_millis(10)).unwrap());
        let mut buf = [0u8; 4];
        assert_eq!(recv_nowait(&a, &mut buf).unwrap(), None);
        rustix::net::send(&_b, b"hi", SendFlags::empty()).unwrap();
        assert!(poll_readable(&a, Duration::from_secs(5)).unwrap());
        assert_eq!(recv_nowait(&a, &mut buf).unwrap(), Some(2));
    }

    #[test]
    fn a_closed_pipe_wakes_poll() {
        let (r, w) = pipe().unwrap();
        let (r2, _w2) = pipe().unwrap();
        assert_eq!(
            poll_either(&r, &r2, Duration::from_millis(10)).unwrap(),
            (false, false)
        );
        drop(w);
        assert_eq!(
            poll_either(&r, &r2, Duration::from_secs(5)).unwrap(),
            (true, false)
        );
    }
}
