//! The network under QEMU: one authoritative source. Static from the cmdline, static from
//! a config drive on each supported filesystem, DHCP, and the two failures that must be named
//! (both sources present; a malformed `ip=`), with the init alive after each; the ARP
//! announcement of a static address, seen in a capture of the NIC.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use qemu_harness::{make_drive, pcap, DriveFs, Machine};
use vminit_tests::{boot, boot_deadline, boot_with, power_off_cleanly, Guest, SLIRP_IP};

const AGENT: &str = r#"
[services.agent]
command = ["/bin/test-agent", "http", "--port", "8080"]
after = ["network"]
ready = { http = "http://127.0.0.1:8080/health" }
"#;

const DRIVE: &str = r#"
hostname = "vm-from-drive"
[network]
interface = "eth0"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.2"
dns = ["10.0.2.3"]
[env]
FLEET = "test"
"#;

fn drive(dir: &std::path::Path, fs: DriveFs, text: &str) -> std::path::PathBuf {
    let out = dir.join(format!("drive-{fs:?}.img"));
    make_drive(fs, "VMINIT", &[("vminit.toml", text.as_bytes())], &out).unwrap();
    out
}

fn drive_static(fs: DriveFs) {
    let tmp = tempfile::tempdir().unwrap();
    let img = drive(tmp.path(), fs, DRIVE);
    let (mut vm, _dir) = boot(&Guest::with_config(AGENT), Machine::Q35, "", &[img]);
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{fs:?}: {e}"));
    vminit_tests::assert_drive_network_up(&h, &vm.console_text());
}

#[test]
fn drive_static_vfat() {
    drive_static(DriveFs::Vfat);
}

#[test]
fn drive_static_iso9660() {
    drive_static(DriveFs::Iso9660);
}

#[test]
fn drive_static_ext4() {
    drive_static(DriveFs::Ext4);
}

#[test]
fn dhcp_from_the_cmdline() {
    let (mut vm, _dir) = boot(&Guest::with_config(AGENT), Machine::Q35, "ip=dhcp", &[]);
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h["network"]["source"], "cmdline");
    // QEMU's user network leases the first address of its pool.
    assert_eq!(h["network"]["addresses"][0], "10.0.2.15/24", "{h:#}");
}

#[test]
fn microvm_cmdline_static_and_the_address_is_announced() {
    let (mut vm, dir) = boot_with(
        &Guest::with_config(AGENT),
        Machine::Microvm,
        SLIRP_IP,
        &[],
        |b, dir| b.capture_nic(dir.join("nic.pcap")),
    );
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h["network"]["source"], "cmdline");
    assert_eq!(h["services"]["agent"]["state"], "ready");
    // The ARP announcement goes out after `up` is published: wait for it on the wire.
    let pcap = dir.path().join("nic.pcap");
    let guest = Ipv4Addr::new(10, 0, 2, 15);
    let announced = |bytes: &[u8]| {
        pcap::frames(bytes)
            .iter()
            .filter_map(|f| pcap::arp(f))
            .any(|a| a.op == 1 && a.sender_ip == guest && a.target_ip == guest)
    };
    let start = Instant::now();
    while !announced(&std::fs::read(&pcap).unwrap_or_default()) {
        assert!(
            start.elapsed() < boot_deadline(),
            "no ARP announcement of {guest} in the NIC capture; console:\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The guest has no address in these cases (nothing is applied), so the host cannot poll;
/// the console says what is wrong and ctrl-alt-delete proves the init is alive.
fn named_on_console_then_clean_poweroff(
    config: &str,
    append: &str,
    drives: &[std::path::PathBuf],
    needles: &[&str],
) -> String {
    let (mut vm, _dir) = boot(&Guest::with_config(config), Machine::Q35, append, drives);
    for n in needles {
        vm.wait_console(n, boot_deadline())
            .unwrap_or_else(|e| panic!("{n:?} not on the console: {e}"));
    }
    let console = power_off_cleanly(&mut vm);
    assert!(
        !console.contains("added 10.0.2.15"),
        "something was applied:\n{console}"
    );
    console
}

/// A service that only needs loopback: its readiness probe on 127.0.0.1 passes only if
/// `lo` is up, which vminit does whatever the network source, a conflict included.
const LOCAL: &str = r#"
[services.local]
command = ["/bin/test-agent", "http", "--port", "8081"]
ready = { http = "http://127.0.0.1:8081/health" }
"#;

#[test]
fn both_sources_are_a_conflict_and_nothing_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let img = drive(tmp.path(), DriveFs::Vfat, DRIVE);
    let config = format!("{AGENT}{LOCAL}");
    let console = named_on_console_then_clean_poweroff(
        &config,
        SLIRP_IP,
        &[img],
        &["10.0.2.15::10.0.2.2", "/dev/vda", "service local is ready"],
    );
    assert!(
        !console.contains("service agent is ready"),
        "a service after the network started with no network:\n{console}"
    );
}

#[test]
fn malformed_ip_names_the_field() {
    named_on_console_then_clean_poweroff(
        AGENT,
        "ip=192.168.100.X::undefined:undefined::eth0:off",
        &[],
        &["192.168.100.X", "client-ip"],
    );
}
