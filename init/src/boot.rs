//! The boot sequence, in the order its steps depend on each other:
//! mounts and console → cmdline → image config → health endpoint → modules (coldplug) →
//! config drive → network (its own thread) → services → event loop.
//!
//! Every step that fails is logged on the console and added to the health `errors`; the
//! sequence always goes on to the event loop, because a PID 1 that stops helps nobody: the
//! host must still be able to poll `/health` and read why. Off PID 1 ([`run_host`]) only the
//! config, the health endpoint and the services run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use guest_config::{
    AddressMethod, Cmdline, DriveConfig, ImageConfig, NetworkPlan, Settings, VminitArgs,
};
use log::LevelFilter;
use netconf::NetworkState;
use supervisor::Supervisor;

use crate::event_loop::{EventLoop, Published};
use crate::health::{self, HealthDoc};
use crate::report::modules_json;
use crate::{drive as drive_mount, logger, mounts, sys};

pub const DEFAULT_CONFIG: &str = "/etc/vminit/vminit.toml";

/// Boot as PID 1. Never returns.
pub fn run_pid1(argv: &[String]) -> ! {
    let init_start_ms = sys::boottime_ms();
    let (mount_errors, mount_warnings) = mounts::mount_early();
    let console = sys::ensure_console_stdio();
    logger::init(LevelFilter::Info);
    let signals = EventLoop::install_signals();
    crate::panic::install_hook();
    log::info!("vminit {} starting as PID 1", env!("CARGO_PKG_VERSION"));
    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            crate::panic::fallback_loop(guest_config::ShutdownMode::default());
        }
    };
    let mut errors: Vec<String> = Vec::new();
    if let Err(e) = console {
        log::warn!("cannot attach /dev/console to stdin/stdout/stderr: {e}");
    }
    for e in mount_errors {
        log::error!("{e}");
        errors.push(e.to_string());
    }
    for w in mount_warnings {
        log::warn!("{w} (optional; going on)");
    }
    if !argv.is_empty() {
        // The kernel hands init every cmdline word it does not know; they are not for us.
        log::warn!(
            "ignoring arguments the kernel passed to init: {}",
            argv.join(" ")
        );
    }

    let cmdline_text = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|e| {
        let msg = format!("cannot read /proc/cmdline: {e}; using defaults");
        log::error!("{msg}");
        errors.push(msg);
        String::new()
    });
    let cmdline = Cmdline::parse(&cmdline_text);
    let args = VminitArgs::from_cmdline(&cmdline);
    if let Some(level) = args.log {
        logger::init(level.to_level_filter());
    }
    for w in &args.warnings {
        log::warn!("{w}");
    }
    for e in &args.errors {
        log::error!("{e}");
        errors.push(e.to_string());
    }
    crate::modprobe::register();
    if let Err(e) = sys::disable_cad_reboot() {
        log::warn!(
            "cannot disable the kernel's ctrl-alt-del reboot: {}",
            e.desc()
        );
    }

    let (config_path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let image = load_image(&config_path, explicit, &mut errors);
    let settings = Settings::resolve(&args, image.as_ref());
    logger::init(settings.log.to_level_filter());

    let shared = health::Shared::new(HealthDoc::starting(init_start_ms, true));
    start_health(&settings, &shared, &mut errors);

    // Modules: what the devices need, then what the config asks for.
    let mut params = cmdline.module_params();
    if let Some(img) = &image {
        for module in img.modules.options.keys() {
            params
                .entry(module.replace('-', "_"))
                .or_default()
                .extend(img.modules.params(module));
        }
    }
    let mut loader = modules::Loader::system(params);
    if let Err(e) = loader.coldplug(&modules::Coldplug::default()) {
        log::error!("{e}");
        errors.push(e.to_string());
    }
    let extra: Vec<String> = args
        .modules
        .iter()
        .chain(image.iter().flat_map(|i| i.modules.load.iter()))
        .cloned()
        .collect();
    for m in &extra {
        if let Err(e) = loader.load(m) {
            log::error!("module {m}: {e}");
            errors.push(format!("module {m}: {e}"));
        }
    }
    let modules_ms = sys::boottime_ms();

    let (drive_cfg, drive_error) = drive_mount::find_and_read(&mut loader, &mut errors);
    let report = loader.into_report();
    crate::report::log_module_report(&report);
    let diagnosis = modules::diagnose_network(&report);

    let drive_ref = drive_cfg.as_ref().map(|(d, f)| (d, f.describe()));
    let arbitrated = guest_config::arbitrate(
        cmdline.get("ip"),
        drive_ref.as_ref().map(|(d, desc)| (*d, desc.as_str())),
    );
    let (plan, initial, network_configured) = match arbitrated {
        Ok(plan) => {
            let configured = plan
                .as_ref()
                .is_some_and(|p| p.method != AddressMethod::Off);
            let state = NetworkState {
                source: plan.as_ref().map(|p| p.source).unwrap_or_default(),
                state: if configured {
                    netconf::LinkState::Down
                } else {
                    netconf::LinkState::Unconfigured
                },
                ..NetworkState::default()
            };
            (plan, state, configured)
        }
        Err(e) => {
            // Conflict or malformed ip=: nothing is applied, and the state says why.
            let msg = e.to_string();
            log::error!("{msg}");
            errors.push(msg.clone());
            let state = NetworkState {
                state: netconf::LinkState::Error,
                error: Some(msg),
                ..NetworkState::default()
            };
            (None, state, true)
        }
    };
    // `lo` comes up here, whatever the network source, before the network thread and the
    // services start side by side: local services and their readiness probes on 127.0.0.1
    // need it, and one that binds it at once must not race the network thread (whose own
    // step then finds it up, and brings it back on a retry).
    match netconf::loopback_up() {
        Ok(true) => log::debug!("network: lo up"),
        Ok(false) => {}
        Err(e) => log::warn!("{e}"),
    }
    // With no network source at all, the drive's hostname is still the guest's name.
    if plan.is_none() && initial.state == netconf::LinkState::Unconfigured {
        if let Some(h) = drive_cfg.as_ref().and_then(|(d, _)| d.hostname.clone()) {
            if let Err(e) = nix::unistd::sethostname(&h) {
                log::warn!("sethostname {h:?}: {}", e.desc());
            }
        }
    }
    finish_boot(BootParts {
        signals,
        pid1: true,
        shared,
        settings,
        errors,
        image,
        drive: drive_cfg.map(|(d, _)| d),
        drive_error,
        network: Arc::new(Mutex::new(initial)),
        network_configured,
        plan,
        diagnosis,
        modules: modules_json(&report),
        modules_ms: Some(modules_ms),
        run_dir: PathBuf::from("/run/vminit"),
    })
    .never()
}

