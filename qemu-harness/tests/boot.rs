//! Boots the static `trivial-init` under QEMU (vmlinux through PVH) on q35
//! and on microvm: the line must reach the console, the guest must power
//! off by itself, and no QEMU may be left afterwards.
//!
//! Needs the static binary: `cargo build --release --target
//! x86_64-unknown-linux-musl -p test-agent` (or `VMINIT_STATIC_DIR`), and
//! the test kernel (fetched into the cache on first use).

use std::time::Duration;

use qemu_harness::bench::TRIVIAL_LINE;
use qemu_harness::{static_binary, Initramfs, KernelKind, Machine, VmBuilder, BOOT_TIMEOUT};

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn boot_trivial(machine: Machine, kind: KernelKind) {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("trivial.cpio");
    let mut img = Initramfs::new();
    img.init(&static_binary("trivial-init").unwrap()).unwrap();
    img.write(&initrd).unwrap();

    let mut vm = VmBuilder::new()
        .machine(machine)
        .kernel_kind(kind)
        .initrd(&initrd)
        .nic(true)
        .launch()
        .unwrap();
    let pid = vm.pid();
    let seen = vm.wait_console(TRIVIAL_LINE, BOOT_TIMEOUT).unwrap();
    let status = vm.wait_exit(Duration::from_secs(60)).unwrap();
    eprintln!("{machine:?}/{kind:?}: line after {seen:?}, QEMU ended {status}");
    assert!(
        status.success(),
        "QEMU exit {status}:\n{}",
        vm.console_tail(40)
    );
    assert!(!vm.console_text().contains("Kernel panic"));
    drop(vm);
    assert!(!process_exists(pid), "QEMU {pid} still exists after drop");
}

#[test]
fn trivial_init_on_q35_pvh() {
    boot_trivial(Machine::Q35, KernelKind::Vmlinux);
}

#[test]
fn trivial_init_on_microvm_pvh() {
    boot_trivial(Machine::Microvm, KernelKind::Vmlinux);
}

/// A guest that never gets anywhere (no initrd: the kernel panics, and with
/// `panic=-1` plus `-no-reboot` QEMU ends) is reported with the console tail.
#[test]
fn failed_boot_error_shows_console_tail() {
    let mut vm = VmBuilder::new().launch().unwrap();
    let err = vm
        .wait_console("this line never appears", BOOT_TIMEOUT)
        .unwrap_err()
        .to_string();
    assert!(err.contains("this line never appears"), "{err}");
    assert!(err.contains("Kernel panic") || err.contains("VFS"), "{err}");
}

/// Dropping a running VM kills and reaps QEMU even while the guest is busy.
#[test]
fn drop_kills_a_running_vm() {
    let mut vm = VmBuilder::new().launch().unwrap();
    let pid = vm.pid();
    vm.wait_console("Linux version", BOOT_TIMEOUT).unwrap();
    assert!(vm.try_exit().is_none());
    drop(vm);
    assert!(!process_exists(pid), "QEMU {pid} still exists after drop");
}

/// A live guest that never listens: the health poll ends at its deadline
/// (not later: probes through hostfwd must not hang) with the console tail.
/// `panic=0` (after the base `panic=-1`) keeps the panicked kernel up.
#[test]
fn health_poll_times_out_with_console_tail() {
    let mut vm = VmBuilder::new()
        .nic(true)
        .append("panic=0")
        .launch()
        .unwrap();
    vm.wait_console("Kernel panic", BOOT_TIMEOUT).unwrap();
    let start = std::time::Instant::now();
    let err = vm
        .wait_health(|_| true, Duration::from_secs(4))
        .unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "poll took {took:?}");
    let text = err.to_string();
    assert!(text.starts_with("timed out"), "{text}");
    assert!(text.contains("Kernel panic"), "{text}");
    let status = vm.monitor("info status").unwrap();
    assert!(status.contains("running"), "{status}");
}

/// `sendkey ctrl-alt-delete` reaches the guest kernel through the keyboard
/// controller (on microvm the one the harness adds). The PID 1 here
/// (test-agent `ignore-term`) leaves the kernel's default in place, an
/// immediate restart, which `-no-reboot` turns into QEMU exiting.
fn ctrl_alt_del_reaches_kernel(machine: Machine) {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("agent.cpio");
    let mut img = Initramfs::new();
    img.init(&static_binary("test-agent").unwrap()).unwrap();
    img.write(&initrd).unwrap();
    let mut vm = VmBuilder::new()
        .machine(machine)
        .initrd(&initrd)
        .append("-- ignore-term")
        .launch()
        .unwrap();
    vm.wait_console("ignoring SIGTERM", BOOT_TIMEOUT).unwrap();
    vm.send_ctrl_alt_del().unwrap();
    let status = vm.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn ctrl_alt_del_reaches_kernel_q35() {
    ctrl_alt_del_reaches_kernel(Machine::Q35);
}

#[test]
fn ctrl_alt_del_reaches_kernel_microvm() {
    ctrl_alt_del_reaches_kernel(Machine::Microvm);
}
