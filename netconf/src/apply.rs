//! Executes the steps `plan.rs` decides, against the kernel: one [`Exec`] holds the rtnetlink
//! socket, the link monitor and the interface found, and records every change it makes in the
//! [`NetworkState`]. Idempotent by construction: every step reads the kernel's state first
//! and changes only what differs.

use std::net::{IpAddr, Ipv4Addr};

use guest_config::{DhcpClientId, NetworkPlan};
use netlink_packet_route::route::RouteProtocol;

use crate::dhcp::{self, Lease};
use crate::error::{NetError, Result};
use crate::files::{self, WriteOutcome};
use crate::nic::{self, Choice};
use crate::plan::{self, Step};
use crate::rtnl::{Link, LinkMonitor, Rtnl};
use crate::state::{boottime_ms, LinkState, NetworkState};
use crate::{arp, wait, Env};

/// The interface found and, for DHCP, the lease that configured it.
#[derive(Debug, Clone)]
pub struct Bound {
    pub link: Option<Link>,
    pub lease: Option<Lease>,
    /// The gateway probe found the gateway silent (the warning is in the state's `error`).
    pub gateway_silent: bool,
}

pub struct Exec<'a> {
    plan: &'a NetworkPlan,
    env: &'a Env,
    rtnl: Rtnl,
    monitor: Option<LinkMonitor>,
    link: Option<Link>,
    /// IPv4 addresses added and not announced yet (see [`Exec::announce_added`]).
    added_v4: Vec<Ipv4Addr>,
}

/// Brings the network up as the plan says, updating `st` as it goes (so a failure still
/// reports the interface and timings reached). A silent gateway is a warning: `Ok`, with the
/// text in `st.error` and `st.state == Up`.
pub fn bring_up(plan: &NetworkPlan, env: &Env, st: &mut NetworkState) -> Result<Bound> {
    bring_up_then_probe(plan, env, st, &mut |_| {})
}

/// [`bring_up`], calling `configured` as soon as addresses and routes are in place and
/// before the gateway probe: the probe only adds a warning, and the guest's services should
/// not wait for an ARP round trip to start.
pub fn bring_up_then_probe(
    plan: &NetworkPlan,
    env: &Env,
    st: &mut NetworkState,
    configured: &mut dyn FnMut(&NetworkState),
) -> Result<Bound> {
    st.source = plan.source;
    st.changes.clear();
    st.error = None;
    st.timings.started_ms = boottime_ms();
    let mut ex = Exec::new(plan, env, None)?;
    let mut lease = None;
    for step in plan::link_steps(plan) {
        if let Some(l) = ex.run(&step, st)? {
            lease = Some(l);
        }
    }
    if plan.method == guest_config::AddressMethod::Off {
        st.state = LinkState::Unconfigured;
        st.interface = None;
        st.addresses.clear();
        return Ok(Bound {
            link: None,
            lease,
            gateway_silent: false,
        });
    }
    ex.configure(lease.as_ref(), false, st)?;
    log::debug!("network: timeline (ms since kernel start) {:?}", st.timings);
    configured(st);
    ex.announce_added();
    let gateway_silent = ex.probe(lease.as_ref(), st);
    Ok(Bound {
        link: ex.link,
        lease,
        gateway_silent,
    })
}

/// Opens the rtnetlink socket every bring-up step goes through.
pub fn open_rtnl() -> Result<Rtnl> {
    Rtnl::open().map_err(|source| NetError::Socket {
        what: "open an rtnetlink socket",
        source,
    })
}

/// Brings `lo` up; `Ok(true)` if it was down.
pub fn loopback_up(rtnl: &mut Rtnl) -> Result<bool> {
    match rtnl.links()?.into_iter().find(|l| l.name == "lo") {
        Some(lo) if !lo.up => {
            rtnl.set_link(&lo, true, None)?;
            Ok(true)
        }
        Some(_) => Ok(false),
        None => {
            log::warn!("network: no loopback interface lo");
            Ok(false)
        }
    }
}

