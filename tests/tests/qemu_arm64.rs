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

use qemu_harness::{make_drive, DriveFs, Machine, VIRTIO_MODULES_ARM64};
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
        modules: Some(VIRTIO_MODULES_ARM64.to_vec()),
        files: Vec::new(),
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
    assert_eq!(h["network"]["source"], "drive", "{h:#}");
    assert_eq!(h["network"]["state"], "up");
    assert_eq!(h["network"]["addresses"][0], "10.0.2.15/24");
    assert_eq!(h["services"]["agent"]["state"], "ready");
    let console = vm.console_text();
    assert!(console.contains("config drive: /dev/vda"), "{console}");
}

/// As in qemu_power.rs: `api` depends on `db` and traps SIGTERM (it says so, then exits).
const ORDERED: &str = r#"
[services.db]
command = ["/bin/test-agent", "http", "--port", "8081"]
ready = { tcp = "127.0.0.1:8081" }

[services.api]
command = ["/bin/test-agent", "trap-term", "--message", "GOT-TERM"]
after = ["db"]
"#;

#[test]
fn arm64_power_button_shuts_down() {
    let (mut vm, _dir) = boot(&guest(ORDERED), Machine::Virt, SLIRP_IP, &[]);
    vm.wait_health(|h| h["status"] == "ok", deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_console("power button: listening", deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.system_powerdown().expect("monitor: system_powerdown");
    let status = vm
        .wait_exit(deadline())
        .unwrap_or_else(|e| panic!("QEMU did not power off by itself: {e}"));
    let console = vm.console_text();
    assert!(status.success(), "QEMU exit {status:?}\n{console}");
    let at = |needle: &str| {
        console
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on the console:\n{console}"))
    };
    // The order is vminit's own log lines: `api` stopped (its exit logged) before `db` was
    // asked to stop. The service's own `GOT-TERM` only shows that the TERM reached it: service
    // output is relayed through a queue drained into the non-blocking console, so it can land
    // after later log lines (it did under TCG on the slow PL011).
    let (keys, pressed, api, api_gone, db, off) = (
        at("loaded module gpio_keys"),
        at("power button (/dev/input/event"),
        at("stopping service api"),
        at("service api (pid"),
        at("stopping service db"),
        at("shutdown: poweroff"),
    );
    assert!(
        keys < pressed && pressed < api && api < api_gone && api_gone < db && db < off,
        "{console}"
    );
    assert!(at("[api] GOT-TERM") > api, "{console}");
    assert!(!console.contains("Kernel panic"), "{console}");
}
