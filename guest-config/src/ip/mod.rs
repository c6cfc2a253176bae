//! The kernel's `ip=` parameter, exactly as Documentation/admin-guide/nfs/nfsroot.rst gives
//! it: `<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
//! any field empty, plus the short forms `dhcp`, `on`, `any`, `both`, `bootp`, `rarp` (all
//! DHCP here: vminit has no BOOTP or RARP client) and `off`, `none` (and an empty `ip=`,
//! which the kernel also takes as off). Owns parsing and the conversion to a
//! [`NetworkPlan`]; applying it is netconf's job.
//!
//! Decisions, where the kernel is lenient or silent:
//! - The kernel's `in_aton()` accepts anything (`192.168.100.X` becomes some address);
//!   here every address field is a strict dotted quad (leading zeros read as decimal, as
//!   in_aton does), and anything else is an error naming the field. IPv6 is refused with
//!   its own message: the kernel's `ip=` is IPv4 only (use the config drive for IPv6).
//! - `0.0.0.0` in an address field means "not given", as in the kernel (ANY → NONE).
//! - More than ten fields is an error (the kernel ignores the extra ones).
//! - A client address with `autoconf` `off`/`none` or empty is static (the kernel also
//!   goes static then). A client address with a DHCP-like `autoconf` is refused as
//!   ambiguous: the kernel would use the static address on a single interface and DHCP on
//!   several; vminit does not guess.
//! - No client address and `autoconf` empty means the kernel default, `on`: DHCP.
//! - The hostname field is checked as an RFC 1123 name; as in the kernel, the part before
//!   the first dot is the host name and the rest the (NIS) domain, kept but not applied.
//! - An empty `device` means `eth0` (the kernel tries every interface; a microVM has one,
//!   and naming it keeps the carrier diagnostics precise).
//! - A static address without netmask gets the kernel's classful default (class A /8,
//!   B /16, C /24; D and E are an error, as in the kernel's `ic_defaults()`).
//! - A gateway outside the client's subnet is an error, as the kernel's
//!   `ic_setup_routes()` refuses it ("Gateway not on directly connected network").
//! - With DHCP, `gw-ip` and `netmask` are recorded but the lease's values are used.
//!   `server-ip` and `ntp0-ip` are checked and recorded, not applied (no NFS root, no NTP).
//! - The kernel's prefix match on `dhcp` (`dhcp6`, `dhcp,CLASS`) is not accepted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::names::{check_hostname, check_ifname};
use crate::network::{
    AddressMethod, InterfaceSelector, IpNet, NetworkPlan, NetworkSource, DEFAULT_CARRIER_TIMEOUT,
};

/// The ten field names, in order; positions in errors are 1-based indexes into this.
pub const FIELDS: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

/// The interface used when `ip=` names none.
pub const DEFAULT_DEVICE: &str = "eth0";

/// What addresses `ip=` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpMode {
    Off,
    Dhcp,
    Static {
        addr: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
    },
}

/// A parsed, checked `ip=` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub mode: IpMode,
    pub server: Option<Ipv4Addr>,
    /// `gw-ip` and `netmask` as written (also under DHCP, where they are not applied).
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Option<Ipv4Addr>,
}

/// A dotted quad as `in_aton()` reads it, but strict: four decimal parts of 1 to 3 digits.
fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// The prefix length of a contiguous netmask.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The kernel's classful default netmask (`ic_defaults()`), none for class D and E.
fn classful_prefix(a: Ipv4Addr) -> Option<u8> {
    match a.octets()[0] {
        0..=127 => Some(8),
        128..=191 => Some(16),
        192..=223 => Some(24),
        _ => None,
    }
}

fn same_net(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    (u32::from(a) ^ u32::from(b)) & mask == 0
}

/// The longest run of fields from `start` that reads as an IPv6 address (brackets allowed).
fn find_ipv6(fields: &[&str], start: usize) -> Option<String> {
    (start..fields.len())
        .rev()
        .map(|end| fields[start..=end].join(":"))
        .find(|s| {
            let bare = s.trim_start_matches('[').trim_end_matches(']');
            bare.contains(':') && bare.parse::<Ipv6Addr>().is_ok()
        })
}

enum Autoconf {
    Default,
    Off,
    Dhcp,
}

fn short_form(v: &str) -> Option<IpMode> {
    match v {
        "" | "off" | "none" => Some(IpMode::Off),
        "dhcp" | "on" | "any" | "both" | "bootp" | "rarp" => Some(IpMode::Dhcp),
        _ => None,
    }
}

