//! The module loader's report in the health document's `modules` section: what was loaded
//! (name, ms), what failed (name, reason), what found no hardware, devices left without a
//! driver; and its console lines: one info line per coldplug stage, the details at debug,
//! failures as errors.

use serde::Serialize;

/// `modules` of the health document.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModulesDoc {
    pub release: String,
    pub tree_missing: bool,
    pub loaded: Vec<LoadedDoc>,
    pub failed: Vec<FailedDoc>,
    /// Modules whose init found no device to drive (ENODEV, ENXIO): not loaded, not an error.
    pub no_device: Vec<String>,
    pub unmatched: Vec<DeviceDoc>,
    pub builtin: Vec<String>,
    pub total_ms: f64,
    /// The rest of the drivers (`[modules] coldplug = "all"`) are still to be loaded in the
    /// background; this document is replaced when they are.
    pub rest_pending: bool,
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
            no_device: r.no_device.clone(),
            builtin: r.builtin.clone(),
            total_ms: r.total_ms.round(),
            rest_pending: false,
        }
    }
}

/// How far a loader's report had got before a stage, so that the stage logs only its own part.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    loaded: usize,
    failed: usize,
    no_device: usize,
    total_ms: f64,
}

impl Seen {
    pub fn of(r: &modules::Report) -> Seen {
        Seen {
            loaded: r.loaded.len(),
            failed: r.failed.len(),
            no_device: r.no_device.len(),
            total_ms: r.total_ms,
        }
    }
}

/// The stage's one info line, e.g. `modules: loaded 9 (essential) in 210 ms`.
pub fn stage_line(r: &modules::Report, stage: &str, before: Seen) -> String {
    format!(
        "modules: loaded {} ({stage}) in {:.0} ms",
        r.loaded.len().saturating_sub(before.loaded),
        (r.total_ms - before.total_ms).max(0.0)
    )
}

/// The console lines for one stage (what `r` gained since `before`): one info line with the
/// count and the time, the module names and the loader's figures at debug, an info line for
/// the drivers that found no hardware, an error per failure, a warning per device the guest
/// needs that has no driver. Everything is in `/health` `modules` as well.
pub fn log_module_report(r: &modules::Report, stage: &str, before: Seen) {
    log::info!("{}", stage_line(r, stage, before));
    let loaded: Vec<&str> = r
        .loaded
        .iter()
        .skip(before.loaded)
        .map(|l| l.name.as_str())
        .collect();
    log::debug!("modules ({stage}): {}", loaded.join(" "));
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
    let absent = r.no_device.get(before.no_device..).unwrap_or_default();
    if !absent.is_empty() {
        log::info!(
            "modules: no hardware for {} (not loaded)",
            absent.join(", ")
        );
    }
    for f in r.failed.iter().skip(before.failed) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_stage_counts_only_the_stage() {
        let mut r = modules::Report::default();
        for (name, ms) in [("virtio", 3.0), ("virtio_net", 5.0)] {
            r.loaded.push(modules::Loaded {
                name: name.into(),
                ms,
            });
        }
        r.total_ms = 210.4;
        assert_eq!(
            stage_line(&r, "essential", Seen::default()),
            "modules: loaded 2 (essential) in 210 ms"
        );
        let before = Seen::of(&r);
        r.loaded.push(modules::Loaded {
            name: "drm".into(),
            ms: 3000.0,
        });
        r.no_device.push("acpi_cpufreq".into());
        r.total_ms += 3100.0;
        assert_eq!(
            stage_line(&r, "rest", before),
            "modules: loaded 1 (rest) in 3100 ms"
        );
        let doc = ModulesDoc::from_report(&r);
        assert_eq!(doc.no_device, ["acpi_cpufreq"]);
        assert!(doc.failed.is_empty());
    }
}
