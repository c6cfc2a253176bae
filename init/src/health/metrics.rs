//! `/metrics`: the health document in the Prometheus text format (0.0.4). Each family is one
//! group: `# HELP`, `# TYPE`, then all of its samples, as the format requires.

use std::fmt::Write;

use super::doc::HealthDoc;
use crate::status::Status;

/// Counters the server keeps about itself.
#[derive(Debug, Clone, Default)]
pub struct ServerCounters {
    /// Requests per listener, by its name (`0.0.0.0:8900`, `vsock:8900`), in listen order.
    pub requests: Vec<(String, u64)>,
    pub evicted: u64,
    pub open_connections: usize,
    /// Long polls waiting now.
    pub waiting: usize,
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }
}

/// Renders `doc` and the server's counters; `log_dropped` is the console logger's count.
pub fn render(doc: &HealthDoc, c: &ServerCounters, log_dropped: u64) -> String {
    let mut out = String::with_capacity(4096);
    guest(&mut out, doc);
    services(&mut out, doc);
    boot_and_modules(&mut out, doc);
    server(&mut out, c, log_dropped);
    process(&mut out);
    out
}

/// The guest's status and network.
fn guest(out: &mut String, doc: &HealthDoc) {
    let mut f = family(
        out,
        "vminit_status",
        "gauge",
        "Overall status (1 for the current one).",
    );
    for s in Status::ALL {
        let labels = format!("status=\"{}\"", s.as_str());
        f.sample("vminit_status", &labels, u8::from(doc.status == s));
    }
    family(
        out,
        "vminit_network_up",
        "gauge",
        "1 when the network is up.",
    )
    .sample(
        "vminit_network_up",
        "",
        u8::from(doc.network.state == netconf::LinkState::Up),
    );
}

/// The boot's timeline, the module loader's results and the errors listed.
fn boot_and_modules(out: &mut String, doc: &HealthDoc) {
    let mut f = family(
        out,
        "vminit_boot_milliseconds",
        "gauge",
        "Milliseconds since kernel start at which each boot phase ended.",
    );
    let b = &doc.boot;
    for (phase, v) in [
        ("init_start", Some(b.init_start_ms)),
        ("modules", b.modules_ms),
        ("network", b.network_ms),
        ("ready", b.ready_ms),
    ] {
        if let Some(v) = v {
            f.sample("vminit_boot_milliseconds", &format!("phase=\"{phase}\""), v);
        }
    }
    let mut f = family(out, "vminit_modules", "gauge", "Kernel modules by result.");
    let m = &doc.modules;
    for (k, n) in [
        ("loaded", m.loaded.len()),
        ("failed", m.failed.len()),
        ("no_device", m.no_device.len()),
        ("unmatched", m.unmatched.len()),
    ] {
        f.sample("vminit_modules", &format!("result=\"{k}\""), n);
    }
    simple(
        out,
        "vminit_errors",
        "gauge",
        "Errors listed in /health.",
        doc.errors.len(),
    );
}

/// The health server's own counters and the console logger's drops.
fn server(out: &mut String, c: &ServerCounters, log_dropped: u64) {
    simple(
        out,
        "vminit_log_lines_dropped_total",
        "counter",
        "vminit console lines dropped because the console did not take them.",
        log_dropped,
    );
    let mut f = family(
        out,
        "vminit_health_requests_total",
        "counter",
        "Requests answered by the health server, per listener.",
    );
    for (listener, n) in &c.requests {
        let labels = format!("listener=\"{}\"", escape_label(listener));
        f.sample("vminit_health_requests_total", &labels, n);
    }
    simple(
        out,
        "vminit_health_connections_evicted_total",
        "counter",
        "Connections closed for being slow or over the limit.",
        c.evicted,
    );
    simple(
        out,
        "vminit_health_open_connections",
        "gauge",
        "Connections open now.",
        c.open_connections,
    );
    simple(
        out,
        "vminit_health_waiting_connections",
        "gauge",
        "Long polls (/health?wait=N) waiting now.",
        c.waiting,
    );
}

/// The init's own CPU and memory.
fn process(out: &mut String) {
    if let Some((cpu, rss)) = self_usage() {
        simple(
            out,
            "process_cpu_seconds_total",
            "counter",
            "CPU time of the init (user and system).",
            format!("{cpu:.2}"),
        );
        simple(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the init.",
            rss,
        );
    }
}

fn simple(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    family(out, name, kind, help).sample(name, "", v);
}

/// The per-service families, each as one group.
fn services(out: &mut String, doc: &HealthDoc) {
    let names: Vec<String> = doc.services.keys().map(|n| escape_label(n)).collect();
    let mut f = family(
        out,
        "vminit_service_ready",
        "gauge",
        "1 when the service counts as ready; its state as a label.",
    );
    for (n, s) in names.iter().zip(doc.services.values()) {
        let labels = format!("service=\"{n}\",state=\"{}\"", s.state);
        let ready = u8::from(s.state.is_ready());
        f.sample("vminit_service_ready", &labels, ready);
    }
    let mut f = family(
        out,
        "vminit_service_restarts_total",
        "counter",
        "Times the service was started again, for any reason.",
    );
    for (n, s) in names.iter().zip(doc.services.values()) {
        let labels = format!("service=\"{n}\"");
        f.sample("vminit_service_restarts_total", &labels, s.restarts);
    }
    let mut f = family(
        out,
        "vminit_service_failures_total",
        "counter",
        "Crashes of the service since boot.",
    );
    for (n, s) in names.iter().zip(doc.services.values()) {
        let labels = format!("service=\"{n}\"");
        f.sample("vminit_service_failures_total", &labels, s.failures);
    }
    figures(out, doc, &names);
}

