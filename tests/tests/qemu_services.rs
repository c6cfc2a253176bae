//! Services under QEMU: the agent fleet of a browser/WebRTC VM (test-agent standing in), a
//! crash-looping service bounded by its budget, and an ordered shutdown on ctrl-alt-delete.

use std::time::{Duration, Instant};

use qemu_harness::Machine;
use vminit_tests::{boot, boot_deadline, power_off_cleanly, Guest, SLIRP_IP};

/// The example image config of the README's demo.
fn example() -> String {
    std::fs::read_to_string(qemu_harness::workspace_root().join("examples/agents.toml")).unwrap()
}

/// The OAuth agent stays ready and the idle-exit WebRTC server is restarted again and again
/// without counting as a failure; a host polling `/health` sees `ok` on every poll meanwhile.
#[test]
fn example_fleet_reaches_ok_and_idle_exits_never_flap() {
    let (mut vm, _dir) = boot(&Guest::with_config(&example()), Machine::Q35, SLIRP_IP, &[]);
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    // Poll until the idle-exit service has been restarted twice (it exits every 3 s).
    let end = Instant::now() + boot_deadline();
    loop {
        let (code, body) = vm.get("/health").unwrap();
        let h: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, &h["status"]),
            (200, &serde_json::json!("ok")),
            "flapped: {h:#}"
        );
        assert_eq!(h["services"]["webrtc"]["failures"], 0, "{h:#}");
        if h["services"]["webrtc"]["restarts"].as_u64().unwrap() >= 2 {
            assert_eq!(h["services"]["oauth-agent"]["state"], "ready");
            assert_eq!(h["services"]["oauth-agent"]["restarts"], 0);
            break;
        }
        assert!(Instant::now() < end, "webrtc not restarted twice: {h:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its agent answers through the guest network too.
    vm.wait_console("[oauth-agent] listening", boot_deadline())
        .unwrap();
}

const CRASHER: &str = r#"
[services.web]
command = ["/bin/test-agent", "http", "--port", "8080"]
ready = { http = "http://127.0.0.1:8080/health" }

# Binds 127.0.0.1 the moment it starts: `lo` must already be up (the network thread brings it
# up alongside, so the boot makes sure of it before starting services).
[services.local]
command = ["/bin/test-agent", "http", "--port", "8082", "--bind", "127.0.0.1"]
ready = { tcp = "127.0.0.1:8082" }

[services.crasher]
command = ["/bin/test-agent", "crash", "--after", "50", "--code", "3"]
required = false
restart_limit = { burst = 2, interval = "60s" }
backoff = { initial = "100ms", max = "200ms" }
"#;

#[test]
fn crash_loop_ends_failed_within_budget_while_others_stay_ready() {
    let (mut vm, _dir) = boot(&Guest::with_config(CRASHER), Machine::Q35, SLIRP_IP, &[]);
    let h = vm
        .wait_health(
            |h| {
                h["services"]["crasher"]["state"] == "failed"
                    && h["services"]["local"]["state"] == "ready"
            },
            boot_deadline(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let c = &h["services"]["crasher"];
    // More than `burst` (2) crashes within the interval: the third one is final.
    assert_eq!(c["failures"], 3, "{h:#}");
    assert_eq!(c["restarts"], 2, "{h:#}");
    assert_eq!(c["last_exit"]["code"], 3, "{h:#}");
    assert_eq!(h["services"]["web"]["state"], "ready", "{h:#}");
    assert_eq!(h["services"]["local"]["failures"], 0, "{h:#}");
    // A non-required service failing degrades, it does not fail the VM.
    assert_eq!(h["status"], "degraded", "{h:#}");
    assert_eq!(vm.get("/health").unwrap().0, 503);
    // No more restarts once failed.
    std::thread::sleep(Duration::from_secs(1));
    let (_, body) = vm.get("/health").unwrap();
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["services"]["crasher"]["restarts"], 2);
    assert!(vm.console_text().contains("[crasher]") || vm.console_text().contains("crasher"));
}

const ORDERED: &str = r#"
[services.db]
command = ["/bin/test-agent", "http", "--port", "8081"]
ready = { tcp = "127.0.0.1:8081" }

[services.api]
command = ["/bin/test-agent", "http", "--port", "8080"]
after = ["db"]
ready = { tcp = "127.0.0.1:8080" }

[services.stubborn]
command = ["/bin/test-agent", "ignore-term"]
after = ["api"]
stop_timeout = "1s"
"#;

#[test]
fn ctrl_alt_delete_stops_services_in_reverse_order_and_powers_off() {
    let (mut vm, _dir) = boot(&Guest::with_config(ORDERED), Machine::Q35, SLIRP_IP, &[]);
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let console = power_off_cleanly(&mut vm);
    let at = |needle: &str| {
        console
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on the console:\n{console}"))
    };
    let (stubborn, api, db) = (
        at("stopping service stubborn"),
        at("stopping service api"),
        at("stopping service db"),
    );
    assert!(stubborn < api && api < db, "stop order wrong:\n{console}");
    // ignore-term does not stop on SIGTERM: escalated to SIGKILL after its stop_timeout.
    assert!(console.contains("SIGKILL"), "{console}");
    assert!(at("shutdown: poweroff") > db);
}

const HOG_WHILE_STARTING: &str = r#"
[services.hog]
command = ["/bin/test-agent", "spin"]
required = false

[services.slow]
command = ["/bin/test-agent", "http", "--port", "8080", "--ready-after", "600000"]
ready = { http = "http://127.0.0.1:8080/health" }
ready_timeout = "10m"
"#;

/// The health thread yields the one vCPU to the boot's own work, not to services: while a
/// required service is still starting next to a service burning CPU, the harness's fast
/// poller (a probe every 20 ms) is answered, and every further poll too.
#[test]
fn health_answers_while_starting_next_to_a_cpu_hog() {
    let (mut vm, _dir) = boot(
        &Guest::with_config(HOG_WHILE_STARTING),
        Machine::Microvm,
        SLIRP_IP,
        &[],
    );
    vm.wait_health(
        |h| h["status"] == "starting" && h["services"]["hog"]["state"] == "ready",
        boot_deadline(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..5 {
        let (code, body) = vm
            .get("/health")
            .unwrap_or_else(|e| panic!("a poll went unanswered next to the hog: {e}"));
        let h: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, h["status"].as_str()),
            (503, Some("starting")),
            "{h:#}"
        );
    }
    assert!(vm.console_text().contains("[hog] spinning"));
}
