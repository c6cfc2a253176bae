//! Coldplug over a fake sysfs with the fake kernel creating the devices that
//! loading a bus driver would create.

use std::collections::BTreeMap;
use std::time::Duration;

use super::fakes::{self, Effect, FakeClock, FakeKernel, FakeSys};
use crate::device;
use crate::{
    diagnose_network, Coldplug, Errno, Error, KernelError, Loader, ModuleIndex, Stage, Uevent,
};

const PCI_BRIDGE: &str = "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00";
const PCI_NET: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
const PCI_BLK: &str = "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00";
const VIRTIO_NET: &str = "virtio:d00000001v00001AF4";
const VIRTIO_BLK: &str = "virtio:d00000002v00001AF4";

fn add(bus: &str, dev: &str, modalias: &str, parent: Option<&str>) -> Effect {
    Effect::Add(
        bus.into(),
        dev.into(),
        modalias.into(),
        parent.map(String::from),
    )
}

fn bind(bus: &str, dev: &str, driver: &str) -> Effect {
    Effect::Bind(bus.into(), dev.into(), driver.into())
}

/// A q35 guest: virtio-pci net and block, a host bridge, a bound serial port.
fn q35(tmp: &tempfile::TempDir) -> (FakeSys, FakeKernel) {
    let sys = FakeSys::new(tmp);
    sys.add("pci", "0000:00:00.0", PCI_BRIDGE, None);
    sys.add("pci", "0000:00:03.0", PCI_NET, None);
    sys.add("pci", "0000:00:04.0", PCI_BLK, None);
    sys.add("platform", "serial8250", "platform:serial8250", None);
    sys.add("acpi", "PNP0C0F:00", "acpi:PNP0C0F:", None);
    sys.bind("platform", "serial8250", "serial8250");
    let mut kernel = FakeKernel {
        sys: Some(sys.root.clone()),
        ..FakeKernel::default()
    };
    kernel.effects.insert(
        "virtio_pci".into(),
        vec![
            bind("pci", "0000:00:03.0", "virtio-pci"),
            bind("pci", "0000:00:04.0", "virtio-pci"),
            add("virtio", "virtio0", VIRTIO_NET, Some("0000:00:03.0")),
            add("virtio", "virtio1", VIRTIO_BLK, Some("0000:00:04.0")),
        ],
    );
    kernel.effects.insert(
        "virtio_net".into(),
        vec![bind("virtio", "virtio0", "virtio_net")],
    );
    kernel.effects.insert(
        "virtio_blk".into(),
        vec![bind("virtio", "virtio1", "virtio_blk")],
    );
    (sys, kernel)
}

fn opts(sys: &FakeSys) -> Coldplug {
    Coldplug {
        sys: sys.root.clone(),
        ..Coldplug::default()
    }
}

fn loaded(l: &Loader<FakeKernel, FakeClock>) -> Vec<String> {
    l.report().loaded.iter().map(|x| x.name.clone()).collect()
}

#[test]
fn q35_loads_bus_driver_then_devices_behind_it() {
    let (tmp, idx) = fakes::index();
    let (sys, kernel) = q35(&tmp);
    let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
    l.coldplug(&opts(&sys)).unwrap();
    let names = loaded(&l);
    let pos = |m: &str| {
        names
            .iter()
            .position(|n| n == m)
            .unwrap_or_else(|| panic!("{m} not loaded: {names:?}"))
    };
    assert!(pos("virtio_ring") < pos("virtio") && pos("virtio") < pos("virtio_pci"));
    assert!(pos("virtio_pci") < pos("virtio_net") && pos("virtio_pci") < pos("virtio_blk"));
    assert!(pos("net_failover") < pos("virtio_net"));
    // Each module once, nothing unrelated.
    assert_eq!(l.kernel.calls.len(), names.len());
    assert_eq!(names.len(), 9, "{names:?}");
    let r = l.report();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    // Bus driver, then the devices behind it, then one pass that finds nothing to load:
    // probes are done when finit_module returns, so there is no waiting.
    assert_eq!(r.passes, 3);
    assert_eq!(l.clock.sleeps.get(), 0);
    assert!(!r.timed_out);
    let unmatched: Vec<&str> = r.unmatched.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(unmatched, ["0000:00:00.0"]);
    assert_eq!(r.unmatched[0].class, "bridge");
    let net = r.devices.iter().find(|d| d.device == "virtio0").unwrap();
    assert_eq!(net.location, "virtio0 on PCI 0000:00:03.0");
    assert_eq!(net.class, "network card");
    assert!(net.has_driver);
    assert_eq!(diagnose_network(r), None);
}

