//! Coldplug: load the modules that the devices present at boot ask for, the
//! way udev's `trigger` does, without udev. Reads every
//! `<sys>/bus/*/devices/*/modalias`, loads matching modules with their
//! dependencies, and looks again because loading a bus driver (virtio_pci,
//! virtio_mmio) creates new devices (`virtio:d00000001…` → virtio_net): through
//! the kernel's device events when it has them, else by rescanning sysfs.
//!
//! Owns the scan/load loop and its stopping rule, and which devices each
//! [`Stage`] looks at; no module names are hard-coded here.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::{self, Device, ScanCache};
use crate::error::{Error, Result, Wanted};
use crate::kernel::{Clock, Kernel};
use crate::loader::Loader;
use crate::report::DeviceEntry;

#[derive(Debug, Clone)]
pub struct Coldplug {
    /// Root of sysfs: `/sys` in production.
    pub sys: PathBuf,
    /// Give up waiting for devices to settle after this long.
    pub budget: Duration,
    /// Pause between scans.
    pub poll: Duration,
    /// Stop once a pass loads nothing and the device set has not changed for
    /// this long. Zero (the default) stops at the first pass that loads
    /// nothing: `finit_module` returns only after the module's probes are
    /// done, asynchronous ones included (the kernel's `do_init_module` runs
    /// `async_synchronize_full()`), so the devices a load adds are already in
    /// sysfs. A bus that enumerates from a work queue (USB hubs) needs a
    /// non-zero value.
    pub settle: Duration,
    /// Which devices this run loads drivers for.
    pub stage: Stage,
}

/// Which devices a coldplug run loads drivers for. A boot runs [`Stage::Essential`] before
/// the network and the services, and [`Stage::Rest`] later, off the boot's path; [`Stage::All`]
/// is both at once. Both stages loop until settled: a transport loaded for an essential
/// device reveals the virtio devices behind it within the same stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Every unbound device, the cmdline-declared ones first.
    #[default]
    All,
    /// Only the devices [`crate::is_essential`] names (and the cmdline-declared ones, which
    /// are virtio transports).
    Essential,
    /// Every device still unbound, after an essential stage on the same loader: the
    /// essential ones were tried already (a module that failed is not tried again), and the
    /// cmdline-declared modules were loaded by it.
    Rest,
}

impl Stage {
    fn wants(self, dev: &Device) -> bool {
        match self {
            Stage::All | Stage::Rest => true,
            Stage::Essential => device::is_essential(&dev.modalias),
        }
    }
}

impl Default for Coldplug {
    fn default() -> Self {
        Coldplug {
            sys: PathBuf::from("/sys"),
            budget: Duration::from_secs(2),
            poll: Duration::from_millis(10),
            settle: Duration::ZERO,
            stage: Stage::All,
        }
    }
}

/// Whether an unbound, unmatched device is worth reporting. ACPI namespace
/// nodes (`/sys/bus/acpi`: interrupt links, CPUs, buses) almost never bind a
/// driver themselves; the platform or PNP device made from them does, and is
/// reported on its own bus. They stay in `Report::devices`.
fn reportable(dev: &Device) -> bool {
    dev.bus != "acpi"
}

impl<K: Kernel, C: Clock> Loader<K, C> {
    /// Runs coldplug to completion (or its budget) and fills the report.
    /// Module failures are in the report, not the result. The result is an
    /// error only when there is nothing to load from: no module tree (the
    /// error names the devices left without a driver) or an unreadable sysfs.
    pub fn coldplug(&mut self, opts: &Coldplug) -> Result<()> {
        let start = self.clock.now();
        let result = self.coldplug_inner(opts, start);
        // Added up over the stages run on this loader.
        self.report.total_ms += self.clock.now().saturating_sub(start).as_secs_f64() * 1000.0;
        if let Err(e) = &result {
            self.report.errors.push(e.to_string());
        }
        result
    }

