//! Issue 16 on arm64: the aarch64 `vminit` and `test-agent` booted under `qemu-system-aarch64
//! -M virt` (TCG) with Debian's arm64 kernel and its modules. Health `ok` with a static `ip=`
//! and the agent's HTTP service reachable; the network from a config drive; the graceful
//! shutdown from the virt machine's power button (`gpio-keys` KEY_POWER on the PL061 GPIO),
//! which is the only one there is: virt has no keyboard for ctrl-alt-delete.
//!
//! TCG emulates every arm64 instruction on the x86 host: a boot takes about twice as long as
//! an x86 TCG boot (BENCHMARKS.md), more on a loaded machine, so the deadlines are twice the
//! x86 ones.

use std::time::Duration;

use qemu_harness::{make_drive, Arch, DriveFs, Machine};
use vminit_tests::{boot, boot_deadline, boot_with, Guest, SLIRP_IP};

const AGENT_PORT: u16 = 8080;

const AGENT: &str = r#"
[services.agent]
command = ["/bin/test-agent", "http", "--port", "8080"]
after = ["network"]
ready = { http = "http://127.0.0.1:8080/health" }
"#;

/// An arm64 guest: the virt machine's drivers, not the x86 ones (`button` is built into
/// Debian's arm64 kernel; `gpio_keys` is the power button there).
fn guest(config: &str) -> Guest {
    Guest {
        config: Some(config.to_string()),
        modules: Some(Arch::Aarch64.virtio_modules()),
        ..Guest::default()
    }
}

fn deadline() -> Duration {
    boot_deadline() * 2
}

#[test]
fn arm64_health_ok_with_static_ip_and_the_agent() {
    let (mut vm, _dir) = boot_with(&guest(AGENT), Machine::Virt, SLIRP_IP, &[], |b, _| {
        b.forward(AGENT_PORT)
    });
    let h = vm
        .wait_health(|h| h["status"] == "ok", deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    // The boot timeline of BENCHMARKS.md: `--nocapture` shows it.
    eprintln!(
        "arm64 (virt, TCG): launch -> /health 200 in {} ms; boot {}",
        vm.launched().elapsed().as_millis(),
        h["boot"]
    );
    assert_eq!(h["network"]["source"], "cmdline", "{h:#}");
    assert_eq!(h["network"]["state"], "up");
    assert_eq!(h["network"]["addresses"][0], "10.0.2.15/24");
    assert_eq!(h["services"]["agent"]["state"], "ready");
    let (code, _) = vm
        .get_port(AGENT_PORT, "/health")
        .unwrap_or_else(|e| panic!("the agent's port: {e}"));
    assert_eq!(code, 200);
    let console = vm.console_text();
    assert!(console.contains("ttyAMA0"), "{console}");
}

#[test]
fn arm64_network_from_a_config_drive() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("drive.img");
    let text = r#"
hostname = "arm64-from-drive"
[network]
interface = "eth0"
addresses = ["10.0.2.15/24"]
gateway = "10.0.2.2"
"#;
    make_drive(
        DriveFs::Vfat,
        "VMINIT",
        &[("vminit.toml", text.as_bytes())],
        &img,
    )
    .unwrap();
    let (mut vm, _dir) = boot(&guest(AGENT), Machine::Virt, "", &[img]);
    let h = vm
        .wait_health(|h| h["status"] == "ok", deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vminit_tests::assert_drive_network_up(&h, &vm.console_text());
}

// Shutdown by the virt machine's power button: `qemu_power.rs`, next to q35 and microvm.
