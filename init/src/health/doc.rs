//! The health document (contract §4) as the init publishes it, and its Prometheus rendering.
//! The event loop builds a [`HealthDoc`] whenever its state changes; the server only reads it.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NetworkDoc {
    pub source: &'static str,
    pub state: &'static str,
    pub interface: Option<String>,
    pub addresses: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BootDoc {
    pub init_start_ms: u64,
    pub modules_ms: Option<u64>,
    pub network_ms: Option<u64>,
    pub ready_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthDoc {
    pub status: &'static str,
    pub network: NetworkDoc,
    /// Per-service status as the supervisor reports it (already in contract shape).
    pub services: BTreeMap<String, serde_json::Value>,
    pub boot: BootDoc,
    /// Module loader report: loaded, failed, unmatched devices.
    pub modules: serde_json::Value,
    pub errors: Vec<String>,
    pub version: &'static str,
    pub pid1: bool,
    pub shutting_down: bool,
}

impl HealthDoc {
    pub fn starting(init_start_ms: u64, pid1: bool) -> Self {
        HealthDoc {
            status: "starting",
            network: NetworkDoc {
                source: "none",
                state: "unconfigured",
                interface: None,
                addresses: Vec::new(),
                error: None,
            },
            services: BTreeMap::new(),
            boot: BootDoc {
                init_start_ms,
                ..BootDoc::default()
            },
            modules: serde_json::json!({"loaded": [], "failed": [], "unmatched": []}),
            errors: Vec::new(),
            version: env!("CARGO_PKG_VERSION"),
            pid1,
            shutting_down: false,
        }
    }

    /// HTTP status for `/health`: 200 only when `ok`.
    pub fn http_status(&self) -> u16 {
        if self.status == "ok" {
            200
        } else {
            503
        }
    }
}

/// Counters the server keeps about itself, shown in `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCounters {
    pub requests: u64,
    pub evicted: u64,
    pub open_connections: usize,
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition format 0.0.4.
pub fn render_metrics(doc: &HealthDoc, c: ServerCounters) -> String {
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP vminit_status Overall status (1 for the current one)."
    );
    let _ = writeln!(out, "# TYPE vminit_status gauge");
    for s in ["starting", "ok", "degraded", "failed"] {
        let v = u8::from(doc.status == s);
        let _ = writeln!(out, "vminit_status{{status=\"{s}\"}} {v}");
    }
    let _ = writeln!(out, "# TYPE vminit_network_up gauge");
    let _ = writeln!(
        out,
        "vminit_network_up {}",
        u8::from(doc.network.state == "up")
    );
    let _ = writeln!(out, "# TYPE vminit_service_ready gauge");
    let _ = writeln!(out, "# TYPE vminit_service_restarts_total counter");
    let _ = writeln!(out, "# TYPE vminit_service_failures_total counter");
    for (name, s) in &doc.services {
        let n = escape_label(name);
        let state = s.get("state").and_then(|v| v.as_str()).unwrap_or("");
        let ready = u8::from(matches!(state, "ready" | "exited"));
        let _ = writeln!(
            out,
            "vminit_service_ready{{service=\"{n}\",state=\"{state}\"}} {ready}"
        );
        let restarts = s.get("restarts").and_then(|v| v.as_u64()).unwrap_or(0);
        let failures = s.get("failures").and_then(|v| v.as_u64()).unwrap_or(0);
        let _ = writeln!(
            out,
            "vminit_service_restarts_total{{service=\"{n}\"}} {restarts}"
        );
        let _ = writeln!(
            out,
            "vminit_service_failures_total{{service=\"{n}\"}} {failures}"
        );
    }
    let _ = writeln!(out, "# TYPE vminit_boot_milliseconds gauge");
    let b = &doc.boot;
    for (phase, v) in [
        ("init_start", Some(b.init_start_ms)),
        ("modules", b.modules_ms),
        ("network", b.network_ms),
        ("ready", b.ready_ms),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "vminit_boot_milliseconds{{phase=\"{phase}\"}} {v}");
        }
    }
    let count = |k: &str| {
        doc.modules
            .get(k)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len)
    };
    let _ = writeln!(out, "# TYPE vminit_modules gauge");
    for k in ["loaded", "failed", "unmatched"] {
        let _ = writeln!(out, "vminit_modules{{result=\"{k}\"}} {}", count(k));
    }
    let _ = writeln!(out, "# TYPE vminit_errors gauge");
    let _ = writeln!(out, "vminit_errors {}", doc.errors.len());
    let _ = writeln!(out, "# TYPE vminit_health_requests_total counter");
    let _ = writeln!(out, "vminit_health_requests_total {}", c.requests);
    let _ = writeln!(
        out,
        "# TYPE vminit_health_connections_evicted_total counter"
    );
    let _ = writeln!(out, "vminit_health_connections_evicted_total {}", c.evicted);
    let _ = writeln!(out, "# TYPE vminit_health_open_connections gauge");
    let _ = writeln!(out, "vminit_health_open_connections {}", c.open_connections);
    if let Some((cpu, rss)) = self_usage() {
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total {cpu:.2}");
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    out
}

/// The init's own CPU time (user + system, seconds) and resident memory (bytes), from
/// `/proc/self/stat` and `/proc/self/statm`: what an idle init costs the VM.
fn self_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    #[allow(clippy::cast_precision_loss)] // tick counts are far below 2^52
    let cpu = ticks as f64 / hz as f64;
    Some((cpu, pages.saturating_mul(u64::try_from(page).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_doc_has_contract_fields() {
        let d = HealthDoc::starting(42, true);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["status"], "starting");
        assert_eq!(v["network"]["source"], "none");
        assert_eq!(v["network"]["error"], serde_json::Value::Null);
        assert_eq!(v["boot"]["init_start_ms"], 42);
        assert!(v["services"].as_object().unwrap().is_empty());
        assert!(v["errors"].as_array().unwrap().is_empty());
        assert_eq!(d.http_status(), 503);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let mut d = HealthDoc::starting(1, false);
        d.status = "ok";
        d.services.insert(
            "web\"rtc".into(),
            serde_json::json!({"state": "ready", "restarts": 3, "failures": 1}),
        );
        let m = render_metrics(
            &d,
            ServerCounters {
                requests: 7,
                evicted: 2,
                open_connections: 1,
            },
        );
        assert!(m.contains("vminit_status{status=\"ok\"} 1\n"));
        assert!(m.contains("vminit_status{status=\"failed\"} 0\n"));
        assert!(m.contains("vminit_service_restarts_total{service=\"web\\\"rtc\"} 3\n"));
        assert!(m.contains("vminit_health_requests_total 7\n"));
        assert!(m.contains("process_resident_memory_bytes "), "{m}");
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
    }
}
