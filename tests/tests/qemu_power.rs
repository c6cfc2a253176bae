//! The power button (QEMU `system_powerdown`, as Cloud Hypervisor and libvirt send it) shuts
//! the guest down gracefully on every machine: the ACPI button on q35 and microvm, the
//! device-tree gpio-keys on arm64's virt. Services stop in reverse dependency order, a service
//! that traps SIGTERM gets to say so, and QEMU exits by itself.

use qemu_harness::{make_drive, Arch, DriveFs, Machine};
use vminit_tests::{
    boot, boot_deadline, boot_with, exits_cleanly, power_off_cleanly, Guest, SLIRP_IP,
};

const ORDERED: &str = r#"
[services.db]
command = ["/bin/test-agent", "http", "--port", "8081"]
ready = { tcp = "127.0.0.1:8081" }

[services.api]
command = ["/bin/test-agent", "term-last-line"]
after = ["db"]
"#;

fn power_button_shuts_down(machine: Machine) {
    let mut guest = Guest::with_config(ORDERED);
    let mut deadline = boot_deadline();
    if machine.arch() == Arch::Aarch64 {
        guest.modules = Some(Arch::Aarch64.virtio_modules());
        // TCG emulates arm64 about twice as slowly as x86 here.
        deadline *= 2;
    }
    let (mut vm, _dir) = boot(&guest, machine, SLIRP_IP, &[]);
    let h = vm
        .wait_health(|h| h["status"] == "ok", deadline)
        .unwrap_or_else(|e| panic!("{e}"));
    let button = match machine.arch() {
        Arch::X86_64 => "button",
        Arch::Aarch64 => "gpio_keys",
    };
    // A module in Debian's kernels, found by coldplug (ACPI or device-tree modalias).
    let loaded = h["modules"]["loaded"].to_string();
    assert!(loaded.contains(&format!("\"{button}\"")), "{h:#}");
    vm.wait_console("power button: listening", deadline)
        .unwrap_or_else(|e| panic!("{e}"));
    // `api` says `armed` once its TERM handler is in place.
    vm.wait_console("[api] armed", deadline)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.system_powerdown().expect("monitor: system_powerdown");
    let status = vm
        .wait_exit(deadline)
        .unwrap_or_else(|e| panic!("QEMU did not power off by itself: {e}"));
    let console = vm.console_text();
    assert!(status.success(), "QEMU exit {status:?}\n{console}");
    let at = |needle: &str| {
        console
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on the console:\n{console}"))
    };
    // The order is vminit's own log lines: `api` stopped (its exit logged) before `db` was
    // asked to stop. The service's own `GOT-TERM` is relayed through the supervisor's console
    // queue, so its place next to vminit's lines is not fixed; it is out before the power-off.
    let (pressed, api, api_gone, db, off) = (
        at("power button (/dev/input/event"),
        at("stopping service api"),
        at("service api (pid"),
        at("stopping service db"),
        at("shutdown: poweroff"),
    );
    assert!(
        pressed < api && api < api_gone && api_gone < db && db < off,
        "{console}"
    );
    let said = at("[api] GOT-TERM");
    assert!(api < said && said < off, "{console}");
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

#[test]
fn power_button_shuts_down_arm64_virt() {
    power_button_shuts_down(Machine::Virt);
}

/// A press while the boot reads a slow config drive (one I/O a second): the buttons are open
/// from the module stage on, so the press is heard during the boot; the boot finishes its
/// steps, starts no service, and QEMU exits by itself.
#[test]
fn a_power_button_pressed_during_the_boot_starts_no_service() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("drive.img");
    make_drive(
        DriveFs::Vfat,
        "VMINIT",
        &[("vminit.toml", b"hostname = \"early\"\n".as_slice())],
        &img,
    )
    .unwrap();
    let guest = Guest::with_config(ORDERED);
    let (mut vm, _dir) = boot_with(&guest, Machine::Q35, SLIRP_IP, &[img], |b, _| {
        b.drive_iops(1)
    });
    vm.wait_console("power button: listening", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.system_powerdown().expect("monitor: system_powerdown");
    let console = exits_cleanly(&mut vm);
    assert!(
        console.contains("shutdown requested: power button (/dev/input/event"),
        "the press was not heard during the boot:\n{console}"
    );
    assert!(console.contains("during boot"), "{console}");
    assert!(
        !console.contains("started as pid"),
        "a service started:\n{console}"
    );
}

/// A second request while a service ignores SIGTERM with a ten-minute `stop_timeout` skips
/// the grace periods: QEMU exits within the boot deadline (two minutes), which only the
/// second request can explain.
#[test]
fn a_second_shutdown_request_skips_the_grace_periods() {
    let config = r#"
[services.stubborn]
command = ["/bin/test-agent", "ignore-term"]
stop_timeout = "10m"
"#;
    let (mut vm, _dir) = boot(&Guest::with_config(config), Machine::Q35, SLIRP_IP, &[]);
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_console("[stubborn] ignoring SIGTERM", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_console("power button: listening", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.system_powerdown().expect("monitor: system_powerdown");
    vm.wait_console("stopping service stubborn", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    // Within the boot deadline (two minutes), which only the second request can explain.
    let console = power_off_cleanly(&mut vm);
    assert!(
        console.contains("second shutdown request; skipping the remaining grace periods"),
        "{console}"
    );
}

/// An input device with a power key that appears after the boot (a virtio keyboard plugged
/// into a PCIe port of a running q35 guest) is found from the kernel's device event and
/// listened to; a press of its power key shuts the guest down.
#[test]
fn a_power_key_plugged_in_later_is_heard() {
    let config = format!("{ORDERED}\n[modules]\nload = [\"virtio_input\"]\n");
    let mut guest = Guest::with_config(&config);
    let mut modules = qemu_harness::VIRTIO_MODULES.to_vec();
    modules.push("virtio_input");
    guest.modules = Some(modules);
    let (mut vm, _dir) = boot_with(&guest, Machine::Q35, SLIRP_IP, &[], |b, _| {
        b.extra_arg("-device")
            .extra_arg("pcie-root-port,id=rp1,chassis=1,slot=1")
    });
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_console("[api] armed", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let before = vm
        .console_text()
        .matches("power button: listening on")
        .count();
    vm.monitor("device_add virtio-keyboard-pci,bus=rp1,id=kbd")
        .expect("monitor: device_add");
    // The keyboard's evdev node, once vminit has opened it.
    let deadline = std::time::Instant::now() + boot_deadline();
    let node = loop {
        let console = vm.console_text();
        let found: Vec<&str> = console
            .lines()
            .filter_map(|l| l.split("power button: listening on ").nth(1))
            .collect();
        if found.len() > before {
            break found[found.len() - 1].trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plugged-in keyboard was not listened to:\n{console}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // QEMU sends keys to the input device activated last: the new virtio keyboard.
    vm.monitor("sendkey power").expect("monitor: sendkey power");
    let console = exits_cleanly(&mut vm);
    assert!(
        console.contains(&format!("power button ({node})")),
        "the press did not come from {node}:\n{console}"
    );
}

/// Firecracker's SendCtrlAltDel on microvm (its i8042 keyboard controller): the same graceful
/// shutdown as the power button, services stopped in order, the trapping one heard.
#[test]
fn ctrl_alt_delete_shuts_down_microvm() {
    let (mut vm, _dir) = boot(
        &Guest::with_config(ORDERED),
        Machine::Microvm,
        SLIRP_IP,
        &[],
    );
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_console("[api] armed", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let console = power_off_cleanly(&mut vm);
    let at = |needle: &str| {
        console
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on the console:\n{console}"))
    };
    let (asked, api, db, off) = (
        at("SIGINT received: shutting down"),
        at("stopping service api"),
        at("stopping service db"),
        at("shutdown: poweroff"),
    );
    assert!(asked < api && api < db && db < off, "{console}");
    assert!(console.contains("[api] GOT-TERM"), "{console}");
}