/// What the boot sequence hands to the event loop.
pub(crate) struct BootParts {
    pub(crate) signals: signal_hook_mio::v1_0::Signals,
    pub(crate) pid1: bool,
    pub(crate) shared: Arc<health::Shared>,
    pub(crate) settings: Settings,
    pub(crate) errors: Vec<String>,
    pub(crate) image: Option<ImageConfig>,
    pub(crate) drive: Option<DriveConfig>,
    pub(crate) drive_error: bool,
    pub(crate) network: Arc<Mutex<NetworkState>>,
    pub(crate) network_configured: bool,
    pub(crate) plan: Option<NetworkPlan>,
    pub(crate) diagnosis: Option<String>,
    pub(crate) modules: serde_json::Value,
    pub(crate) modules_ms: Option<u64>,
    pub(crate) run_dir: PathBuf,
}

/// Returned by [`finish_boot`] off PID 1; as PID 1 the loop never ends.
pub(crate) struct Finished;

impl Finished {
    fn never(self) -> ! {
        // The loop returned as PID 1, which it must not: keep the process (and with it the
        // health thread) alive rather than panic the kernel.
        log::error!("event loop ended as PID 1; staying alive");
        loop {
            std::thread::park();
        }
    }
}

/// Starts the network thread and the services, then runs the event loop.
pub(crate) fn finish_boot(mut p: BootParts) -> Finished {
    let mut doc = HealthDoc::starting(p.shared.doc().boot.init_start_ms, p.pid1);
    doc.modules = p.modules;
    doc.boot.modules_ms = p.modules_ms;
    let (mut el, waker) = match EventLoop::new(
        p.signals,
        p.pid1,
        Arc::clone(&p.shared),
        Published {
            doc,
            network: Arc::clone(&p.network),
            network_configured: p.network_configured,
            config_drive_error: p.drive_error,
        },
        p.settings.shutdown,
    ) {
        Ok(x) => x,
        Err(e) => {
            log::error!("cannot create the event loop: {e}");
            crate::panic::publish_failure(&p.shared, &format!("event loop: {e}"));
            if p.pid1 {
                crate::panic::fallback_loop(p.settings.shutdown);
            }
            return Finished;
        }
    };

    let _network_thread = p.plan.take().and_then(|plan| {
        log::info!(
            "network: source {} configures {}",
            plan.source,
            plan.interface
        );
        let mut env = netconf::Env::system();
        let diagnosis = p.diagnosis.take();
        env.driver_diagnosis = Some(Box::new(move || diagnosis.clone()));
        let w = Arc::clone(&waker);
        match netconf::spawn(
            plan,
            env,
            Arc::clone(&p.network),
            Box::new(move || {
                let _ = w.wake();
            }),
        ) {
            Ok(handle) => Some(handle),
            Err(e) => {
                let msg = format!("network: cannot start the network thread: {e}");
                log::error!("{msg}");
                p.errors.push(msg);
                None
            }
        }
    });

    // A drive that does not merge is refused and the image's services run alone.
    let resolved = guest_config::resolve_services(p.image.as_ref(), p.drive.as_ref());
    for e in &resolved.drive_errors {
        log::error!("config: {e}");
        p.errors.push(format!("config: {e}"));
    }
    let services = resolved.services;
    let console: Box<dyn std::io::Write + Send> = match open_service_console(p.pid1) {
        Ok(f) => Box::new(f),
        Err(e) => {
            log::warn!("cannot open the console for service output ({e}); using stderr");
            Box::new(std::io::stderr())
        }
    };
    let mut opts = supervisor::Options::new(console);
    opts.notify_dir = p.run_dir.clone();
    if let Err(e) = std::fs::create_dir_all(&opts.notify_dir) {
        log::warn!("cannot create {}: {e}", opts.notify_dir.display());
    }
    el.published_mut().doc.errors = std::mem::take(&mut p.errors);
    match Supervisor::new(services, opts) {
        Ok(sup) => el.start_services(sup),
        Err(e) => {
            log::error!("services: {e}");
            el.published_mut().doc.errors.push(format!("services: {e}"));
        }
    }
    let shared = Arc::clone(&p.shared);
    // A bug in the loop must not take PID 1 (and the kernel) down with it.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| el.run())).is_err() {
        crate::panic::publish_failure(
            &shared,
            "event loop panicked (a bug in vminit); see the console",
        );
        if p.pid1 {
            crate::panic::fallback_loop(p.settings.shutdown);
        }
    }
    Finished
}

