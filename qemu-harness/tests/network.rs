//! The harness's network path end to end, with the throwaway `net-init`
//! example as PID 1 (not vminit): virtio modules from the initramfs,
//! slirp with `restrict=on`, `hostfwd` to a free 127.0.0.1 port, and
//! `wait_health` polling through it, on q35 (virtio-pci) and microvm
//! (virtio-mmio announced by ACPI).
//!
//! Ignored by default because it needs an extra static build:
//! `cargo build --release --target x86_64-unknown-linux-musl -p qemu-harness
//! --example net-init`, then `cargo test -p qemu-harness --test network --
//! --ignored` (with `VMINIT_STATIC_DIR` if the target dir is not the default).

use qemu_harness::{static_dir, Initramfs, Kernel, Machine, Modules, VmBuilder, BOOT_TIMEOUT};

fn net_boot(machine: Machine) {
    let net_init = static_dir().join("examples/net-init");
    assert!(
        net_init.is_file(),
        "build {} first (see the file doc)",
        net_init.display()
    );
    let kernel = Kernel::get().unwrap();
    let modules = match machine {
        Machine::Q35 | Machine::Virt => Modules::parse("virtio_pci,virtio_net"),
        Machine::Microvm => Modules::parse("virtio_mmio,virtio_net"),
    };
    let mut img = Initramfs::new();
    img.init(&net_init).unwrap();
    img.modules(
        &kernel.release,
        kernel.modules_dir.as_ref().unwrap(),
        &modules.names(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("net.cpio");
    img.write(&initrd).unwrap();

    let mut vm = VmBuilder::new()
        .machine(machine)
        .kernel(kernel)
        .initrd(&initrd)
        .nic(true)
        .launch()
        .unwrap();
    let health = vm
        .wait_health(|h| h["status"] == "ok", BOOT_TIMEOUT)
        .unwrap();
    let took = vm.launched().elapsed();
    eprintln!("{machine:?}: /health ok after {took:?}: {health}");
    assert!(vm.console_text().contains("net-init: eth0 up: true"));
    let (code, body) = vm.get("/anything").unwrap();
    assert_eq!((code, body.contains("\"ok\"")), (200, true));
}

#[test]
#[ignore = "needs the net-init example built for musl (see the file doc)"]
fn health_through_hostfwd_q35() {
    net_boot(Machine::Q35);
}

#[test]
#[ignore = "needs the net-init example built for musl (see the file doc)"]
fn health_through_hostfwd_microvm() {
    net_boot(Machine::Microvm);
}
