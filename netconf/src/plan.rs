//! Pure decisions of bring-up: the ordered steps a plan (and, for DHCP, its lease) turns into,
//! which addresses to add, keep or remove, whether a default route is already right, and the
//! text of resolv.conf. No kernel, no clock: `apply.rs` executes what this decides.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use guest_config::{AddressMethod, IpNet, NetworkPlan};

use crate::dhcp::Lease;
use crate::rtnl::{Addr, DefaultRoute};

/// One step of bring-up, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    LoopbackUp,
    /// Wait (bounded) for the interface named by the plan to appear.
    FindInterface,
    SetMtu(u32),
    LinkUp,
    WaitCarrier,
    /// Acquire a lease; the steps after it come from [`config_steps`] with that lease.
    Dhcp,
    /// Make these the interface's addresses: add the missing, remove the others.
    Addresses(Vec<IpNet>),
    DefaultRoute(IpAddr),
    /// `search` holds only names the DHCP client checked (`dhcp::names`).
    ResolvConf {
        dns: Vec<IpAddr>,
        search: Vec<String>,
    },
    Hostname(String),
    /// Probe the IPv4 gateway once with ARP (a warning if it stays silent).
    ProbeGateway(Ipv4Addr),
}

/// Steps up to the point where addresses are known: everything for `Off`, everything before
/// the lease for `Dhcp`, everything before the addresses for `Static`.
pub fn link_steps(plan: &NetworkPlan) -> Vec<Step> {
    let mut s = vec![Step::LoopbackUp];
    if plan.method == AddressMethod::Off {
        // `ip=off`: the source wants no address; the interface is not touched at all. The
        // host name is still set: the kernel sets the `ip=` hostname field while parsing,
        // whatever it configures after, and a guest moved from CONFIG_IP_PNP to vminit
        // must keep its name.
        s.extend(plan.hostname.clone().map(Step::Hostname));
        return s;
    }
    s.push(Step::FindInterface);
    if let Some(m) = plan.mtu {
        s.push(Step::SetMtu(m));
    }
    s.push(Step::LinkUp);
    s.push(Step::WaitCarrier);
    if plan.method == AddressMethod::Dhcp {
        s.push(Step::Dhcp);
    }
    s
}

/// Steps that configure addresses, routes, DNS and hostname. For `Dhcp` they come from the
/// lease, with the plan's own values first: the plan's MTU and hostname win over the lease's,
/// the plan's DNS servers come before the lease's.
pub fn config_steps(plan: &NetworkPlan, lease: Option<&Lease>) -> Vec<Step> {
    let mut s = Vec::new();
    let (addresses, gateway, gateway6, search) = match (&plan.method, lease) {
        (AddressMethod::Off, _) | (AddressMethod::Dhcp, None) => return s,
        (
            AddressMethod::Static {
                addresses,
                gateway,
                gateway6,
            },
            _,
        ) => (addresses.clone(), *gateway, *gateway6, Vec::new()),
        (AddressMethod::Dhcp, Some(l)) => {
            if let (None, Some(m)) = (plan.mtu, l.mtu) {
                s.push(Step::SetMtu(u32::from(m)));
            }
            (vec![l.net()], l.router, None, l.search.clone())
        }
    };
    s.push(Step::Addresses(addresses));
    if let Some(g) = gateway {
        s.push(Step::DefaultRoute(g.into()));
    }
    if let Some(g) = gateway6 {
        s.push(Step::DefaultRoute(g.into()));
    }
    let mut dns = plan.dns.clone();
    for d in lease.map(|l| l.dns.as_slice()).unwrap_or_default() {
        let d = IpAddr::V4(*d);
        if !dns.contains(&d) {
            dns.push(d);
        }
    }
    if !dns.is_empty() {
        s.push(Step::ResolvConf { dns, search });
    }
    let hostname = plan
        .hostname
        .clone()
        .or_else(|| lease.and_then(|l| l.hostname.clone()));
    if let Some(h) = hostname {
        s.push(Step::Hostname(h));
    }
    if let Some(g) = gateway {
        s.push(Step::ProbeGateway(g));
    }
    s
}