/// Service output goes to the console through its own non-blocking file description, so a
/// slow serial line makes the supervisor drop lines (counted) instead of blocking the loop.
fn open_service_console(pid1: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = if pid1 {
        "/dev/console"
    } else {
        "/proc/self/fd/2"
    };
    std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}

/// Reads the image config. A missing default file means "no services" (an image may only want
/// the network and the health endpoint); a missing file named with `vminit.config=` or
/// `--config`, or an invalid one, is an error listed in `/health`.
pub(crate) fn load_image(
    path: &Path,
    explicit: bool,
    errors: &mut Vec<String>,
) -> Option<ImageConfig> {
    if !path.exists() && !explicit {
        log::info!("no image config at {}: no services", path.display());
        return None;
    }
    match ImageConfig::load(path) {
        Ok(c) => {
            log::info!(
                "image config {}: {} service(s)",
                path.display(),
                c.services.len()
            );
            Some(c)
        }
        Err(errs) => {
            for e in errs {
                log::error!("config: {e}");
                errors.push(format!("config: {e}"));
            }
            None
        }
    }
}

fn start_health(settings: &Settings, shared: &Arc<health::Shared>, errors: &mut Vec<String>) {
    match health::spawn(
        settings.health,
        Arc::clone(shared),
        health::Priority::YieldToBoot,
    ) {
        Ok(addr) => log::info!("health endpoint on http://{addr}/health"),
        Err(e) => {
            let msg = format!("health endpoint: cannot listen on {}: {e}", settings.health);
            log::error!("{msg}");
            errors.push(msg);
        }
    }
}
