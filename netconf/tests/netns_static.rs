//! Static plans applied by netconf against the real kernel inside network namespaces the
//! tests create and delete: addresses, routes, MTU, idempotence, stray removal, carrier and
//! interface waits, the gateway ARP probe, the announcement of an added address. Needs root
//! and ip(8) (for setup only).

#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use guest_config::{AddressMethod, InterfaceSelector, NetworkPlan};
    use netconf::{apply, LinkState, NetError, NetworkState};

    use super::common::*;

    #[test]
    fn static_plan_applies_and_second_apply_changes_nothing() {
        let ns = Netns::new();
        add_nic(&ns.name, "eth0", None);
        let resolv = tmpfile("resolv");
        let host = Arc::new(Mutex::new("old".to_string()));
        let (r, h) = (resolv.clone(), host.clone());
        let (first, second, addrs) = ns.enter(move || {
            let plan = static_plan(InterfaceSelector::Name("eth0".into()));
            let e = env(r, Some(h));
            let first = apply(&plan, &e).unwrap();
            let second = apply(&plan, &e).unwrap();
            (first, second, addrs_of("eth0"))
        });
        assert_eq!(first.state, LinkState::Up);
        assert_eq!(first.interface.as_deref(), Some("eth0"));
        assert!(
            first.changes.contains(&"lo up".to_string()),
            "{:?}",
            first.changes
        );
        assert!(first.changes.contains(&"added 192.0.2.10/24".to_string()));
        assert!(first.changes.iter().any(|c| c.starts_with("mtu")));
        assert!(
            second.changes.is_empty(),
            "second apply changed {:?}",
            second.changes
        );
        assert_eq!(first.addresses, second.addresses);
        assert!(addrs.contains(&"192.0.2.10/24".to_string()), "{addrs:?}");
        assert!(addrs.contains(&"2001:db8::10/64".to_string()), "{addrs:?}");
        assert!(first.error.is_none(), "{:?}", first.error);
        assert!(first.timings.configured_ms.is_some());

        let link = ns.ip_out(&["link", "show", "eth0"]);
        assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
        assert!(ns.ip_out(&["link", "show", "lo"]).contains(",UP"));
        let r4 = ns.ip_out(&["-4", "route", "show", "default"]);
        assert!(r4.contains("default via 192.0.2.1 dev eth0"), "{r4}");
        let r6 = ns.ip_out(&["-6", "route", "show", "default"]);
        assert!(r6.contains("default via 2001:db8::1 dev eth0"), "{r6}");
        let v6 = ns.ip_out(&["-6", "addr", "show", "dev", "eth0"]);
        let ours = v6
            .lines()
            .find(|l| l.contains("2001:db8::10/64"))
            .unwrap_or_default();
        assert!(
            ours.contains("nodad") && !ours.contains("tentative"),
            "NODAD address must be usable at once: {v6}"
        );
        let text = std::fs::read_to_string(&resolv).unwrap();
        assert!(text.contains("nameserver 192.0.2.53\n"), "{text}");
        assert_eq!(*host.lock().unwrap(), "vm-test");
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn stray_addresses_go_and_kernel_link_local_stays() {
        let ns = Netns::new();
        add_nic(&ns.name, "eth0", Some("02:00:00:00:00:01"));
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["addr", "add", "198.51.100.7/24", "dev", "eth0"]);
        ns.ip(&["addr", "add", "192.0.2.10/16", "dev", "eth0"]); // right address, wrong prefix
        ns.ip(&["addr", "add", "192.0.2.10/24", "dev", "eth0"]); // as CONFIG_IP_PNP would
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let (st, after) = ns.enter(move || {
            // Wait for the kernel's fe80:: address so there is one to spare.
            let t0 = Instant::now();
            while !addrs_of("eth0").iter().any(|a| a.starts_with("fe80::"))
                && t0.elapsed() < Duration::from_secs(3)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut plan = static_plan(InterfaceSelector::Mac([2, 0, 0, 0, 0, 1]));
            plan.hostname = None;
            let st = apply(&plan, &env(r, None)).unwrap();
            (st, addrs_of("eth0"))
        });
        assert!(
            st.changes
                .contains(&"removed stray 198.51.100.7/24".to_string()),
            "{:?}",
            st.changes
        );
        assert!(
            st.changes
                .contains(&"removed stray 192.0.2.10/16".to_string()),
            "{:?}",
            st.changes
        );
        assert!(
            !st.changes.contains(&"added 192.0.2.10/24".to_string()),
            "kept, not re-added"
        );
        assert!(
            !after.iter().any(|a| a.starts_with("198.51.100.7")),
            "{after:?}"
        );
        assert!(after.contains(&"192.0.2.10/24".to_string()), "{after:?}");
        assert!(!after.contains(&"192.0.2.10/16".to_string()), "{after:?}");
        assert!(
            after.iter().any(|a| a.starts_with("fe80::")),
            "link-local removed: {after:?}"
        );
        assert!(
            !st.addresses.iter().any(|a| a.starts_with("fe80::")),
            "{:?}",
            st.addresses
        );
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn veth_with_peer_down_is_no_carrier() {
        let ns = Netns::new();
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "host0",
        ]);
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let (res, took) = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
            plan.carrier_timeout = Duration::from_millis(800);
            let t0 = Instant::now();
            let res = apply(&plan, &env(r, None));
            (res, t0.elapsed())
        });
        let err = res.unwrap_err();
        assert!(matches!(err, NetError::NoCarrier { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("host side of the link is not attached"),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(!resolv.exists(), "nothing configured after the failure");
    }

    #[test]
    fn carrier_arriving_during_the_wait_is_taken() {
        let ns = Netns::new();
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "host0",
        ]);
        let name = ns.name.clone();
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            run(&["ip", "-n", &name, "link", "set", "host0", "up"]);
        });
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let (res, took) = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
            plan.carrier_timeout = Duration::from_secs(5);
            plan.hostname = None;
            let t0 = Instant::now();
            let res = apply(&plan, &env(r, None));
            (res, t0.elapsed())
        });
        raiser.join().unwrap();
        let st = res.unwrap();
        assert_eq!(st.state, LinkState::Up);
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(4),
            "{took:?}"
        );
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn missing_interface_names_the_driver_and_a_late_one_is_found() {
        let ns = Netns::new();
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let err = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
            plan.carrier_timeout = Duration::from_millis(500);
            let mut e = env(r, None);
            e.driver_diagnosis = Some(Box::new(|| Some("virtio_net: module not found".into())));
            apply(&plan, &e).unwrap_err()
        });
        let s = err.to_string();
        assert!(matches!(err, NetError::NoInterface { .. }), "{s}");
        assert!(
            s.contains("no interface eth0") && s.contains("virtio_net: module not found"),
            "{s}"
        );
        assert!(s.contains("present: [lo]"), "{s}");

        let name = ns.name.clone();
        let adder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            add_nic(&name, "eth0", None);
        });
        let r = resolv.clone();
        let st = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
            plan.carrier_timeout = Duration::from_secs(5);
            plan.hostname = None;
            apply(&plan, &env(r, None))
        });
        adder.join().unwrap();
        assert_eq!(st.unwrap().state, LinkState::Up);
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn gateway_answering_arp_is_quiet_and_a_silent_one_is_a_warning() {
        let (guest, _host) = guest_and_host();
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let (ok, silent) = guest.enter(move || {
            let mk = |gw| NetworkPlan {
                method: AddressMethod::Static {
                    addresses: vec![net("10.99.0.2/24")],
                    gateway: Some(gw),
                    gateway6: None,
                },
                hostname: None,
                ..static_plan(InterfaceSelector::Name("eth0".into()))
            };
            let mut e = env(r, None);
            e.arp_timeout = Some(Duration::from_millis(1000));
            let ok = apply(&mk(Ipv4Addr::new(10, 99, 0, 1)), &e).unwrap();
            let silent = apply(&mk(Ipv4Addr::new(10, 99, 0, 254)), &e).unwrap();
            (ok, silent)
        });
        assert_eq!(ok.error, None);
        assert_eq!(silent.state, LinkState::Up, "a silent gateway is a warning");
        let w = silent.error.unwrap_or_default();
        assert!(
            w.contains("10.99.0.254") && w.contains("not forwarding ARP"),
            "{w}"
        );
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn added_address_is_announced_to_a_neighbour_with_a_stale_mac() {
        let (guest, host) = guest_and_host();
        // The host still maps the address to an earlier VM's MAC, as after address reuse.
        let old_mac = "02:00:00:00:00:99";
        host.ip(&[
            "neigh",
            "replace",
            "10.99.0.2",
            "lladdr",
            old_mac,
            "dev",
            "host0",
            "nud",
            "stale",
        ]);
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let st = guest.enter(move || {
            let plan = NetworkPlan {
                method: AddressMethod::Static {
                    addresses: vec![net("10.99.0.2/24")],
                    gateway: Some(Ipv4Addr::new(10, 99, 0, 1)),
                    gateway6: None,
                },
                hostname: None,
                ..static_plan(InterfaceSelector::Name("eth0".into()))
            };
            // No gateway probe: its request would teach the gateway our MAC by itself.
            let mut e = env(r, None);
            e.arp_timeout = None;
            apply(&plan, &e).unwrap()
        });
        assert_eq!(st.state, LinkState::Up);
        let link = guest.ip_out(&["link", "show", "eth0"]);
        let mac = link
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {link}"))
            .to_string();
        assert_ne!(mac, old_mac);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let neigh = host.ip_out(&["neigh", "show", "10.99.0.2", "dev", "host0"]);
            if neigh.contains(&mac) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "host still maps 10.99.0.2 to {neigh:?}, not the guest's {mac}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn spawned_bring_up_retries_until_the_interface_appears() {
        let ns = Netns::new();
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        let history = Arc::new(Mutex::new(Vec::<LinkState>::new()));
        let (s, s2, h) = (shared.clone(), shared.clone(), history.clone());
        let handle = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
            plan.carrier_timeout = Duration::from_millis(300);
            plan.hostname = None;
            netconf::spawn(
                plan,
                env(r, None),
                s,
                Box::new(move || {
                    let now = s2.lock().unwrap().state;
                    h.lock().unwrap().push(now);
                }),
            )
            .unwrap()
        });
        let failed = wait_state(
            &shared,
            |s| s.state == LinkState::Error,
            Duration::from_secs(5),
        );
        assert_eq!(failed.state, LinkState::Error, "{failed:?}");
        assert!(failed
            .error
            .unwrap_or_default()
            .contains("no interface eth0"));
        add_nic(&ns.name, "eth0", None);
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(15),
        );
        assert_eq!(up.state, LinkState::Up, "{up:?}");
        assert_eq!(up.error, None);
        assert!(
            up.addresses.contains(&"192.0.2.10/24".to_string()),
            "{up:?}"
        );
        handle.stop();
        let seen = history.lock().unwrap().clone();
        let first_error = seen.iter().position(|s| *s == LinkState::Error).unwrap();
        assert_eq!(
            seen[first_error..]
                .iter()
                .filter(|s| **s != LinkState::Error)
                .collect::<Vec<_>>(),
            vec![&LinkState::Up],
            "a retry must not flap through down: {seen:?}"
        );
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn off_sets_the_hostname_and_leaves_the_interface_alone() {
        let ns = Netns::new();
        add_nic(&ns.name, "eth0", None);
        let resolv = tmpfile("resolv");
        let host = Arc::new(Mutex::new("old".to_string()));
        let (r, h) = (resolv.clone(), host.clone());
        let st = ns.enter(move || {
            let plan = NetworkPlan {
                method: AddressMethod::Off,
                hostname: Some("vm-off".into()),
                ..static_plan(InterfaceSelector::Name("eth0".into()))
            };
            apply(&plan, &env(r, Some(h))).unwrap()
        });
        assert_eq!(st.state, LinkState::Unconfigured);
        assert_eq!(*host.lock().unwrap(), "vm-off");
        assert!(
            st.changes.contains(&"hostname vm-off".to_string()),
            "{st:?}"
        );
        let link = ns.ip_out(&["link", "show", "eth0"]);
        assert!(link.contains("mtu 1500") && !link.contains(",UP"), "{link}");
        assert!(!resolv.exists(), "off wrote {}", resolv.display());
    }
}
