//! `netconf` applies one [`NetworkPlan`] (contract §2) to the kernel over rtnetlink, with a
//! DHCPv4 client for `dhcp` plans, and says in one console line what is wrong when it cannot.
//!
//! Owns: bring-up of `lo` and the one planned interface (find by name, by MAC, or as the
//! VM's one Ethernet interface whatever its name: `nic.rs`; MTU, up, carrier), its addresses and default routes, `/etc/resolv.conf` (written atomically, a
//! symlink there replaced: see `files.rs`), the hostname, the DHCP lease lifecycle (the
//! server's strings checked and its timers clamped: `dhcp::names`, [`dhcp::LeaseLimits`]),
//! and the diagnostics (no interface, and which NIC is there under another name; several
//! Ethernet interfaces where the plan names none; no carrier, gateway silent to ARP, no
//! DHCP offer).
//! Does not own: choosing the plan (guest-config's arbitration), loading NIC drivers (the
//! module loader, whose diagnosis comes in through [`Env::driver_diagnosis`]), or the
//! health endpoint (the init reads [`NetworkState`]).
//!
//! Two entry points: [`apply`] runs bring-up once on the calling thread; [`spawn`] runs it
//! in a dedicated thread that also keeps a DHCP lease (renew at T1, rebind at T2, remove the
//! address at expiry and start over) and retries a failed bring-up with backoff, publishing
//! every change into an `Arc<Mutex<NetworkState>>` and calling a notifier (e.g. a
//! `mio::Waker`) so the init's event loop stays free of network waits.
//!
//! Idempotent: each step reads the kernel's state and changes only what differs, so
//! settings the kernel's CONFIG_IP_PNP already applied are kept and a second apply changes
//! nothing ([`NetworkState::changes`] lists what one did). Addresses the plan does not name
//! are removed with a `log::warn!`, except IPv6 link-scope addresses (`fe80::/64`), which
//! are the kernel's.
//!
//! IPv6 addresses are added with `IFA_F_NODAD`: usable at once instead of after one to two
//! seconds of duplicate address detection, which is what a boot-time budget wants. The cost
//! is that a duplicate on the segment goes unnoticed; in a microVM the host assigns the
//! address and is the only other party on the link.
//!
//! Health semantics: a failure leaves `state = error` with the console line in `error`; a
//! gateway that does not answer ARP leaves `state = up` with the warning in `error` (every
//! setting is in place and the fault is on the host, which may fix it while the guest runs;
//! see [`NetError::is_warning`]); `ip=off` gives `unconfigured` (with the host name set, if
//! the source names one, and nothing else); a lost lease gives `down`
//! while the thread re-discovers, after a pause of 1 s doubling to 60 s while leases keep
//! being lost. A failed bring-up under [`spawn`] is retried after 5 s, doubling to 60 s
//! ([`Env::retry`]), and stays `error` (no flapping through `down`) until one succeeds.
//!
//! The network follows link events under [`spawn`]: a failed bring-up is retried at once
//! when its interface appears or gains carrier, whatever the backoff says; carrier lost
//! after bring-up gives `down` with the reason in `error`, and carrier back runs bring-up
//! again (idempotent, so it re-applies only what changed, and probes the gateway again); a
//! silent gateway is probed again every 10 s until it answers, and its warning then clears.
//!
//! System calls are in `sys.rs`, the only module allowed `unsafe`; the rtnetlink sockets are
//! `netlink-sys`'s.
//!
//! Waits never spin: they sleep in poll(2) on an RTNLGRP_LINK multicast socket (the network
//! thread also on its stop pipe) and re-read the link on each event, and at least once a
//! second during bring-up, every 30 s while holding the configuration.

// PID 1 code, where an overflow panic is a kernel panic: arithmetic is checked or saturating,
// and a provably bounded index allowed narrowly with a `// why:` (docs/DESIGN.md).
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]
#![deny(unsafe_code)]

mod apply;
mod arp;
pub mod dhcp;
mod error;
mod files;
mod follow;
mod nic;
pub mod plan;
mod rtnl;
mod runner;
mod state;
mod sys;
mod wait;
mod watch;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::{NetError, Result};
pub use follow::Backoff;
pub use guest_config::NetworkPlan;
pub use nic::Nic;
pub use rtnl::{Addr, DefaultRoute, Link, LinkMonitor, Rtnl};
pub use runner::{spawn, NetworkHandle};
pub use state::{boottime_ms, LinkState, NetworkState, Timings};

