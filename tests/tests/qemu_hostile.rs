//! PID 1 under hostile input, booted for real: cmdline bytes that are not UTF-8, config-drive
//! and `vminit.config=` files that are not regular files (or are huge), absurd durations in
//! the drive and in the image config, drives that add or break services, a shutdown requested
//! while the boot runs, and a service's last words on SIGTERM.
//! Each case ends with PID 1 alive, `/health` naming what was refused, the image's services
//! running, and QEMU powering off cleanly on ctrl-alt-delete.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use qemu_harness::{make_drive, make_drive_from_dir, DriveFs, Machine};
use vminit_tests::{boot, boot_deadline, boot_with, power_off_cleanly, Guest, SLIRP_IP};

/// The image's own agent: it must run whatever the host hands the guest.
const AGENT: &str = r#"
[services.agent]
command = ["/bin/test-agent", "http", "--port", "8080"]
ready = { http = "http://127.0.0.1:8080/health" }
"#;

/// Waits for `/health` to name `needle` in `errors[]` with the agent ready, and returns it.
fn wait_error_with_agent_ready(vm: &mut qemu_harness::Vm, needle: &str) -> serde_json::Value {
    vm.wait_health(
        |h| {
            h["services"]["agent"]["state"] == "ready"
                && h["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|m| m.as_str().unwrap_or("").contains(needle)))
        },
        boot_deadline(),
    )
    .unwrap_or_else(|e| panic!("{needle:?} never in errors[] with the agent ready: {e}"))
}

#[test]
fn cmdline_words_that_are_not_utf8_are_skipped_and_the_rest_stands() {
    let guest = Guest::with_config(AGENT);
    // A bare word reaches PID 1 as argv, a key=value word as its environment, and both are
    // in /proc/cmdline; `ip=` and `vminit.log=` come after them and must still count.
    let (mut vm, _dir) = boot_with(&guest, Machine::Q35, "", &[], |b, _| {
        b.append_bytes(b"bare\xffword junk=\xfe\xff")
            .append_bytes(SLIRP_IP.as_bytes())
            .append_bytes(b"vminit.log=debug")
    });
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h["network"]["source"], "cmdline", "{h:#}");
    let console = vm.console_text();
    assert!(console.contains("is not UTF-8"), "{console}");
    assert!(
        console.contains("vminit DEBUG"),
        "vminit.log=debug lost:\n{console}"
    );
    power_off_cleanly(&mut vm);
}

/// A drive whose `vminit.toml` is whatever `make` puts at the path.
fn hostile_drive(fs: DriveFs, tmp: &Path, make: impl FnOnce(&Path)) -> PathBuf {
    let root = tmp.join(format!("root-{fs:?}"));
    std::fs::create_dir_all(&root).unwrap();
    make(&root.join("vminit.toml"));
    let out = tmp.join(format!("drive-{fs:?}.img"));
    make_drive_from_dir(fs, "VMINIT", &root, &out).unwrap();
    out
}

fn mknod(path: &Path, kind: &str, major: &str, minor: &str) {
    let st = Command::new("mknod")
        .arg(path)
        .args([kind, major, minor])
        .status()
        .unwrap();
    assert!(st.success(), "mknod {kind} {}", path.display());
}

/// Boots the agent image with `drive`; `/health` must name the refused file as `what`, the
/// agent must run, and the guest must power off cleanly.
fn refused_drive_file(drive: PathBuf, what: &str) {
    let (mut vm, _dir) = boot(&Guest::with_config(AGENT), Machine::Q35, SLIRP_IP, &[drive]);
    let h = wait_error_with_agent_ready(&mut vm, what);
    assert_eq!(h["status"], "degraded", "{h:#}");
    let errors = h["errors"].to_string();
    assert!(
        errors.contains("vminit.toml"),
        "the path is not named: {errors}"
    );
    power_off_cleanly(&mut vm);
}

#[test]
fn drive_file_as_a_symlink_to_dev_zero_is_refused_on_ext4_and_iso9660() {
    for fs in [DriveFs::Ext4, DriveFs::Iso9660] {
        let tmp = tempfile::tempdir().unwrap();
        let img = hostile_drive(fs, tmp.path(), |p| symlink("/dev/zero", p).unwrap());
        refused_drive_file(img, "symlink to /dev/zero");
    }
}

#[test]
fn drive_file_as_a_fifo_is_refused_without_blocking_the_boot() {
    for fs in [DriveFs::Ext4, DriveFs::Iso9660] {
        let tmp = tempfile::tempdir().unwrap();
        let img = hostile_drive(fs, tmp.path(), |p| {
            assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
        });
        refused_drive_file(img, "FIFO");
    }
}

