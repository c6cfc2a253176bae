//! Devices as sysfs shows them (`<sys>/bus/*/devices/*`), and what can be said
//! about one from its modalias alone: a human class ("network card") and, for
//! virtio, the driver it will want even when no module index exists to ask.
//!
//! Owns reading the sysfs tree (read-only); matching modaliases to modules is
//! `index.rs`'s job, loading is `loader.rs`'s.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::uevent::{Uevent, UeventAction};

/// One device with a `modalias` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Bus directory name: `pci`, `virtio`, `acpi`, `platform`, ...
    pub bus: String,
    /// Device directory name: `0000:00:03.0`, `virtio0`, `LNRO0005:00`.
    pub name: String,
    pub modalias: String,
    /// The device it hangs off, e.g. `PCI 0000:00:03.0` for `virtio0`.
    pub parent: Option<String>,
    /// A driver is bound already (`driver` link present).
    pub has_driver: bool,
}

impl Device {
    /// Where the device is, for an operator: `PCI 0000:00:03.0`,
    /// `virtio0 on PCI 0000:00:03.0`, `ACPI LNRO0005:00`.
    pub fn location(&self) -> String {
        let own = match self.bus.as_str() {
            "pci" => format!("PCI {}", self.name),
            "acpi" => format!("ACPI {}", self.name),
            "platform" => format!("platform {}", self.name),
            "virtio" => self.name.clone(),
            other => format!("{other} {}", self.name),
        };
        match &self.parent {
            Some(parent) => format!("{own} on {parent}"),
            None => own,
        }
    }

    pub fn class(&self) -> &'static str {
        class_of(&self.modalias)
    }
}

/// Virtio device ids (virtio spec 1.2, section 5) with what they are and the
/// Linux driver that binds them.
const VIRTIO_IDS: &[(u32, &str, &str)] = &[
    (1, "network card", "virtio_net"),
    (2, "block device", "virtio_blk"),
    (3, "console", "virtio_console"),
    (4, "entropy source", "virtio_rng"),
    (5, "memory balloon", "virtio_balloon"),
    (8, "SCSI host", "virtio_scsi"),
    (9, "9P transport", "9pnet_virtio"),
    (16, "GPU", "virtio_gpu"),
    (18, "input device", "virtio_input"),
    (19, "vsock device", "vmw_vsock_virtio_transport"),
    (20, "crypto device", "virtio_crypto"),
    (24, "memory device", "virtio_mem"),
    (26, "shared filesystem", "virtiofs"),
];

const PCI_VIRTIO_VENDOR: u32 = 0x1af4;

/// Hex number after `tag` in a modalias such as `pci:v00001AF4d00001000...`.
fn hex_field(modalias: &str, tag: &str, digits: usize) -> Option<u32> {
    let (_, after) = modalias.split_once(tag)?;
    let hex = after.get(..digits)?;
    u32::from_str_radix(hex, 16).ok()
}

/// The virtio device id a modalias names: directly for `virtio:dN`, or from
/// the PCI device id for virtio-pci (0x1000.. transitional, 0x1040+id modern).
pub fn virtio_id(modalias: &str) -> Option<u32> {
    if let Some(rest) = modalias.strip_prefix("virtio:") {
        return hex_field(rest, "d", 8);
    }
    if modalias.starts_with("pci:") && hex_field(modalias, "pci:v", 8)? == PCI_VIRTIO_VENDOR {
        let device = hex_field(modalias, "d", 8)?;
        return match device {
            0x1000 => Some(1),
            0x1001 => Some(2),
            0x1002 => Some(5),
            0x1003 => Some(3),
            0x1004 => Some(8),
            0x1005 => Some(4),
            0x1009 => Some(9),
            0x1040..=0x107f => device.checked_sub(0x1040),
            _ => None,
        };
    }
    None
}

/// Whether the modalias announces a virtio-mmio transport (ACPI `LNRO0005`,
/// or the device-tree compatible `virtio,mmio`).
fn is_virtio_mmio(modalias: &str) -> bool {
    modalias.contains(":LNRO0005:") || modalias.contains("virtio,mmio")
}

