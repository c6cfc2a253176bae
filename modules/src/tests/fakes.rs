//! Fakes: a module tree, a sysfs tree, a kernel that records its calls and
//! acts on sysfs like the real one would, and a clock that only moves when
//! told to.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tempfile::TempDir;

use crate::{Clock, Errno, InitFlags, Kernel, KernelError, ModuleIndex, Uevent, UeventAction};

pub const RELEASE: &str = "6.1.0-test";

/// A small tree shaped like Debian's virtio and filesystem modules.
pub const DEP: &str = "\
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fat/fat.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/misc/pre_a.ko:
kernel/drivers/misc/post_b.ko:
kernel/drivers/misc/with_soft.ko: kernel/drivers/misc/leaf.ko
kernel/drivers/misc/leaf.ko:
kernel/drivers/gpu/drm/drm.ko:
kernel/drivers/gpu/drm/tiny/bochs.ko: kernel/drivers/gpu/drm/drm.ko
kernel/drivers/gpu/drm/virtio/virtio-gpu.ko: kernel/drivers/gpu/drm/drm.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/input/misc/pcspkr.ko:
kernel/drivers/acpi/button.ko:
kernel/drivers/cpufreq/acpi-cpufreq.ko:
";

pub const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias acpi*:LNRO0005:* virtio_mmio
alias of:N*T*Cvirtio,mmio virtio_mmio
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias virtio:d00000004v* virtio_rng
alias fs-vfat vfat
alias fs-ext4 ext4
alias fs-iso9660 isofs
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias platform:rtc_cmos rtc_cmos
alias pci:v00001234d00001111sv*sd*bc03sc*i* bochs
alias virtio:d00000010v* virtio_gpu
alias platform:pcspkr pcspkr
alias acpi*:PNP0C0C:* button
alias acpi*:LNXPWRBN:* button
alias cpu:type:x86,ven*fam*mod*:feature:*0016* acpi_cpufreq
";

pub const BUILTIN: &str = "kernel/fs/isofs/isofs.ko\nkernel/drivers/rtc/rtc-cmos.ko\n";

pub const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep with_soft pre: pre_a post: post_b
softdep cifs gcm
";

/// Writes a module tree at `<tmp>/lib/modules/RELEASE` with empty `.ko` files.
pub fn module_tree() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("lib/modules").join(RELEASE);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("modules.dep"), DEP).unwrap();
    fs::write(dir.join("modules.alias"), ALIAS).unwrap();
    fs::write(dir.join("modules.builtin"), BUILTIN).unwrap();
    fs::write(dir.join("modules.softdep"), SOFTDEP).unwrap();
    for line in DEP.lines() {
        let path = dir.join(line.split(':').next().unwrap());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"\x7fELF").unwrap();
    }
    (tmp, dir)
}

pub fn index() -> (TempDir, ModuleIndex) {
    let (tmp, dir) = module_tree();
    let idx = ModuleIndex::load(&dir).unwrap();
    (tmp, idx)
}

/// A sysfs tree: real directories under `devices/`, `bus/*/devices/*`
/// symlinks to them, `subsystem` links, `driver` links once bound.
pub struct FakeSys {
    pub root: PathBuf,
}

impl FakeSys {
    pub fn new(tmp: &TempDir) -> FakeSys {
        let root = tmp.path().join("sys");
        fs::create_dir_all(root.join("bus")).unwrap();
        FakeSys { root }
    }

    /// Adds a device; `parent` is the real path (relative to `devices/`) of
    /// its parent device. Returns its real path relative to `devices/`.
    pub fn add(&self, bus: &str, name: &str, modalias: &str, parent: Option<&str>) -> String {
        add_device(&self.root, bus, name, modalias, parent)
    }

    pub fn bind(&self, bus: &str, name: &str, driver: &str) {
        bind_device(&self.root, bus, name, driver);
    }
}

fn add_device(root: &Path, bus: &str, name: &str, modalias: &str, parent: Option<&str>) -> String {
    let rel = match parent {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    };
    let real = root.join("devices").join(&rel);
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("modalias"), format!("{modalias}\n")).unwrap();
    let bus_dir = root.join("bus").join(bus);
    fs::create_dir_all(bus_dir.join("devices")).unwrap();
    fs::create_dir_all(bus_dir.join("drivers")).unwrap();
    symlink(&bus_dir, real.join("subsystem")).unwrap();
    symlink(&real, bus_dir.join("devices").join(name)).unwrap();
    rel
}

fn bind_device(root: &Path, bus: &str, name: &str, driver: &str) {
    let drv = root.join("bus").join(bus).join("drivers").join(driver);
    fs::create_dir_all(&drv).unwrap();
    let dev = root.join("bus").join(bus).join("devices").join(name);
    let _ = symlink(&drv, dev.join("driver"));
}

/// What the fake kernel does to sysfs when a module loads.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A new device appears (bus, name, modalias, parent real path).
    Add(String, String, String, Option<String>),
    /// A device gets a driver (bus, name, driver).
    Bind(String, String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub path: PathBuf,
    pub params: String,
    pub flags: InitFlags,
}

