//! `vminit` off PID 1: `--check-config`, and the plain supervisor mode (a child subreaper
//! with the health endpoint and the services; no mounts, modules or network).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use guest_config::{Settings, VminitArgs};
use log::LevelFilter;
use netconf::NetworkState;

use crate::args::HostOptions;
use crate::boot::{finish_boot, load_image, BootParts, DEFAULT_CONFIG};
use crate::event_loop::EventLoop;
use crate::health::{self, HealthDoc};
use crate::{logger, sys};

/// `vminit --check-config FILE`.
pub fn check_config(path: &Path) -> ExitCode {
    match guest_config::check_config_file(path) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errs.len());
            ExitCode::FAILURE
        }
    }
}

/// Off PID 1: a plain supervisor (child subreaper) with the health endpoint. A config that
/// does not load is fatal here (exit 1), unlike as PID 1: a service manager above us reports it.
pub fn run_host(opts: HostOptions) -> ExitCode {
    let level = match opts.log.as_deref().map(logger::parse_level) {
        Some(Some(l)) => l,
        Some(None) => {
            eprintln!("vminit: --log: expected error|warn|info|debug|trace");
            return ExitCode::from(2);
        }
        None => LevelFilter::Info,
    };
    logger::init(level);
    crate::panic::install_hook();
    let signals = match EventLoop::install_signals() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = sys::set_child_subreaper() {
        log::warn!(
            "cannot become a child subreaper: {}; orphans will not be reaped",
            e.desc()
        );
    }
    let path = opts.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let mut errors = Vec::new();
    let image = load_image(&path, true, &mut errors);
    if !errors.is_empty() {
        return ExitCode::FAILURE;
    }
    let args = VminitArgs {
        health: opts.health,
        ..VminitArgs::default()
    };
    let settings = Settings::resolve(&args, image.as_ref());
    let shared = health::Shared::new(HealthDoc::starting(sys::boottime_ms(), false));
    if let Err(e) = health::spawn(
        settings.health,
        Arc::clone(&shared),
        health::Priority::Normal,
    ) {
        log::error!("health endpoint: cannot listen on {}: {e}", settings.health);
        return ExitCode::FAILURE;
    }
    log::info!(
        "vminit {} supervising (not PID 1), health on {}",
        env!("CARGO_PKG_VERSION"),
        settings.health
    );
    let state = NetworkState {
        state: netconf::LinkState::Unconfigured,
        ..NetworkState::default()
    };
    finish_boot(BootParts {
        signals,
        pid1: false,
        shared,
        settings,
        errors,
        image,
        drive: None,
        drive_error: false,
        network: Arc::new(Mutex::new(state)),
        network_configured: false,
        plan: None,
        diagnosis: None,
        modules: serde_json::json!({"loaded": [], "failed": [], "unmatched": []}),
        modules_ms: None,
        run_dir: opts.run_dir.unwrap_or_else(|| PathBuf::from("/run/vminit")),
    });
    ExitCode::SUCCESS
}