    fn coldplug_inner(&mut self, opts: &Coldplug, start: Duration) -> Result<()> {
        let mut cache = ScanCache::new();
        if self.index.is_err() {
            let devices = self.scan(&opts.sys, &mut cache)?;
            self.report.passes = 1;
            return self.missing_tree(&devices);
        }
        // Without a settle time to poll through, the kernel's device events stand in for
        // the rescans: after a load they say exactly what was added and bound.
        let watching = opts.settle.is_zero() && self.kernel.watch_devices();
        let mut attempted: HashSet<String> = HashSet::new();
        let declared = match opts.stage {
            Stage::All | Stage::Essential => self.cmdline_device_modules(),
            Stage::Rest => Vec::new(),
        };
        for module in declared {
            attempted.insert(module.clone());
            // Failures are recorded in the report; coldplug goes on.
            let _ = self.load(&module);
        }
        let mut previous: Option<BTreeSet<(String, String)>> = None;
        let mut last_change = self.clock.now();
        let mut devices = self.scan(&opts.sys, &mut cache)?;
        let devices = loop {
            self.report.passes = self.report.passes.saturating_add(1);
            let mut loaded_any = false;
            for dev in devices
                .iter()
                .filter(|d| !d.has_driver && opts.stage.wants(d))
            {
                for module in self.lookup(&dev.modalias) {
                    if attempted.insert(module.clone()) {
                        log::debug!("{} ({}) wants {module}", dev.location(), dev.modalias);
                        let _ = self.load(&module);
                        loaded_any = true;
                    }
                }
            }
            let set: BTreeSet<(String, String)> = devices
                .iter()
                .map(|d| (d.bus.clone(), d.name.clone()))
                .collect();
            let now = self.clock.now();
            if loaded_any || previous.as_ref().is_some_and(|p| *p != set) {
                last_change = now;
            }
            previous = Some(set);
            // A pass that loaded nothing has looked at every device present; with no
            // settle time left to wait for latecomers there is nothing more to do.
            if !loaded_any && now.saturating_sub(last_change) >= opts.settle {
                break devices;
            }
            if now.saturating_sub(start) >= opts.budget {
                self.report.timed_out = true;
                log::warn!(
                    "coldplug: devices still changing after {:?}; going on",
                    opts.budget
                );
                break devices;
            }
            // A driver's probe adds the devices behind it before finit_module returns
            // (virtio_pci → virtio0): after a load, look again at once.
            if !loaded_any {
                self.clock.sleep(opts.poll);
            }
            devices = match watching.then(|| self.kernel.device_events()).flatten() {
                Some(events) => {
                    self.report.events = self.report.events.saturating_add(events.len());
                    device::apply_events(devices, &events, &opts.sys, &mut cache)
                }
                None => self.scan(&opts.sys, &mut cache)?,
            };
        };
        self.record_devices(&devices);
        Ok(())
    }

    fn scan(&mut self, sys: &Path, cache: &mut ScanCache) -> Result<Vec<Device>> {
        self.report.scans = self.report.scans.saturating_add(1);
        let start = self.clock.now();
        let devices = device::scan_cached(sys, cache).map_err(|source| Error::ScanSysfs {
            path: sys.join("bus"),
            source,
        });
        self.report.scan_ms += self.clock.now().saturating_sub(start).as_secs_f64() * 1000.0;
        devices
    }

    fn lookup(&self, modalias: &str) -> Vec<String> {
        self.index()
            .map(|i| i.lookup_alias(modalias))
            .unwrap_or_default()
    }

    fn record_devices(&mut self, devices: &[Device]) {
        self.report.devices.clear();
        self.report.unmatched.clear();
        for dev in devices {
            let entry = DeviceEntry::new(dev, self.lookup(&dev.modalias));
            if !dev.has_driver && entry.modules.is_empty() && reportable(dev) {
                self.report.unmatched.push(entry.clone());
            }
            self.report.devices.push(entry);
        }
    }

    /// No tree: say which devices go without a driver, naming the drivers
    /// they are known to want (virtio ones, from the modalias alone).
    fn missing_tree(&mut self, devices: &[Device]) -> Result<()> {
        let mut wanted = Vec::new();
        self.report.devices.clear();
        for dev in devices {
            let drivers: Vec<String> = device::expected_drivers(&dev.modalias)
                .into_iter()
                .map(String::from)
                .collect();
            let entry = DeviceEntry::new(dev, drivers.clone());
            if !dev.has_driver && drivers.is_empty() && reportable(dev) {
                self.report.unmatched.push(entry.clone());
            }
            self.report.devices.push(entry);
            if !dev.has_driver && !drivers.is_empty() {
                wanted.push(Wanted {
                    device: dev.clone(),
                    drivers,
                });
            }
        }
        match &self.index {
            Err(Error::MissingTree { release, dir, .. }) => Err(Error::MissingTree {
                release: release.clone(),
                dir: dir.clone(),
                wanted,
            }),
            // Any other index error: the tree exists but is unusable; its
            // message is already in the report, and devices are listed.
            Err(e) => {
                let reason = format!("no usable module tree: {e}");
                for name in wanted.iter().flat_map(|w| w.drivers.iter()) {
                    self.record_failure(name, reason.clone());
                }
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }
}
