//! A cgroup v2 per service under QEMU (contract §3): a fork bomb held by `pids_max` and a
//! memory hog OOM-killed inside `memory_max` while `/health` answers and the other services
//! stay untouched; a grandchild that left the session (`setsid`) is killed with its service,
//! so the restarted run gets its port; `nofile` is what the service sees.

use std::time::{Duration, Instant};

use qemu_harness::Machine;
use vminit_tests::{boot_deadline, boot_with, power_off_cleanly, Guest, SLIRP_IP};

/// "Answered within a generous bound". The issue's target is 1 s per poll next to a fork bomb
/// or a spinner; that is a benchmark figure (BENCHMARKS.md, "A cgroup per service at spawn",
/// `bench_health_polls_next_to_a_bomb_and_a_spinner`: its median, p99 and max), not this
/// bound. A poll here crosses the host's scheduler twice (the QEMU vCPU thread under TCG on a
/// 2-core host shared with other builds and guests) and slirp, and a host stall of a second or
/// two is not the guest's doing; an init actually starved by the service never answers at all,
/// or only after tens of seconds, which 5 s still catches. The harness's GET gives up at 5 s too.
const POLL_BOUND: Duration = Duration::from_secs(5);

/// How often the tests poll while they watch: a pace, not a wait for a condition.
const POLL_PACE: Duration = Duration::from_millis(100);

/// One timed `/health` poll: the document, or a panic naming `next_to` when it went unanswered
/// or took longer than [`POLL_BOUND`].
fn poll(vm: &qemu_harness::Vm, next_to: &str) -> serde_json::Value {
    let start = Instant::now();
    let (_, body) = vm
        .get("/health")
        .unwrap_or_else(|e| panic!("a poll went unanswered next to {next_to}: {e}"));
    let took = start.elapsed();
    assert!(
        took < POLL_BOUND,
        "a poll next to {next_to} took {took:?} (bound {POLL_BOUND:?})"
    );
    json(&body)
}

const CONTAIN: &str = r#"
[services.web]
command = ["/bin/test-agent", "http", "--port", "8080"]
ready = { http = "http://127.0.0.1:8080/health" }

[services.bomb]
command = ["/bin/test-agent", "fork-bomb"]
required = false
pids_max = 64

