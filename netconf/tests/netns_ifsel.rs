//! Interfaces by what they are (contract §2): a plan that names no interface configures the
//! VM's one Ethernet NIC whatever its name, refuses to pick among several, and a named
//! interface that is missing next to a NIC of another name is an error naming that NIC.
//! Against the real kernel in namespaces the tests create; which veths count as NICs comes
//! from a sysfs tree of the test's own (`FakeSysfs`). Needs root and ip(8).

#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use guest_config::InterfaceSelector;
    use netconf::{apply, Backoff, LinkState, NetError, NetworkState};

    use super::common::*;

    #[test]
    fn the_one_nic_is_configured_whatever_its_name() {
        let ns = Netns::new();
        // `p-ens5`, the veth's peer, is an Ethernet link too: without a device it must not
        // count, or this would be "two interfaces".
        add_nic(&ns.name, "ens5", None);
        let sysfs = FakeSysfs::with_nics(&["ens5"]);
        let (resolv, root) = (tmpfile("resolv"), sysfs.root.clone());
        let r = resolv.clone();
        let st = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::OnlyEthernet);
            plan.hostname = None;
            let mut e = env(r, None);
            e.sys_class_net = root;
            apply(&plan, &e).unwrap()
        });
        assert_eq!(st.state, LinkState::Up, "{st:?}");
        assert_eq!(st.interface.as_deref(), Some("ens5"));
        let v4 = ns.ip_out(&["-4", "addr", "show", "dev", "ens5"]);
        assert!(v4.contains("192.0.2.10/24"), "{v4}");
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn no_nic_waits_for_one_to_appear() {
        let ns = Netns::new();
        let sysfs = FakeSysfs::with_nics(&["enp0s2"]);
        let (resolv, root) = (tmpfile("resolv"), sysfs.root.clone());
        let (r, root2) = (resolv.clone(), root.clone());
        let err = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::OnlyEthernet);
            plan.carrier_timeout = Duration::from_millis(300);
            let mut e = env(r, None);
            e.sys_class_net = root2;
            apply(&plan, &e).unwrap_err()
        });
        let s = err.to_string();
        assert!(matches!(err, NetError::NoInterface { .. }), "{s}");
        assert!(
            s.starts_with("network: no Ethernet interface after 0.3 s"),
            "{s}"
        );
        let name = ns.name.clone();
        let adder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            add_nic(&name, "enp0s2", None);
        });
        let r = resolv.clone();
        let (st, took) = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::OnlyEthernet);
            plan.carrier_timeout = Duration::from_secs(5);
            plan.hostname = None;
            let mut e = env(r, None);
            e.sys_class_net = root;
            let t0 = Instant::now();
            (apply(&plan, &e), t0.elapsed())
        });
        adder.join().unwrap();
        let st = st.unwrap();
        assert_eq!(st.interface.as_deref(), Some("enp0s2"));
        assert!(took >= Duration::from_millis(400), "{took:?}");
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn two_nics_are_an_error_naming_both() {
        let ns = Netns::new();
        add_nic(&ns.name, "eth0", Some("52:54:00:00:00:01"));
        add_nic(&ns.name, "eth1", Some("52:54:00:00:00:02"));
        let sysfs = FakeSysfs::with_nics(&["eth0", "eth1"]);
        let (resolv, root) = (tmpfile("resolv"), sysfs.root.clone());
        let (err, took) = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::OnlyEthernet);
            plan.carrier_timeout = Duration::from_secs(5);
            let mut e = env(resolv, None);
            e.sys_class_net = root;
            let t0 = Instant::now();
            (apply(&plan, &e).unwrap_err(), t0.elapsed())
        });
        let s = err.to_string();
        assert!(matches!(err, NetError::SeveralInterfaces { .. }), "{s}");
        assert!(
            s.contains("eth0 (driver virtio_net, MAC 52:54:00:00:00:01)")
                && s.contains("eth1 (driver virtio_net, MAC 52:54:00:00:00:02)"),
            "{s}"
        );
        assert!(!s.contains("p-eth"), "veth peers are not NICs: {s}");
        // Waiting would not make one of them the right one.
        assert!(took < Duration::from_secs(2), "{took:?}");
        let link = ns.ip_out(&["link", "show", "eth0"]);
        assert!(!link.contains(",UP"), "nothing is half-applied: {link}");
    }

    #[test]
    fn a_missing_eth0_names_the_nic_that_is_there() {
        let ns = Netns::new();
        add_nic(&ns.name, "ens3", Some("52:54:00:12:34:56"));
        let sysfs = FakeSysfs::with_nics(&["ens3"]);
        let (resolv, root) = (tmpfile("resolv"), sysfs.root.clone());
        let err = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::Name("eth0".into()));
            plan.carrier_timeout = Duration::from_millis(300);
            let mut e = env(resolv, None);
            e.sys_class_net = root;
            apply(&plan, &e).unwrap_err()
        });
        let s = err.to_string();
        assert!(matches!(err, NetError::NoInterface { .. }), "{s}");
        assert!(
            s.contains("no interface eth0")
                && s.contains("ens3 (driver virtio_net, MAC 52:54:00:12:34:56)")
                && s.contains("net.ifnames=0"),
            "{s}"
        );
        assert!(!s.contains("is the NIC attached"), "{s}");
    }

    /// Under `spawn`: the NIC that appears (after a failed bring-up, with the next timed
    /// retry two minutes away) is taken on its link event, `network.interface` shows its
    /// name, and once found it is followed by that name through a carrier loss.
    #[test]
    fn spawned_the_nic_that_appears_is_found_and_followed() {
        let ns = Netns::new();
        let sysfs = FakeSysfs::with_nics(&["enp0s2"]);
        let (resolv, root) = (tmpfile("resolv"), sysfs.root.clone());
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        let (s, r) = (shared.clone(), resolv.clone());
        let handle = ns.enter(move || {
            let mut plan = static_plan(InterfaceSelector::OnlyEthernet);
            plan.carrier_timeout = Duration::from_millis(500);
            plan.hostname = None;
            let mut e = env(r, None);
            e.sys_class_net = root;
            e.retry = Backoff::new(Duration::from_secs(120), Duration::from_secs(120));
            netconf::spawn(plan, e, s, Box::new(|| {})).unwrap()
        });
        let failed = wait_state(
            &shared,
            |s| s.state == LinkState::Error,
            Duration::from_secs(5),
        );
        assert!(
            failed
                .error
                .as_deref()
                .unwrap_or("")
                .contains("no Ethernet interface"),
            "{failed:?}"
        );
        assert_eq!(failed.interface, None);
        add_nic(&ns.name, "enp0s2", None);
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(up.state, LinkState::Up, "appearance not followed: {up:?}");
        assert_eq!(up.interface.as_deref(), Some("enp0s2"));

        carrier_down_and_back(&ns, "p-enp0s2", "enp0s2", &shared);
        handle.stop();
        let _ = std::fs::remove_file(resolv);
    }
}