/// What to do with the interface's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrDiff {
    pub keep: Vec<IpNet>,
    pub add: Vec<IpNet>,
    pub remove: Vec<IpNet>,
}

/// Compares what is on the interface with what the source names. An address counts as present
/// only with the same prefix length (`10.0.2.15/16` is not `10.0.2.15/24`). IPv6 link-scope
/// addresses (`fe80::/64`, made by the kernel) are never removed.
pub fn diff_addresses(current: &[Addr], wanted: &[IpNet]) -> AddrDiff {
    let wanted: BTreeSet<IpNet> = wanted.iter().copied().collect();
    let mut d = AddrDiff::default();
    let mut present = BTreeSet::new();
    for a in current {
        present.insert(a.net);
        if wanted.contains(&a.net) {
            d.keep.push(a.net);
        } else if !(a.net.addr.is_ipv6() && a.link_scope) {
            d.remove.push(a.net);
        }
    }
    d.add = wanted
        .into_iter()
        .filter(|w| !present.contains(w))
        .collect();
    d
}

/// Whether the main table already has this default route (same gateway, same interface).
/// Other default routes (another metric, another interface) are left alone: they are not
/// addresses, and removing routes someone else added is not this crate's call.
pub fn default_route_in_place(existing: &[DefaultRoute], gateway: IpAddr, oif: u32) -> bool {
    existing
        .iter()
        .any(|r| r.gateway == Some(gateway) && r.oif == Some(oif))
}