[services.hog]
command = ["/bin/test-agent", "alloc", "--mb", "200"]
required = false
memory_max = "64M"
backoff = { initial = "500ms", max = "2s" }
restart_limit = { burst = 100, interval = "60s" }
"#;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn fork_bomb_and_memory_hog_are_contained_and_named() {
    let guest = Guest::with_config(CONTAIN);
    let (mut vm, _dir) = boot_with(&guest, Machine::Q35, SLIRP_IP, &[], |b, _| b.memory_mb(512));
    let h = vm
        .wait_health(
            |h| {
                h["services"]["web"]["state"] == "ready"
                    && h["services"]["hog"]["failures"].as_u64() >= Some(2)
                    && h["services"]["bomb"]["pids"].as_u64() >= Some(60)
            },
            boot_deadline(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let controllers = &h["cgroups"]["controllers"];
    for c in ["cpu", "memory", "pids"] {
        assert!(
            controllers.as_array().unwrap().iter().any(|x| x == c),
            "{c} not enabled: {h:#}"
        );
    }
    // The hog: OOM-killed inside its cgroup, named as such.
    let hog = &h["services"]["hog"];
    assert_eq!(
        hog["last_exit"],
        serde_json::json!({"oom_kill": true}),
        "{h:#}"
    );
    assert!(hog["oom_kills"].as_u64() >= Some(2), "{h:#}");
    assert!(hog["restarts"].as_u64() >= Some(1), "{h:#}");
    // The bomb: held at its limit, still its first run.
    let bomb = &h["services"]["bomb"];
    assert!(bomb["pids"].as_u64() <= Some(64), "{h:#}");
    assert_eq!(bomb["failures"], 0, "{h:#}");
    assert_eq!(bomb["restarts"], 0, "{h:#}");
    // Watched poll by poll, each answered within the bound next to the bomb and the hog:
    // nothing else is killed (web on its first run, the bomb never OOM-killed or restarted),
    // and the hog restarts with backoff. Backoff is seen in the document itself: state
    // `backoff` with a `next_retry_ms` above the configured `initial` (500 ms), which only a
    // delay that doubled can give (500, 1000, 2000, then `max` 2000).
    let web_pid = h["services"]["web"]["pid"].clone();
    let hog_restarts = |h: &serde_json::Value| h["services"]["hog"]["restarts"].as_u64();
    let first_restarts = hog_restarts(&h);
    let (mut polls, mut longest_retry, mut last) = (0u32, 0u64, h.clone());
    let end = Instant::now() + boot_deadline();
    while polls < 10 || longest_retry <= 500 || hog_restarts(&last) <= first_restarts {
        assert!(
            Instant::now() < end,
            "the hog was never seen backing off by more than its initial 500 ms \
             (longest next_retry_ms {longest_retry}) or restarting: {last:#}"
        );
        let h = poll(&vm, "the bomb and the hog");
        polls += 1;
        let web = &h["services"]["web"];
        assert_eq!(web["state"], "ready", "{h:#}");
        assert_eq!(web["restarts"], 0, "{h:#}");
        assert_eq!(web["pid"], web_pid, "{h:#}");
        assert_eq!(web["oom_kills"], 0, "{h:#}");
        assert!(web["memory_bytes"].as_u64() > Some(0), "{h:#}");
        let bomb = &h["services"]["bomb"];
        assert_eq!(bomb["restarts"], 0, "{h:#}");
        assert_eq!(bomb["oom_kills"], 0, "{h:#}");
        let hog = &h["services"]["hog"];
        if hog["state"] == "backoff" {
            let retry = hog["next_retry_ms"].as_u64();
            assert!(retry.is_some(), "backoff without next_retry_ms: {h:#}");
            longest_retry = longest_retry.max(retry.unwrap_or(0));
        }
        last = h;
        std::thread::sleep(POLL_PACE);
    }
    let (code, metrics) = vm.get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("vminit_service_pids{service=\"bomb\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("vminit_service_oom_kills_total{service=\"hog\"}"));
    let console = vm.console_text();
    assert!(
        console.contains("killed by the OOM killer (memory_max = 64M)"),
        "{console}"
    );
    // Only the hog's runs were OOM-killed.
    let oom_lines: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("killed by the OOM killer"))
        .collect();
    assert!(
        oom_lines.iter().all(|l| l.contains("service hog ")),
        "{oom_lines:#?}"
    );
    assert!(console.contains("[bomb] fork refused"), "{console}");
}

const ESCAPE: &str = r#"
[services.holder]
command = ["/bin/test-agent", "setsid-child", "--port", "9000", "--after", "1500"]
required = false
backoff = { initial = "100ms", max = "200ms" }
restart_limit = { burst = 50, interval = "60s" }

[services.lim]
command = ["/bin/test-agent", "limits"]
nofile = 65536

[services.prot]
command = ["/bin/test-agent", "cat", "--paths", "/sys/fs/cgroup/vminit/memory.min,/sys/fs/cgroup/vminit/init/memory.min,/sys/fs/cgroup/vminit/init/cpu.weight"]
"#;

