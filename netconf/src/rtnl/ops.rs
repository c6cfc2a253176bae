//! Typed rtnetlink operations (see rtnetlink(7)): list links, set a link up and its MTU,
//! list/add/delete addresses, read and replace default routes. Each failure is a
//! [`NetError::Netlink`] naming the operation, the interface and the kernel's errno.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use guest_config::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage, State};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::socket::Rtnl;
use crate::error::{NetError, Result};

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_LOWER_UP`: the driver reports carrier (only meaningful while up).
    pub carrier: bool,
    pub operstate: String,
    pub mtu: u32,
    /// `ARPHRD_ETHER` and not `IFF_LOOPBACK`: an Ethernet link (a NIC, or a virtual one
    /// such as a bridge or veth: `nic.rs` tells them apart).
    pub ethernet: bool,
}

/// One address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub net: IpNet,
    /// RT_SCOPE_LINK: for IPv6 these are the kernel's own `fe80::/64` addresses.
    pub link_scope: bool,
}

/// A default route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

impl Rtnl {
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(|e| nl_err("list links", "all interfaces", e))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(&l)),
                _ => None,
            })
            .collect())
    }

    /// Sets `IFF_UP` and/or the MTU of `link`; the other flags are left alone.
    pub fn set_link(&mut self, link: &Link, up: bool, mtu: Option<u32>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        if up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        let op = match (up, mtu) {
            (true, Some(m)) => format!("set up with mtu {m}"),
            (true, None) => "set link up".to_string(),
            (false, Some(m)) => format!("set mtu {m}"),
            (false, None) => return Ok(()),
        };
        self.ack(RouteNetlinkMessage::SetLink(msg), 0)
            .map_err(|e| nl_err(op, &link.name, e))
    }

    /// Addresses on the interface with index `index` (both families).
    pub fn addresses(&mut self, link: &Link) -> Result<Vec<Addr>> {
        let replies = self
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
            .map_err(|e| nl_err("list addresses", &link.name, e))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == link.index => addr_from(&a),
                _ => None,
            })
            .collect())
    }

    /// Adds `net` to `link`. IPv6 addresses get `IFA_F_NODAD`: see the crate doc.
    pub fn add_address(&mut self, link: &Link, net: IpNet) -> Result<()> {
        let msg = address_message(link.index, net, true);
        self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(|e| nl_err(format!("add address {net}"), &link.name, e))
    }

    pub fn del_address(&mut self, link: &Link, net: IpNet) -> Result<()> {
        let msg = address_message(link.index, net, false);
        self.ack(RouteNetlinkMessage::DelAddress(msg), 0)
            .map_err(|e| nl_err(format!("delete address {net}"), &link.name, e))
    }

    /// Default routes (destination /0) of one family in the main table.
    pub fn default_routes(&mut self, v6: bool) -> Result<Vec<DefaultRoute>> {
        let mut q = RouteMessage::default();
        q.header.address_family = family(v6);
        let what = if v6 {
            "list IPv6 routes"
        } else {
            "list IPv4 routes"
        };
        let replies = self
            .dump(RouteNetlinkMessage::GetRoute(q))
            .map_err(|e| nl_err(what, "all interfaces", e))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => default_route_from(&r),
                _ => None,
            })
            .collect())
    }

    /// Adds or replaces (`NLM_F_REPLACE`) the default route of `gateway`'s family.
    pub fn replace_default_route(
        &mut self,
        link: &Link,
        gateway: IpAddr,
        protocol: RouteProtocol,
    ) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(gateway.is_ipv6());
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = protocol;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        msg.attributes.push(RouteAttribute::Oif(link.index));
        self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(|e| nl_err(format!("set default route via {gateway}"), &link.name, e))
    }
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn nl_err(op: impl Into<String>, interface: &str, source: io::Error) -> NetError {
    NetError::Netlink {
        op: op.into(),
        interface: interface.to_string(),
        source,
    }
}

fn link_from(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: None,
        up: l.header.flags.contains(LinkFlags::Up),
        carrier: l.header.flags.contains(LinkFlags::LowerUp),
        operstate: "unknown".to_string(),
        mtu: 0,
        ethernet: l.header.link_layer_type == LinkLayerType::Ether
            && !l.header.flags.contains(LinkFlags::Loopback),
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Address(m) => link.mac = <[u8; 6]>::try_from(m.as_slice()).ok(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::OperState(s) => link.operstate = operstate_name(*s).to_string(),
            _ => {}
        }
    }
    link
}

fn operstate_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Dormant => "dormant",
        State::Testing => "testing",
        State::NotPresent => "notpresent",
        _ => "unknown",
    }
}

fn addr_from(a: &AddressMessage) -> Option<Addr> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    // links and equal to IFA_LOCAL otherwise. IPv6 only sends IFA_ADDRESS.
    let mut local = None;
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    Some(Addr {
        index: a.header.index,
        net: IpNet {
            addr: ip,
            prefix_len: a.header.prefix_len,
        },
        link_scope: a.header.scope == AddressScope::Link,
    })
}

fn address_message(index: u32, net: IpNet, adding: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = net.prefix_len;
    msg.header.family = family(net.addr.is_ipv6());
    msg.header.scope = AddressScope::Universe;
    match net.addr {
        IpAddr::V4(v4) => {
            msg.attributes.push(AddressAttribute::Local(net.addr));
            msg.attributes.push(AddressAttribute::Address(net.addr));
            if adding {
                if let Some(b) = broadcast(v4, net.prefix_len) {
                    msg.attributes.push(AddressAttribute::Broadcast(b));
                }
            }
        }
        IpAddr::V6(_) => {
            msg.attributes.push(AddressAttribute::Address(net.addr));
            if adding {
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
    }
    msg
}

/// The directed broadcast of `addr/prefix`, as `ip addr add ... brd +` and the kernel's
/// CONFIG_IP_PNP set it; /31 and /32 have none (RFC 3021).
fn broadcast(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix >= 31 {
        return None;
    }
    let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host))
}

fn default_route_from(r: &RouteMessage) -> Option<DefaultRoute> {
    if r.header.destination_prefix_length != 0 {
        return None;
    }
    let mut table = u32::from(r.header.table);
    let mut route = DefaultRoute {
        gateway: None,
        oif: None,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some((*g).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => route.gateway = Some((*g).into()),
            RouteAttribute::Oif(o) => route.oif = Some(*o),
            _ => {}
        }
    }
    (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_prefix() {
        let a = Ipv4Addr::new(10, 0, 2, 15);
        assert_eq!(broadcast(a, 24), Some(Ipv4Addr::new(10, 0, 2, 255)));
        assert_eq!(broadcast(a, 8), Some(Ipv4Addr::new(10, 255, 255, 255)));
        assert_eq!(broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(a, 31), None);
        assert_eq!(broadcast(a, 32), None);
    }

    #[test]
    fn ipv6_adds_carry_nodad_and_v4_a_broadcast() {
        let m = address_message(3, "2001:db8::10/64".parse().unwrap(), true);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        let m = address_message(3, "192.0.2.10/24".parse().unwrap(), true);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Broadcast(Ipv4Addr::new(192, 0, 2, 255))));
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.index, 3);
    }
}