impl<'a> Exec<'a> {
    pub fn new(plan: &'a NetworkPlan, env: &'a Env, link: Option<Link>) -> Result<Self> {
        let rtnl = open_rtnl()?;
        Ok(Exec {
            plan,
            env,
            rtnl,
            monitor: None,
            link,
            added_v4: Vec::new(),
        })
    }

    /// Addresses, routes, DNS, hostname (and the gateway probe when `probe`), then the
    /// resulting addresses into `st`.
    pub fn configure(
        &mut self,
        lease: Option<&Lease>,
        probe: bool,
        st: &mut NetworkState,
    ) -> Result<()> {
        if probe {
            // A renewal (no probe) keeps the last probe's warning rather than hiding it.
            st.error = None;
        }
        for step in plan::config_steps(self.plan, lease) {
            if matches!(step, Step::ProbeGateway(_)) && !probe {
                continue;
            }
            self.run(&step, st)?;
        }
        let link = self.link()?.clone();
        st.addresses = self
            .rtnl
            .addresses(&link)?
            .iter()
            .filter(|a| !(a.net.addr.is_ipv6() && a.link_scope))
            .map(|a| a.net.to_string())
            .collect();
        st.state = LinkState::Up;
        st.timings.configured_ms = boottime_ms();
        Ok(())
    }

    /// Removes one address (a lost lease's) and notes it.
    pub fn remove_address(
        &mut self,
        net: guest_config::IpNet,
        st: &mut NetworkState,
    ) -> Result<()> {
        let link = self.link()?.clone();
        if self.rtnl.addresses(&link)?.iter().any(|a| a.net == net) {
            self.rtnl.del_address(&link, net)?;
            st.changes.push(format!("removed {net}"));
        }
        st.addresses.retain(|a| *a != net.to_string());
        Ok(())
    }

    fn link(&self) -> Result<&Link> {
        self.link.as_ref().ok_or_else(|| NetError::NoInterface {
            wanted: self.plan.interface.clone(),
            waited: std::time::Duration::ZERO,
            present: Vec::new(),
            nics: Vec::new(),
            driver: None,
        })
    }

    fn name(&self) -> String {
        self.link
            .as_ref()
            .map_or_else(|| self.plan.interface.to_string(), |l| l.name.clone())
    }

    fn monitor(&mut self) -> Result<LinkMonitor> {
        match self.monitor.take() {
            Some(m) => Ok(m),
            None => LinkMonitor::open().map_err(|source| NetError::Socket {
                what: "subscribe to rtnetlink link events",
                source,
            }),
        }
    }

    /// Runs one step; only [`Step::Dhcp`] returns something (the lease).
    fn run(&mut self, step: &Step, st: &mut NetworkState) -> Result<Option<Lease>> {
        match step {
            Step::LoopbackUp => {
                if loopback_up(&mut self.rtnl)? {
                    st.changes.push("lo up".to_string());
                }
            }
            Step::FindInterface => self.find_interface(st)?,
            Step::SetMtu(m) => self.set_mtu(*m, st)?,
            Step::LinkUp => self.link_up(st)?,
            Step::WaitCarrier => self.wait_carrier(st)?,
            Step::Dhcp => return self.dhcp().map(Some),
            Step::Addresses(wanted) => self.set_addresses(wanted, st)?,
            Step::DefaultRoute(gw) => self.default_route(*gw, st)?,
            Step::ResolvConf { dns, search } => self.resolv_conf(dns, search, st)?,
            Step::Hostname(h) => self.hostname(h, st)?,
            Step::ProbeGateway(gw) => {
                self.probe_gateway(*gw, st);
            }
        }
        Ok(None)
    }