/// The services' live resource use from their cgroups (read when the document was
/// published). A family is written only when some service has the figure (no cgroups, no
/// families); a service without it has no sample.
fn figures(out: &mut String, doc: &HealthDoc, names: &[String]) {
    type Get = fn(&supervisor::ServiceStatus) -> Option<f64>;
    // u64 → f64 is exact up to 2^53: 8 PiB or 285 years of CPU time.
    #[allow(clippy::cast_precision_loss)]
    let families: [(&str, &str, &str, Get); 4] = [
        (
            "vminit_service_memory_bytes",
            "gauge",
            "Memory charged to the service's cgroup (memory.current).",
            |s| s.memory_bytes.map(|v| v as f64),
        ),
        (
            "vminit_service_cpu_seconds_total",
            "counter",
            "CPU time used by the service's cgroup (cpu.stat usage_usec).",
            |s| s.cpu_ms.map(|v| v as f64 / 1000.0),
        ),
        (
            "vminit_service_pids",
            "gauge",
            "Processes and threads in the service's cgroup (pids.current).",
            |s| s.pids.map(|v| v as f64),
        ),
        (
            "vminit_service_oom_kills_total",
            "counter",
            "Processes of the service killed by the OOM killer (memory.events oom_kill).",
            |s| s.oom_kills.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, get) in families {
        if !doc.services.values().any(|s| get(s).is_some()) {
            continue;
        }
        let mut f = family(out, name, kind, help);
        for (n, s) in names.iter().zip(doc.services.values()) {
            if let Some(v) = get(s) {
                f.sample(name, &format!("service=\"{n}\""), v);
            }
        }
    }
}

/// The init's own CPU time (user + system, seconds) and resident memory (bytes), from
/// `/proc/self/stat` and `/proc/self/statm`: what an idle init costs the VM.
fn self_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1.get(1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f
        .get(11)?
        .parse::<u64>()
        .ok()?
        .checked_add(f.get(12)?.parse::<u64>().ok()?)?;
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

    fn doc_with_services() -> HealthDoc {
        let mut d = HealthDoc::starting(1, false);
        d.status = Status::Ok;
        use supervisor::ServiceState::{Backoff, Ready};
        for (name, state, restarts) in [("web\"rtc", Ready, 3), ("agent", Backoff, 1)] {
            d.services.insert(
                name.into(),
                supervisor::ServiceStatus {
                    restarts,
                    failures: 1,
                    ready: state == Ready,
                    budget_left: 4,
                    ever_ready: true,
                    memory_bytes: (state == Ready).then_some(64 << 20),
                    cpu_ms: (state == Ready).then_some(2500),
                    pids: (state == Ready).then_some(3),
                    oom_kills: (state == Ready).then_some(1),
                    ..supervisor::ServiceStatus::new(state)
                },
            );
        }
        d
    }

    #[test]
    fn metrics_are_grouped_by_family_and_parse_as_prometheus_text() {
        let counters = ServerCounters {
            requests: vec![("0.0.0.0:8900".into(), 7), ("vsock:8900".into(), 3)],
            evicted: 2,
            open_connections: 1,
            waiting: 1,
        };
        let m = render(&doc_with_services(), &counters, 5);
        assert!(m.contains("vminit_health_requests_total{listener=\"vsock:8900\"} 3\n"));
        assert!(m.contains("vminit_health_requests_total{listener=\"0.0.0.0:8900\"} 7\n"));
        assert!(m.contains("vminit_status{status=\"ok\"} 1\n"));
        assert!(m.contains("vminit_service_restarts_total{service=\"web\\\"rtc\"} 3\n"));
        assert!(m.contains("vminit_log_lines_dropped_total 5\n"));
        // The text format: one TYPE per family, then that family's samples as one group.
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in m.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_string();
                assert!(
                    seen.insert(current.clone()),
                    "{current} declared twice:\n{m}"
                );
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family:\n{m}");
            }
        }
        // And a real parser reads every family with its type.
        let lines = m.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let restarts: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "vminit_service_restarts_total")
            .collect();
        assert_eq!(restarts.len(), 2);
        assert!(matches!(
            restarts[0].value,
            prometheus_parse::Value::Counter(_)
        ));
        let ready = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "vminit_service_ready" && s.labels.get("service") == Some("agent")
            })
            .unwrap();
        assert_eq!(ready.labels.get("state"), Some("backoff"));
        assert!(matches!(ready.value, prometheus_parse::Value::Gauge(v) if v == 0.0));
        for (metric, want) in [
            ("vminit_service_memory_bytes", 67108864.0),
            ("vminit_service_cpu_seconds_total", 2.5),
            ("vminit_service_pids", 3.0),
            ("vminit_service_oom_kills_total", 1.0),
        ] {
            let found: Vec<_> = scrape
                .samples
                .iter()
                .filter(|s| s.metric == metric)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "{metric}: only the service with a cgroup:\n{m}"
            );
            // prometheus_parse keeps the label's escapes as written.
            assert_eq!(found[0].labels.get("service"), Some("web\\\"rtc"));
            let v = match found[0].value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            };
            assert_eq!(v, want, "{metric}");
        }
        assert_eq!(
            scrape
                .docs
                .get("vminit_service_failures_total")
                .map(String::as_str),
            Some("Crashes of the service since boot.")
        );
    }
}