#[test]
fn drive_file_as_a_device_node_or_64_mib_is_refused_on_ext4_and_iso9660() {
    for fs in [DriveFs::Ext4, DriveFs::Iso9660] {
        let tmp = tempfile::tempdir().unwrap();
        let img = hostile_drive(fs, tmp.path(), |p| mknod(p, "c", "1", "5"));
        refused_drive_file(img, "character device");
        let tmp = tempfile::tempdir().unwrap();
        let img = hostile_drive(fs, tmp.path(), |p| {
            let f = std::fs::File::create(p).unwrap();
            f.set_len(64 << 20).unwrap();
        });
        refused_drive_file(img, "64 MiB");
    }
}

fn drive(tmp: &Path, text: &str) -> PathBuf {
    let out = tmp.join("drive.img");
    make_drive(
        DriveFs::Vfat,
        "VMINIT",
        &[("vminit.toml", text.as_bytes())],
        &out,
    )
    .unwrap();
    out
}

/// A service with an absurd value in every duration key (one per line, `backoff`'s two on one).
const ABSURD_SERVICE: &str = r#"
command = ["/bin/test-agent", "http", "--port", "8081"]
ready_timeout = "9999999999999999h"
stop_timeout = "9999999999999999h"
backoff = { initial = "9999999999999999h", max = "9999999999999999h" }
restart_limit = { burst = 5, interval = "9999999999999999h" }
"#;

/// Asserts that `errors` has a located refusal of every absurd duration of `text` (the file
/// at `path`): `PATH:LINE:COL: KEY: ... longer than 365 days ...`, the key under its table
/// (`services.NAME.backoff.max`, `network.carrier_timeout`).
fn every_absurd_duration_located(errors: &serde_json::Value, path: &str, text: &str) {
    let errors: Vec<&str> = errors
        .as_array()
        .map(|e| e.iter().filter_map(|m| m.as_str()).collect())
        .unwrap_or_default();
    let mut table = String::new();
    let mut found = 0;
    for (i, line) in text.lines().enumerate() {
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = format!("{t}.");
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let keys: Vec<String> = if value.starts_with('{') {
            value
                .trim_matches(|c| c == '{' || c == '}')
                .split(',')
                .filter(|kv| kv.contains("9999999999999999h"))
                .filter_map(|kv| {
                    kv.split_once(" = ")
                        .map(|(k, _)| format!("{key}.{}", k.trim()))
                })
                .collect()
        } else if value.contains("9999999999999999h") {
            vec![key.to_string()]
        } else {
            continue;
        };
        for key in keys {
            found += 1;
            let at = format!("{path}:{}:", i + 1);
            let key = format!("{table}{key}: ");
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(&at) && e.contains(&key) && e.contains("365 days")),
                "no located error for {key:?} at {at:?} in {errors:#?}"
            );
        }
    }
    assert!(found >= 5, "the text had {found} absurd durations");
}

/// A drive with an absurd value in every duration key of a service and in `[network]
/// carrier_timeout`: the drive is refused as a whole with each key located (none hides
/// another: `backoff.max` sits on the line of `backoff.initial`), the image's agent runs,
/// nothing panics. The image config's side is the next test: an image config with an error
/// runs none of its services and a drive with one is refused whole, so a boot with both
/// would have nothing running to show the init going on.
#[test]
fn absurd_durations_are_located_errors_not_a_kernel_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "[network]\ndhcp = true\ncarrier_timeout = \"9999999999999999h\"\n\n[services.extra]{ABSURD_SERVICE}"
    );
    let img = drive(tmp.path(), &text);
    let (mut vm, _dir) = boot(&Guest::with_config(AGENT), Machine::Q35, SLIRP_IP, &[img]);
    let h = wait_error_with_agent_ready(&mut vm, "backoff.max");
    every_absurd_duration_located(&h["errors"], "vminit.toml", &text);
    assert!(h["services"].get("extra").is_none(), "{h:#}");
    // The drive's network was refused with it: the cmdline's stands, no conflict.
    assert_eq!(h["network"]["source"], "cmdline", "{h:#}");
    assert_eq!(h["network"]["state"], "up", "{h:#}");
    assert_eq!(h["status"], "degraded", "{h:#}");
    let console = power_off_cleanly(&mut vm);
    assert!(!console.contains("panicked"), "{console}");
}

/// The image config with an absurd value in every duration key: refused with each key
/// located at its line in `/etc/vminit/vminit.toml`, none of its services run (REFERENCE:
/// "an invalid image config ... no service from the image runs, and the init goes on"), and
/// the services a drive adds run without it.
#[test]
fn absurd_durations_in_the_image_config_are_located_and_the_init_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let img = drive(tmp.path(), AGENT);
    let config = format!("[services.absurd]{ABSURD_SERVICE}");
    let (mut vm, _dir) = boot(&Guest::with_config(&config), Machine::Q35, SLIRP_IP, &[img]);
    let h = wait_error_with_agent_ready(&mut vm, "backoff.max");
    every_absurd_duration_located(&h["errors"], "/etc/vminit/vminit.toml", &config);
    assert!(h["services"].get("absurd").is_none(), "{h:#}");
    assert_eq!(h["status"], "degraded", "{h:#}");
    let console = power_off_cleanly(&mut vm);
    assert!(!console.contains("panicked"), "{console}");
}

