//! The DHCP client against busybox udhcpd over a veth pair between two namespaces the tests
//! create and delete: lease applied, no offer, renewal keeps the lease, expiry removes it,
//! a short lease is held for the floor, the server's bad names are refused, a leased
//! interface follows its carrier, the planned client identifier (option 61) is what goes out.
//! Needs root, ip(8) and busybox.

#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use netconf::{apply, LinkState, NetworkState};

    use super::common::*;

    #[test]
    fn dhcp_lease_from_udhcpd_is_applied() {
        let (guest, host) = guest_and_host();
        let _server = udhcpd(&host, 600);
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let host_name = Arc::new(Mutex::new("old".to_string()));
        let hn = host_name.clone();
        let (st, again) = guest.enter(move || {
            let mut e = env(r, Some(hn));
            e.arp_timeout = Some(Duration::from_millis(1000));
            let st = apply(&dhcp_plan(), &e).unwrap();
            let again = apply(&dhcp_plan(), &e).unwrap();
            (st, again)
        });
        assert_eq!(st.state, LinkState::Up);
        assert_eq!(st.addresses.len(), 1, "{st:?}");
        assert!(
            st.addresses[0].starts_with("10.99.0.1") && st.addresses[0].ends_with("/24"),
            "{st:?}"
        );
        assert_eq!(st.error, None, "gateway 10.99.0.1 answers ARP");
        assert!(
            again.changes.is_empty(),
            "same lease, nothing to change: {:?}",
            again.changes
        );
        let r4 = guest.ip_out(&["-4", "route", "show", "default"]);
        assert!(r4.contains("default via 10.99.0.1 dev eth0"), "{r4}");
        let text = std::fs::read_to_string(&resolv).unwrap();
        assert!(text.contains("nameserver 10.99.0.53"), "{text}");
        assert!(text.contains("search example.internal"), "{text}");
        // The plan names neither MTU nor hostname, so the lease's apply.
        let link = guest.ip_out(&["link", "show", "eth0"]);
        assert!(link.contains("mtu 1450"), "{link}");
        assert_eq!(*host_name.lock().unwrap(), "leased-vm");
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn dhcp_without_server_reports_no_offer() {
        let (guest, _host) = guest_and_host();
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let (err, took) = guest.enter(move || {
            let mut e = env(r, None);
            e.dhcp_timeout = Duration::from_secs(2);
            let t0 = Instant::now();
            (apply(&dhcp_plan(), &e).unwrap_err(), t0.elapsed())
        });
        assert_eq!(
            err.to_string(),
            "network: DHCP got no offer on eth0 after 2 s"
        );
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }

    /// udhcpd neither logs nor stores option 61, so a plain UDP socket on port 67 in the
    /// host namespace reads what the client sends (it answers nothing: no offer follows).
    #[test]
    fn the_planned_client_id_is_on_the_wire() {
        use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
        use dhcproto::{Decodable, Decoder};

        let (guest, host) = guest_and_host();
        // A socket stays in the namespace it was made in, whichever thread reads it.
        let listener = host.enter(|| std::net::UdpSocket::bind("0.0.0.0:67").unwrap());
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        guest.enter(move || {
            let mut e = env(r, None);
            e.dhcp_timeout = Duration::from_millis(500);
            let mut plan = dhcp_plan();
            plan.dhcp_client_id = Some(guest_config::DhcpClientId {
                kind: 0,
                value: "vm-42".into(),
            });
            let _ = apply(&plan, &e); // no offer: only the DISCOVER matters
        });
        let mut buf = [0u8; 1500];
        let (n, _) = listener
            .recv_from(&mut buf)
            .expect("no DISCOVER reached port 67");
        let m = Message::decode(&mut Decoder::new(&buf[..n])).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(b"\x00vm-42".to_vec()))
        );
    }

    #[test]
    fn spawned_client_renews_then_loses_the_lease_when_the_server_goes() {
        let (guest, host) = guest_and_host();
        let server = udhcpd(&host, 4); // T1 = 2 s, T2 = 3.5 s, expiry 4 s
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        // Every published state, in order, as the notifier sees it.
        let history = Arc::new(Mutex::new(Vec::<LinkState>::new()));
        let (s, s2, h) = (shared.clone(), shared.clone(), history.clone());
        let handle = guest.enter(move || {
            let mut e = env(r, None);
            // The 4 s lease as the server gives it, so renewal and expiry fit in the test.
            e.lease_limits = quick_leases();
            netconf::spawn(
                dhcp_plan(),
                e,
                s,
                Box::new(move || {
                    let now = s2.lock().unwrap().state;
                    h.lock().unwrap().push(now);
                }),
            )
            .unwrap()
        });
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(up.state, LinkState::Up, "{up:?}");
        let seen_before = history.lock().unwrap().len();
        assert!(seen_before >= 1, "the notifier was called");
        // Past two full lease times: only renewals keep the address without a gap.
        std::thread::sleep(Duration::from_secs(9));
        let st = shared.lock().unwrap().clone();
        assert_eq!(st.state, LinkState::Up, "renewals failed: {st:?}");
        let since: Vec<LinkState> = history.lock().unwrap()[seen_before..].to_vec();
        assert!(
            since.iter().all(|s| *s == LinkState::Up),
            "the lease lapsed instead of being renewed: {since:?}"
        );
        assert_eq!(
            st.addresses, up.addresses,
            "the renewed lease keeps the address"
        );
        let leased = up.addresses[0].clone();
        assert!(guest
            .ip_out(&["-4", "addr", "show", "dev", "eth0"])
            .contains(&leased));

        drop(server);
        let lost = wait_state(
            &shared,
            |s| s.state != LinkState::Up,
            Duration::from_secs(8),
        );
        assert_ne!(lost.state, LinkState::Up, "{lost:?}");
        let err = lost.error.clone().unwrap_or_default();
        assert!(err.contains("expired") || err.contains("no offer"), "{err}");
        let v4 = guest.ip_out(&["-4", "addr", "show", "dev", "eth0"]);
        assert!(!v4.contains(&leased), "expired address still there: {v4}");
        handle.stop();
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn a_four_second_lease_is_held_for_the_sixty_second_floor() {
        let (guest, host) = guest_and_host();
        let server = udhcpd(&host, 4);
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        let s = shared.clone();
        let handle = guest
            .enter(move || netconf::spawn(dhcp_plan(), env(r, None), s, Box::new(|| {})).unwrap());
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(up.state, LinkState::Up, "{up:?}");
        // Server gone at once: only the clamp keeps the address beyond the server's 4 s
        // (T1 and T2 at 10 s now, so no exchange is even tried in this window).
        drop(server);
        let t0 = Instant::now();
        let lost = wait_state(
            &shared,
            |s| s.state != LinkState::Up,
            Duration::from_secs(8),
        );
        assert_eq!(
            lost.state,
            LinkState::Up,
            "the 4 s lease lapsed after {:?}: {lost:?}",
            t0.elapsed()
        );
        let v4 = guest.ip_out(&["-4", "addr", "show", "dev", "eth0"]);
        assert!(v4.contains(&up.addresses[0]), "{v4}");
        handle.stop();
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn the_servers_bad_names_are_refused_and_the_lease_stands() {
        let (guest, host) = guest_and_host();
        let _server = udhcpd_with(&host, 600, "bad_host!", "-bad.example");
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let host_name = Arc::new(Mutex::new("old".to_string()));
        let hn = host_name.clone();
        let st = guest.enter(move || apply(&dhcp_plan(), &env(r, Some(hn))).unwrap());
        assert_eq!(st.state, LinkState::Up, "{st:?}");
        assert_eq!(st.addresses.len(), 1, "{st:?}");
        assert_eq!(
            *host_name.lock().unwrap(),
            "old",
            "refused host name not set"
        );
        let text = std::fs::read_to_string(&resolv).unwrap();
        assert!(text.contains("nameserver 10.99.0.53"), "{text}");
        assert!(!text.contains("search"), "refused domain written: {text}");
        let _ = std::fs::remove_file(resolv);
    }

    #[test]
    fn a_leased_interface_follows_its_carrier() {
        let (guest, host) = guest_and_host();
        let _server = udhcpd(&host, 600);
        let resolv = tmpfile("resolv");
        let r = resolv.clone();
        let shared = Arc::new(Mutex::new(NetworkState::default()));
        let s = shared.clone();
        let handle = guest
            .enter(move || netconf::spawn(dhcp_plan(), env(r, None), s, Box::new(|| {})).unwrap());
        let up = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(up.state, LinkState::Up, "{up:?}");
        // The host side goes down: the guest's veth loses carrier.
        host.ip(&["link", "set", "host0", "down"]);
        let down = wait_state(
            &shared,
            |s| s.state != LinkState::Up,
            Duration::from_secs(10),
        );
        assert_eq!(down.state, LinkState::Down, "{down:?}");
        assert!(
            down.error.as_deref().unwrap_or("").contains("carrier lost"),
            "{down:?}"
        );
        host.ip(&["link", "set", "host0", "up"]);
        let back = wait_state(
            &shared,
            |s| s.state == LinkState::Up,
            Duration::from_secs(15),
        );
        assert_eq!(back.state, LinkState::Up, "{back:?}");
        assert_eq!(back.addresses, up.addresses, "the same lease again");
        handle.stop();
        let _ = std::fs::remove_file(resolv);
    }
}
