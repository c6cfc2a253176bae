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
//! - A client address is configured statically whatever `autoconf` says, as the kernel's
//!   `ip_auto_config()` does: it runs DHCP only when the address is missing (or when it
//!   opened several devices; vminit configures the VM's one interface and refuses several).
//! - No client address and `autoconf` empty means the kernel default, `on`: DHCP.
//! - The hostname field is checked as an RFC 1123 name; as in the kernel, the part before
//!   the first dot is the host name and the rest the (NIS) domain, kept but not applied.
//! - An empty `device` means the VM's one Ethernet interface, whatever its name
//!   ([`InterfaceSelector::OnlyEthernet`]): the kernel tries every interface; a microVM has
//!   one, and an initrd's udev may have renamed it (`enp0s2`). Two or more is an error at
//!   bring-up naming them (the kernel would race DHCP on all of them).
//! - A static address without netmask gets the kernel's classful default (class A /8,
//!   B /16, C /24; D and E are an error, as in the kernel's `ic_defaults()`).
//! - A gateway outside the client's subnet is an error, as the kernel's
//!   `ic_setup_routes()` refuses it ("Gateway not on directly connected network").
//! - With DHCP, `gw-ip` and `netmask` are recorded but the lease's values are used.
//!   `server-ip` and `ntp0-ip` are checked and recorded, not applied (no NFS root, no NTP).
//! - `dhcp,<client-id-type>,<client-id-value>` (nfsroot.rst; as the whole value or as
//!   `autoconf`) is DHCP sending that client identifier (option 61): the type as the
//!   kernel's `kstrtou8(.., 0)` reads it, the value up to 251 bytes. A bad type, which the
//!   kernel ignores, is an error here. Other words starting with `dhcp` (`dhcp6`), which the
//!   kernel's prefix match takes as DHCP, are refused.
//! - The hostname field is the host name to set under every `autoconf`, `off` included:
//!   the kernel sets it while parsing, whatever it configures after ([`NetworkPlan::hostname`]
//!   with [`AddressMethod::Off`]).

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
    /// `dhcp,<client-id-type>,<client-id-value>`: the DHCP client identifier to send.
    pub client_id: Option<DhcpClientId>,
}

impl IpConfig {
    fn empty() -> IpConfig {
        IpConfig {
            mode: IpMode::Off,
            server: None,
            gateway: None,
            netmask: None,
            hostname: None,
            domain: None,
            device: None,
            dns: Vec::new(),
            ntp: None,
            client_id: None,
        }
    }
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
    let host = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    (u32::from(a) ^ u32::from(b)) & !host == 0
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

/// The fields of `ip=`, in order: `Field::X as usize` indexes [`FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ClientIp,
    ServerIp,
    GwIp,
    Netmask,
    Hostname,
    Device,
    Autoconf,
    Dns0Ip,
    Dns1Ip,
    Ntp0Ip,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::ClientIp,
        Field::ServerIp,
        Field::GwIp,
        Field::Netmask,
        Field::Hostname,
        Field::Device,
        Field::Autoconf,
        Field::Dns0Ip,
        Field::Dns1Ip,
        Field::Ntp0Ip,
    ];

    /// Its 1-based position, as errors give it.
    pub fn position(self) -> usize {
        (self as usize).saturating_add(1)
    }

    pub fn name(self) -> &'static str {
        FIELDS[self as usize]
    }
}

/// A DHCP client identifier (option 61) from `ip=dhcp,<client-id-type>,<client-id-value>`.
pub use crate::network::DhcpClientId;

/// `autoconf` as written: empty (the kernel default, `on`), off, or DHCP.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Autoconf {
    Default,
    Off,
    Dhcp(Option<DhcpClientId>),
}

/// `off`, `dhcp`, `dhcp,TYPE,VALUE`...: the short forms, which are also the words of the
/// `autoconf` field. `None`: not such a word.
fn autoconf_word(v: &str) -> Option<Result<Autoconf, IpProblem>> {
    Some(Ok(match v {
        "" | "off" | "none" => Autoconf::Off,
        "dhcp" | "on" | "any" | "both" | "bootp" | "rarp" => Autoconf::Dhcp(None),
        _ => {
            let id = v.strip_prefix("dhcp,")?;
            return Some(client_id(id).map(|id| Autoconf::Dhcp(Some(id))));
        }
    }))
}

/// `<client-id-type>,<client-id-value>` after `dhcp,`, as `ic_proto_name()` reads it: the
/// type with `kstrtou8(.., 0)` (decimal, `0x` hex or `0` octal), the value up to 251
/// bytes. Where the kernel ignores a bad type (a debug line only), this refuses it.
fn client_id(text: &str) -> Result<DhcpClientId, IpProblem> {
    let bad = |reason| IpProblem::ClientId {
        value: format!("dhcp,{text}"),
        reason,
    };
    let (kind, value) = text
        .split_once(',')
        .ok_or_else(|| bad("expected dhcp,<client-id-type>,<client-id-value>"))?;
    let kind = parse_u8_base0(kind).ok_or_else(|| bad("the type is not a number 0..=255"))?;
    if value.is_empty() || value.len() > 251 || value.contains('\0') {
        return Err(bad("the value must be 1 to 251 bytes"));
    }
    Ok(DhcpClientId {
        kind,
        value: value.to_string(),
    })
}

/// `kstrtou8(s, 0)`: `0x` hex, a leading `0` octal, else decimal; digits only.
fn parse_u8_base0(s: &str) -> Option<u8> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or(s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(digits, radix).ok()
}

