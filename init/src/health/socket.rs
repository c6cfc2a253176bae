//! The health server's sockets: TCP (mio's) and AF_VSOCK (vsock(7), `VMADDR_CID_ANY:PORT`),
//! behind one listener enum and one stream enum, so the server keeps a single code path for
//! bounds, deadlines and answers whichever way a host reaches the guest.
//!
//! mio has no vsock type; the vsock fds are made with nix (`socket(2)`, `bind(2)`,
//! `listen(2)`) and rustix (`accept4(2)`, `read(2)`, `write(2)`, `shutdown(2)`), whose
//! wrappers are safe, and registered with mio through [`SourceFd`]: no `unsafe` here.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use guest_config::Listener;
use mio::event::Source;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::socket::{self as nixsock, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};

/// `VMADDR_CID_ANY`: accept connections to any of the guest's CIDs.
const VMADDR_CID_ANY: u32 = u32::MAX;
const VSOCK_BACKLOG: i32 = 128;

/// A bound, listening socket.
pub enum ListenSock {
    Tcp(TcpListener),
    Vsock(OwnedFd),
}

/// Why a listener could not be opened. `NoVsockDevice` is not a fault: the VM simply has no
/// vsock device (or the kernel no vsock support), which the operator gets as one info line.
#[derive(Debug)]
pub enum BindError {
    NoVsockDevice(io::Error),
    Failed {
        listener: Listener,
        source: io::Error,
    },
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::NoVsockDevice(e) => write!(
                f,
                "no vsock device: {e}; the health endpoint is not served over vsock"
            ),
            BindError::Failed { listener, source } => {
                write!(f, "health endpoint: cannot listen on {listener}: {source}")
            }
        }
    }
}

fn io_err(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl ListenSock {
    pub fn bind(listener: Listener) -> Result<ListenSock, BindError> {
        let failed = |source| BindError::Failed { listener, source };
        match listener {
            Listener::Tcp(addr) => TcpListener::bind(addr).map(ListenSock::Tcp).map_err(failed),
            Listener::Vsock(port) => bind_vsock(port).map(ListenSock::Vsock).map_err(|e| {
                // EAFNOSUPPORT: no vsock module (nothing loaded it: no device); ENODEV or
                // EADDRNOTAVAIL: vsock core without a guest transport.
                match e.raw_os_error() {
                    Some(libc::EAFNOSUPPORT | libc::ENODEV | libc::EADDRNOTAVAIL) => {
                        BindError::NoVsockDevice(e)
                    }
                    _ => failed(e),
                }
            }),
        }
    }

    /// The listener as an operator writes it, with the real port when 0 was asked for.
    pub fn describe(&self, asked: Listener) -> String {
        match self {
            ListenSock::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| asked.to_string(), |a| a.to_string()),
            ListenSock::Vsock(_) => asked.to_string(),
        }
    }

    /// Accepts one connection; `WouldBlock` when none is queued.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            ListenSock::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            ListenSock::Vsock(fd) => {
                let flags = rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC;
                rustix::net::accept_with(fd, flags)
                    .map(Stream::Vsock)
                    .map_err(io::Error::from)
            }
        }
    }
}

fn bind_vsock(port: u32) -> io::Result<OwnedFd> {
    let fd = nixsock::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io_err)?;
    nixsock::bind(fd.as_raw_fd(), &VsockAddr::new(VMADDR_CID_ANY, port)).map_err(io_err)?;
    let backlog = Backlog::new(VSOCK_BACKLOG).map_err(io_err)?;
    nixsock::listen(&fd, backlog).map_err(io_err)?;
    Ok(fd)
}

/// One accepted connection.
pub enum Stream {
    Tcp(TcpStream),
    Vsock(OwnedFd),
}

impl Stream {
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Vsock(fd) => {
                rustix::net::shutdown(fd, rustix::net::Shutdown::Write).map_err(io::Error::from)
            }
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Vsock(fd) => rustix::io::read(fd.as_fd(), buf).map_err(io::Error::from),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Vsock(fd) => rustix::io::write(fd.as_fd(), buf).map_err(io::Error::from),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Registration by fd for the vsock variants; mio's own for TCP.
macro_rules! delegate_source {
    ($ty:ident) => {
        impl Source for $ty {
            fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.register(r, t, i),
                    $ty::Vsock(fd) => SourceFd(&fd.as_raw_fd()).register(r, t, i),
                }
            }
            fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.reregister(r, t, i),
                    $ty::Vsock(fd) => SourceFd(&fd.as_raw_fd()).reregister(r, t, i),
                }
            }
            fn deregister(&mut self, r: &Registry) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.deregister(r),
                    $ty::Vsock(fd) => SourceFd(&fd.as_raw_fd()).deregister(r),
                }
            }
        }
    };
}
delegate_source!(ListenSock);
delegate_source!(Stream);