/// A human name for what the device is, from its modalias alone.
pub fn class_of(modalias: &str) -> &'static str {
    if let Some(id) = virtio_id(modalias) {
        if let Some((_, class, _)) = VIRTIO_IDS.iter().find(|(i, _, _)| *i == id) {
            return class;
        }
        return "virtio device";
    }
    if is_virtio_mmio(modalias) {
        return "virtio-mmio transport";
    }
    if modalias.starts_with("pci:") {
        return match hex_field(modalias, "bc", 2) {
            Some(0x01) => "storage controller",
            Some(0x02) => "network card",
            Some(0x03) => "display controller",
            Some(0x04) => "multimedia controller",
            Some(0x06) => "bridge",
            Some(0x07) => "communication controller",
            Some(0x0c) => "serial bus controller",
            _ => "PCI device",
        };
    }
    "device"
}

/// Virtio device ids whose drivers the guest's job needs before its network and services
/// start: network card, block device, console, entropy source, SCSI host (storage, like PCI
/// class 01), 9P and shared filesystem (a service may mount its share at start), vsock.
const ESSENTIAL_VIRTIO_IDS: &[u32] = &[1, 2, 3, 4, 8, 9, 19, 26];

/// ACPI ids of the power button (contract §5 needs it heard from the start of the boot):
/// the fixed-feature button, the control-method button, and the generic event device
/// (`ACPI0013`, GED) that carries it on microVMs.
const POWER_BUTTON_ACPI_IDS: &[&str] = &[":PNP0C0C:", ":LNXPWRBN:", ":ACPI0013:"];

/// Whether a device is one the guest's job needs before the network and the services start
/// (see DESIGN.md, "Coldplug in two stages"): network cards and storage (PCI class 01/02,
/// virtio net, block, SCSI, 9P, virtiofs), console, entropy, vsock, every virtio transport
/// (virtio-pci, virtio-mmio: whatever such a device sits behind) and the power button (ACPI
/// `PNP0C0C`, `LNXPWRBN`, `ACPI0013`; device-tree `gpio-keys`). Everything else (display,
/// sound, watchdogs, CPU frequency, the PC speaker) can wait until the guest is ready.
pub fn is_essential(modalias: &str) -> bool {
    if let Some(id) = virtio_id(modalias) {
        return ESSENTIAL_VIRTIO_IDS.contains(&id);
    }
    if modalias.starts_with("virtio:") {
        // A virtio device without a readable id: better early than missing.
        return true;
    }
    // The platform device a `virtio_mmio.device=` parameter declares (Firecracker).
    if is_virtio_mmio(modalias) || modalias == "platform:virtio-mmio" {
        return true;
    }
    if modalias.starts_with("pci:") {
        // A virtio-pci function whose virtio id is not known to virtio_id() (an id outside
        // its table): its transport is loaded early rather than its device missed.
        return hex_field(modalias, "pci:v", 8) == Some(PCI_VIRTIO_VENDOR)
            || matches!(hex_field(modalias, "bc", 2), Some(0x01 | 0x02));
    }
    if modalias.starts_with("acpi") {
        return POWER_BUTTON_ACPI_IDS.iter().any(|id| modalias.contains(id));
    }
    if modalias.starts_with("of:") {
        return modalias.contains("gpio-keys");
    }
    false
}

/// Drivers a device will want, known without any module index: the virtio
/// transport first, then the device driver. Used to say what is missing when
/// `/lib/modules/<release>` does not exist.
pub fn expected_drivers(modalias: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if modalias.starts_with("pci:") && hex_field(modalias, "pci:v", 8) == Some(PCI_VIRTIO_VENDOR) {
        out.push("virtio_pci");
    }
    if is_virtio_mmio(modalias) {
        out.push("virtio_mmio");
    }
    if let Some(id) = virtio_id(modalias) {
        if let Some((_, _, driver)) = VIRTIO_IDS.iter().find(|(i, _, _)| *i == id) {
            out.push(driver);
        }
    }
    out
}

/// What does not change about a device while it exists: its modalias
/// (`None`: it has none) and its parent. Cached across coldplug passes so a
/// re-scan costs a directory listing and one `lstat` per device, not a read
/// of every modalias file (about 20 ms per pass under TCG otherwise).
pub type ScanCache = HashMap<(String, String), Option<(String, Option<String>)>>;

/// Every device under `<sys>/bus/*/devices/` that has a non-empty `modalias`,
/// sorted by bus then name. Unreadable entries are skipped: sysfs is live and
/// devices may vanish between listing and reading.
pub fn scan(sys: &Path) -> std::io::Result<Vec<Device>> {
    scan_cached(sys, &mut ScanCache::new())
}