#[test]
fn setsid_grandchildren_go_with_the_service_and_nofile_is_applied() {
    let (mut vm, _dir) = boot_with(
        &Guest::with_config(ESCAPE),
        Machine::Q35,
        SLIRP_IP,
        &[],
        |b, _| b,
    );
    vm.wait_health(
        // Four runs over: each printed its line before it exited (a run's output is read
        // to its end before its exit is handled). Waiting for 3 restarts raced the fourth
        // run's line (seen in CI).
        |h| h["services"]["holder"]["restarts"].as_u64() >= Some(4),
        boot_deadline(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    vm.wait_console("limits end", boot_deadline()).unwrap();
    let console = vm.console_text();
    // Every run (the first and three restarts, at least) got the port: the previous run's
    // grandchild, in another session, was gone before the next start.
    assert!(console.matches("bound port 9000").count() >= 4, "{console}");
    assert!(!console.contains("port 9000 busy"), "{console}");
    let line = console
        .lines()
        .find(|l| l.contains("[lim] Max open files"))
        .unwrap_or_else(|| panic!("no limits line:\n{console}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.iter().filter(|w| **w == "65536").count(),
        2,
        "soft and hard: {line}"
    );
    // The init's protection as the real kernel holds it: memory.min on every level vminit
    // made (a child's is capped by its parent's), and nothing refused.
    vm.wait_console("[prot] cat end", boot_deadline()).unwrap();
    let console = vm.console_text();
    for (file, value) in [
        ("vminit/memory.min", "16777216"),
        ("vminit/init/memory.min", "16777216"),
        ("vminit/init/cpu.weight", "1000"),
    ] {
        let line = format!("cat /sys/fs/cgroup/{file}: {value}");
        assert!(console.contains(&line), "no {line:?}:\n{console}");
    }
    let (_, body) = vm.get("/health").unwrap();
    let h = json(&body);
    assert!(
        !h["errors"].to_string().contains("cgroups:"),
        "a cgroup problem: {h:#}"
    );
    let console = power_off_cleanly(&mut vm);
    // Stopped within the grace: nothing of the holder was left for the final sweep.
    assert!(
        !console.contains("services did not stop in time"),
        "{console}"
    );
}

/// BENCHMARKS.md: the cost of joining a cgroup at spawn, next to a spawn without, in one run
/// of one guest. `cargo test -p vminit-tests --test qemu_cgroups -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints figures, asserts only that they were measured"]
fn bench_spawn_with_and_without_a_cgroup() {
    let cfg = r#"
[services.bench]
command = ["/bin/test-agent", "spawn-bench", "--n", "100"]
"#;
    let (mut vm, _dir) = boot_with(
        &Guest::with_config(cfg),
        Machine::Q35,
        SLIRP_IP,
        &[],
        |b, _| b,
    );
    vm.wait_console("spawn-bench ", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    vm.wait_console(" ratio ", Duration::from_secs(5)).ok();
    let console = vm.console_text();
    let line = console
        .lines()
        .find(|l| l.contains("spawn-bench "))
        .unwrap_or_default();
    println!("{line}");
    assert!(line.contains(" ratio "), "{console}");
}

const SPINNERS: &str = r#"
[services.web]
command = ["/bin/test-agent", "http", "--port", "8080"]
ready = { http = "http://127.0.0.1:8080/health" }

[services.hog]
command = ["/bin/test-agent", "spin"]
required = false

[services.capped]
command = ["/bin/test-agent", "spin"]
required = false
cpu_max = "20%"
"#;

/// How long the capped spinner is watched: a hundred of the cap's 100 ms periods, so that
/// where a window's edges fall against the periods is lost in the figure.
const CAP_WINDOW: Duration = Duration::from_secs(10);

/// Two CPU spinners on the one vCPU, one capped at 20%: the init still answers every poll,
/// and the capped one's `cpu_ms` grows at about 20% of wall time. Under TCG the guest's clock
/// follows the host's, and the cap is enforced per 100 ms period of that clock, so the rate
/// over host wall time is ~0.2 whatever the host's speed (a starved vCPU can only lower it;
/// the lower bound, 0.08, leaves it room). The uncapped one also gets more than it.
#[test]
fn cpu_spinners_leave_health_answering_and_cpu_max_caps_one() {
    let guest = Guest::with_config(SPINNERS);
    let (mut vm, _dir) = boot_with(&guest, Machine::Q35, SLIRP_IP, &[], |b, _| b);
    let spinning = |h: &serde_json::Value| {
        h["services"]["web"]["state"] == "ready"
            && h["services"]["hog"]["cpu_ms"].as_u64() > Some(0)
            && h["services"]["capped"]["cpu_ms"].as_u64() > Some(0)
    };
    vm.wait_health(spinning, boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let cpu = |h: &serde_json::Value, s: &str| h["services"][s]["cpu_ms"].as_u64().unwrap();
    // The window runs from one answer to another, both timed on the host; the polls between
    // keep checking that the init answers next to the spinners.
    let first = poll(&vm, "the spinners");
    let start = Instant::now();
    let last = loop {
        let h = poll(&vm, "the spinners");
        if start.elapsed() >= CAP_WINDOW {
            break h;
        }
        std::thread::sleep(POLL_PACE);
    };
    let wall = start.elapsed();
    let hog = cpu(&last, "hog") - cpu(&first, "hog");
    let capped = cpu(&last, "capped") - cpu(&first, "capped");
    #[allow(clippy::cast_precision_loss)] // milliseconds of a test run
    let rate = capped as f64 / wall.as_millis() as f64;
    println!("cpu_max = 20%: {capped} ms of CPU in {wall:?}, rate {rate:.3}; uncapped {hog} ms");
    assert!(
        (0.08..=0.35).contains(&rate),
        "cpu_max = 20%: the capped spinner used {capped} ms of CPU in {wall:?} of host wall \
         time, a rate of {rate:.3} (expected 0.08..=0.35); the uncapped one used {hog} ms"
    );
    assert!(
        capped < hog,
        "the capped spinner ({capped} ms) got no less than the uncapped one ({hog} ms) in {wall:?}"
    );
    power_off_cleanly(&mut vm);
}

/// Poll latencies of one phase, for BENCHMARKS.md.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn at(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )] // an index into a few hundred samples
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i]
    }
    fn line(&self, phase: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let over = self
            .0
            .iter()
            .filter(|d| **d >= Duration::from_secs(1))
            .count();
        format!(
            "{phase}: n={} median {:.1} ms p99 {:.1} ms max {:.1} ms, {over} over 1 s",
            self.0.len(),
            ms(self.at(0.5)),
            ms(self.at(0.99)),
            ms(self.0.iter().copied().max().unwrap_or_default()),
        )
    }
}

/// `n` `/health` polls, each timed on the host, `pace` apart (so that between two polls the
/// service next to the init has the CPU, and each poll must win it back).
fn time_polls(vm: &qemu_harness::Vm, n: usize, pace: Duration, next_to: &str) -> Latencies {
    Latencies(
        (0..n)
            .map(|_| {
                std::thread::sleep(pace);
                let start = Instant::now();
                vm.get("/health")
                    .unwrap_or_else(|e| panic!("a poll went unanswered next to {next_to}: {e}"));
                start.elapsed()
            })
            .collect(),
    )
}

/// The gap between the benchmark's polls: a host polling at 20 Hz.
const BENCH_PACE: Duration = Duration::from_millis(50);

/// Services the benchmark starts when the host asks: `gate-*` is not ready until `GET /exit`
/// on its port makes it exit 0 (`exited` counts as ready), which releases what comes after it.
const PHASES: &str = r#"
[services.web]
command = ["/bin/test-agent", "http", "--port", "8080"]
ready = { http = "http://127.0.0.1:8080/health" }

[services.gate-bomb]
command = ["/bin/test-agent", "http", "--port", "9101"]
ready = { file = "/run/never" }
ready_timeout = "1h"
required = false

[services.bomb]
command = ["/bin/test-agent", "fork-bomb", "--stop-port", "9102"]
after = ["gate-bomb"]
restart = "never"
required = false
pids_max = 64

[services.gate-spin]
command = ["/bin/test-agent", "http", "--port", "9103"]
ready = { file = "/run/never" }
ready_timeout = "1h"
required = false

[services.spin]
command = ["/bin/test-agent", "spin"]
after = ["gate-spin"]
required = false
"#;

/// Polls per phase.
const BENCH_POLLS: usize = 300;

/// BENCHMARKS.md: `/health` poll latency in one guest, idle, next to a fork bomb held by
/// `pids_max = 64`, then next to an unlimited CPU spinner (the bomb stopped first), polls
/// [`BENCH_PACE`] apart. The 1 s per poll of issue 14 is checked here, as figures; the tests
/// assert only [`POLL_BOUND`].
#[test]
#[ignore = "benchmark: prints figures, asserts only that every poll was answered"]
fn bench_health_polls_next_to_a_bomb_and_a_spinner() {
    let (mut vm, _dir) = boot_with(
        &Guest::with_config(PHASES),
        Machine::Q35,
        SLIRP_IP,
        &[],
        |b, _| b.forward(9101).forward(9102).forward(9103),
    );
    let svc = |h: &serde_json::Value, s: &str, k: &str| h["services"][s][k].clone();
    vm.wait_health(
        |h| svc(h, "web", "state") == "ready" && svc(h, "gate-spin", "state") == "running",
        boot_deadline(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let idle = time_polls(&vm, BENCH_POLLS, BENCH_PACE, "nothing");

    vm.get_port(9101, "/exit").expect("open the bomb's gate");
    vm.wait_health(
        |h| svc(h, "bomb", "pids").as_u64() >= Some(60),
        boot_deadline(),
    )
    .unwrap_or_else(|e| panic!("the bomb never filled its pids_max: {e}"));
    let bomb = time_polls(&vm, BENCH_POLLS, BENCH_PACE, "the fork bomb");
    let h = poll(&vm, "the fork bomb");
    let bomb_pids = svc(&h, "bomb", "pids");

    vm.get_port(9102, "/stop").expect("stop the bomb");
    vm.wait_health(
        |h| svc(h, "bomb", "state") == "failed" && svc(h, "bomb", "pids").as_u64() == Some(0),
        boot_deadline(),
    )
    .unwrap_or_else(|e| panic!("the bomb was not cleared: {e}"));
    vm.get_port(9103, "/exit").expect("open the spinner's gate");
    let spinning = vm
        .wait_health(
            |h| svc(h, "spin", "cpu_ms").as_u64() > Some(500),
            boot_deadline(),
        )
        .unwrap_or_else(|e| panic!("the spinner never spun: {e}"));
    let start = Instant::now();
    let spin = time_polls(&vm, BENCH_POLLS, BENCH_PACE, "the spinner");
    let wall = start.elapsed();
    let h = poll(&vm, "the spinner");
    let spun = svc(&h, "spin", "cpu_ms").as_u64().unwrap_or(0)
        - svc(&spinning, "spin", "cpu_ms").as_u64().unwrap_or(0);
    println!("{}", idle.line("idle"));
    println!(
        "{} (bomb at {bomb_pids} pids)",
        bomb.line("fork bomb, pids_max 64")
    );
    #[allow(clippy::cast_precision_loss)] // milliseconds of a benchmark
    let share = spun as f64 / wall.as_millis() as f64;
    println!(
        "{} (the spinner used {spun} ms of CPU in {wall:.1?}: {share:.2} of the vCPU)",
        spin.line("unlimited spinner")
    );
}

/// One idle service, or nine.
fn idle_services(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[services.idle{i}]\ncommand = [\"/bin/test-agent\", \"alloc\", \"--mb\", \"1\"]\n"
            )
        })
        .collect()
}

/// BENCHMARKS.md: what a service adds to a poll (its four cgroup files read, its part of the
/// document): the same polls, interleaved, on a guest with one idle service and on one with
/// nine, both running at once.
#[test]
#[ignore = "benchmark: prints figures, asserts only that every poll was answered"]
fn bench_health_poll_cost_per_service() {
    let boot_n = |n: usize| {
        boot_with(
            &Guest::with_config(&idle_services(n)),
            Machine::Q35,
            SLIRP_IP,
            &[],
            |b, _| b,
        )
    };
    let (mut one, _d1) = boot_n(1);
    let (mut nine, _d9) = boot_n(9);
    for vm in [&mut one, &mut nine] {
        vm.wait_health(|h| h["status"] == "ok", boot_deadline())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let h = poll(&nine, "nothing");
    assert!(
        h["services"]["idle8"]["cpu_ms"].is_u64(),
        "no figures: {h:#}"
    );
    // Warm-up, then alternate so that neither guest gets a quieter host.
    time_polls(&one, 20, Duration::ZERO, "nothing");
    time_polls(&nine, 20, Duration::ZERO, "nothing");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..BENCH_POLLS {
        a.extend(time_polls(&one, 1, Duration::ZERO, "nothing").0);
        b.extend(time_polls(&nine, 1, Duration::ZERO, "nothing").0);
    }
    let (a, b) = (Latencies(a), Latencies(b));
    let per = (b.at(0.5).as_secs_f64() - a.at(0.5).as_secs_f64()) * 1e6 / 8.0;
    println!("{}", a.line("1 service"));
    println!("{}", b.line("9 services"));
    println!("per service per poll (medians): {per:.0} us");
}