/// With the kernel's device events, coldplug scans sysfs once and follows the events; it
/// must end where the rescans end: the same loads and the same devices, bound the same way.
#[test]
fn device_events_replace_rescans_with_the_same_outcome() {
    let run = |uevents: bool| {
        let (tmp, idx) = fakes::index();
        let (sys, mut kernel) = q35(&tmp);
        kernel.uevents = uevents;
        let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
        l.coldplug(&opts(&sys)).unwrap();
        let r = l.report().clone();
        (loaded(&l), r)
    };
    let (rescan_loaded, rescan) = run(false);
    let (event_loaded, events) = run(true);
    assert_eq!(event_loaded, rescan_loaded);
    assert_eq!(events.devices, rescan.devices);
    assert_eq!(events.unmatched, rescan.unmatched);
    assert_eq!((rescan.scans, rescan.events), (3, 0));
    assert_eq!(events.scans, 1);
    assert!(events.events > 0);
    assert_eq!(events.passes, rescan.passes);
    // The card behind virtio-pci was found through its `add` event and shows as bound
    // through its `bind` event.
    let net = events
        .devices
        .iter()
        .find(|d| d.device == "virtio0")
        .unwrap();
    assert!(net.has_driver);
    assert_eq!(net.location, "virtio0 on PCI 0000:00:03.0");
}

/// The events a real load sends, as the kernel words them: bus devices join the list,
/// class devices (`net`) and kobjects without a subsystem do not, binds and removals apply.
#[test]
fn events_update_the_device_list_as_a_rescan_would() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = FakeSys::new(&tmp);
    sys.add("pci", "0000:00:03.0", PCI_NET, None);
    sys.add("pci", "0000:00:04.0", PCI_BLK, None);
    let mut cache = device::ScanCache::new();
    let before = device::scan_cached(&sys.root, &mut cache).unwrap();
    // What virtio_pci's load does, then virtio_net's.
    sys.add("virtio", "virtio0", VIRTIO_NET, Some("0000:00:03.0"));
    sys.bind("pci", "0000:00:03.0", "virtio-pci");
    sys.bind("virtio", "virtio0", "virtio_net");
    let raw: [&[u8]; 7] = [
        b"add@/module/virtio_pci\0ACTION=add\0DEVPATH=/module/virtio_pci\0",
        b"bind@/devices/0000:00:03.0\0ACTION=bind\0DEVPATH=/devices/0000:00:03.0\0\
          SUBSYSTEM=pci\0DRIVER=virtio-pci\0",
        b"add@/devices/0000:00:03.0/virtio0\0ACTION=add\0\
          DEVPATH=/devices/0000:00:03.0/virtio0\0SUBSYSTEM=virtio\0\
          MODALIAS=virtio:d00000001v00001AF4\0",
        b"add@/devices/0000:00:03.0/virtio0/net/eth0\0ACTION=add\0\
          DEVPATH=/devices/0000:00:03.0/virtio0/net/eth0\0SUBSYSTEM=net\0INTERFACE=eth0\0",
        b"bind@/devices/0000:00:03.0/virtio0\0ACTION=bind\0\
          DEVPATH=/devices/0000:00:03.0/virtio0\0SUBSYSTEM=virtio\0DRIVER=virtio_net\0",
        // The disk's controller goes away (hot-unplug) after an unbind.
        b"unbind@/devices/0000:00:04.0\0ACTION=unbind\0DEVPATH=/devices/0000:00:04.0\0\
          SUBSYSTEM=pci\0",
        b"remove@/devices/0000:00:04.0\0ACTION=remove\0DEVPATH=/devices/0000:00:04.0\0\
          SUBSYSTEM=pci\0",
    ];
    let events: Vec<Uevent> = raw.iter().filter_map(|m| Uevent::parse(m)).collect();
    assert_eq!(events.len(), 7);
    let after = device::apply_events(before, &events, &sys.root, &mut cache);
    let names: Vec<(&str, &str, bool)> = after
        .iter()
        .map(|d| (d.bus.as_str(), d.name.as_str(), d.has_driver))
        .collect();
    assert_eq!(
        names,
        [("pci", "0000:00:03.0", true), ("virtio", "virtio0", true)]
    );
    assert_eq!(after[1].modalias, VIRTIO_NET);
    assert_eq!(after[1].parent.as_deref(), Some("PCI 0000:00:03.0"));
    // An `add` for a device already listed (seen by the scan too) is not a second entry.
    let again = device::apply_events(after.clone(), &events[2..3], &sys.root, &mut cache);
    assert_eq!(again, after);
}