/// [`scan`], reusing what `cache` knows from earlier passes.
pub fn scan_cached(sys: &Path, cache: &mut ScanCache) -> std::io::Result<Vec<Device>> {
    let mut out = Vec::new();
    for bus in fs::read_dir(sys.join("bus"))?.flatten() {
        let bus_name = bus.file_name().to_string_lossy().into_owned();
        let Ok(devices) = fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devices.flatten() {
            let name = dev.file_name().to_string_lossy().into_owned();
            out.extend(read_device(&bus_name, &name, &dev.path(), cache));
        }
    }
    sort(&mut out);
    Ok(out)
}

/// The device at `path` (`<sys>/bus/<bus>/devices/<name>`) if it has a modalias; what does
/// not change about it comes from `cache`, its driver link is looked at every time.
fn read_device(bus: &str, name: &str, path: &Path, cache: &mut ScanCache) -> Option<Device> {
    let key = (bus.to_string(), name.to_string());
    let (modalias, parent) = cache
        .entry(key.clone())
        .or_insert_with(|| read_static(bus, path))
        .clone()?;
    Some(Device {
        bus: key.0,
        name: key.1,
        modalias,
        parent,
        has_driver: fs::symlink_metadata(path.join("driver")).is_ok(),
    })
}

fn sort(devices: &mut [Device]) {
    devices.sort_by(|a, b| (&a.bus, &a.name).cmp(&(&b.bus, &b.name)));
}

/// `devices` after the kernel's `events`, as a rescan would see them: a device added on a
/// bus joins the list (read as the scan reads it), a bind or unbind sets `has_driver`, a
/// removal drops it. Class devices (`net`, `block`) are not bus devices and are ignored, as
/// the scan ignores them.
pub fn apply_events(
    mut devices: Vec<Device>,
    events: &[Uevent],
    sys: &Path,
    cache: &mut ScanCache,
) -> Vec<Device> {
    for e in events {
        let Some(bus) = e.subsystem.as_deref() else {
            continue;
        };
        let name = e.name();
        let at = devices.iter().position(|d| d.bus == bus && d.name == name);
        match (e.action, at) {
            (UeventAction::Add, None) => {
                let path = sys.join("bus").join(bus).join("devices").join(name);
                // Gone again, or not a bus device: nothing a rescan would list.
                if fs::symlink_metadata(&path).is_ok() {
                    devices.extend(read_device(bus, name, &path, cache));
                }
            }
            (UeventAction::Bind, Some(i)) => devices[i].has_driver = true,
            (UeventAction::Unbind, Some(i)) => devices[i].has_driver = false,
            (UeventAction::Remove, Some(i)) => {
                devices.remove(i);
            }
            _ => {}
        }
    }
    sort(&mut devices);
    devices
}