    /// Waits (bounded by the carrier timeout) for the planned interface to appear; for
    /// [`guest_config::InterfaceSelector::OnlyEthernet`], for the one Ethernet NIC (several is an error at
    /// once: waiting does not make one of them the right one).
    fn find_interface(&mut self, st: &mut NetworkState) -> Result<()> {
        // Subscribed before the first look, so an interface registered in between still
        // wakes the wait.
        let mut mon = self.monitor()?;
        let sel = self.plan.interface.clone();
        let root = &self.env.sys_class_net;
        let found = wait::wait_for(
            &mut self.rtnl,
            &mut mon,
            &*self.env.clock,
            self.plan.carrier_timeout,
            |r| {
                Ok(match nic::choose(&sel, &nic::read(root, r.links()?)) {
                    Choice::Found(l) => Some(Ok(l)),
                    Choice::Several(nics) => Some(Err(nics)),
                    Choice::Absent => None,
                })
            },
        );
        self.monitor = Some(mon);
        let link = match found? {
            Some(Ok(link)) => link,
            Some(Err(nics)) => return Err(NetError::SeveralInterfaces { nics }),
            None => {
                let links = nic::read(root, self.rtnl.links()?);
                return Err(NetError::NoInterface {
                    wanted: sel,
                    waited: self.plan.carrier_timeout,
                    present: links.iter().map(|l| l.link.name.clone()).collect(),
                    nics: nic::nics(&links),
                    driver: self.env.driver_diagnosis.as_ref().and_then(|f| f()),
                });
            }
        };
        // The real name, whatever the selector: `network.interface` of the health JSON.
        st.interface = Some(link.name.clone());
        st.timings.link_found_ms = boottime_ms();
        self.link = Some(link);
        Ok(())
    }

    fn set_mtu(&mut self, mtu: u32, st: &mut NetworkState) -> Result<()> {
        let link = self.link()?.clone();
        if link.mtu != mtu {
            self.rtnl.set_link(&link, false, Some(mtu))?;
            st.changes.push(format!("mtu {} -> {mtu}", link.mtu));
            self.refresh()?;
        }
        Ok(())
    }

    fn link_up(&mut self, st: &mut NetworkState) -> Result<()> {
        let link = self.link()?.clone();
        if !link.up {
            self.rtnl.set_link(&link, true, None)?;
            st.changes.push(format!("{} up", link.name));
        }
        Ok(())
    }

    /// Waits (bounded by the carrier timeout) for carrier on the interface found.
    fn wait_carrier(&mut self, st: &mut NetworkState) -> Result<()> {
        let mut mon = self.monitor()?;
        let index = self.link()?.index;
        let got = wait::wait_for(
            &mut self.rtnl,
            &mut mon,
            &*self.env.clock,
            self.plan.carrier_timeout,
            |r| {
                Ok(r.links()?
                    .into_iter()
                    .find(|l| l.index == index && l.carrier))
            },
        );
        self.monitor = Some(mon);
        match got? {
            Some(l) => self.link = Some(l),
            None => {
                return Err(NetError::NoCarrier {
                    interface: self.name(),
                    waited: self.plan.carrier_timeout,
                })
            }
        }
        st.timings.carrier_ms = boottime_ms();
        Ok(())
    }

