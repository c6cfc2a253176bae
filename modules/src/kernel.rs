//! The seams between the loader's decisions and the machine: the [`Kernel`]
//! trait (module loading) and the [`Clock`] trait (time), with their real
//! implementations. Tests substitute recording fakes for both.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Errno;
use crate::sys;
use crate::uevent::Uevent;

/// Flags for [`Kernel::finit_module`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitFlags {
    /// Ask the kernel to decompress the file (`MODULE_INIT_COMPRESSED_FILE`).
    pub compressed: bool,
}

/// Where a module load failed: opening the file, or in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelError {
    Open(Errno),
    Init(Errno),
}

pub trait Kernel {
    /// Load the module file at `path` with `params` (`a=1 b="x y"`).
    fn finit_module(
        &mut self,
        path: &Path,
        params: &str,
        flags: InitFlags,
    ) -> Result<(), KernelError>;

    /// Starts collecting device events; called before the first sysfs scan so that none is
    /// missed. `false` when there are none to collect: coldplug then rescans sysfs.
    fn watch_devices(&mut self) -> bool {
        false
    }

    /// The device events since the last call, in order, or `None` when some may have been
    /// lost (an overflow, a failed read) or nothing is watched: coldplug then rescans sysfs.
    fn device_events(&mut self) -> Option<Vec<Uevent>> {
        None
    }
}

/// The running kernel, through finit_module(2) and the uevent netlink socket.
#[derive(Debug, Default)]
pub struct SystemKernel {
    events: Option<sys::UeventSocket>,
}

/// Larger than any uevent (the kernel caps one at 2 KiB of environment plus its header).
const UEVENT_BUF: usize = 8192;

impl Kernel for SystemKernel {
    fn watch_devices(&mut self) -> bool {
        if self.events.is_none() {
            match sys::UeventSocket::open() {
                Ok(s) => self.events = Some(s),
                // Not fatal: coldplug rescans sysfs instead, as it always could.
                Err(e) => log::debug!("coldplug: no uevent socket ({e}); rescanning sysfs"),
            }
        }
        self.events.is_some()
    }

    fn device_events(&mut self) -> Option<Vec<Uevent>> {
        drain(self.events.as_ref()?)
    }

    fn finit_module(
        &mut self,
        path: &Path,
        params: &str,
        flags: InitFlags,
    ) -> Result<(), KernelError> {
        let file = File::open(path)
            .map_err(|e| KernelError::Open(Errno(e.raw_os_error().unwrap_or(libc::EIO))))?;
        let bits = if flags.compressed {
            sys::MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        sys::finit_module(&file, params, bits).map_err(|e| KernelError::Init(Errno(e)))
    }
}

/// Every event queued on `sock`, or `None` when some were lost (an overflow) or it failed.
fn drain(sock: &sys::UeventSocket) -> Option<Vec<Uevent>> {
    let mut buf = vec![0u8; UEVENT_BUF];
    let mut out = Vec::new();
    loop {
        match sock.recv(&mut buf) {
            Ok(Some(n)) => out.extend(buf.get(..n).and_then(Uevent::parse)),
            Ok(None) => return Some(out),
            Err(e) => {
                log::debug!("uevent socket: {e}; events may have been lost");
                return None;
            }
        }
    }
}

/// The kernel's device events for a reader outside coldplug (the init's event loop follows
/// input devices with it): a non-blocking socket to poll, and what arrived on it.
#[derive(Debug)]
pub struct DeviceEvents {
    sock: sys::UeventSocket,
}

impl DeviceEvents {
    pub fn open() -> io::Result<DeviceEvents> {
        sys::UeventSocket::open().map(|sock| DeviceEvents { sock })
    }

    /// The events since the last call, or `None` when some may have been lost: the reader
    /// then rescans sysfs.
    pub fn read(&self) -> Option<Vec<Uevent>> {
        drain(&self.sock)
    }
}

impl AsFd for DeviceEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Monotonic time and sleeping, injectable so the coldplug loop's deadline
/// and poll interval are tested without waiting.
pub trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
}

#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    sys::kernel_release()
}