/// A sysfs attribute (at most a page) read into a stack buffer: open, read, close. Every
/// device of the boot's sysfs walk is read this way, and `read_to_string`'s size query and
/// heap buffer would double the syscalls and fault in fresh memory for each.
fn read_attr(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len = len.saturating_add(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

fn read_static(bus: &str, path: &Path) -> Option<(String, Option<String>)> {
    let modalias = read_attr(&path.join("modalias"))?;
    let modalias = modalias.trim();
    if modalias.is_empty() {
        return None;
    }
    // Only a virtio device's parent says something an operator needs
    // (which transport, which PCI slot).
    let parent = if bus == "virtio" {
        parent_of(path)
    } else {
        None
    };
    Some((modalias.to_string(), parent))
}

/// The parent device, named by its bus when it has one (`PCI 0000:00:03.0`).
/// Bus-level parents such as `/sys/devices/platform` are not devices: ignored.
fn parent_of(dev: &Path) -> Option<String> {
    let real = fs::canonicalize(dev).ok()?;
    let parent: PathBuf = real.parent()?.to_path_buf();
    let name = parent.file_name()?.to_string_lossy().into_owned();
    let subsystem = fs::canonicalize(parent.join("subsystem")).ok()?;
    let bus = subsystem.file_name()?.to_string_lossy().into_owned();
    Some(match bus.as_str() {
        "pci" => format!("PCI {name}"),
        "platform" => format!("platform {name}"),
        "acpi" => format!("ACPI {name}"),
        other => format!("{other} {name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCI_NET_LEGACY: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
    const PCI_NET_MODERN: &str = "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00";
    const PCI_BLK_MODERN: &str = "pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00";

    #[test]
    fn virtio_ids_from_modaliases() {
        assert_eq!(virtio_id("virtio:d00000001v00001AF4"), Some(1));
        assert_eq!(virtio_id("virtio:d00000013v00001AF4"), Some(19));
        assert_eq!(virtio_id(PCI_NET_LEGACY), Some(1));
        assert_eq!(virtio_id(PCI_NET_MODERN), Some(1));
        assert_eq!(virtio_id(PCI_BLK_MODERN), Some(2));
        assert_eq!(virtio_id("pci:v00008086d00001000sv0sd0bc02sc00i00"), None);
        assert_eq!(virtio_id("acpi:LNRO0005:"), None);
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(PCI_NET_LEGACY), "network card");
        assert_eq!(class_of(PCI_BLK_MODERN), "block device");
        assert_eq!(class_of("virtio:d00000002v00001AF4"), "block device");
        assert_eq!(class_of("virtio:d00000003v00001AF4"), "console");
        assert_eq!(class_of("virtio:d000000FFv00001AF4"), "virtio device");
        assert_eq!(class_of("acpi:LNRO0005:"), "virtio-mmio transport");
        assert_eq!(
            class_of("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"),
            "network card"
        );
        assert_eq!(
            class_of("pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00"),
            "bridge"
        );
        assert_eq!(class_of("platform:pcspkr"), "device");
    }

    #[test]
    fn expected_drivers_without_index() {
        assert_eq!(
            expected_drivers(PCI_NET_LEGACY),
            ["virtio_pci", "virtio_net"]
        );
        assert_eq!(
            expected_drivers(PCI_BLK_MODERN),
            ["virtio_pci", "virtio_blk"]
        );
        assert_eq!(
            expected_drivers("virtio:d00000001v00001AF4"),
            ["virtio_net"]
        );
        assert_eq!(expected_drivers("acpi:LNRO0005:"), ["virtio_mmio"]);
        assert!(expected_drivers("platform:pcspkr").is_empty());
    }

    #[test]
    fn essential_devices_from_real_modaliases() {
        let essential = [
            PCI_NET_LEGACY,
            PCI_NET_MODERN,
            PCI_BLK_MODERN,
            "virtio:d00000001v00001AF4",
            "virtio:d00000002v00001AF4",
            "virtio:d00000003v00001AF4",
            "virtio:d00000004v00001AF4",
            "virtio:d00000013v00001AF4",
            // virtio-rng-pci (transitional): its transport is needed before its device exists.
            "pci:v00001AF4d00001005sv00001AF4sd00000004bc00sc00i00",
            // e1000e and AHCI on q35.
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
            // microVM transports (ACPI and device tree) and the power buttons.
            "acpi:LNRO0005:",
            "of:NvirtioT(null)Cvirtio,mmio",
            "platform:virtio-mmio",
            "acpi:LNXPWRBN:",
            "acpi:PNP0C0C:",
            "acpi:ACPI0013:",
            "of:Ngpio-keysT(null)Cgpio-keys",
        ];
        for m in essential {
            assert!(is_essential(m), "{m} should be essential");
        }
        let rest = [
            // Debian bookworm under QEMU (issue 18): bochs display, LPC bridge (iTCO watchdog),
            // host bridge, USB, PC speaker, CPU frequency drivers, serial port.
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
            "pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00",
            "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
            "pci:v00008086d00002934sv00001AF4sd00001100bc0Csc03i00",
            "platform:pcspkr",
            "platform:iTCO_wdt",
            "cpu:type:x86,ven0000fam0006mod003D:feature:,0000,0001,0002,0003",
            "platform:serial8250",
            "acpi:PNP0C0F:",
            "acpi:LNXCPU:",
            "acpi:PNP0A03:PNP0A08:",
            // virtio devices the job does not wait for: GPU (over PCI and as virtio),
            // balloon, input.
            "pci:v00001AF4d00001050sv00001AF4sd00001100bc03sc80i00",
            "virtio:d00000010v00001AF4",
            "virtio:d00000005v00001AF4",
            "virtio:d00000012v00001AF4",
            "of:NserialT(null)Cns16550a",
        ];
        for m in rest {
            assert!(!is_essential(m), "{m} should wait for the rest stage");
        }
    }

    #[test]
    fn locations() {
        let mut d = Device {
            bus: "virtio".into(),
            name: "virtio0".into(),
            modalias: "virtio:d00000001v00001AF4".into(),
            parent: Some("PCI 0000:00:03.0".into()),
            has_driver: false,
        };
        assert_eq!(d.location(), "virtio0 on PCI 0000:00:03.0");
        d.bus = "pci".into();
        d.name = "0000:00:03.0".into();
        d.parent = None;
        assert_eq!(d.location(), "PCI 0000:00:03.0");
    }
}
