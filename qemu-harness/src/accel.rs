//! Host facts that shape the QEMU command line: whether KVM really works
//! and the host TSC frequency for `tsc_early_khz=`.
//!
//! "Works" is proven by booting, not assumed: a `/dev/kvm` node that cannot
//! create a VM is common in containers, and on some nested hosts
//! `KVM_CREATE_VM` succeeds while the guest kernel stops early with "KVM
//! internal error ... emulation failure" (seen on this project's CI host).
//! So KVM is chosen only when the test kernel, booted under KVM without an
//! initrd, reaches its expected "Kernel panic" and QEMU ends; the verdict is
//! computed once per process.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Forces the accelerator: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "VMINIT_ACCEL";

/// `_IO(KVMIO, 0x01)` from `<linux/kvm.h>`.
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;

/// The accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// `$VMINIT_ACCEL` if set, else KVM when `kernel` boots under it (see
    /// the module doc), else TCG.
    pub fn detect(kernel: &Path) -> Accel {
        static VERDICT: OnceLock<Accel> = OnceLock::new();
        match std::env::var(ACCEL_ENV).as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("tcg") => Accel::Tcg,
            _ => *VERDICT.get_or_init(|| {
                let record = crate::kernel::cache_dir().join("accel-verdict");
                let boot_id =
                    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
                if let Some(accel) = recorded(&record, boot_id.trim()) {
                    return accel;
                }
                let accel = if kvm_creates_vm() && kvm_boots(kernel) {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                };
                // Best effort: without the record the next process probes again.
                if let Some(dir) = record.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(&record, format!("{} {}\n", boot_id.trim(), accel.name()));
                accel
            }),
        }
    }

    /// [`Accel::detect`] for a guest of `arch`. An arm64 guest runs under TCG unless
    /// `$VMINIT_ACCEL` says `kvm` (an arm64 host with KVM): the KVM probe boots an x86 kernel,
    /// and an x86 host cannot run arm64 guests under KVM anyway.
    pub fn detect_for(arch: crate::Arch, kernel: &Path) -> Accel {
        match arch {
            crate::Arch::X86_64 => Self::detect(kernel),
            crate::Arch::Aarch64 => match std::env::var(ACCEL_ENV).as_deref() {
                Ok("kvm") => Accel::Kvm,
                _ => Accel::Tcg,
            },
        }
    }

    /// The value of QEMU's `-accel`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The verdict recorded in `path` for this host boot (`<boot_id> <accel>`):
/// probing costs seconds when KVM is broken, so it is done once per boot.
fn recorded(path: &Path, boot_id: &str) -> Option<Accel> {
    let text = std::fs::read_to_string(path).ok()?;
    let (id, accel) = text.trim().split_once(' ')?;
    match (id == boot_id && !boot_id.is_empty(), accel) {
        (true, "kvm") => Some(Accel::Kvm),
        (true, "tcg") => Some(Accel::Tcg),
        _ => None,
    }
}

/// Opens `/dev/kvm` read-write and asks it for a VM; the VM fd is closed at once.
pub fn kvm_creates_vm() -> bool {
    let Ok(kvm) = File::options().read(true).write(true).open("/dev/kvm") else {
        return false;
    };
    // SAFETY: KVM_CREATE_VM takes an integer machine type (0 = default) and
    // returns a new fd or -1; it does not touch our memory.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM as _, 0 as libc::c_ulong) };
    if vm < 0 {
        return false;
    }
    // SAFETY: `vm` was just returned by the kernel and is owned by nobody else.
    unsafe { libc::close(vm) };
    true
}

/// Boots `kernel` under KVM with no initrd and no root: a working KVM gets
/// to "Kernel panic" (then `panic=-1` and `-no-reboot` end QEMU) in about a
/// second; a broken one stops or crawls. Bounded at 8 s.
pub fn kvm_boots(kernel: &Path) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let console = dir.path().join("console");
    let stderr_path = dir.path().join("stderr");
    let Ok(stderr) = File::create(&stderr_path) else {
        return false;
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-M", "q35", "-accel", "kvm", "-cpu", "host", "-m", "128"])
    .arg("-kernel")
    .arg(kernel)
    .args(["-append", "console=ttyS0 panic=-1"])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(stderr);
    let Ok(mut child) = crate::spawn::spawn_tied(cmd) else {
        return false;
    };
    let start = Instant::now();
    let ended = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            // On an internal error QEMU pauses the guest rather than exit.
            Ok(None) if kvm_error(&stderr_path) => break false,
            Ok(None) if start.elapsed() < Duration::from_secs(8) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break false,
        }
    };
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read(&console).unwrap_or_default();
    ended && String::from_utf8_lossy(&text).contains("Kernel panic")
}

fn kvm_error(stderr: &Path) -> bool {
    std::fs::read_to_string(stderr).is_ok_and(|t| t.contains("KVM internal error"))
}

/// The host TSC frequency in kHz, from `/proc/cpuinfo` (`cpu MHz`). Under TCG
/// the guest reads the host TSC, so this is the guest's rate too.
pub fn host_tsc_khz() -> Option<u64> {
    parse_cpu_mhz(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// The first `cpu MHz : N.NNN` of a cpuinfo text, in kHz.
pub fn parse_cpu_mhz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let value = line.split(':').nth(1)?.trim();
    let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
    let khz_frac: String = frac.chars().chain("000".chars()).take(3).collect();
    let khz = int.parse::<u64>().ok()? * 1000 + khz_frac.parse::<u64>().ok()?;
    (khz > 0).then_some(khz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_record_is_per_boot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        assert_eq!(recorded(&path, "b1"), None);
        std::fs::write(&path, "b1 tcg\n").unwrap();
        assert_eq!(recorded(&path, "b1"), Some(Accel::Tcg));
        assert_eq!(recorded(&path, "b2"), None);
        std::fs::write(&path, "b1 kvm\n").unwrap();
        assert_eq!(recorded(&path, "b1"), Some(Accel::Kvm));
    }

    #[test]
    fn cpu_mhz_to_khz() {
        let text = "processor\t: 0\ncpu MHz\t\t: 2599.998\ncache size\t: 1 KB\n";
        assert_eq!(parse_cpu_mhz(text), Some(2_599_998));
        assert_eq!(parse_cpu_mhz("cpu MHz : 3000\n"), Some(3_000_000));
        assert_eq!(parse_cpu_mhz("bogomips : 5000\n"), None);
    }
}