#[test]
fn devices_that_appear_late_are_still_found() {
    let (tmp, idx) = fakes::index();
    let (sys, mut kernel) = q35(&tmp);
    let clock = FakeClock {
        sys: Some(sys.root.clone()),
        ..FakeClock::default()
    };
    kernel.time = Some(clock.now.clone());
    kernel.deferred = Some(clock.pending.clone());
    kernel.delay = Duration::from_millis(25);
    let mut l = Loader::new(Ok(idx), kernel, clock.clone());
    // A bus that adds devices after the load returns (a work queue) needs a settle time.
    l.coldplug(&Coldplug {
        settle: Duration::from_millis(30),
        ..opts(&sys)
    })
    .unwrap();
    assert!(
        loaded(&l).contains(&"virtio_net".to_string()),
        "{:?}",
        loaded(&l)
    );
    assert!(loaded(&l).contains(&"virtio_blk".to_string()));
    assert!(!l.report().timed_out);
    // It waited (slept) rather than spinning, and stopped soon after settling.
    assert!(clock.sleeps.get() >= 3);
    assert!(
        clock.now.get() < Duration::from_millis(200),
        "{:?}",
        clock.now.get()
    );
}

#[test]
fn never_settling_bus_stops_at_the_budget() {
    let (tmp, idx) = fakes::index();
    let (sys, kernel) = q35(&tmp);
    let clock = FakeClock {
        sys: Some(sys.root.clone()),
        churn: true,
        ..FakeClock::default()
    };
    let mut l = Loader::new(Ok(idx), kernel, clock.clone());
    l.coldplug(&Coldplug {
        budget: Duration::from_millis(500),
        settle: Duration::from_millis(30),
        ..opts(&sys)
    })
    .unwrap();
    assert!(l.report().timed_out);
    let now = clock.now.get();
    assert!(
        now >= Duration::from_millis(500) && now < Duration::from_millis(520),
        "{now:?}"
    );
    assert!(loaded(&l).contains(&"virtio_net".to_string()));
}