/// Parses the value of `ip=` (without the `ip=`).
pub fn parse(value: &str) -> Result<IpConfig, IpError> {
    let refuse = |problems| IpError {
        value: value.to_string(),
        problems,
    };
    // As in the kernel, the whole value is tried as a short form before it is split on
    // ':', so a client identifier may hold colons (a MAC address).
    if let Some(word) = autoconf_word(value) {
        let mut cfg = IpConfig::empty();
        match word.map_err(|p| refuse(vec![p]))? {
            Autoconf::Off | Autoconf::Default => {}
            Autoconf::Dhcp(id) => {
                cfg.mode = IpMode::Dhcp;
                cfg.client_id = id;
            }
        }
        return Ok(cfg);
    }
    let fields: Vec<&str> = value.split(':').collect();
    let mut p = Parser::default();
    for (&field, &text) in Field::ALL.iter().zip(&fields) {
        if !text.is_empty() && p.field(field, text, &fields).is_err() {
            // the colons of an IPv6 address shifted every later field: stop here
            return Err(refuse(p.problems));
        }
    }
    if fields.len() > FIELDS.len() {
        p.problems.push(IpProblem::TooManyFields {
            count: fields.len(),
        });
    }
    let mut cfg = p.cfg;
    let mut problems = p.problems;
    // The kernel configures a given client address statically whatever `autoconf` says: it
    // runs DHCP only without one (or on several devices, which vminit refuses anyway).
    cfg.mode = match (p.client, p.autoconf) {
        (None, Autoconf::Off) => IpMode::Off,
        (None, Autoconf::Default) => IpMode::Dhcp,
        (None, Autoconf::Dhcp(id)) => {
            cfg.client_id = id;
            IpMode::Dhcp
        }
        (Some(addr), _) => static_mode(addr, &cfg, &mut problems),
    };
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(refuse(problems))
    }
}

/// The state of one parse: what the fields said so far and every problem found.
struct Parser {
    cfg: IpConfig,
    client: Option<Ipv4Addr>,
    autoconf: Autoconf,
    problems: Vec<IpProblem>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            cfg: IpConfig::empty(),
            client: None,
            autoconf: Autoconf::Default,
            problems: Vec::new(),
        }
    }
}

/// Parsing cannot go on: the fields after this one are misaligned.
struct Misaligned;

impl Parser {
    /// Reads one non-empty field.
    fn field(&mut self, field: Field, text: &str, all: &[&str]) -> Result<(), Misaligned> {
        let bad = |reason| IpProblem::Field {
            position: field.position(),
            value: text.to_string(),
            reason,
        };
        match field {
            Field::Hostname => match check_hostname(text) {
                Ok(()) => {
                    let (host, domain) = match text.split_once('.') {
                        Some((h, d)) => (h, Some(d.to_string())),
                        None => (text, None),
                    };
                    self.cfg.hostname = Some(host.to_string());
                    self.cfg.domain = domain;
                }
                Err(reason) => self.problems.push(bad(reason)),
            },
            Field::Device => match check_ifname(text) {
                Ok(()) => self.cfg.device = Some(text.to_string()),
                Err(reason) => self.problems.push(bad(reason)),
            },
            Field::Autoconf => match autoconf_word(text) {
                Some(Ok(a)) => self.autoconf = a,
                Some(Err(p)) => self.problems.push(p),
                None => self.problems.push(bad(
                    "not an autoconf method (off, none, on, any, dhcp, bootp, rarp, both)",
                )),
            },
            _ => return self.address(field, text, all),
        }
        Ok(())
    }

    /// Reads an address field (every field but hostname, device and autoconf).
    fn address(&mut self, field: Field, text: &str, all: &[&str]) -> Result<(), Misaligned> {
        let bad = |reason| IpProblem::Field {
            position: field.position(),
            value: text.to_string(),
            reason,
        };
        let Some(a) = parse_v4(text) else {
            if let Some(v6) = find_ipv6(all, field as usize) {
                self.problems.push(IpProblem::Ipv6 {
                    position: field.position(),
                    value: v6,
                });
                return Err(Misaligned);
            }
            self.problems
                .push(bad("not an IPv4 address (dotted quad, e.g. 192.0.2.10)"));
            return Ok(());
        };
        let a = (!a.is_unspecified()).then_some(a);
        match field {
            Field::ClientIp => {
                if a.is_some_and(|a| a.is_multicast() || a.is_broadcast() || a.is_loopback()) {
                    self.problems
                        .push(bad("not a unicast address for this machine"));
                }
                self.client = a;
            }
            Field::ServerIp => self.cfg.server = a,
            Field::GwIp => self.cfg.gateway = a,
            Field::Netmask => {
                if a.is_some_and(|m| mask_to_prefix(m).is_none()) {
                    self.problems
                        .push(bad("not a contiguous netmask (e.g. 255.255.255.0)"));
                }
                self.cfg.netmask = a;
            }
            Field::Ntp0Ip => self.cfg.ntp = a,
            _ => self.cfg.dns.extend(a),
        }
        Ok(())
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
                    position: Field::Netmask.position(),
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
            interface: self
                .device
                .clone()
                .map_or(InterfaceSelector::OnlyEthernet, InterfaceSelector::Name),
            method,
            dns: self.dns.iter().map(|&a| IpAddr::V4(a)).collect(),
            mtu: None,
            carrier_timeout: DEFAULT_CARRIER_TIMEOUT,
            hostname: self.hostname.clone(),
            dhcp_client_id: match self.mode {
                IpMode::Dhcp => self.client_id.clone(),
                _ => None,
            },
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