impl Call {
    pub fn module(&self) -> String {
        crate::parse::module_name(&self.path.to_string_lossy())
    }
}

#[derive(Default)]
pub struct FakeKernel {
    pub calls: Vec<Call>,
    pub fail: HashMap<String, KernelError>,
    pub effects: HashMap<String, Vec<Effect>>,
    pub sys: Option<PathBuf>,
    /// Shared with [`FakeClock`]: each load takes `load_cost`.
    pub time: Option<Rc<Cell<Duration>>>,
    pub load_cost: Duration,
    /// When set, effects are queued here (due after `delay`) instead of
    /// applied at once: drivers that add devices asynchronously.
    pub deferred: Option<Pending>,
    pub delay: Duration,
    /// Report device events as the kernel's uevent socket would (else coldplug rescans).
    pub uevents: bool,
    /// Events not yet read by `device_events`.
    pub events: Vec<Uevent>,
}

/// The uevent the real kernel sends for `effect` (applied to `sys` already).
fn event_for(sys: &Path, effect: &Effect) -> Uevent {
    let (action, bus, dev) = match effect {
        Effect::Add(bus, dev, ..) => (UeventAction::Add, bus, dev),
        Effect::Bind(bus, dev, _) => (UeventAction::Bind, bus, dev),
    };
    let real = fs::canonicalize(sys.join("bus").join(bus).join("devices").join(dev)).unwrap();
    let rel = real.strip_prefix(fs::canonicalize(sys).unwrap()).unwrap();
    Uevent {
        action,
        devpath: format!("/{}", rel.display()),
        subsystem: Some(bus.clone()),
    }
}

/// Effects waiting for the fake clock to reach their due time.
pub type Pending = Rc<RefCell<Vec<(Duration, Effect)>>>;

fn apply(sys: &Path, effect: &Effect) {
    match effect {
        Effect::Add(bus, dev, modalias, parent) => {
            add_device(sys, bus, dev, modalias, parent.as_deref());
        }
        Effect::Bind(bus, dev, driver) => bind_device(sys, bus, dev, driver),
    }
}

impl FakeKernel {
    pub fn modules(&self) -> Vec<String> {
        self.calls.iter().map(Call::module).collect()
    }
}

impl Kernel for FakeKernel {
    fn finit_module(
        &mut self,
        path: &Path,
        params: &str,
        flags: InitFlags,
    ) -> Result<(), KernelError> {
        self.calls.push(Call {
            path: path.to_path_buf(),
            params: params.to_string(),
            flags,
        });
        if let Some(t) = &self.time {
            t.set(t.get() + self.load_cost);
        }
        if !path.exists() {
            return Err(KernelError::Open(Errno::ENOENT));
        }
        let name = crate::parse::module_name(&path.to_string_lossy());
        if let Some(e) = self.fail.get(&name) {
            return Err(*e);
        }
        if let (Some(sys), Some(effects)) = (&self.sys, self.effects.get(&name)) {
            for effect in effects {
                match (&self.deferred, &self.time) {
                    (Some(pending), Some(t)) => pending
                        .borrow_mut()
                        .push((t.get() + self.delay, effect.clone())),
                    _ => {
                        apply(sys, effect);
                        if self.uevents {
                            self.events.push(event_for(sys, effect));
                        }
                    }
                }
            }
        }
        if self.uevents {
            // The module's own kobject: no subsystem, nothing for coldplug.
            self.events.push(Uevent {
                action: UeventAction::Add,
                devpath: format!("/module/{name}"),
                subsystem: None,
            });
        }
        Ok(())
    }

    fn watch_devices(&mut self) -> bool {
        self.uevents
    }

    fn device_events(&mut self) -> Option<Vec<Uevent>> {
        self.uevents.then(|| std::mem::take(&mut self.events))
    }
}

#[derive(Clone, Default)]
pub struct FakeClock {
    pub now: Rc<Cell<Duration>>,
    pub sleeps: Rc<Cell<u32>>,
    /// Deferred kernel effects, applied to `sys` as time passes.
    pub pending: Pending,
    pub sys: Option<PathBuf>,
    /// Adds a fresh device on every sleep: a bus that never settles.
    pub churn: bool,
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.now.get()
    }

    fn sleep(&mut self, d: Duration) {
        self.sleeps.set(self.sleeps.get() + 1);
        let now = self.now.get() + d;
        self.now.set(now);
        let Some(sys) = &self.sys else { return };
        let due: Vec<Effect> = {
            let mut pending = self.pending.borrow_mut();
            let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(t, _)| *t <= now);
            *pending = later;
            due.into_iter().map(|(_, e)| e).collect()
        };
        for effect in &due {
            apply(sys, effect);
        }
        if self.churn {
            let n = self.sleeps.get();
            add_device(
                sys,
                "platform",
                &format!("churn{n}"),
                "platform:churn",
                None,
            );
        }
    }
}
