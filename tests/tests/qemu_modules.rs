//! Drivers under QEMU: `eth0` exists only because vminit loaded the virtio drivers itself
//! (coldplug from modaliases, no hard-coded list), on q35 (virtio-pci) and `-M microvm`
//! (virtio-mmio announced through ACPI); and an image without a module tree is named.

use qemu_harness::Machine;
use vminit_tests::{boot, boot_deadline, power_off_cleanly, Guest, SLIRP_IP};

fn loaded(h: &serde_json::Value) -> Vec<String> {
    h["modules"]["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

fn eth0_from_coldplug(machine: Machine, bus_driver: &str) {
    let (mut vm, _dir) = boot(&Guest::default(), machine, SLIRP_IP, &[]);
    let h = vm
        .wait_health(|h| h["network"]["state"] == "up", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let names = loaded(&h);
    let pos = |m: &str| names.iter().position(|n| n == m);
    let (Some(bus), Some(net)) = (pos(bus_driver), pos("virtio_net")) else {
        panic!(
            "{bus_driver} and virtio_net not both loaded: {names:?}\n{}",
            vm.console_text()
        );
    };
    assert!(bus < net, "the bus driver must come first: {names:?}");
    assert!(
        h["modules"]["failed"].as_array().unwrap().is_empty(),
        "{h:#}"
    );
    assert_eq!(h["network"]["interface"], "eth0");
    assert_eq!(h["status"], "ok", "{h:#}");
}

#[test]
fn q35_coldplug_loads_virtio_pci_then_virtio_net() {
    eth0_from_coldplug(Machine::Q35, "virtio_pci");
}

#[test]
fn microvm_coldplug_loads_virtio_mmio_then_virtio_net() {
    eth0_from_coldplug(Machine::Microvm, "virtio_mmio");
}

/// No `/lib/modules` at all: one line names the release, the directory and the network card
/// left without `virtio_net`; the network error says the same; the init stays up and still
/// shuts down cleanly on ctrl-alt-delete.
#[test]
fn missing_module_tree_is_named_and_init_stays_alive() {
    let guest = Guest {
        modules: None,
        ..Guest::default()
    };
    let (mut vm, _dir) = boot(&guest, Machine::Q35, SLIRP_IP, &[]);
    vm.wait_console("does not exist", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    // The network thread gives up on eth0 after its carrier timeout and says why.
    vm.wait_console("network: ", boot_deadline()).unwrap();
    vm.wait_console("no interface", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let console = vm.console_text();
    let line = console
        .lines()
        .find(|l| l.contains("does not exist"))
        .unwrap();
    assert!(line.contains("/lib/modules/6."), "{line}");
    assert!(line.contains("virtio_net"), "{line}");
    assert!(line.contains("network card"), "{line}");
    power_off_cleanly(&mut vm);
}

/// A damaged `modules.alias.bin` (a sound header whose root lies past the end of the file)
/// costs speed, not drivers: vminit names the file and the offset, reads `modules.alias`
/// instead, and `eth0` still comes up from coldplug.
#[test]
fn damaged_binary_index_falls_back_to_the_text_file() {
    let kernel = qemu_harness::Kernel::get().expect("test kernel (run scripts/setup.sh)");
    let mut trie = Vec::new();
    trie.extend(0xB007_F457u32.to_be_bytes());
    trie.extend(0x0002_0001u32.to_be_bytes());
    trie.extend(0x2000_1000u32.to_be_bytes());
    let path = format!("/lib/modules/{}/modules.alias.bin", kernel.release);
    let guest = Guest {
        files: vec![(path.clone(), trie, 0o644)],
        ..Guest::default()
    };
    let (mut vm, _dir) = boot(&guest, Machine::Microvm, SLIRP_IP, &[]);
    let h = vm
        .wait_health(|h| h["network"]["state"] == "up", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    assert!(loaded(&h).contains(&"virtio_net".to_string()), "{h:#}");
    assert!(
        h["modules"]["failed"].as_array().unwrap().is_empty(),
        "{h:#}"
    );
    assert_eq!(h["status"], "ok", "{h:#}");
    let console = vm.console_text();
    let line = console
        .lines()
        .find(|l| l.contains("damaged module index"))
        .unwrap_or_else(|| panic!("no warning about the damaged index:\n{console}"));
    assert!(line.contains(&format!("{path} at byte 4096")), "{line}");
    assert!(line.contains("reading its text twin instead"), "{line}");
    power_off_cleanly(&mut vm);
}

/// Issue 18, staged coldplug (`[modules] coldplug = "all"`, the default): the boot loads the
/// job's drivers, the guest becomes ready, then the rest (here the PC speaker, which q35's
/// kernel always declares) load in the background and replace `modules` in `/health`. The
/// console has one info line per stage and no per-module line.
#[test]
fn q35_staged_coldplug_loads_the_rest_after_readiness() {
    let mut modules = qemu_harness::VIRTIO_MODULES.to_vec();
    modules.push("pcspkr");
    let guest = Guest {
        modules: Some(modules),
        ..Guest::default()
    };
    let (mut vm, _dir) = boot(&guest, Machine::Q35, SLIRP_IP, &[]);
    let h = vm
        .wait_health(
            |h| h["status"] == "ok" && h["modules"]["rest_pending"] == false,
            boot_deadline(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let names = loaded(&h);
    let pos = |m: &str| names.iter().position(|n| n == m);
    let (Some(net), Some(speaker)) = (pos("virtio_net"), pos("pcspkr")) else {
        panic!("virtio_net and pcspkr not both loaded: {names:?}\n{h:#}");
    };
    assert!(
        net < speaker,
        "the rest must come after the job's drivers: {names:?}"
    );
    assert!(
        h["modules"]["failed"].as_array().unwrap().is_empty(),
        "{h:#}"
    );
    let ready = h["boot"]["ready_ms"].as_u64().unwrap();
    let console = vm.console_text();
    assert!(console.contains("(essential) in"), "{console}");
    assert!(console.contains("(rest) in"), "{console}");
    assert!(
        !console.contains("loaded module "),
        "per-module lines at info:\n{console}"
    );
    assert!(ready > 0);
    power_off_cleanly(&mut vm);
}

/// `coldplug = "essential"`: the rest never loads.
#[test]
fn q35_essential_coldplug_never_loads_the_rest() {
    let mut modules = qemu_harness::VIRTIO_MODULES.to_vec();
    modules.push("pcspkr");
    let guest = Guest {
        config: Some("[modules]\ncoldplug = \"essential\"\n".into()),
        modules: Some(modules),
        ..Guest::default()
    };
    let (mut vm, _dir) = boot(&guest, Machine::Q35, SLIRP_IP, &[]);
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    assert_eq!(h["modules"]["rest_pending"], false, "{h:#}");
    let names = loaded(&h);
    assert!(names.contains(&"virtio_net".to_string()), "{names:?}");
    assert!(!names.contains(&"pcspkr".to_string()), "{names:?}");
    power_off_cleanly(&mut vm);
}