    /// Acquires a DHCP lease on the interface and logs it (and what the checks refused).
    fn dhcp(&mut self) -> Result<Lease> {
        let link = self.link()?.clone();
        let mac = link.mac.ok_or_else(|| NetError::DhcpSocket {
            interface: link.name.clone(),
            op: "read the hardware address (the interface has none)",
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        let sock = dhcp::DhcpSocket::open(&link.name)?;
        let (env, clock) = (self.env, &*self.env.clock);
        let lease = with_client_opts(self.plan, env, |opts| {
            dhcp::acquire(&sock, &mac, opts, clock, env.dhcp_timeout)
        })?;
        log_refused(&lease, &link.name, &[]);
        log::info!(
            "network: DHCP lease {} from {} on {} ({})",
            lease.net(),
            lease.server,
            link.name,
            lease
                .lease_time
                .map_or("infinite".to_string(), |t| format!("{} s", t.as_secs()))
        );
        Ok(lease)
    }

    /// Makes `wanted` the interface's addresses: strays removed (with a warning), the
    /// missing added (IPv4 ones queued for announcement).
    fn set_addresses(
        &mut self,
        wanted: &[guest_config::IpNet],
        st: &mut NetworkState,
    ) -> Result<()> {
        let link = self.link()?.clone();
        let current = self.rtnl.addresses(&link)?;
        let d = plan::diff_addresses(&current, wanted);
        for n in &d.remove {
            log::warn!(
                "network: removing {n} from {}: not named by the {} network source",
                link.name,
                self.plan.source
            );
            self.rtnl.del_address(&link, *n)?;
            st.changes.push(format!("removed stray {n}"));
        }
        for n in &d.add {
            self.rtnl.add_address(&link, *n)?;
            st.changes.push(format!("added {n}"));
            if let IpAddr::V4(v4) = n.addr {
                self.added_v4.push(v4);
            }
        }
        Ok(())
    }

    fn default_route(&mut self, gw: IpAddr, st: &mut NetworkState) -> Result<()> {
        let link = self.link()?.clone();
        let existing = self.rtnl.default_routes(gw.is_ipv6())?;
        if !plan::default_route_in_place(&existing, gw, link.index) {
            let proto = if self.plan.method == guest_config::AddressMethod::Dhcp {
                RouteProtocol::Dhcp
            } else {
                RouteProtocol::Static
            };
            self.rtnl.replace_default_route(&link, gw, proto)?;
            st.changes.push(format!("default route via {gw}"));
        }
        Ok(())
    }

    /// Writes resolv.conf atomically (see `files.rs` for the symlink policy).
    fn resolv_conf(
        &mut self,
        dns: &[IpAddr],
        search: &[String],
        st: &mut NetworkState,
    ) -> Result<()> {
        let text = plan::resolv_conf(self.plan.source.as_str(), dns, search);
        let path = &self.env.resolv_conf;
        let written = files::write_atomic(path, text.as_bytes()).map_err(|(op, source)| {
            NetError::ResolvConf {
                path: path.clone(),
                op,
                source,
            }
        })?;
        match written {
            WriteOutcome::Unchanged => {}
            WriteOutcome::Written => st.changes.push(format!("wrote {}", path.display())),
            WriteOutcome::ReplacedSymlink(target) => {
                log::warn!(
                    "network: {} was a symlink to {} (a systemd-resolved stub?); replaced it \
                     with a regular file holding the {} source's servers",
                    path.display(),
                    target.display(),
                    self.plan.source
                );
                st.changes
                    .push(format!("wrote {} (was a symlink)", path.display()));
            }
        }
        Ok(())
    }

    fn hostname(&mut self, h: &str, st: &mut NetworkState) -> Result<()> {
        let Some(hn) = &self.env.hostname else {
            return Ok(());
        };
        let err = |source| NetError::Hostname {
            name: h.to_string(),
            source,
        };
        if hn.get().map_err(err)? != h {
            hn.set(h).map_err(err)?;
            st.changes.push(format!("hostname {h}"));
        }
        Ok(())
    }

    fn refresh(&mut self) -> Result<()> {
        let index = self.link()?.index;
        if let Some(l) = self.rtnl.links()?.into_iter().find(|l| l.index == index) {
            self.link = Some(l);
        }
        Ok(())
    }

    /// Announces each IPv4 address this `Exec` added (one ARP announcement each): neighbours
    /// that still map it to an earlier guest's MAC (fleets reuse addresses across short-lived
    /// VMs) take the new one at once instead of after their entry goes stale. Called once the
    /// configuration is published, like the gateway probe: the kernel already answers ARP for
    /// the address, so nothing in the guest waits for this. Best effort: a failure is logged,
    /// since the address is configured either way.
    pub fn announce_added(&mut self) {
        let added = std::mem::take(&mut self.added_v4);
        let Some(link) = &self.link else { return };
        let Some(mac) = link.mac else { return };
        for addr in added {
            match arp::announce(link.index, mac, addr) {
                Ok(()) => log::debug!("network: announced {addr} on {} with ARP", link.name),
                Err(e) => log::warn!(
                    "network: cannot announce {addr} on {} with ARP (neighbours learn it on \
                     first contact instead): {e}",
                    link.name
                ),
            }
        }
    }

    /// The gateway probe steps of the plan, after [`Self::configure`] without them; true when
    /// a gateway stayed silent (the warning is logged and in `st.error`).
    pub fn probe(&mut self, lease: Option<&Lease>, st: &mut NetworkState) -> bool {
        let mut silent = false;
        for step in plan::config_steps(self.plan, lease) {
            if let Step::ProbeGateway(gw) = step {
                silent |= self.probe_gateway(gw, st);
            }
        }
        silent
    }

    /// The plan's gateway probes again, quietly: the first warning, or `None` when every
    /// gateway answered (or there is nothing to probe). The caller decides what to log.
    pub fn reprobe(&mut self, lease: Option<&Lease>) -> Option<NetError> {
        plan::config_steps(self.plan, lease)
            .into_iter()
            .find_map(|step| match step {
                Step::ProbeGateway(gw) => self.gateway_warning(gw),
                _ => None,
            })
    }

    /// Records a warning in `st.error` when the gateway stays silent (true); never fails
    /// bring-up.
    fn probe_gateway(&mut self, gw: Ipv4Addr, st: &mut NetworkState) -> bool {
        match self.gateway_warning(gw) {
            Some(warning) => {
                log::warn!("{warning}");
                st.error = Some(warning.to_string());
                true
            }
            None => false,
        }
    }

    /// One ARP probe of `gw` from our address in its subnet: `None` if it answered (or the
    /// probe is off, or there is no IPv4 address to ask from).
    fn gateway_warning(&mut self, gw: Ipv4Addr) -> Option<NetError> {
        let (Some(timeout), Some(link)) = (self.env.arp_timeout, self.link.clone()) else {
            return None;
        };
        let mac = link.mac?;
        let ours = self.rtnl.addresses(&link).unwrap_or_default();
        let v4 = |a: &crate::rtnl::Addr| match a.net.addr {
            IpAddr::V4(v4) => Some((v4, a.net.prefix_len)),
            IpAddr::V6(_) => None,
        };
        let (src, _) = ours
            .iter()
            .filter_map(v4)
            .find(|(a, p)| same_subnet(*a, gw, *p))
            .or_else(|| ours.iter().find_map(v4))?;
        match arp::probe(link.index, mac, src, gw, timeout) {
            Ok(Some(_)) => None,
            Ok(None) => Some(NetError::GatewayNoArp {
                interface: link.name.clone(),
                gateway: gw,
                waited: timeout,
            }),
            Err(source) => Some(NetError::ArpProbe {
                interface: link.name.clone(),
                source,
            }),
        }
    }
}

/// Logs, once each, the values of `lease` the checks refused that `already` (the previous
/// lease's refusals, on a renewal) does not hold: a server repeating the same bad value at
/// every renewal is not a new line each time. The values are escaped in `refused`.
pub fn log_refused(lease: &Lease, interface: &str, already: &[String]) {
    for r in lease.refused.iter().filter(|r| !already.contains(r)) {
        log::warn!("network: DHCP on {interface}: not taking the server's {r}");
    }
}

/// Runs `f` with the DHCP options of `plan` (host name, client identifier) and `env`'s lease
/// floors: what every DISCOVER, REQUEST, renewal and rebinding sends.
pub(crate) fn with_client_opts<T>(
    plan: &NetworkPlan,
    env: &Env,
    f: impl FnOnce(dhcp::ClientOpts<'_>) -> T,
) -> T {
    let client_id = plan.dhcp_client_id.as_ref().map(DhcpClientId::to_bytes);
    f(dhcp::ClientOpts {
        hostname: plan.hostname.as_deref(),
        client_id: client_id.as_deref(),
        limits: env.lease_limits,
    })
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let net = guest_config::IpNet {
        addr: a.into(),
        prefix_len: prefix,
    };
    net.contains(b.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_match() {
        let a = Ipv4Addr::new(10, 0, 2, 15);
        assert!(same_subnet(a, Ipv4Addr::new(10, 0, 2, 2), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(10, 0, 3, 2), 24));
        assert!(same_subnet(a, Ipv4Addr::new(192, 0, 2, 1), 0));
    }
}
