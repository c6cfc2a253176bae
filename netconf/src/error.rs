//! The errors of network bring-up. Each variant is one way bring-up can fail and carries what
//! failed (operation, interface, errno, address); its `Display` is the one line the init prints
//! on the console and puts in the health `network.error`.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use guest_config::InterfaceSelector;

use crate::nic::Nic;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, NetError>;

#[derive(Debug)]
pub enum NetError {
    /// A netlink socket could not be opened, bound or used at all.
    Socket {
        what: &'static str,
        source: io::Error,
    },
    /// The kernel refused an rtnetlink request (`op` says which, e.g. "add address 10.0.2.15/24").
    Netlink {
        op: String,
        interface: String,
        source: io::Error,
    },
    /// The interface did not appear within the wait. `present`: every link's name; `nics`:
    /// the Ethernet interfaces backed by a device that are there (the NIC under another name
    /// than the one wanted, typically); `driver`: the module loader's diagnosis.
    NoInterface {
        wanted: InterfaceSelector,
        waited: Duration,
        present: Vec<String>,
        nics: Vec<Nic>,
        driver: Option<String>,
    },
    /// The plan names no interface ([`InterfaceSelector::OnlyEthernet`]) and the VM has two
    /// or more Ethernet interfaces: which one is meant is the host's to say.
    SeveralInterfaces { nics: Vec<Nic> },
    /// The interface is up but has no carrier after the wait.
    NoCarrier { interface: String, waited: Duration },
    /// The IPv4 gateway did not answer an ARP request. A warning: addresses and routes are set.
    GatewayNoArp {
        interface: String,
        gateway: Ipv4Addr,
        waited: Duration,
    },
    /// The ARP probe itself could not run (socket, send); not a finding about the host.
    ArpProbe {
        interface: String,
        source: io::Error,
    },
    /// No DHCP server answered the DISCOVERs.
    DhcpNoOffer { interface: String, waited: Duration },
    /// A server offered an address but never acknowledged the REQUEST (or NAKed it).
    DhcpNoAck {
        interface: String,
        server: Ipv4Addr,
        detail: String,
    },
    /// The DHCP socket failed (create, bind to device, send, receive).
    DhcpSocket {
        interface: String,
        op: &'static str,
        source: io::Error,
    },
    /// Carrier went away (or the interface did) after bring-up; the settings stay in place
    /// and come back into use with the carrier.
    LinkLost { interface: String, gone: bool },
    /// The lease ran out without a renewal; its address has been removed.
    DhcpLeaseExpired { interface: String, address: String },
    /// `/etc/resolv.conf` (or the injected path) could not be written; `op` is the step of
    /// the atomic write that failed ("create the temporary file", "rename it over").
    ResolvConf {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// `sethostname(2)` failed.
    Hostname { name: String, source: io::Error },
}

impl NetError {
    /// Warnings leave the network configured and `up`; the text still goes to `network.error`.
    /// A gateway that does not answer ARP is one: every setting is in place and the cause is
    /// on the host (bridge/TAP), which may be fixed while the guest runs; marking the network
    /// `error` would fail the whole guest's health for a condition it cannot change.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            NetError::GatewayNoArp { .. } | NetError::ArpProbe { .. }
        )
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Socket { what, source } => {
                write!(f, "network: cannot {what}: {}", errno_words(source))
            }
            NetError::Netlink {
                op,
                interface,
                source,
            } => write!(
                f,
                "network: {op} on {interface} refused by the kernel: {}",
                errno_words(source)
            ),
            NetError::NoInterface {
                wanted,
                waited,
                present,
                nics,
                driver,
            } => no_interface(f, wanted, *waited, present, nics, driver.as_deref()),
            NetError::SeveralInterfaces { nics } => write!(
                f,
                "network: no interface named and the VM has {} Ethernet interfaces: {}; name \
                         one in the ip= device field or the drive's [network] interface or mac",
                nics.len(),
                list(nics)
            ),
            NetError::NoCarrier { interface, waited } => write!(
                f,
                "network: {interface} has no carrier after {}: the host side of the link is not \
                 attached (e.g. the TAP device has no carrier or is in another netns)",
                secs(*waited)
            ),
            NetError::GatewayNoArp {
                interface,
                gateway,
                waited,
            } => write!(
                f,
                "network: gateway {gateway} does not answer ARP on {interface} within {}: the \
                 host bridge/TAP is not forwarding ARP",
                secs(*waited)
            ),
            NetError::ArpProbe { interface, source } => write!(
                f,
                "network: cannot probe the gateway with ARP on {interface}: {}",
                errno_words(source)
            ),
            NetError::DhcpNoOffer { .. }
            | NetError::DhcpNoAck { .. }
            | NetError::DhcpSocket { .. }
            | NetError::DhcpLeaseExpired { .. } => self.fmt_dhcp(f),
            NetError::LinkLost {
                interface,
                gone: false,
            } => write!(
                f,
                "network: carrier lost on {interface} (host side detached or down); \
                 waiting for it to come back"
            ),
            NetError::LinkLost {
                interface,
                gone: true,
            } => write!(
                f,
                "network: interface {interface} disappeared; waiting for it to come back"
            ),
            NetError::ResolvConf { path, op, source } => write!(
                f,
                "network: cannot write {} ({op}): {}",
                path.display(),
                errno_words(source)
            ),
            NetError::Hostname { name, source } => write!(
                f,
                "network: cannot set hostname {name:?}: {}",
                errno_words(source)
            ),
        }
    }
}