#[test]
fn microvm_acpi_virtio_mmio() {
    let (tmp, idx) = fakes::index();
    let sys = FakeSys::new(&tmp);
    sys.add("acpi", "LNRO0005:00", "acpi:LNRO0005:", None);
    sys.add(
        "platform",
        "LNRO0005:00",
        "acpi:LNRO0005:",
        Some("acpi-platform"),
    );
    let mut kernel = FakeKernel {
        sys: Some(sys.root.clone()),
        ..FakeKernel::default()
    };
    kernel.effects.insert(
        "virtio_mmio".into(),
        vec![
            bind("platform", "LNRO0005:00", "virtio-mmio"),
            add(
                "virtio",
                "virtio0",
                VIRTIO_NET,
                Some("acpi-platform/LNRO0005:00"),
            ),
        ],
    );
    let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
    l.coldplug(&opts(&sys)).unwrap();
    assert_eq!(
        l.kernel
            .modules()
            .iter()
            .filter(|m| *m == "virtio_mmio")
            .count(),
        1
    );
    assert!(loaded(&l).contains(&"virtio_net".to_string()));
    let r = l.report();
    assert!(r.unmatched.is_empty(), "{:?}", r.unmatched);
    let dev = r.devices.iter().find(|d| d.device == "virtio0").unwrap();
    assert_eq!(dev.location, "virtio0 on platform LNRO0005:00");
}

/// Firecracker style: the devices exist only as `virtio_mmio.device=` on the
/// cmdline, so nothing in sysfs asks for virtio_mmio.
#[test]
fn cmdline_declared_mmio_devices() {
    let (tmp, idx) = fakes::index();
    let sys = FakeSys::new(&tmp);
    let mut kernel = FakeKernel {
        sys: Some(sys.root.clone()),
        ..FakeKernel::default()
    };
    kernel.effects.insert(
        "virtio_mmio".into(),
        vec![
            add("platform", "virtio-mmio.0", "platform:virtio-mmio", None),
            bind("platform", "virtio-mmio.0", "virtio-mmio"),
            add("virtio", "virtio0", VIRTIO_NET, Some("virtio-mmio.0")),
        ],
    );
    let mut params = BTreeMap::new();
    params.insert(
        "virtio_mmio".to_string(),
        vec!["device=4K@0xd0000000:5".to_string()],
    );
    let mut l = Loader::new(Ok(idx), kernel, FakeClock::default()).with_params(params);
    l.coldplug(&opts(&sys)).unwrap();
    let mmio = l
        .kernel
        .calls
        .iter()
        .find(|c| c.module() == "virtio_mmio")
        .unwrap();
    assert_eq!(mmio.params, "device=4K@0xd0000000:5");
    assert!(loaded(&l).contains(&"virtio_net".to_string()));
}

#[test]
fn failed_driver_is_diagnosed() {
    let (tmp, idx) = fakes::index();
    let (sys, mut kernel) = q35(&tmp);
    kernel
        .fail
        .insert("virtio_net".into(), KernelError::Init(Errno::ENOEXEC));
    let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
    l.coldplug(&opts(&sys)).unwrap();
    let msg = diagnose_network(l.report()).unwrap();
    assert!(
        msg.starts_with("the network card at virtio0 on PCI 0000:00:03.0 (virtio:d00000001v00001AF4) wants virtio_net, which failed to load: finit_module("),
        "{msg}"
    );
    assert!(msg.contains("Exec format error"), "{msg}");
    // The block device is unaffected.
    assert!(loaded(&l).contains(&"virtio_blk".to_string()));
}

#[test]
fn missing_tree_names_release_dir_and_devices() {
    let (tmp, _idx) = fakes::index();
    let (sys, kernel) = q35(&tmp);
    let dir = tmp.path().join("lib/modules/6.1.0-56-amd64");
    let mut l = Loader::new(ModuleIndex::load(&dir), kernel, FakeClock::default());
    let err = l.coldplug(&opts(&sys)).unwrap_err();
    let Error::MissingTree {
        release, wanted, ..
    } = &err
    else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(release, "6.1.0-56-amd64");
    assert_eq!(wanted.len(), 2);
    let msg = err.to_string();
    assert!(
        msg.starts_with("no kernel modules for the running kernel 6.1.0-56-amd64: "),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{} does not exist", dir.display())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "the network card at PCI 0000:00:03.0 ({PCI_NET}) wants virtio_pci then virtio_net"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("the block device at PCI 0000:00:04.0"),
        "{msg}"
    );
    assert!(l.kernel.calls.is_empty());
    let r = l.report();
    assert!(r.tree_missing);
    assert_eq!(r.errors, [msg]);
    let diag = diagnose_network(r).unwrap();
    assert!(
        diag.contains("wants virtio_pci then virtio_net, but")
            && diag.contains("6.1.0-56-amd64 does not exist"),
        "{diag}"
    );
}

