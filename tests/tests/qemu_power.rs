//! The ACPI power button (QEMU `system_powerdown`, as Cloud Hypervisor and libvirt send it)
//! shuts the guest down gracefully on q35 and microvm: services stop in reverse dependency
//! order, a service that traps SIGTERM gets to say so, and QEMU exits by itself.

use qemu_harness::Machine;
use vminit_tests::{boot, boot_deadline, Guest, SLIRP_IP};

const ORDERED: &str = r#"
[services.db]
command = ["/bin/test-agent", "http", "--port", "8081"]
ready = { tcp = "127.0.0.1:8081" }

[services.api]
command = ["/bin/test-agent", "term-last-line"]
after = ["db"]
"#;

fn power_button_shuts_down(machine: Machine) {
    let (mut vm, _dir) = boot(&Guest::with_config(ORDERED), machine, SLIRP_IP, &[]);
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_console("power button: listening", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.system_powerdown().expect("monitor: system_powerdown");
    let status = vm
        .wait_exit(boot_deadline())
        .unwrap_or_else(|e| panic!("QEMU did not power off by itself: {e}"));
    let console = vm.console_text();
    assert!(status.success(), "QEMU exit {status:?}\n{console}");
    let at = |needle: &str| {
        console
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on the console:\n{console}"))
    };
    let (pressed, api, said, db, off) = (
        at("power button (/dev/input/event"),
        at("stopping service api"),
        at("[api] GOT-TERM"),
        at("stopping service db"),
        at("shutdown: poweroff"),
    );
    assert!(
        pressed < api && api < said && said < db && db < off,
        "{console}"
    );
    assert!(!console.contains("Kernel panic"), "{console}");
}

#[test]
fn power_button_shuts_down_q35() {
    power_button_shuts_down(Machine::Q35);
}

#[test]
fn power_button_shuts_down_microvm() {
    power_button_shuts_down(Machine::Microvm);
}
