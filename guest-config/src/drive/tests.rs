use std::net::Ipv4Addr;

use super::*;
use crate::network::{AddressMethod, InterfaceSelector, NetworkSource};

fn parse(t: &str) -> Result<DriveConfig, Vec<ConfigError>> {
    DriveConfig::parse(t, Path::new("/run/vminit/drive/vminit.toml"))
}

fn errors(t: &str) -> Vec<ConfigError> {
    match parse(t) {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn full_drive_file() {
    let d = parse(
        r#"
hostname = "vm-42"
[network]
mac = "52:54:00:AB:cd:01"
addresses = ["192.0.2.10/24", "2001:db8::10/64"]
gateway = "192.0.2.1"
gateway6 = "fe80::1"
dns = ["192.0.2.53", "2001:db8::53"]
mtu = 1500
carrier_timeout = "10s"

[env]
HTTPS_PROXY = "http://10.0.0.1:3128"

[services.web]
env = { PORT = "8081" }

[services.sidecar]
command = ["/bin/sidecar"]
"#,
    )
    .unwrap();
    assert_eq!(d.hostname.as_deref(), Some("vm-42"));
    assert_eq!(d.env["HTTPS_PROXY"], "http://10.0.0.1:3128");
    assert!(matches!(&d.services["web"], DriveService::Override { env } if env["PORT"] == "8081"));
    assert!(
        matches!(&d.services["sidecar"], DriveService::Extra(s) if s.command == ["/bin/sidecar"])
    );
    let p = d.network_plan().unwrap();
    assert_eq!(p.source, NetworkSource::Drive);
    assert_eq!(
        p.interface,
        InterfaceSelector::Mac([0x52, 0x54, 0, 0xab, 0xcd, 1])
    );
    assert_eq!(p.mtu, Some(1500));
    assert_eq!(p.carrier_timeout.as_secs(), 10);
    assert_eq!(p.hostname.as_deref(), Some("vm-42"));
    assert_eq!(p.dns.len(), 2);
    match p.method {
        AddressMethod::Static {
            addresses,
            gateway,
            gateway6,
        } => {
            assert_eq!(addresses.len(), 2);
            assert_eq!(gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
            assert_eq!(gateway6.unwrap().to_string(), "fe80::1");
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn network_defaults() {
    let p = parse("[network]\ndhcp = true\n")
        .unwrap()
        .network_plan()
        .unwrap();
    // neither interface nor mac: the VM's one Ethernet interface, whatever its name
    assert_eq!(p.interface, InterfaceSelector::OnlyEthernet);
    assert_eq!(p.method, AddressMethod::Dhcp);
    assert_eq!(p.carrier_timeout, crate::network::DEFAULT_CARRIER_TIMEOUT);
    assert_eq!(p.mtu, None);
    assert!(parse("hostname = \"a\"\n")
        .unwrap()
        .network_plan()
        .is_none());
}

#[test]
fn each_network_mistake_is_named() {
    let cases = [
        (
            "interface = \"eth0\"\nmac = \"52:54:00:00:00:01\"\ndhcp = true",
            "network.mac",
            "not both",
        ),
        (
            "mac = \"52:54:00:00:01\"\ndhcp = true",
            "network.mac",
            "not a MAC",
        ),
        (
            "interface = \"eth/0\"\ndhcp = true",
            "network.interface",
            "eth/0",
        ),
        (
            "dhcp = true\naddresses = [\"192.0.2.10/24\"]",
            "network.dhcp",
            "choose one",
        ),
        ("dhcp = false", "network.addresses", "no address"),
        ("interface = \"eth1\"", "network.addresses", "no address"),
        (
            "addresses = [\"192.0.2.10\"]",
            "network.addresses",
            "ADDR/PREFIX",
        ),
        (
            "addresses = [\"192.0.2.10/33\"]",
            "network.addresses",
            "/33",
        ),
        (
            "addresses = [\"224.0.0.1/24\"]",
            "network.addresses",
            "unicast",
        ),
        (
            "addresses = [\"192.0.2.10/24\", \"192.0.2.10/24\"]",
            "network.addresses",
            "twice",
        ),
        (
            "addresses = [\"192.0.2.10/24\"]\ngateway = \"198.51.100.1\"",
            "network.gateway",
            "not in the network",
        ),
        (
            "addresses = [\"192.0.2.10/24\"]\ngateway = \"2001:db8::1\"",
            "network.gateway",
            "gateway6",
        ),
        (
            "addresses = [\"192.0.2.10/24\"]\ngateway = \"gw\"",
            "network.gateway",
            "\"gw\"",
        ),
        (
            "dhcp = true\ngateway = \"192.0.2.1\"",
            "network.gateway",
            "lease",
        ),
        (
            "addresses = [\"192.0.2.10/24\"]\ngateway6 = \"fe80::1\"",
            "network.gateway6",
            "no IPv6",
        ),
        (
            "addresses = [\"2001:db8::10/64\"]\ngateway6 = \"2001:db9::1\"",
            "network.gateway6",
            "neither",
        ),
        (
            "addresses = [\"2001:db8::10/64\"]\ngateway6 = \"10.0.0.1\"",
            "network.gateway6",
            "not an IPv6",
        ),
        (
            "dhcp = true\ndns = [\"dns.example\"]",
            "network.dns",
            "dns.example",
        ),
        ("dhcp = true\nmtu = 40", "network.mtu", "68..=65535"),
        (
            "addresses = [\"2001:db8::10/64\"]\nmtu = 1000",
            "network.mtu",
            "1280",
        ),
        (
            "dhcp = true\ncarrier_timeout = \"0s\"",
            "network.carrier_timeout",
            "0s",
        ),
    ];
    for (body, key, needle) in cases {
        let text = format!("[network]\n{body}\n");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{body}: {e:?}");
        assert_eq!(e[0].key, key, "{body}");
        let msg = e[0].to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(e[0].pos.is_some(), "{body}");
    }
}

#[test]
fn schema_errors_are_located() {
    let e = errors("hostname = \"a\"\n[network]\ndhcp = true\nmtu = \"big\"\n");
    assert_eq!(e[0].pos.unwrap().line, 4, "{e:?}");
    let e = errors("[network]\ndhcp = true\ninterfase = \"eth0\"\n");
    assert_eq!(e[0].pos.unwrap().line, 3, "{e:?}");
    assert!(e[0].to_string().contains("interfase"));
    let e = errors("[network]\ndhcp = true\ncarrier_timeout = \"5\"\n");
    assert!(e[0].to_string().contains("\"5\""), "{e:?}");
    let e = errors("log = \"debug\"\n");
    assert!(e[0].to_string().contains("log"), "{e:?}");
}

#[test]
fn bad_hostname_env_and_services() {
    let e = errors(
        "hostname = \"bad_host\"\nenv = { \"A=B\" = \"1\" }\n[services.x]\nrestart = \"always\"\n\
         [services.y]\nenv = { \"\" = \"1\" }\n[services.z]\ncommand = []\n",
    );
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "hostname",
            "env",
            "services.x",
            "services.y.env",
            "services.z.command"
        ],
        "{e:#?}"
    );
    assert!(
        e[2].to_string().contains("restart but no command"),
        "{}",
        e[2]
    );
}

#[test]
fn override_with_unknown_key_is_a_partial_service() {
    let e = errors("[services.web]\nenv = { A = \"1\" }\nuser = \"nobody\"\n");
    assert!(
        matches!(&e[0].problem, Problem::PartialService { keys } if keys == &["user"]),
        "{e:?}"
    );
}

#[test]
fn a_drive_file_that_is_a_device_or_symlink_is_refused_naming_it() {
    let e = DriveConfig::load(Path::new("/dev/null")).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "/dev/null: is a character device, not a regular file; not read"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vminit.toml");
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    let e = DriveConfig::load(&p).unwrap_err();
    assert!(
        e[0].to_string().contains("is a symlink to /dev/zero"),
        "{}",
        e[0]
    );
}

#[test]
fn carrier_timeout_is_bounded_with_its_line() {
    let e = DriveConfig::parse(
        "[network]\ndhcp = true\ncarrier_timeout = \"9999999999999999h\"\n",
        Path::new("d.toml"),
    )
    .unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].pos.unwrap().line, 3);
    assert!(e[0].key.starts_with("network"), "{e:?}");
    assert!(e[0].to_string().contains("365 days"), "{}", e[0]);
}
