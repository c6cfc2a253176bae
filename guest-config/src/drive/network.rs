//! The drive's `[network]` table: read loosely (strings), then checked as a whole so that
//! every contradiction (interface and mac, dhcp and addresses, a gateway outside every
//! address's network) is its own located error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::Deserialize;

use crate::doc::Origin;
use crate::duration::Dur;
use crate::error::{ConfigError, Problem};
use crate::names::check_ifname;
use crate::network::{
    AddressMethod, InterfaceSelector, IpNet, NetworkPlan, NetworkSource, DEFAULT_CARRIER_TIMEOUT,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    dhcp: Option<bool>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    gateway6: Option<String>,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    carrier_timeout: Option<Dur>,
}

/// A checked drive `[network]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveNetwork {
    pub interface: InterfaceSelector,
    pub method: AddressMethod,
    pub dns: Vec<IpAddr>,
    pub mtu: Option<u32>,
    pub carrier_timeout: Duration,
}

impl DriveNetwork {
    pub fn to_plan(&self, hostname: Option<String>) -> NetworkPlan {
        NetworkPlan {
            source: NetworkSource::Drive,
            interface: self.interface.clone(),
            method: self.method.clone(),
            dns: self.dns.clone(),
            mtu: self.mtu,
            carrier_timeout: self.carrier_timeout,
            hostname,
            dhcp_client_id: None,
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`), case-insensitive.
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Collects the `[network]` errors, each located at its key.
struct Errors<'o> {
    origin: &'o Origin,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn add(&mut self, key: &str, msg: String) {
        self.list.push(
            self.origin
                .error(format!("network.{key}"), Problem::Network(msg)),
        );
    }
}

impl RawNetwork {
    pub(super) fn check(self, o: &Origin) -> Result<DriveNetwork, Vec<ConfigError>> {
        let mut err = Errors {
            origin: o,
            list: Vec::new(),
        };
        let interface = interface(self.interface, self.mac, &mut err);
        let addresses = addresses(&self.addresses, &mut err);
        let dhcp = self.dhcp == Some(true);
        if dhcp && !self.addresses.is_empty() {
            err.add(
                "dhcp",
                "dhcp = true and addresses both given: choose one".into(),
            );
        }
        if !dhcp && self.addresses.is_empty() {
            err.add(
                "addresses",
                "no address: give dhcp = true or addresses = [\"ADDR/PREFIX\", ...]".into(),
            );
        }
        let gateway = self
            .gateway
            .as_deref()
            .and_then(|g| gateway(g, dhcp, &addresses, &mut err));
        let gateway6 = self
            .gateway6
            .as_deref()
            .and_then(|g| gateway6(g, &addresses, &mut err));
        let mut dns = Vec::new();
        for d in &self.dns {
            match d.parse::<IpAddr>() {
                Ok(a) => dns.push(a),
                Err(_) => err.add("dns", format!("{d:?} is not an IP address")),
            }
        }
        if let Some(m) = self.mtu {
            check_mtu(m, &addresses, &mut err);
        }
        let carrier_timeout = self
            .carrier_timeout
            .map_or(DEFAULT_CARRIER_TIMEOUT, Dur::get);
        if carrier_timeout.is_zero() {
            err.add(
                "carrier_timeout",
                "must be longer than 0s (the wait is bounded by it)".into(),
            );
        }
        let method = if dhcp {
            AddressMethod::Dhcp
        } else {
            AddressMethod::Static {
                addresses,
                gateway,
                gateway6,
            }
        };
        if !err.list.is_empty() {
            return Err(err.list);
        }
        Ok(DriveNetwork {
            interface,
            method,
            dns,
            mtu: self.mtu,
            carrier_timeout,
        })
    }
}

fn interface(name: Option<String>, mac: Option<String>, err: &mut Errors) -> InterfaceSelector {
    // Neither key: the VM's one Ethernet interface, whatever its name (contract §2). The
    // same after an error, where the value is never used.
    let default = || InterfaceSelector::OnlyEthernet;
    match (name, mac) {
        (Some(_), Some(_)) => {
            err.add("mac", "give interface or mac, not both".into());
            default()
        }
        (_, Some(m)) => match parse_mac(&m) {
            Some(mac) => InterfaceSelector::Mac(mac),
            None => {
                err.add(
                    "mac",
                    format!("{m:?} is not a MAC address (e.g. \"52:54:00:12:34:56\")"),
                );
                default()
            }
        },
        (Some(i), None) => {
            if let Err(reason) = check_ifname(&i) {
                err.add(
                    "interface",
                    format!("{i:?} is not an interface name: {reason}"),
                );
            }
            InterfaceSelector::Name(i)
        }
        (None, None) => default(),
    }
}

fn addresses(written: &[String], err: &mut Errors) -> Vec<IpNet> {
    let mut addresses = Vec::new();
    for a in written {
        match a.parse::<IpNet>() {
            Ok(n) if n.addr.is_unspecified() || n.addr.is_multicast() || n.addr.is_loopback() => {
                err.add(
                    "addresses",
                    format!("{a:?} is not a unicast address for this machine"),
                )
            }
            Ok(n) if addresses.contains(&n) => {
                err.add("addresses", format!("{a:?} is listed twice"))
            }
            Ok(n) => addresses.push(n),
            Err(m) => err.add("addresses", m),
        }
    }
    addresses
}

fn gateway(g: &str, dhcp: bool, addresses: &[IpNet], err: &mut Errors) -> Option<Ipv4Addr> {
    match g.parse::<Ipv4Addr>() {
        Ok(a) if dhcp => err.add(
            "gateway",
            format!("{a} given with dhcp = true: the lease provides the gateway"),
        ),
        Ok(a) if !addresses.iter().any(|n| n.contains(IpAddr::V4(a))) => err.add(
            "gateway",
            format!("{a} is not in the network of any IPv4 address in addresses"),
        ),
        Ok(a) => return Some(a),
        Err(_) if g.parse::<Ipv6Addr>().is_ok() => {
            err.add("gateway", format!("{g:?} is IPv6: write it as gateway6"))
        }
        Err(_) => err.add("gateway", format!("{g:?} is not an IPv4 address")),
    }
    None
}

fn gateway6(g: &str, addresses: &[IpNet], err: &mut Errors) -> Option<Ipv6Addr> {
    match g.parse::<Ipv6Addr>() {
        Ok(a) if !addresses.iter().any(|n| n.addr.is_ipv6()) => err.add(
            "gateway6",
            format!("{a} given but addresses has no IPv6 address"),
        ),
        // link-local gateways (router advertisements' usual form) are on-link by definition
        Ok(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => return Some(a),
        Ok(a) if !addresses.iter().any(|n| n.contains(IpAddr::V6(a))) => err.add(
            "gateway6",
            format!("{a} is neither link-local nor in the network of an IPv6 address in addresses"),
        ),
        Ok(a) => return Some(a),
        Err(_) => err.add("gateway6", format!("{g:?} is not an IPv6 address")),
    }
    None
}

fn check_mtu(m: u32, addresses: &[IpNet], err: &mut Errors) {
    if !(68..=65535).contains(&m) {
        err.add("mtu", format!("{m} is outside 68..=65535"));
    } else if m < 1280 && addresses.iter().any(|n| n.addr.is_ipv6()) {
        err.add(
            "mtu",
            format!("{m} is below 1280, the IPv6 minimum, and addresses has IPv6"),
        );
    }
}
