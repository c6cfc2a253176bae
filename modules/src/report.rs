//! What module loading did, as plain data for the health JSON and the boot
//! log (the init serialises it; this crate has no serde), and the one-line
//! diagnosis the network code prints when `eth0` never appears.

use std::path::PathBuf;

use crate::device::{self, Device};

#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub name: String,
    /// Time spent in finit_module(2), milliseconds.
    pub ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub name: String,
    pub reason: String,
}

/// A device seen by the last coldplug pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub bus: String,
    /// `0000:00:03.0`, `virtio0`, `LNRO0005:00`.
    pub device: String,
    pub modalias: String,
    /// Human: "network card", "block device", ...
    pub class: String,
    /// `virtio0 on PCI 0000:00:03.0`.
    pub location: String,
    pub has_driver: bool,
    /// Modules its modalias matches (from the index; without a tree, the
    /// drivers it is known to want).
    pub modules: Vec<String>,
}

impl DeviceEntry {
    pub fn new(dev: &Device, modules: Vec<String>) -> DeviceEntry {
        DeviceEntry {
            bus: dev.bus.clone(),
            device: dev.name.clone(),
            modalias: dev.modalias.clone(),
            class: dev.class().to_string(),
            location: dev.location(),
            has_driver: dev.has_driver,
            modules,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub release: String,
    pub modules_dir: PathBuf,
    /// `/lib/modules/<release>` does not exist.
    pub tree_missing: bool,
    /// Loaded by us, in load order.
    pub loaded: Vec<Loaded>,
    /// Wanted but already loaded (before the init ran, or `EEXIST`).
    pub already_loaded: Vec<String>,
    pub failed: Vec<Failed>,
    /// Modules whose init found no device to drive (ENODEV, ENXIO: `acpi_cpufreq` in a VM):
    /// not loaded, and not a failure.
    pub no_device: Vec<String>,
    /// Wanted and satisfied by the kernel image itself.
    pub builtin: Vec<String>,
    /// Every device with a modalias in the last coldplug pass.
    pub devices: Vec<DeviceEntry>,
    /// Devices with no driver bound and no module matching their modalias
    /// (ACPI namespace nodes left out: see `coldplug.rs`).
    pub unmatched: Vec<DeviceEntry>,
    /// Problems not tied to one module (index unreadable, sysfs unreadable).
    pub errors: Vec<String>,
    /// Time to read and index the module tree.
    pub index_ms: f64,
    /// What the index was read from: `binary` (depmod's tries), `text`, or both (see
    /// `ModuleIndex::format`); empty without an index.
    pub index_format: &'static str,
    /// Time spent reading sysfs, over all coldplug passes.
    pub scan_ms: f64,
    pub passes: u32,
    /// Full sysfs scans: the first, then one per pass only without device events.
    pub scans: u32,
    /// Kernel device events read between passes instead of rescanning.
    pub events: usize,
    /// Coldplug stopped at its time budget while devices were still changing.
    pub timed_out: bool,
    pub total_ms: f64,
}

impl Report {
    pub fn failure(&self, module: &str) -> Option<&Failed> {
        self.failed.iter().find(|f| f.name == module)
    }

    fn is_loaded(&self, module: &str) -> bool {
        self.loaded.iter().any(|l| l.name == module)
            || self.already_loaded.iter().any(|l| l == module)
            || self.builtin.iter().any(|l| l == module)
    }
}

/// Why there is no network interface, if module loading can say: which
/// driver, for which device, is missing or failed. `None` when every network
/// card has a driver bound (then the cause is not a module).
pub fn diagnose_network(report: &Report) -> Option<String> {
    let cards: Vec<&DeviceEntry> = report
        .devices
        .iter()
        .filter(|d| d.class == "network card")
        .collect();
    if cards.is_empty() {
        // No card visible: perhaps its transport (virtio-mmio, virtio-pci)
        // never got a driver, so the card behind it never appeared.
        let transports = report.devices.iter().filter(|d| {
            !d.has_driver
                && (d.class == "virtio-mmio transport"
                    || device::expected_drivers(&d.modalias).contains(&"virtio_pci"))
        });
        for t in transports {
            if let Some(why) = why_unbound(report, t) {
                return Some(format!("no network card is visible: {why}"));
            }
        }
        return Some(format!(
            "no network card is visible on any bus ({} devices with a modalias scanned); \
             is the VM given a network device?",
            report.devices.len()
        ));
    }
    cards
        .iter()
        .filter(|d| !d.has_driver)
        .find_map(|d| why_unbound(report, d))
}

fn why_unbound(report: &Report, d: &DeviceEntry) -> Option<String> {
    let what = format!("the {} at {} ({})", d.class, d.location, d.modalias);
    let wanted = d.modules.join(" then ");
    if report.tree_missing {
        let wants = if wanted.is_empty() {
            "a driver".to_string()
        } else {
            wanted
        };
        return Some(format!(
            "{what} wants {wants}, but {} does not exist",
            report.modules_dir.display()
        ));
    }
    if d.modules.is_empty() {
        return Some(format!(
            "{what} has no driver: no module in {}/modules.alias matches it",
            report.modules_dir.display()
        ));
    }
    if let Some(f) = d.modules.iter().find_map(|m| report.failure(m)) {
        return Some(format!(
            "{what} wants {}, which failed to load: {}",
            f.name, f.reason
        ));
    }
    if let Some(m) = d.modules.iter().find(|m| report.no_device.contains(m)) {
        return Some(format!(
            "{what} wants {m}, which found no device to drive (ENODEV/ENXIO)"
        ));
    }
    if let Some(m) = d.modules.iter().find(|m| !report.is_loaded(m)) {
        return Some(format!("{what} wants {m}, which was not loaded"));
    }
    Some(format!(
        "{what} has no driver bound although {wanted} is loaded"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        bus: &str,
        dev: &str,
        modalias: &str,
        loc: &str,
        drv: bool,
        modules: &[&str],
    ) -> DeviceEntry {
        DeviceEntry {
            bus: bus.into(),
            device: dev.into(),
            modalias: modalias.into(),
            class: device::class_of(modalias).into(),
            location: loc.into(),
            has_driver: drv,
            modules: modules.iter().map(|s| s.to_string()).collect(),
        }
    }

    const PCI_NET: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";

    #[test]
    fn failed_driver_is_named() {
        let report = Report {
            modules_dir: "/lib/modules/6.1.0-56-amd64".into(),
            devices: vec![
                entry(
                    "pci",
                    "0000:00:03.0",
                    PCI_NET,
                    "PCI 0000:00:03.0",
                    true,
                    &["virtio_pci"],
                ),
                entry(
                    "virtio",
                    "virtio0",
                    "virtio:d00000001v00001AF4",
                    "virtio0 on PCI 0000:00:03.0",
                    false,
                    &["virtio_net"],
                ),
            ],
            failed: vec![Failed {
                name: "virtio_net".into(),
                reason: "finit_module(x) failed: Exec format error (errno 8)".into(),
            }],
            ..Report::default()
        };
        let msg = diagnose_network(&report).unwrap();
        assert_eq!(
            msg,
            "the network card at virtio0 on PCI 0000:00:03.0 (virtio:d00000001v00001AF4) wants virtio_net, \
             which failed to load: finit_module(x) failed: Exec format error (errno 8)"
        );
    }

    #[test]
    fn missing_tree_is_named() {
        let report = Report {
            tree_missing: true,
            modules_dir: "/lib/modules/6.1.0-56-amd64".into(),
            devices: vec![entry(
                "pci",
                "0000:00:03.0",
                PCI_NET,
                "PCI 0000:00:03.0",
                false,
                &["virtio_pci", "virtio_net"],
            )],
            ..Report::default()
        };
        let msg = diagnose_network(&report).unwrap();
        assert!(msg.contains("network card at PCI 0000:00:03.0"), "{msg}");
        assert!(
            msg.contains(
                "wants virtio_pci then virtio_net, but /lib/modules/6.1.0-56-amd64 does not exist"
            ),
            "{msg}"
        );
    }

    #[test]
    fn microvm_transport_without_driver() {
        let report = Report {
            modules_dir: "/lib/modules/r".into(),
            devices: vec![entry(
                "acpi",
                "LNRO0005:00",
                "acpi:LNRO0005:",
                "ACPI LNRO0005:00",
                false,
                &["virtio_mmio"],
            )],
            failed: vec![Failed {
                name: "virtio_mmio".into(),
                reason: "boom".into(),
            }],
            ..Report::default()
        };
        let msg = diagnose_network(&report).unwrap();
        assert!(
            msg.starts_with(
                "no network card is visible: the virtio-mmio transport at ACPI LNRO0005:00"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("wants virtio_mmio, which failed to load: boom"),
            "{msg}"
        );
    }

    #[test]
    fn bound_card_is_not_a_module_problem() {
        let report = Report {
            devices: vec![entry(
                "virtio",
                "virtio0",
                "virtio:d00000001v00001AF4",
                "virtio0",
                true,
                &["virtio_net"],
            )],
            loaded: vec![Loaded {
                name: "virtio_net".into(),
                ms: 1.0,
            }],
            ..Report::default()
        };
        assert_eq!(diagnose_network(&report), None);
        let none = Report::default();
        assert!(diagnose_network(&none)
            .unwrap()
            .contains("no network card is visible on any bus"));
    }

    #[test]
    fn unmatched_card() {
        let report = Report {
            modules_dir: "/lib/modules/r".into(),
            devices: vec![entry(
                "pci",
                "0000:00:04.0",
                "pci:v00008086d000010D3sv0sd0bc02sc00i00",
                "PCI 0000:00:04.0",
                false,
                &[],
            )],
            ..Report::default()
        };
        let msg = diagnose_network(&report).unwrap();
        assert!(
            msg.contains("has no driver: no module in /lib/modules/r/modules.alias matches it"),
            "{msg}"
        );
    }
}
