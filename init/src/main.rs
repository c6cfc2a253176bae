//! `vminit`: the guest's PID 1, or a plain supervisor when run with any other PID.
//!
//! This crate owns the boot sequence ([`boot`]) and the event loop ([`event_loop`]) only, plus
//! the pieces only an init has: early mounts, the console logger, the health endpoint,
//! shutdown. Configuration grammars live in `guest-config`, services in `supervisor`, the
//! network in `netconf`, kernel modules in `modules`. The only `unsafe` code is in [`sys`].
// PID 1 code, where an overflow panic is a kernel panic: arithmetic is checked or saturating,
// and a provably bounded index allowed narrowly with a `// why:` (docs/DESIGN.md).
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]
#![deny(unsafe_code)]

mod args;
mod boot;
mod cgroups;
mod event_loop;
mod guard;
mod health;
mod host;
mod late_modules;
mod logger;
mod modprobe;
mod mounts;
mod panic;
mod power_button;
mod prefetch;
mod publish;
mod report;
mod shutdown;
mod status;
#[allow(unsafe_code)]
mod sys;

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The PID is checked before argv is looked at: as PID 1, argv holds whatever cmdline words
    // the kernel did not know, as raw bytes, and nothing in them may stop the boot.
    if std::process::id() == 1 {
        let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
        // Never returns: PID 1 must not exit. Each part runs under its own guard; this one
        // is the last resort for a panic between them (the hook has logged it).
        let _ = guard::catch("the boot sequence", || boot::run_pid1(&argv));
        panic::fallback_loop(guest_config::ShutdownMode::default());
    }
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let argv = match args::utf8(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vminit: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Some(name) = modprobe::is_helper_call(&argv) {
        return modprobe::run(name);
    }
    match args::parse(&argv) {
        Ok(args::Command::Version) => {
            println!("vminit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(args::Command::Help) => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Ok(args::Command::CheckConfig(path)) => host::check_config(&path),
        Ok(args::Command::Run(opts)) => host::run_host(opts),
        Err(e) => {
            eprintln!("vminit: {e}\n{}", args::USAGE);
            ExitCode::from(2)
        }
    }
}
