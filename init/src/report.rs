//! The module loader's report in the health document's `modules` section: what was loaded
//! (name, ms), what failed (name, reason), devices left without a driver.

use serde_json::{json, Value};

pub fn modules_json(r: &modules::Report) -> Value {
    json!({
        "release": r.release,
        "tree_missing": r.tree_missing,
        "loaded": r.loaded.iter().map(|l| json!({"name": l.name, "ms": (l.ms * 10.0).round() / 10.0})).collect::<Vec<_>>(),
        "failed": r.failed.iter().map(|f| json!({"name": f.name, "reason": f.reason})).collect::<Vec<_>>(),
        "unmatched": r.unmatched.iter().map(|d| json!({
            "bus": d.bus, "device": d.device, "modalias": d.modalias,
            "class": d.class, "location": d.location,
        })).collect::<Vec<_>>(),
        "builtin": r.builtin,
        "total_ms": r.total_ms.round(),
    })
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
