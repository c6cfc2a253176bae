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