/// The source of "now" for deadline and lease decisions.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Reading and setting the hostname; injectable so tests do not rename the host.
pub trait Hostname: Send + Sync {
    fn get(&self) -> io::Result<String>;
    fn set(&self, name: &str) -> io::Result<()>;
}

/// gethostname(2)/sethostname(2) on the UTS namespace of the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemHostname;

impl Hostname for SystemHostname {
    fn get(&self) -> io::Result<String> {
        let s = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        Ok(s.trim_end_matches('\n').to_string())
    }

    fn set(&self, name: &str) -> io::Result<()> {
        sys::sethostname(name)
    }
}

/// How the network thread tells of its own panic ([`Env::on_panic`]).
pub type PanicReport = Box<dyn Fn(&str) + Send + Sync>;

/// What bring-up needs from its surroundings.
pub struct Env {
    /// Where the DNS servers go (default `/etc/resolv.conf`). Not written when the plan and
    /// lease name no server: the image's own file stays.
    pub resolv_conf: PathBuf,
    /// `None` skips the hostname step.
    pub hostname: Option<Box<dyn Hostname>>,
    /// The module loader's account of why a NIC driver is missing, for the no-interface error.
    pub driver_diagnosis: Option<Box<dyn Fn() -> Option<String> + Send + Sync>>,
    /// Where `<if>/device` (and its `driver`) tell a NIC from a virtual link (default
    /// `/sys/class/net`): how [`InterfaceSelector::OnlyEthernet`](guest_config::InterfaceSelector)
    /// finds the VM's interface, and which interfaces a "no interface" error points at.
    /// sysfs shows the namespace that mounted it, so tests in a namespace of their own pass a
    /// tree of their own.
    pub sys_class_net: PathBuf,
    pub clock: Box<dyn Clock>,
    /// How long DHCP may take to get a lease (DISCOVERs and REQUESTs with retransmits).
    pub dhcp_timeout: Duration,
    /// How long to wait for the gateway's ARP reply; `None` skips the probe.
    pub arp_timeout: Option<Duration>,
    /// Floors under the server's lease and T1 (default 60 s and 10 s).
    pub lease_limits: dhcp::LeaseLimits,
    /// How [`spawn`] retries a failed bring-up when the link does not change (default 5 s,
    /// doubling to 60 s); a link that appears or gains carrier ends the wait at once.
    pub retry: Backoff,
    /// Told when the network thread panicked (a bug), with what it does next ("starting it
    /// again in 1s"): the init lists it in `/health` `errors[]`, where it stays, while the
    /// network state's `error` says it only until the next outcome.
    pub on_panic: Option<PanicReport>,
}

impl Env {
    /// The guest's real environment.
    pub fn system() -> Env {
        Env {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hostname: Some(Box::new(SystemHostname)),
            driver_diagnosis: None,
            sys_class_net: PathBuf::from("/sys/class/net"),
            clock: Box::new(SystemClock),
            dhcp_timeout: Duration::from_secs(30),
            arp_timeout: Some(Duration::from_millis(1500)),
            lease_limits: dhcp::LeaseLimits::default(),
            retry: Backoff::new(Duration::from_secs(5), Duration::from_secs(60)),
            on_panic: None,
        }
    }
}

/// Brings `lo` up on a socket of its own; `Ok(true)` if it was down. The init calls this at
/// boot whatever the network source, even none or a conflict: local services and their
/// readiness probes on 127.0.0.1 need loopback.
pub fn loopback_up() -> Result<bool> {
    apply::loopback_up(&mut apply::open_rtnl()?)
}

/// Brings the network up once, on this thread, and returns what it did. A DHCP lease is
/// acquired and applied but not kept: use [`spawn`] for renewals. A gateway that does not
/// answer ARP is reported in the returned state's `error` with `state` still `Up` (see
/// [`NetError::is_warning`]).
pub fn apply(plan: &NetworkPlan, env: &Env) -> Result<NetworkState> {
    let mut st = NetworkState::default();
    apply::bring_up(plan, env, &mut st)?;
    Ok(st)
}
