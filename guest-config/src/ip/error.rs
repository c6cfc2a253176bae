//! The errors of `ip=` parsing: every problem found, each naming the field, its 1-based
//! position and the value, in one console line.

use std::fmt;
use std::net::Ipv4Addr;

use super::FIELDS;
use crate::network::IpNet;

/// Why a field (or the whole value) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpProblem {
    /// Field `position` (1-based, see [`FIELDS`]) holds `value`, which is not valid there.
    Field {
        position: usize,
        value: String,
        reason: &'static str,
    },
    /// An IPv6 address starting at field `position`; the colons have split it.
    Ipv6 {
        position: usize,
        value: String,
    },
    TooManyFields {
        count: usize,
    },
    /// `dhcp,<client-id-type>,<client-id-value>` that cannot be sent as written.
    ClientId {
        value: String,
        reason: &'static str,
    },
    GatewayOffLink {
        gateway: Ipv4Addr,
        net: IpNet,
    },
}

/// A refused `ip=` value with every problem found in it. Nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpError {
    pub value: String,
    pub problems: Vec<IpProblem>,
}

impl IpProblem {
    /// The field name of a field problem.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            IpProblem::Field { position, .. } | IpProblem::Ipv6 { position, .. } => {
                FIELDS.get(position.wrapping_sub(1)).copied()
            }
            IpProblem::ClientId { .. } => Some("autoconf"),
            IpProblem::GatewayOffLink { .. } => Some("gw-ip"),
            IpProblem::TooManyFields { .. } => None,
        }
    }
}

impl fmt::Display for IpProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.field().unwrap_or("?");
        match self {
            IpProblem::Field {
                position,
                value,
                reason,
            } => write!(f, "field {position} ({name}) {value:?}: {reason}"),
            IpProblem::Ipv6 { position, value } => write!(
                f,
                "field {position} ({name}) {value:?} is IPv6: the kernel's ip= is IPv4 only \
                 (put IPv6 addresses in the config drive [network])"
            ),
            IpProblem::TooManyFields { count } => {
                write!(f, "{count} fields, at most 10 ({})", FIELDS.join(":"))
            }
            IpProblem::ClientId { value, reason } => write!(
                f,
                "DHCP client identifier {value:?}: {reason} (write dhcp,<type>,<value>, \
                 e.g. dhcp,0,vm-42)"
            ),
            IpProblem::GatewayOffLink { gateway, net } => write!(
                f,
                "field 3 (gw-ip) {gateway} is not in the client's network {net}"
            ),
        }
    }
}

impl fmt::Display for IpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel cmdline ip={:?} refused, nothing applied: ",
            self.value
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for IpError {}
