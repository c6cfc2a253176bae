use super::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn problems(v: &str) -> Vec<IpProblem> {
    match parse(v) {
        Ok(c) => panic!("{v} parsed: {c:?}"),
        Err(e) => {
            assert_eq!(e.value, v);
            e.problems
        }
    }
}

#[test]
fn short_forms() {
    for v in ["dhcp", "on", "any", "both", "bootp", "rarp"] {
        assert_eq!(parse(v).unwrap().mode, IpMode::Dhcp, "{v}");
    }
    for v in ["off", "none", ""] {
        assert_eq!(parse(v).unwrap().mode, IpMode::Off, "{v}");
    }
    // the kernel prefix-matches "dhcp"; we do not
    assert!(parse("dhcp6").is_err());
    assert!(parse("DHCP").is_err());
}

#[test]
fn firecracker_style_static() {
    let c = parse("172.16.0.2::172.16.0.1:255.255.255.252::eth0:off").unwrap();
    assert_eq!(
        c.mode,
        IpMode::Static {
            addr: v4("172.16.0.2"),
            prefix_len: 30,
            gateway: Some(v4("172.16.0.1"))
        }
    );
    let p = c.to_plan();
    assert_eq!(p.source, NetworkSource::Cmdline);
    assert_eq!(p.interface, InterfaceSelector::Name("eth0".into()));
    assert_eq!(p.carrier_timeout, DEFAULT_CARRIER_TIMEOUT);
    match p.method {
        AddressMethod::Static {
            addresses,
            gateway,
            gateway6,
        } => {
            assert_eq!(addresses[0].to_string(), "172.16.0.2/30");
            assert_eq!(gateway, Some(v4("172.16.0.1")));
            assert_eq!(gateway6, None);
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn all_ten_fields() {
    let c = parse("10.0.0.2:10.0.0.9:10.0.0.1:255.255.255.0:web1.example.com:ens3:none:1.1.1.1:8.8.8.8:10.0.0.5")
        .unwrap();
    assert_eq!(c.server, Some(v4("10.0.0.9")));
    assert_eq!(c.hostname.as_deref(), Some("web1"));
    assert_eq!(c.domain.as_deref(), Some("example.com"));
    assert_eq!(c.device.as_deref(), Some("ens3"));
    assert_eq!(c.dns, vec![v4("1.1.1.1"), v4("8.8.8.8")]);
    assert_eq!(c.ntp, Some(v4("10.0.0.5")));
    let p = c.to_plan();
    assert_eq!(p.hostname.as_deref(), Some("web1"));
    assert_eq!(p.dns.len(), 2);
}

#[test]
fn empty_fields_and_defaults() {
    // no client, autoconf empty: the kernel default "on", i.e. DHCP
    let c = parse("::::vm1:eth1:").unwrap();
    assert_eq!(c.mode, IpMode::Dhcp);
    assert_eq!(c.hostname.as_deref(), Some("vm1"));
    assert_eq!(
        c.to_plan().interface,
        InterfaceSelector::Name("eth1".into())
    );
    // no client, autoconf off: no address
    assert_eq!(parse(":::::eth0:off").unwrap().mode, IpMode::Off);
    // no device: the VM's one Ethernet interface, whatever its name (not eth0)
    for v in [
        "10.0.2.15::10.0.2.2:255.255.255.0:::off",
        "::::vm1::dhcp",
        "dhcp",
        "on",
    ] {
        assert_eq!(
            parse(v).unwrap().to_plan().interface,
            InterfaceSelector::OnlyEthernet,
            "{v}"
        );
    }
    // client only, autoconf omitted: static with classful mask
    let cases = [("10.1.2.3", 8), ("172.16.5.4", 16), ("192.168.1.10", 24)];
    for (a, p) in cases {
        match parse(a).unwrap().mode {
            IpMode::Static {
                prefix_len,
                gateway,
                ..
            } => {
                assert_eq!(prefix_len, p, "{a}");
                assert_eq!(gateway, None);
            }
            m => panic!("{a}: {m:?}"),
        }
    }
    // 0.0.0.0 means "not given", as in the kernel
    assert_eq!(parse("0.0.0.0::::::dhcp").unwrap().mode, IpMode::Dhcp);
    // DHCP records gw and netmask but the lease wins
    let c = parse(":::255.255.0.0::eth0:dhcp:9.9.9.9").unwrap();
    assert_eq!(c.mode, IpMode::Dhcp);
    assert_eq!(c.netmask, Some(v4("255.255.0.0")));
    assert_eq!(c.to_plan().method, AddressMethod::Dhcp);
    assert_eq!(c.to_plan().dns, vec![IpAddr::V4(v4("9.9.9.9"))]);
    // leading zeros are decimal, as in_aton reads them
    assert!(
        matches!(parse("010.0.0.1::::::off").unwrap().mode, IpMode::Static { addr, .. } if addr == v4("10.0.0.1"))
    );
}

#[test]
fn the_undefined_case_names_every_bad_field() {
    let v = "192.168.100.X::undefined:undefined::eth0:off";
    let e = parse(v).unwrap_err();
    let got: Vec<(usize, &str)> = e
        .problems
        .iter()
        .map(|p| match p {
            IpProblem::Field {
                position, value, ..
            } => (*position, value.as_str()),
            p => panic!("{p:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [(1, "192.168.100.X"), (3, "undefined"), (4, "undefined")]
    );
    let msg = e.to_string();
    for part in [
        "field 1 (client-ip) \"192.168.100.X\"",
        "field 3 (gw-ip)",
        "field 4 (netmask)",
        "nothing applied",
    ] {
        assert!(msg.contains(part), "{msg}");
    }
    assert!(!msg.contains('\n'));
}

/// Every field, malformed in turn, is reported with its own name and position, and nothing
/// else is.
#[test]
fn every_field_malformed_in_turn() {
    let good = [
        "10.0.0.2",
        "10.0.0.9",
        "10.0.0.1",
        "255.255.255.0",
        "vm",
        "eth0",
        "off",
        "1.1.1.1",
        "8.8.8.8",
        "10.0.0.5",
    ];
    let bad = [
        "10.0.0.256",
        "10.0.0",
        "ten.0.0.1",
        "255.0.255.0",
        "bad_host!",
        "eth0/x",
        "sometimes",
        "1.1.1.1.1",
        "dns",
        "-1.0.0.0",
    ];
    assert!(parse(&good.join(":")).is_ok());
    for i in 0..10 {
        let mut f = good;
        f[i] = bad[i];
        let v = f.join(":");
        let p = problems(&v);
        assert_eq!(p.len(), 1, "{v}: {p:?}");
        assert_eq!(p[0].field(), Some(FIELDS[i]), "{v}");
        match &p[0] {
            IpProblem::Field {
                position, value, ..
            } => {
                assert_eq!(*position, i + 1);
                assert_eq!(value, bad[i]);
            }
            p => panic!("{v}: {p:?}"),
        }
        assert!(p[0].to_string().contains(bad[i]));
    }
}

#[test]
fn too_many_fields() {
    let p = problems("10.0.0.2::10.0.0.1:255.255.255.0::eth0:off::::extra");
    assert_eq!(p, vec![IpProblem::TooManyFields { count: 11 }]);
    assert!(p[0].to_string().contains("11 fields"));
}

#[test]
fn ipv6_where_ipv4_is_required() {
    let p = problems("2001:db8::10::2001:db8::1:64::eth0:off");
    assert_eq!(
        p,
        vec![IpProblem::Ipv6 {
            position: 1,
            value: "2001:db8::10".into()
        }]
    );
    assert!(p[0].to_string().contains("IPv6"));
    let p = problems("[2001:db8::10]::::::off");
    assert_eq!(
        p,
        vec![IpProblem::Ipv6 {
            position: 1,
            value: "[2001:db8::10]".into()
        }]
    );
    // in the gateway field, after a good client address
    let p = problems("10.0.0.2::fe80::1:255.255.255.0::eth0:off");
    assert_eq!(p[0].field(), Some("gw-ip"), "{p:?}");
    assert!(matches!(&p[0], IpProblem::Ipv6 { value, .. } if value.starts_with("fe80::1")));
    // in a DNS field
    let p = problems(":::::eth0:dhcp:2606:4700:4700::1111");
    assert_eq!(p[0].field(), Some("dns0-ip"));
}

#[test]
fn netmask_checks() {
    assert_eq!(mask_to_prefix(v4("255.255.255.255")), Some(32));
    assert_eq!(mask_to_prefix(v4("255.255.254.0")), Some(23));
    assert_eq!(mask_to_prefix(v4("0.0.0.0")), Some(0));
    assert_eq!(mask_to_prefix(v4("255.0.255.0")), None);
    assert_eq!(mask_to_prefix(v4("0.255.255.255")), None);
    // class D client without netmask: no classful default
    let p = problems("224.0.0.5::::::off");
    assert!(p.iter().any(|p| p.field() == Some("client-ip")), "{p:?}");
    let p = problems("240.0.0.5::::::off");
    assert_eq!(p[0].field(), Some("netmask"), "{p:?}");
}

#[test]
fn semantic_conflicts() {
    let p = problems("10.0.0.2::10.0.1.1:255.255.255.0::eth0:off");
    assert!(matches!(p[0], IpProblem::GatewayOffLink { .. }), "{p:?}");
    assert!(p[0].to_string().contains("10.0.0.2/24"));
    assert!(problems("127.0.0.1::::::off")[0].field() == Some("client-ip"));
}

#[test]
fn hostile_values_never_panic() {
    for v in [
        ":",
        "::::::::::",
        "::::::::::::::::::::",
        "\u{0}",
        "é:é:é",
        "1.2.3.4:::::::::::",
        "[",
        "]:[",
        "::::",
        &"9".repeat(4000),
    ] {
        let _ = parse(v);
    }
    assert!(parse(":::::::::").is_ok(), "ten empty fields are valid");
}

/// nfsroot.rst / ipconfig.c: a given client address is configured statically; DHCP runs
/// only without one.
#[test]
fn a_client_address_with_dhcp_autoconf_is_static_as_in_the_kernel() {
    for autoconf in ["on", "any", "dhcp", "both", "bootp", "rarp", "dhcp,1,x"] {
        let v = format!("10.0.0.2::10.0.0.1:255.255.255.0::eth1:{autoconf}");
        let c = parse(&v).unwrap();
        assert_eq!(
            c.mode,
            IpMode::Static {
                addr: v4("10.0.0.2"),
                prefix_len: 24,
                gateway: Some(v4("10.0.0.1"))
            },
            "{v}"
        );
        let p = c.to_plan();
        assert!(matches!(p.method, AddressMethod::Static { .. }), "{v}");
        assert_eq!(p.dhcp_client_id, None, "{v}");
    }
    // without a device too: the VM's one interface, as the kernel with one device
    assert!(matches!(
        parse("10.0.0.2::::::dhcp").unwrap().mode,
        IpMode::Static { .. }
    ));
}

#[test]
fn dhcp_with_a_client_identifier() {
    let c = parse("dhcp,1,52:54:00:12:34:56").unwrap();
    assert_eq!(c.mode, IpMode::Dhcp);
    let id = DhcpClientId {
        kind: 1,
        value: "52:54:00:12:34:56".into(),
    };
    assert_eq!(c.client_id.as_ref(), Some(&id));
    let p = c.to_plan();
    assert_eq!(p.method, AddressMethod::Dhcp);
    assert_eq!(p.dhcp_client_id, Some(id));
    assert_eq!(p.dhcp_client_id.unwrap().to_bytes()[..3], [1, b'5', b'2']);
    // the type as kstrtou8(.., 0) reads it: hex, octal, decimal
    for (t, want) in [("0x10", 16), ("010", 8), ("0", 0), ("255", 255)] {
        let c = parse(&format!("dhcp,{t},vm-42")).unwrap();
        assert_eq!(c.client_id.unwrap().kind, want, "{t}");
    }
    // in the autoconf field as well
    let c = parse(":::::eth0:dhcp,0,vm-42").unwrap();
    assert_eq!(c.to_plan().dhcp_client_id.unwrap().value, "vm-42");
    // refused, naming the value
    for bad in [
        "dhcp,1",
        "dhcp,x,abc",
        "dhcp,256,abc",
        "dhcp,1,",
        "dhcp,0x,a",
        "dhcp,-1,a",
    ] {
        let p = problems(bad);
        assert!(
            matches!(&p[0], IpProblem::ClientId { value, .. } if value == bad),
            "{bad}: {p:?}"
        );
        assert!(p[0].to_string().contains(bad), "{}", p[0]);
    }
    let long = format!("dhcp,0,{}", "a".repeat(252));
    assert!(matches!(problems(&long)[0], IpProblem::ClientId { .. }));
    assert!(parse(&format!("dhcp,0,{}", "a".repeat(251))).is_ok());
}

#[test]
fn the_hostname_is_set_under_off_too() {
    for autoconf in ["off", "none"] {
        let p = parse(&format!("::::vm7.example.com::{autoconf}"))
            .unwrap()
            .to_plan();
        assert_eq!(p.method, AddressMethod::Off);
        assert_eq!(p.hostname.as_deref(), Some("vm7"));
    }
}

#[test]
fn fields_by_name_and_position() {
    assert_eq!(Field::ALL.len(), FIELDS.len());
    for (i, f) in Field::ALL.iter().enumerate() {
        assert_eq!(f.position(), i + 1);
        assert_eq!(f.name(), FIELDS[i]);
    }
    assert_eq!(Field::Autoconf.name(), "autoconf");
}
