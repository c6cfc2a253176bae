//! The network plan: the one authoritative description of how the VM's interface (named,
//! found by MAC, or the one Ethernet interface whatever its name) is to be configured, produced by arbitration between the kernel cmdline `ip=` and the config
//! drive's `[network]` (contract §2). Owns the types only; `netconf` applies a plan, and the
//! arbitration itself lives next to the grammars that produce the two sources.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Where the network configuration came from (`network.source` in the health JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkSource {
    Cmdline,
    Drive,
    #[default]
    None,
}

impl NetworkSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkSource::Cmdline => "cmdline",
            NetworkSource::Drive => "drive",
            NetworkSource::None => "none",
        }
    }
}

impl fmt::Display for NetworkSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which link to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceSelector {
    Name(String),
    Mac([u8; 6]),
    /// The VM's one Ethernet interface, whatever its name (contract §2: an empty `ip=`
    /// device field, a drive `[network]` without `interface` or `mac`). netconf resolves it
    /// at bring-up: an `ARPHRD_ETHER` link backed by a device (a NIC, not a bridge, veth or
    /// other virtual link); two or more is an error naming them. Names are not a contract
    /// with the host: udev in an initrd renames `eth0` to `enp0s2` and the like.
    OnlyEthernet,
}

impl fmt::Display for InterfaceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfaceSelector::Name(n) => f.write_str(n),
            InterfaceSelector::OnlyEthernet => f.write_str("the VM's one Ethernet interface"),
            InterfaceSelector::Mac(m) => write!(
                f,
                "mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }
}

/// An address with its prefix length, e.g. `192.0.2.10/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    /// Whether `a` is in this subnet (same family, same first `prefix_len` bits).
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let host = u32::MAX
                    .checked_shr(u32::from(self.prefix_len))
                    .unwrap_or(0);
                (u32::from(n) ^ u32::from(a)) & !host == 0
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let host = u128::MAX
                    .checked_shr(u32::from(self.prefix_len))
                    .unwrap_or(0);
                (u128::from(n) ^ u128::from(a)) & !host == 0
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    /// Parses `ADDR/PREFIX`; the prefix must fit the address family.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDR/PREFIX (e.g. 192.0.2.10/24)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let prefix_len: u8 = p
            .parse()
            .map_err(|_| format!("{s:?}: prefix {p:?} is not a number"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{s:?}: prefix /{prefix_len} is longer than {max}"));
        }
        Ok(IpNet { addr, prefix_len })
    }
}

/// How addresses are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressMethod {
    /// `ip=off` / `ip=none`: the source explicitly wants no address (only `lo`). The plan's
    /// `hostname`, if any, is still the host name to set.
    Off,
    /// DHCPv4 (`ip=dhcp`, `ip=on|any|both|bootp|rarp`, drive `dhcp = true`).
    Dhcp,
    Static {
        addresses: Vec<IpNet>,
        gateway: Option<Ipv4Addr>,
        gateway6: Option<Ipv6Addr>,
    },
}

/// Everything netconf needs to bring one interface up. `hostname` and `dns` may come with
/// either method (for DHCP, the lease may add more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub source: NetworkSource,
    pub interface: InterfaceSelector,
    pub method: AddressMethod,
    pub dns: Vec<IpAddr>,
    pub mtu: Option<u32>,
    /// How long to wait for the link to appear and for carrier (contract default 5 s).
    pub carrier_timeout: Duration,
    pub hostname: Option<String>,
    /// With DHCP: the client identifier (option 61) to send, from
    /// `ip=dhcp,<client-id-type>,<client-id-value>`.
    pub dhcp_client_id: Option<DhcpClientId>,
}

/// A DHCP client identifier, DHCP option 61 (RFC 2132 §9.14): a type byte (1 for an
/// Ethernet address, 0 for free text) followed by the value's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpClientId {
    pub kind: u8,
    pub value: String,
}

impl DhcpClientId {
    /// The option's payload as sent: the type byte, then the value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.value.len().saturating_add(1));
        b.push(self.kind);
        b.extend_from_slice(self.value.as_bytes());
        b
    }
}

/// Default `carrier_timeout` of the contract.
pub const DEFAULT_CARRIER_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_parses_and_checks_prefix() {
        let n: IpNet = "192.0.2.10/24".parse().unwrap();
        assert_eq!(n.prefix_len, 24);
        assert_eq!(n.to_string(), "192.0.2.10/24");
        let n: IpNet = "2001:db8::10/64".parse().unwrap();
        assert!(n.addr.is_ipv6());
        assert!("192.0.2.10/33"
            .parse::<IpNet>()
            .unwrap_err()
            .contains("/33"));
        assert!("192.0.2.10".parse::<IpNet>().is_err());
        assert!("192.0.2.X/24"
            .parse::<IpNet>()
            .unwrap_err()
            .contains("192.0.2.X"));
    }
}
