//! A real image (issue 18): the Debian bookworm rootfs that `scripts/debian-rootfs.sh` caches
//! (mmdebstrap minbase with `linux-image-amd64` and busybox, no systemd), with the vminit
//! just built at `/sbin/init`, booted with the rootfs's own kernel and initramfs-tools
//! initrd, `root=/dev/vda` and `ip=` on the cmdline. One boot: health ok with the agent
//! ready, then ctrl-alt-delete and a filesystem `e2fsck -fn` finds clean.

use std::process::Command;

use qemu_harness::{DebianRootfs, GuestFile};

const CONFIG: &str = r#"
[services.agent]
command = ["/usr/local/bin/test-agent", "http", "--port", "8080"]
after = ["network"]
ready = { http = "http://127.0.0.1:8080/health" }
"#;

#[test]
fn debian_rootfs_boots_vminit_ready_and_clean_after_ctrl_alt_del() {
    let rootfs = DebianRootfs::cached().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let static_dir = qemu_harness::static_dir();
    let img = rootfs
        .image(
            &dir.path().join("rootfs.img"),
            &[
                GuestFile::host("/sbin/init", static_dir.join("vminit"), 0o755),
                GuestFile::host(
                    "/usr/local/bin/test-agent",
                    static_dir.join("test-agent"),
                    0o755,
                ),
                GuestFile::bytes("/etc/vminit/vminit.toml", CONFIG, 0o644),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = qemu_harness::VmBuilder::new()
        .machine(qemu_harness::Machine::Q35)
        .kernel(rootfs.kernel().unwrap_or_else(|e| panic!("{e}")))
        .kernel_kind(qemu_harness::KernelKind::BzImage)
        .memory_mb(512)
        .initrd(rootfs.initrd())
        .drive(&img)
        .forward(8080)
        // No device named: vminit takes the VM's single Ethernet interface, whatever name
        // the initrd's udev gave it (enp0s2 here, not eth0).
        .append("root=/dev/vda rw ip=10.0.2.15::10.0.2.2:255.255.255.0:::off")
        .launch()
        .expect("launch QEMU");
    let h = vm
        .wait_health(
            |h| h["status"] == "ok" && h["services"]["agent"]["state"] == "ready",
            vminit_tests::boot_deadline(),
        )
        .unwrap_or_else(|e| panic!("health ok with the agent ready: {e}"));
    assert_eq!(h["network"]["state"], "up", "{h:#}");
    let (code, body) = vm.get_port(8080, "/health").expect("the agent's /health");
    assert_eq!(code, 200, "{body}");
    let console = vminit_tests::power_off_cleanly(&mut vm);
    // A healthy boot of a real image says nothing at error level (drivers that find no
    // hardware are info lines).
    let errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("vminit ERROR"))
        .collect();
    assert!(
        errors.is_empty(),
        "error lines on a healthy boot:\n{console}"
    );
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn after ctrl-alt-delete: {}\n{}\nconsole:\n{console}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}