impl NetError {
    /// The DHCP failures' console lines.
    fn fmt_dhcp(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::DhcpNoOffer { interface, waited } => write!(
                f,
                "network: DHCP got no offer on {interface} after {}",
                secs(*waited)
            ),
            NetError::DhcpNoAck {
                interface,
                server,
                detail,
            } => write!(
                f,
                "network: DHCP server {server} did not acknowledge on {interface}: {detail}"
            ),
            NetError::DhcpSocket {
                interface,
                op,
                source,
            } => write!(
                f,
                "network: DHCP socket on {interface}: {op} failed: {}",
                errno_words(source)
            ),
            NetError::DhcpLeaseExpired { interface, address } => write!(
                f,
                "network: DHCP lease of {address} on {interface} expired without renewal; \
                 address removed"
            ),
            _ => Ok(()),
        }
    }
}

/// The no-interface line: what was wanted, what is there, and the likeliest cause.
fn no_interface(
    f: &mut fmt::Formatter<'_>,
    wanted: &InterfaceSelector,
    waited: Duration,
    present: &[String],
    nics: &[Nic],
    driver: Option<&str>,
) -> fmt::Result {
    match wanted {
        InterfaceSelector::OnlyEthernet => write!(
            f,
            "network: no Ethernet interface after {} (bridges, veths and other \
             links without a device do not count); present: [{}]",
            secs(waited),
            present.join(", ")
        )?,
        _ => write!(
            f,
            "network: no interface {wanted} after {}; present: [{}]",
            secs(waited),
            present.join(", ")
        )?,
    }
    if !nics.is_empty() {
        return renamed_hint(f, wanted, nics);
    }
    match driver {
        Some(d) => write!(f, "; driver: {d}"),
        None => write!(
            f,
            "; no driver failure reported (is the NIC attached to the VM?)"
        ),
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Socket { source, .. }
            | NetError::Netlink { source, .. }
            | NetError::ArpProbe { source, .. }
            | NetError::DhcpSocket { source, .. }
            | NetError::ResolvConf { source, .. }
            | NetError::Hostname { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The rest of a "no interface" line when a NIC is there under another name (or MAC): which,
/// and how to point the plan at it. `net.ifnames=0` is suggested only for an `ethN` wanted:
/// it gives back the kernel's names, which is all it can fix.
fn renamed_hint(
    f: &mut fmt::Formatter<'_>,
    wanted: &InterfaceSelector,
    nics: &[Nic],
) -> fmt::Result {
    let (is, it) = if nics.len() == 1 {
        ("the VM's Ethernet interface is", "it")
    } else {
        ("the VM's Ethernet interfaces are", "one")
    };
    write!(f, "; {is} {}: ", list(nics))?;
    match wanted {
        InterfaceSelector::Name(n) if n.starts_with("eth") => write!(
            f,
            "name {it} in ip= (device field) or the drive's [network] interface, or boot \
                         with net.ifnames=0 to keep the kernel's ethN names"
        ),
        InterfaceSelector::Name(_) => write!(
            f,
            "name {it} in ip= (device field) or the drive's [network] interface"
        ),
        InterfaceSelector::Mac(_) => write!(
            f,
            "check the drive's [network] mac, or name {it} in interface instead"
        ),
        InterfaceSelector::OnlyEthernet => Ok(()),
    }
}

fn list(nics: &[Nic]) -> String {
    nics.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// "File exists (EEXIST)": the words for the operator, the symbol for a search.
pub(crate) fn errno_words(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENOBUFS => "ENOBUFS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        _ => "",
    };
    // Display of a raw io::Error reads "File exists (os error 17)"; keep the words only.
    let text = e.to_string();
    let words = text.split(" (os error").next().unwrap_or(&text);
    if name.is_empty() {
        format!("{words} (errno {code})")
    } else {
        format!("{words} ({name})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_spelled_out() {
        let e = io::Error::from_raw_os_error(libc::EEXIST);
        assert_eq!(errno_words(&e), "File exists (EEXIST)");
        let e = io::Error::from_raw_os_error(4095);
        assert!(errno_words(&e).ends_with("(errno 4095)"));
    }

    #[test]
    fn messages_name_the_cause() {
        let e = NetError::NoInterface {
            wanted: InterfaceSelector::Name("eth0".into()),
            waited: Duration::from_secs(5),
            present: vec!["lo".into()],
            nics: Vec::new(),
            driver: Some("virtio_net: module not found".into()),
        };
        let s = e.to_string();
        assert!(
            s.contains("eth0") && s.contains("5 s") && s.contains("virtio_net"),
            "{s}"
        );
        let e = NetError::DhcpNoOffer {
            interface: "eth0".into(),
            waited: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "network: DHCP got no offer on eth0 after 1.5 s"
        );
        let e = NetError::Netlink {
            op: "add address 10.0.2.15/24".into(),
            interface: "eth0".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e.to_string().contains("(EPERM)"));
        assert!(!e.is_warning());
        let ens3 = Nic {
            name: "ens3".into(),
            mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            driver: Some("virtio_net".into()),
        };
        let renamed = NetError::NoInterface {
            wanted: InterfaceSelector::Name("eth0".into()),
            waited: Duration::from_secs(5),
            present: vec!["lo".into(), "ens3".into()],
            nics: vec![ens3.clone()],
            driver: None,
        };
        assert_eq!(
            renamed.to_string(),
            "network: no interface eth0 after 5 s; present: [lo, ens3]; the VM's Ethernet \
             interface is ens3 (driver virtio_net, MAC 52:54:00:12:34:56): name it in ip= \
             (device field) or the drive's [network] interface, or boot with net.ifnames=0 to \
             keep the kernel's ethN names"
        );
        let none = NetError::NoInterface {
            wanted: InterfaceSelector::OnlyEthernet,
            waited: Duration::from_secs(5),
            present: vec!["lo".into(), "br0".into()],
            nics: Vec::new(),
            driver: None,
        };
        let s = none.to_string();
        assert!(
            s.starts_with("network: no Ethernet interface after 5 s")
                && s.contains("present: [lo, br0]")
                && s.contains("is the NIC attached"),
            "{s}"
        );
        let mut eth1 = ens3.clone();
        eth1.name = "ens4".into();
        eth1.mac = None;
        eth1.driver = None;
        let two = NetError::SeveralInterfaces {
            nics: vec![ens3, eth1],
        };
        let s = two.to_string();
        assert!(
            s.contains(
                "2 Ethernet interfaces: ens3 (driver virtio_net, MAC 52:54:00:12:34:56), \
                        ens4 (driver unknown, MAC none)"
            ),
            "{s}"
        );
        let w = NetError::GatewayNoArp {
            interface: "eth0".into(),
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            waited: Duration::from_secs(1),
        };
        assert!(w.is_warning() && w.to_string().contains("not forwarding ARP"));
    }
}
