//! `vminit` off PID 1: `--check-config`, and the plain supervisor mode (a child subreaper
//! with the health endpoint and the services; no mounts, modules or network).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use guest_config::{LogLevel, Settings, VminitArgs};

use crate::args::HostOptions;
use crate::boot::{load_image, Boot, ImageSource, LoopParts, NetworkStage, DEFAULT_CONFIG};
use crate::event_loop::EventLoop;
use crate::health::HealthDoc;
use crate::report::ModulesDoc;
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
    let level = match opts.log.as_deref().map(str::parse::<LogLevel>) {
        Some(Ok(l)) => l,
        Some(Err(())) => {
            eprintln!("vminit: --log: expected {}", LogLevel::NAMES);
            return ExitCode::from(2);
        }
        None => LogLevel::Info,
    };
    logger::init(level.to_level_filter());
    if let Ok(f) = sys::open_console(false) {
        logger::attach_console(f);
    }
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
    let mut boot = Boot::new(
        signals,
        false,
        HealthDoc::starting(sys::boottime_ms(), false),
    );
    let path = opts.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let Some(image) = load_image(&mut boot, &path, ImageSource::Cli) else {
        return ExitCode::FAILURE;
    };
    let services = match guest_config::merge_services(Some(&image), None) {
        Ok(s) => s,
        Err(errs) => {
            for e in errs {
                log::error!("config: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let args = VminitArgs {
        health: opts.health,
        ..VminitArgs::default()
    };
    let settings = Settings::resolve(&args, Some(&image));
    boot.start_health(&settings);
    log::info!(
        "vminit {} supervising (not PID 1), health on {}",
        env!("CARGO_PKG_VERSION"),
        settings
            .health
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    boot.run_loop(LoopParts {
        settings,
        network: NetworkStage::default(),
        services,
        modules: ModulesDoc::default(),
        modules_ms: None,
        modules_rest: None,
        run_dir: opts.run_dir.unwrap_or_else(|| PathBuf::from("/run/vminit")),
    });
    ExitCode::SUCCESS
}