#[test]
fn unreadable_sysfs_is_an_error() {
    let (tmp, idx) = fakes::index();
    let mut l = Loader::new(Ok(idx), FakeKernel::default(), FakeClock::default());
    let err = l
        .coldplug(&Coldplug {
            sys: tmp.path().join("nosys"),
            ..Coldplug::default()
        })
        .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot list devices in "),
        "{err}"
    );
}

const PCI_BOCHS: &str = "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00";
const PCI_VIRTIO_GPU: &str = "pci:v00001AF4d00001050sv00001AF4sd00001100bc03sc80i00";
const VIRTIO_GPU: &str = "virtio:d00000010v00001AF4";
const CPU: &str = "cpu:type:x86,ven0000fam0006mod003D:feature:,0000,0001,0016";

/// The Debian guest of issue 18, small: the q35 job devices, plus a bochs display, a
/// virtio GPU behind its own virtio-pci function, the PC speaker, the power button and a
/// CPU whose frequency driver finds no hardware.
fn debian_like(tmp: &tempfile::TempDir) -> (FakeSys, FakeKernel) {
    let (sys, mut kernel) = q35(tmp);
    sys.add("pci", "0000:00:01.0", PCI_BOCHS, None);
    sys.add("pci", "0000:00:05.0", PCI_VIRTIO_GPU, None);
    sys.add("platform", "pcspkr", "platform:pcspkr", None);
    sys.add("acpi", "LNXPWRBN:00", "acpi:LNXPWRBN:", None);
    sys.add("cpu", "cpu0", CPU, None);
    kernel.effects.get_mut("virtio_pci").unwrap().extend([
        bind("pci", "0000:00:05.0", "virtio-pci"),
        add("virtio", "virtio2", VIRTIO_GPU, Some("0000:00:05.0")),
    ]);
    for (module, bus, dev) in [
        ("bochs", "pci", "0000:00:01.0"),
        ("virtio_gpu", "virtio", "virtio2"),
        ("pcspkr", "platform", "pcspkr"),
        ("button", "acpi", "LNXPWRBN:00"),
    ] {
        kernel
            .effects
            .insert(module.into(), vec![bind(bus, dev, module)]);
    }
    kernel
        .fail
        .insert("acpi_cpufreq".into(), KernelError::Init(Errno::ENODEV));
    (sys, kernel)
}

fn staged(stage: Stage, sys: &FakeSys) -> Coldplug {
    Coldplug { stage, ..opts(sys) }
}

const ESSENTIAL: [&str; 10] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "button",
];

