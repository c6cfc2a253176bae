//! Benchmark: what an idle vminit costs. Runs the real static binary off PID 1 with three
//! services (the example fleet's HTTP agent, a notify service, a long sleeper), waits until
//! `/health` is `ok`, then samples over a window (default 60 s, `IDLE_SECS` to change):
//! vminit's CPU time, its context switches (each one a wake-up) and its RSS, next to the same
//! figures for one of its idle services as the baseline.
//!
//! `cargo run --release -p vminit-tests --example idle_bench` (after `scripts/setup.sh`).

use std::time::{Duration, Instant};

use vminit_tests::HostVminit;

const CONFIG: &str = r#"
[services.web]
command = ["__AGENT__", "http", "--port", "__PORT__"]
ready = { http = "http://127.0.0.1:__PORT__/health" }

[services.notifier]
command = ["__AGENT__", "notify", "--after", "100"]
ready = "notify"

[services.sleeper]
command = ["__AGENT__", "alloc", "--mb", "1"]
"#;

struct Sample {
    cpu_ticks: u64,
    switches: u64,
    rss_kib: u64,
}

fn sample(pid: u32) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Threads: the health thread and the main loop both count (sum over /proc/pid/task).
    let mut switches = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Sample {
        cpu_ticks,
        switches,
        rss_kib: field("VmRSS:"),
    }
}

fn main() {
    let secs: u64 = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let agent = qemu_harness::static_binary("test-agent").expect("static test-agent");
    let port = vminit_tests::free_port().to_string();
    let config = CONFIG
        .replace("__AGENT__", agent.to_str().unwrap())
        .replace("__PORT__", &port);
    let v = HostVminit::start(&config);
    v.wait_health(Duration::from_secs(30), |h| h["status"] == "ok");
    let h = v.health();
    let web_pid = h["services"]["web"]["pid"].as_u64().unwrap() as u32;
    let pid = v.child.id();
    let (a0, b0) = (sample(pid), sample(web_pid));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (a1, b1) = (sample(pid), sample(web_pid));
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "idle window: {:.1} s, 3 services ready",
        t0.elapsed().as_secs_f64()
    );
    println!(
        "vminit:           CPU {:.2} s, context switches {}, RSS {} KiB",
        (a1.cpu_ticks - a0.cpu_ticks) as f64 / hz,
        a1.switches - a0.switches,
        a1.rss_kib
    );
    println!(
        "baseline (its idle HTTP agent): CPU {:.2} s, context switches {}, RSS {} KiB",
        (b1.cpu_ticks - b0.cpu_ticks) as f64 / hz,
        b1.switches - b0.switches,
        b1.rss_kib
    );
    let size = std::fs::metadata(qemu_harness::static_binary("vminit").unwrap())
        .unwrap()
        .len();
    println!(
        "vminit binary: {} KiB (static, stripped of debuginfo)",
        size / 1024
    );
}