/// resolv.conf(5) content.
pub fn resolv_conf(source: &str, dns: &[IpAddr], search: &[String]) -> String {
    let mut s = format!("# written by vminit from the network source \"{source}\"\n");
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    // The resolver reads at most three (MAXNS); list them all anyway, the extra are harmless.
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_config::{InterfaceSelector, NetworkSource};
    use std::time::{Duration, Instant};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn addr(s: &str, link_scope: bool) -> Addr {
        Addr {
            index: 2,
            net: net(s),
            link_scope,
        }
    }

    fn plan(method: AddressMethod) -> NetworkPlan {
        NetworkPlan {
            source: NetworkSource::Drive,
            interface: InterfaceSelector::Name("eth0".into()),
            method,
            dns: vec!["192.0.2.53".parse().unwrap()],
            mtu: Some(1400),
            carrier_timeout: Duration::from_secs(5),
            hostname: None,
            dhcp_client_id: None,
        }
    }

    fn lease() -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(192, 0, 2, 53)],
            search: vec!["example.internal".into()],
            mtu: Some(1450),
            hostname: Some("from-dhcp".into()),
            refused: Vec::new(),
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_time: Some(Duration::from_secs(3600)),
            t1: Duration::from_secs(1800),
            t2: Duration::from_secs(3150),
            acquired: Instant::now(),
        }
    }

    #[test]
    fn diff_keeps_adds_removes_and_spares_link_local() {
        let current = [
            addr("10.0.2.15/24", false),
            addr("192.0.2.99/24", false),
            addr("10.0.3.1/16", false),
            addr("fe80::5054:ff:fe12:3456/64", true),
            addr("2001:db8::99/64", false),
        ];
        let d = diff_addresses(
            &current,
            &[
                net("10.0.2.15/24"),
                net("10.0.3.1/24"),
                net("2001:db8::10/64"),
            ],
        );
        assert_eq!(d.keep, vec![net("10.0.2.15/24")]);
        assert_eq!(d.add, vec![net("10.0.3.1/24"), net("2001:db8::10/64")]);
        assert_eq!(
            d.remove,
            vec![
                net("192.0.2.99/24"),
                net("10.0.3.1/16"),
                net("2001:db8::99/64")
            ]
        );
        // Applying the result gives an empty diff: idempotence.
        let after: Vec<Addr> = [
            net("10.0.2.15/24"),
            net("10.0.3.1/24"),
            net("2001:db8::10/64"),
        ]
        .iter()
        .map(|n| addr(&n.to_string(), false))
        .collect();
        let d = diff_addresses(
            &after,
            &[
                net("10.0.2.15/24"),
                net("10.0.3.1/24"),
                net("2001:db8::10/64"),
            ],
        );
        assert!(d.add.is_empty() && d.remove.is_empty() && d.keep.len() == 3);
    }

    #[test]
    fn static_plan_steps() {
        let p = plan(AddressMethod::Static {
            addresses: vec![net("192.0.2.10/24"), net("2001:db8::10/64")],
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            gateway6: Some("2001:db8::1".parse().unwrap()),
        });
        assert_eq!(
            link_steps(&p),
            vec![
                Step::LoopbackUp,
                Step::FindInterface,
                Step::SetMtu(1400),
                Step::LinkUp,
                Step::WaitCarrier
            ]
        );
        let c = config_steps(&p, None);
        assert_eq!(
            c[0],
            Step::Addresses(vec![net("192.0.2.10/24"), net("2001:db8::10/64")])
        );
        assert_eq!(c[1], Step::DefaultRoute("192.0.2.1".parse().unwrap()));
        assert_eq!(c[2], Step::DefaultRoute("2001:db8::1".parse().unwrap()));
        assert!(
            matches!(&c[3], Step::ResolvConf { dns, search } if dns.len() == 1 && search.is_empty())
        );
        assert_eq!(c[4], Step::ProbeGateway(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn off_touches_only_loopback() {
        let p = plan(AddressMethod::Off);
        assert_eq!(link_steps(&p), vec![Step::LoopbackUp]);
        assert!(config_steps(&p, Some(&lease())).is_empty());
    }

    #[test]
    fn off_still_sets_the_hostname_and_nothing_else() {
        let mut p = plan(AddressMethod::Off);
        p.hostname = Some("vm-off".into());
        // DNS and MTU are in the plan too; under `off` neither is applied.
        assert_eq!(
            link_steps(&p),
            vec![Step::LoopbackUp, Step::Hostname("vm-off".into())]
        );
        assert!(config_steps(&p, None).is_empty());
    }

    #[test]
    fn dhcp_steps_merge_lease_under_plan() {
        let mut p = plan(AddressMethod::Dhcp);
        assert_eq!(link_steps(&p).last(), Some(&Step::Dhcp));
        assert!(config_steps(&p, None).is_empty());
        let c = config_steps(&p, Some(&lease()));
        // Plan MTU (1400) wins: no SetMtu from the lease.
        assert_eq!(c[0], Step::Addresses(vec![net("10.0.2.15/24")]));
        let Step::ResolvConf { dns, search } = &c[2] else {
            panic!("{c:?}")
        };
        assert_eq!(
            dns,
            &vec![
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "10.0.2.3".parse().unwrap()
            ]
        );
        assert_eq!(search, &vec!["example.internal".to_string()]);
        assert_eq!(c[3], Step::Hostname("from-dhcp".into()));
        p.mtu = None;
        p.hostname = Some("mine".into());
        let c = config_steps(&p, Some(&lease()));
        assert_eq!(c[0], Step::SetMtu(1450));
        assert!(c.contains(&Step::Hostname("mine".into())));
    }

    #[test]
    fn default_route_decision() {
        let gw: IpAddr = "10.0.2.2".parse().unwrap();
        let r = |g: &str, oif| DefaultRoute {
            gateway: Some(g.parse().unwrap()),
            oif: Some(oif),
        };
        assert!(default_route_in_place(&[r("10.0.2.2", 2)], gw, 2));
        assert!(!default_route_in_place(&[r("10.0.2.2", 3)], gw, 2));
        assert!(!default_route_in_place(&[r("10.0.2.1", 2)], gw, 2));
        assert!(!default_route_in_place(&[], gw, 2));
        assert!(default_route_in_place(
            &[r("10.0.9.1", 2), r("10.0.2.2", 2)],
            gw,
            2
        ));
    }

    #[test]
    fn resolv_conf_text() {
        let t = resolv_conf(
            "drive",
            &[
                "192.0.2.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap(),
            ],
            &["corp".to_string(), "lab.corp".to_string()],
        );
        assert_eq!(
            t,
            "# written by vminit from the network source \"drive\"\nsearch corp lab.corp\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        );
        let none = resolv_conf("cmdline", &["10.0.2.3".parse().unwrap()], &[]);
        assert!(!none.contains("search"), "{none}");
    }
}