/// The essential stage loads the job's drivers (through the transport that reveals them)
/// and the power button's, and nothing else; the rest stage, on the same loader, loads the
/// others without loading anything twice.
#[test]
fn essential_stage_then_the_rest() {
    for uevents in [false, true] {
        let (tmp, idx) = fakes::index();
        let (sys, mut kernel) = debian_like(&tmp);
        kernel.uevents = uevents;
        let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
        l.coldplug(&staged(Stage::Essential, &sys)).unwrap();
        let mut first = loaded(&l);
        first.sort();
        let mut want = ESSENTIAL.map(String::from).to_vec();
        want.sort();
        assert_eq!(first, want, "uevents {uevents}");
        let r = l.report();
        assert!(r.failed.is_empty() && r.no_device.is_empty(), "{r:?}");
        // The network card is bound after the essential stage: nothing to diagnose.
        assert_eq!(diagnose_network(r), None);
        // Devices left for later are not "unmatched": they have modules, not yet loaded.
        assert!(
            r.unmatched.iter().all(|d| d.device == "0000:00:00.0"),
            "{:?}",
            r.unmatched
        );

        l.coldplug(&staged(Stage::Rest, &sys)).unwrap();
        let all = loaded(&l);
        assert_eq!(&all[..ESSENTIAL.len()], &loaded_first(&first, &all)[..]);
        let later: Vec<&str> = all[ESSENTIAL.len()..].iter().map(String::as_str).collect();
        let mut later_sorted = later.clone();
        later_sorted.sort();
        assert_eq!(later_sorted, ["bochs", "drm", "pcspkr", "virtio_gpu"]);
        let calls = l.kernel.modules();
        let mut unique = calls.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            calls.len(),
            "a module loaded twice: {calls:?}"
        );
        let r = l.report();
        assert_eq!(r.no_device, ["acpi_cpufreq"]);
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let unbound: Vec<&str> = r
            .devices
            .iter()
            .filter(|d| !d.has_driver)
            .map(|d| d.device.as_str())
            .collect();
        assert_eq!(
            unbound,
            ["PNP0C0F:00", "cpu0", "0000:00:00.0"],
            "uevents {uevents}"
        );
    }
}

/// The first `n` of `all`, checked to be the set `first` in some order.
fn loaded_first(first: &[String], all: &[String]) -> Vec<String> {
    let mut head = all[..first.len()].to_vec();
    head.sort();
    assert_eq!(head, first);
    all[..first.len()].to_vec()
}

/// Both stages together load what one `Stage::All` run loads.
#[test]
fn two_stages_load_what_all_loads() {
    let run = |stages: &[Stage]| {
        let (tmp, idx) = fakes::index();
        let (sys, kernel) = debian_like(&tmp);
        let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
        for s in stages {
            l.coldplug(&staged(*s, &sys)).unwrap();
        }
        let mut names = loaded(&l);
        names.sort();
        let r = l.report().clone();
        (names, r.no_device, r.devices)
    };
    let all = run(&[Stage::All]);
    assert_eq!(all, run(&[Stage::Essential, Stage::Rest]));
    assert!(all.0.contains(&"bochs".to_string()), "{:?}", all.0);
}

/// A microVM: virtio-mmio is the transport of everything, so the essential stage loads it;
/// the virtio GPU it reveals waits for the rest stage.
#[test]
fn essential_stage_loads_transports_not_what_they_reveal_beyond_the_job() {
    let (tmp, idx) = fakes::index();
    let sys = FakeSys::new(&tmp);
    sys.add("platform", "LNRO0005:00", "acpi:LNRO0005:", None);
    sys.add("platform", "LNRO0005:01", "acpi:LNRO0005:", None);
    let mut kernel = FakeKernel {
        sys: Some(sys.root.clone()),
        ..FakeKernel::default()
    };
    kernel.effects.insert(
        "virtio_mmio".into(),
        vec![
            bind("platform", "LNRO0005:00", "virtio-mmio"),
            bind("platform", "LNRO0005:01", "virtio-mmio"),
            add("virtio", "virtio0", VIRTIO_NET, None),
            add("virtio", "virtio1", VIRTIO_GPU, None),
        ],
    );
    let mut l = Loader::new(Ok(idx), kernel, FakeClock::default());
    l.coldplug(&staged(Stage::Essential, &sys)).unwrap();
    let names = loaded(&l);
    assert!(names.contains(&"virtio_mmio".to_string()), "{names:?}");
    assert!(names.contains(&"virtio_net".to_string()), "{names:?}");
    assert!(!names.contains(&"virtio_gpu".to_string()), "{names:?}");
    l.coldplug(&staged(Stage::Rest, &sys)).unwrap();
    assert!(loaded(&l).contains(&"virtio_gpu".to_string()));
}
