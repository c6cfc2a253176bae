//! The boot end to end: the real static vminit as PID 1 under QEMU with Debian's kernel.

use qemu_harness::Machine;
use vminit_tests::{boot, boot_deadline, power_off_cleanly, Guest, SLIRP_IP};

const TRIVIAL: &str = r#"
[services.sleeper]
command = ["/bin/test-agent", "http", "--port", "8080"]
ready = { tcp = "127.0.0.1:8080" }
"#;

#[test]
fn boots_and_serves_health_ok() {
    let (mut vm, _dir) = boot(
        &Guest::with_config(TRIVIAL),
        Machine::Q35,
        &format!("{SLIRP_IP} splash single"),
        &[],
    );
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h["network"]["source"], "cmdline", "{h:#}");
    assert_eq!(h["network"]["state"], "up", "{h:#}");
    assert_eq!(h["services"]["sleeper"]["state"], "ready", "{h:#}");
    assert!(h["boot"]["init_start_ms"].as_u64().unwrap() > 0);
    assert!(
        h["boot"]["ready_ms"].as_u64().unwrap() >= h["boot"]["init_start_ms"].as_u64().unwrap()
    );
    let (code, _) = vm.get("/health").unwrap();
    assert_eq!(code, 200);
    assert_eq!(vm.get("/livez").unwrap().0, 200);
    assert!(vm
        .get("/metrics")
        .unwrap()
        .1
        .contains("vminit_status{status=\"ok\"} 1"));
    let console = vm.console_text();
    // Stray kernel words reach init as argv: warned about, not a usage error.
    assert!(
        console.contains("ignoring arguments the kernel passed to init"),
        "{console}"
    );
    assert!(!console.contains("Kernel panic"), "{console}");
}

#[test]
fn ctrl_alt_delete_powers_off_cleanly() {
    let (mut vm, _dir) = boot(&Guest::with_config(TRIVIAL), Machine::Q35, SLIRP_IP, &[]);
    vm.wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let console = power_off_cleanly(&mut vm);
    assert!(console.contains("shutting down"), "{console}");
    assert!(console.contains("shutdown: poweroff"), "{console}");
}