/// `vminit.config=` naming a FIFO (whose read would block the boot for ever) or a symlink to
/// `/dev/zero` (whose read would never end) in the initramfs: refused by type before any
/// read, the error naming the path in `/health`, the boot going on to the services a drive
/// adds (an image config that is refused runs none of its own), and a clean power-off.
#[test]
fn a_hostile_vminit_config_file_is_refused_without_blocking_the_boot() {
    const PATH: &str = "/etc/vminit/host.toml";
    for what in ["FIFO", "symlink to /dev/zero"] {
        let tmp = tempfile::tempdir().unwrap();
        let img = drive(tmp.path(), AGENT);
        // No image config at the default path: the agent comes from the drive alone, so its
        // running proves the boot went past the refused file.
        let mut guest = Guest {
            config: None,
            ..Guest::default()
        };
        if what == "FIFO" {
            guest.fifos.push(PATH.into());
        } else {
            guest.symlinks.push((PATH.into(), "/dev/zero".into()));
        }
        let append = format!("{SLIRP_IP} vminit.config={PATH}");
        let (mut vm, _dir) = boot(&guest, Machine::Q35, &append, &[img]);
        let h = wait_error_with_agent_ready(&mut vm, what);
        let errors = h["errors"].to_string();
        assert!(
            errors.contains(&format!("{PATH}: is a")),
            "{what}: the path is not named: {errors}"
        );
        assert_eq!(h["status"], "degraded", "{h:#}");
        let console = power_off_cleanly(&mut vm);
        assert!(!console.contains("panicked"), "{what}: {console}");
    }
}

#[test]
fn a_drive_defines_the_services_of_an_image_without_a_config() {
    let tmp = tempfile::tempdir().unwrap();
    let img = drive(tmp.path(), AGENT);
    let guest = Guest {
        config: None,
        ..Guest::default()
    };
    let (mut vm, _dir) = boot(&guest, Machine::Q35, SLIRP_IP, &[img]);
    let h = vm
        .wait_health(|h| h["status"] == "ok", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h["services"]["agent"]["state"], "ready", "{h:#}");
    power_off_cleanly(&mut vm);
}

#[test]
fn a_drive_mistake_never_takes_the_image_services_down() {
    let tmp = tempfile::tempdir().unwrap();
    let img = drive(
        tmp.path(),
        "[services.typo.env]\nPROXY = \"http://proxy\"\n",
    );
    let (mut vm, _dir) = boot(&Guest::with_config(AGENT), Machine::Q35, SLIRP_IP, &[img]);
    let h = wait_error_with_agent_ready(&mut vm, "typo");
    assert_eq!(h["status"], "degraded", "{h:#}");
    power_off_cleanly(&mut vm);
}

/// ctrl-alt-delete pressed while the boot reads the config drive (a slow one: one I/O a
/// second, and the press comes once the module stage is over, the step before the drive):
/// the boot finishes its steps, starts no service, and powers off.
#[test]
fn a_shutdown_requested_during_the_boot_starts_no_service() {
    let tmp = tempfile::tempdir().unwrap();
    let img = drive(tmp.path(), "hostname = \"early\"\n");
    let (mut vm, _dir) = boot_with(
        &Guest::with_config(AGENT),
        Machine::Q35,
        SLIRP_IP,
        &[img],
        |b, _| b.drive_iops(1),
    );
    vm.wait_console("modules: loaded", boot_deadline())
        .unwrap_or_else(|e| panic!("{e}"));
    let console = power_off_cleanly(&mut vm);
    assert!(
        console.contains("shutdown requested: SIGINT received during boot"),
        "{console}"
    );
    assert!(
        !console.contains("started as pid"),
        "a service started:\n{console}"
    );
}

/// A service that traps SIGTERM and says so: its last line reaches the console before the
/// power-off, every time.
#[test]
fn a_services_last_line_on_sigterm_reaches_the_console_before_poweroff() {
    let config = r#"
[services.last-words]
command = ["/bin/test-agent", "term-last-line"]
"#;
    for round in 0..6 {
        let (mut vm, _dir) = boot(&Guest::with_config(config), Machine::Q35, SLIRP_IP, &[]);
        vm.wait_health(|h| h["status"] == "ok", boot_deadline())
            .unwrap_or_else(|e| panic!("{e}"));
        // The agent says `armed` once its handler is in place; a TERM before that kills it,
        // as it would any program, and is not what this test is about.
        vm.wait_console("[last-words] armed", boot_deadline())
            .unwrap_or_else(|e| panic!("{e}"));
        let console = power_off_cleanly(&mut vm);
        assert!(
            console.contains("[last-words] GOT-TERM"),
            "round {round}: the last line was lost:\n{console}"
        );
    }
}
