//! The network thread follows link events (contract: "the network follows link events"):
//! carrier that comes after a long absence is taken at once, not at the next retry; carrier
//! lost later sets `down` with the reason and comes back `up` by itself; a gateway silent
//! to ARP is probed again and its warning clears when it answers. Namespaces and veth pairs
//! the tests create; needs root and ip(8). Conditions are awaited with generous deadlines,
//! which a timer-driven implementation could not meet (its next retry is two minutes away).

#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use guest_config::{AddressMethod, InterfaceSelector, NetworkPlan, NetworkSource};
    use netconf::{Backoff, LinkState, NetworkHandle, NetworkState};

    use super::common::*;

    /// A failed bring-up's next timed retry: far beyond every deadline below, so only a link
    /// event can explain a recovery within them.
    const LONG: Duration = Duration::from_secs(120);

    fn spawn_in(
        ns: &Netns,
        plan: NetworkPlan,
        arp_timeout: Option<Duration>,
    ) -> (NetworkHandle, Arc<Mutex<NetworkState>>) {
        let resolv = tmpfile("resolv");
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        let s = shared.clone();
        let handle = ns.enter(move || {
            let mut e = env(resolv, None);
            e.retry = Backoff::new(LONG, LONG);
            e.arp_timeout = arp_timeout;
            netconf::spawn(plan, e, s, Box::new(|| {})).unwrap()
        });
        (handle, shared)
    }

    /// `eth0` in `ns` with its veth peer `p-eth0` left down: no carrier.
    fn nic_without_carrier(ns: &Netns) {
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "p-eth0",
        ]);
    }

    fn plan_1s() -> NetworkPlan {
        let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
        plan.carrier_timeout = Duration::from_secs(1);
        plan.hostname = None;
        plan
    }

    #[test]
    fn carrier_after_a_long_absence_is_taken_at_once() {
        let ns = Netns::new();
        nic_without_carrier(&ns);
        let (handle, shared) = spawn_in(&ns, plan_1s(), None);
        let failed = wait_state(
            &shared,
            |s| s.state == LinkState::Error,
            Duration::from_secs(10),
        );
        assert_eq!(failed.state, LinkState::Error, "{failed:?}");
        assert!(
            failed.error.as_deref().unwrap_or("").contains("carrier"),
            "{failed:?}"
        );
        // The thread now waits out a two-minute backoff; carrier arrives.
        ns.ip(&["link", "set", "p-eth0", "up"]);
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(up.state, LinkState::Up, "carrier not followed: {up:?}");
        assert_eq!(up.error, None);
        assert!(
            up.addresses.contains(&"192.0.2.10/24".to_string()),
            "{up:?}"
        );
        handle.stop();
    }

    #[test]
    fn carrier_lost_later_is_down_with_the_reason_and_comes_back_up() {
        let ns = Netns::new();
        nic_without_carrier(&ns);
        ns.ip(&["link", "set", "p-eth0", "up"]);
        let (handle, shared) = spawn_in(&ns, plan_1s(), None);
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(up.state, LinkState::Up, "{up:?}");

        let back = carrier_down_and_back(&ns, "p-eth0", "eth0", &shared);
        assert_eq!(back.error, None);
        assert_eq!(back.addresses, up.addresses);
        handle.stop();
    }

    #[test]
    fn a_gateway_that_answers_later_clears_the_warning() {
        let (guest, host) = guest_and_host();
        // The host side ignores ARP for now: the gateway is silent.
        host.ip(&["link", "set", "host0", "arp", "off"]);
        let plan = NetworkPlan {
            dhcp_client_id: None,
            source: NetworkSource::Drive,
            interface: InterfaceSelector::Name("eth0".into()),
            method: AddressMethod::Static {
                addresses: vec![net("10.99.0.2/24")],
                gateway: Some(Ipv4Addr::new(10, 99, 0, 1)),
                gateway6: None,
            },
            dns: vec![],
            mtu: None,
            carrier_timeout: Duration::from_secs(3),
            hostname: None,
        };
        let (handle, shared) = spawn_in(&guest, plan, Some(Duration::from_millis(500)));
        let silent = wait_state(
            &shared,
            |s| s.state == LinkState::Up && s.error.is_some(),
            Duration::from_secs(10),
        );
        assert_eq!(silent.state, LinkState::Up, "{silent:?}");
        let why = silent.error.clone().unwrap_or_default();
        assert!(why.contains("10.99.0.1"), "{why}");

        host.ip(&["link", "set", "host0", "arp", "on"]);
        // Probed again at least every 30 s: 40 s is generous.
        let fixed = wait_state(&shared, |s| s.error.is_none(), Duration::from_secs(40));
        assert_eq!(fixed.error, None, "warning never cleared: {fixed:?}");
        assert_eq!(fixed.state, LinkState::Up);
        handle.stop();
    }

    /// A clock whose first reading panics: a stand-in for a bug in the network thread.
    struct PanicsOnce(std::sync::atomic::AtomicBool);

    impl netconf::Clock for PanicsOnce {
        fn now(&self) -> std::time::Instant {
            if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("test: the network thread's first clock reading");
            }
            std::time::Instant::now()
        }
    }

    #[test]
    fn a_panic_in_the_network_thread_is_told_and_the_network_comes_up() {
        let ns = Netns::new();
        nic_without_carrier(&ns);
        ns.ip(&["link", "set", "p-eth0", "up"]);
        let told = Arc::new(Mutex::new(Vec::<String>::new()));
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        let (s, t, resolv) = (shared.clone(), told.clone(), tmpfile("resolv"));
        let handle = ns.enter(move || {
            let mut e = env(resolv, None);
            e.clock = Box::new(PanicsOnce(std::sync::atomic::AtomicBool::new(false)));
            e.on_panic = Some(Box::new(move |next: &str| {
                t.lock().unwrap().push(next.to_string())
            }));
            netconf::spawn(plan_1s(), e, s, Box::new(|| {})).unwrap()
        });
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(20),
        );
        assert_eq!(up.state, LinkState::Up, "not started again: {up:?}");
        assert_eq!(up.error, None, "{up:?}");
        assert_eq!(
            *told.lock().unwrap(),
            vec!["starting it again in 1s".to_string()]
        );
        handle.stop();
    }
}