/// Parses the value of `ip=` (without the `ip=`).
pub fn parse(value: &str) -> Result<IpConfig, IpError> {
    let mut cfg = IpConfig {
        mode: IpMode::Off,
        server: None,
        gateway: None,
        netmask: None,
        hostname: None,
        domain: None,
        device: None,
        dns: Vec::new(),
        ntp: None,
    };
    if let Some(mode) = short_form(value) {
        cfg.mode = mode;
        return Ok(cfg);
    }
    let fields: Vec<&str> = value.split(':').collect();
    let mut problems = Vec::new();
    let mut client = None;
    let mut autoconf = (Autoconf::Default, "");
    for (i, &f) in fields.iter().enumerate().take(FIELDS.len()) {
        let bad = |reason| IpProblem::Field {
            position: i + 1,
            value: f.to_string(),
            reason,
        };
        if f.is_empty() {
            continue;
        }
        match i {
            0 | 1 | 2 | 3 | 7 | 8 | 9 => {
                let Some(a) = parse_v4(f) else {
                    if let Some(v6) = find_ipv6(&fields, i) {
                        problems.push(IpProblem::Ipv6 {
                            position: i + 1,
                            value: v6,
                        });
                        // the colons of the IPv6 address shifted every later field
                        return Err(IpError {
                            value: value.to_string(),
                            problems,
                        });
                    }
                    problems.push(bad("not an IPv4 address (dotted quad, e.g. 192.0.2.10)"));
                    continue;
                };
                let a = (!a.is_unspecified()).then_some(a);
                match i {
                    0 => {
                        if a.is_some_and(|a| {
                            a.is_multicast() || a.is_broadcast() || a.is_loopback()
                        }) {
                            problems.push(bad("not a unicast address for this machine"));
                        }
                        client = a;
                    }
                    1 => cfg.server = a,
                    2 => cfg.gateway = a,
                    3 => {
                        if a.is_some_and(|m| mask_to_prefix(m).is_none()) {
                            problems.push(bad("not a contiguous netmask (e.g. 255.255.255.0)"));
                        }
                        cfg.netmask = a;
                    }
                    9 => cfg.ntp = a,
                    _ => cfg.dns.extend(a),
                }
            }
            4 => match check_hostname(f) {
                Ok(()) => {
                    let (host, domain) = match f.split_once('.') {
                        Some((h, d)) => (h, Some(d.to_string())),
                        None => (f, None),
                    };
                    cfg.hostname = Some(host.to_string());
                    cfg.domain = domain;
                }
                Err(reason) => problems.push(bad(reason)),
            },
            5 => match check_ifname(f) {
                Ok(()) => cfg.device = Some(f.to_string()),
                Err(reason) => problems.push(bad(reason)),
            },
            _ => match f {
                "off" | "none" => autoconf = (Autoconf::Off, f),
                "on" | "any" | "dhcp" | "both" | "bootp" | "rarp" => autoconf = (Autoconf::Dhcp, f),
                _ => problems.push(bad(
                    "not an autoconf method (off, none, on, any, dhcp, bootp, rarp, both)",
                )),
            },
        }
    }
    if fields.len() > FIELDS.len() {
        problems.push(IpProblem::TooManyFields {
            count: fields.len(),
        });
    }
    cfg.mode = match (client, autoconf) {
        (None, (Autoconf::Off, _)) => IpMode::Off,
        (None, _) => IpMode::Dhcp,
        (Some(c), (Autoconf::Dhcp, a)) => {
            problems.push(IpProblem::ClientWithAutoconf {
                client: c,
                autoconf: a.to_string(),
            });
            IpMode::Off
        }
        (Some(addr), _) => static_mode(addr, &cfg, &mut problems),
    };
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(IpError {
            value: value.to_string(),
            problems,
        })
    }
}

fn static_mode(addr: Ipv4Addr, cfg: &IpConfig, problems: &mut Vec<IpProblem>) -> IpMode {
    let prefix_len = match cfg.netmask {
        Some(m) => match mask_to_prefix(m) {
            Some(p) => p,
            // already reported; a made-up prefix would only add a misleading gateway error
            None => {
                return IpMode::Static {
                    addr,
                    prefix_len: 32,
                    gateway: cfg.gateway,
                }
            }
        },
        None => match classful_prefix(addr) {
            Some(p) => p,
            None => {
                problems.push(IpProblem::Field {
                    position: 4,
                    value: String::new(),
                    reason: "no netmask, and the client-ip is class D/E so the kernel's \
                             classful default does not apply",
                });
                32
            }
        },
    };
    if let Some(gw) = cfg.gateway {
        if !same_net(gw, addr, prefix_len) {
            problems.push(IpProblem::GatewayOffLink {
                gateway: gw,
                net: IpNet {
                    addr: IpAddr::V4(addr),
                    prefix_len,
                },
            });
        }
    }
    IpMode::Static {
        addr,
        prefix_len,
        gateway: cfg.gateway,
    }
}

impl IpConfig {
    /// The plan for netconf. Carrier timeout: the contract default (5 s); the kernel's own
    /// `carrier_timeout=` governs only the kernel's autoconfiguration and is not read.
    pub fn to_plan(&self) -> NetworkPlan {
        let method = match &self.mode {
            IpMode::Off => AddressMethod::Off,
            IpMode::Dhcp => AddressMethod::Dhcp,
            IpMode::Static {
                addr,
                prefix_len,
                gateway,
            } => AddressMethod::Static {
                addresses: vec![IpNet {
                    addr: IpAddr::V4(*addr),
                    prefix_len: *prefix_len,
                }],
                gateway: *gateway,
                gateway6: None,
            },
        };
        NetworkPlan {
            source: NetworkSource::Cmdline,
            interface: InterfaceSelector::Name(
                self.device
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DEVICE.to_string()),
            ),
            method,
            dns: self.dns.iter().map(|&a| IpAddr::V4(a)).collect(),
            mtu: None,
            carrier_timeout: DEFAULT_CARRIER_TIMEOUT,
            hostname: self.hostname.clone(),
        }
    }
}

impl From<&IpConfig> for NetworkPlan {
    fn from(c: &IpConfig) -> NetworkPlan {
        c.to_plan()
    }
}

mod error;

pub use error::{IpError, IpProblem};

#[cfg(test)]
mod tests;
