//! The module loader's report in the health document's `modules` section: what was loaded
//! (name, ms), what failed (name, reason), devices left without a driver.

use serde::Serialize;

/// `modules` of the health document.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModulesDoc {
    pub release: String,
    pub tree_missing: bool,
    pub loaded: Vec<LoadedDoc>,
    pub failed: Vec<FailedDoc>,
    pub unmatched: Vec<DeviceDoc>,
    pub builtin: Vec<String>,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedDoc {
    pub name: String,
    /// Milliseconds in finit_module(2), to a tenth.
    pub ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedDoc {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceDoc {
    pub bus: String,
    pub device: String,
    pub modalias: String,
    pub class: String,
    pub location: String,
}

impl ModulesDoc {
    pub fn from_report(r: &modules::Report) -> ModulesDoc {
        ModulesDoc {
            release: r.release.clone(),
            tree_missing: r.tree_missing,
            loaded: r
                .loaded
                .iter()
                .map(|l| LoadedDoc {
                    name: l.name.clone(),
                    ms: (l.ms * 10.0).round() / 10.0,
                })
                .collect(),
            failed: r
                .failed
                .iter()
                .map(|f| FailedDoc {
                    name: f.name.clone(),
                    reason: f.reason.clone(),
                })
                .collect(),
            unmatched: r
                .unmatched
                .iter()
                .map(|d| DeviceDoc {
                    bus: d.bus.clone(),
                    device: d.device.clone(),
                    modalias: d.modalias.clone(),
                    class: d.class.clone(),
                    location: d.location.clone(),
                })
                .collect(),
            builtin: r.builtin.clone(),
            total_ms: r.total_ms.round(),
        }
    }
}

/// One console line for what was loaded, one per failure, a warning per device the guest
/// needs that has no driver.
pub fn log_module_report(r: &modules::Report) {
    let loaded: Vec<&str> = r.loaded.iter().map(|l| l.name.as_str()).collect();
    log::info!(
        "modules: loaded {} [{}] in {:.0} ms",
        loaded.len(),
        loaded.join(" "),
        r.total_ms
    );
    log::debug!(
        "modules: index ({}) {:.1} ms, {} passes, {} sysfs scans {:.1} ms, {} device events{}",
        r.index_format,
        r.index_ms,
        r.passes,
        r.scans,
        r.scan_ms,
        r.events,
        if r.timed_out { ", timed out" } else { "" }
    );
    for f in &r.failed {
        log::error!("module {}: {}", f.name, f.reason);
    }
    // Chipset bridges and the like have no module on most images; only devices the guest's
    // job depends on are worth a warning.
    for d in &r.unmatched {
        if matches!(d.class.as_str(), "network card" | "block device") {
            log::warn!(
                "no driver for the {} at {} ({})",
                d.class,
                d.location,
                d.modalias
            );
        } else {
            log::debug!("no driver for {} {} ({})", d.class, d.location, d.modalias);
        }
    }
}
