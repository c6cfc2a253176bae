//! vminit as the kernel's module helper. A driver that needs another module at run time (vfat
//! asks for `nls_cp437` at mount, the crypto API for `crypto-crc32c`, …) calls
//! `request_module()`, and the kernel runs `/proc/sys/kernel/modprobe -q -- NAME`. A guest
//! without kmod would fail those requests silently; so PID 1 points that sysctl at its own
//! binary, and this mode loads NAME (a module or an alias) with the same loader as coldplug,
//! then exits. Failures go to the kernel log (`/dev/kmsg`), the only output such a helper has.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use guest_config::Cmdline;

const SYSCTL: &str = "/proc/sys/kernel/modprobe";

/// Is this the kernel's helper call: `-q -- NAME`?
pub fn is_helper_call(args: &[String]) -> Option<&str> {
    match args {
        [q, dashdash, name] if q == "-q" && dashdash == "--" => Some(name),
        _ => None,
    }
}

/// Makes the kernel call this binary for `request_module()`.
pub fn register() {
    let exe = match std::fs::read_link("/proc/self/exe") {
        Ok(p) => p,
        Err(e) => {
            log::warn!("modprobe helper: cannot resolve /proc/self/exe: {e}");
            return;
        }
    };
    if let Err(e) = std::fs::write(SYSCTL, exe.as_os_str().as_encoded_bytes()) {
        log::warn!("modprobe helper: cannot write {SYSCTL}: {e}");
    } else {
        log::debug!("modprobe helper: {SYSCTL} = {}", exe.display());
    }
}

fn kmsg(line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/dev/kmsg"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Loads `name` for the kernel and exits 0 on success, 1 otherwise.
pub fn run(name: &str) -> ExitCode {
    let cmdline = std::fs::read("/proc/cmdline").unwrap_or_default();
    let params = Cmdline::from_bytes(&cmdline).0.module_params();
    let mut loader = modules::Loader::system(params);
    match loader.load(name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            kmsg(&format!("<4>vminit-modprobe: cannot load {name}: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
