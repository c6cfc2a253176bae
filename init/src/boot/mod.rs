//! The boot sequence, as PID 1, in the order its steps depend on each other. [`run_pid1`] reads
//! as the table of contents; each step is a method of [`Boot`], run under a guard
//! ([`Boot::step`]): a step that fails records why with [`Boot::fail`] (console line and
//! `/health` `errors[]`), a step that panics falls back to its default, and the sequence always
//! goes on to the event loop, because a PID 1 that stops helps nobody: the host must still be
//! able to poll `/health` and read why. A shutdown request that arrives during the boot (a
//! signal, or a press of a power button, opened as soon as its driver is loaded) is honoured:
//! no service is started after it, and a second one skips the grace periods.
//!
//! Off PID 1 ([`crate::host`]) only the config, the health endpoint and the services run,
//! through the same [`Boot::run_loop`].

mod drive;
mod steps;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Display;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use guest_config::{NetworkPlan, ServiceConfig, Settings};
use log::LevelFilter;
use netconf::NetworkState;
use signal_hook_mio::v1_0::Signals;
use supervisor::Supervisor;

use crate::event_loop::{EventLoop, Published, SHUTDOWN_SIGNALS};
use crate::health::{self, CgroupsDoc, HealthDoc};
use crate::report::ModulesDoc;
use crate::{guard, logger, mounts, sys};

pub use steps::{load_image, ImageSource};

pub const DEFAULT_CONFIG: &str = "/etc/vminit/vminit.toml";

/// Boot as PID 1. Never returns.
pub fn run_pid1(argv: &[OsString]) -> ! {
    let init_start_ms = sys::boottime_ms();
    let Some(mut boot) = Boot::start_pid1(init_start_ms) else {
        crate::panic::fallback_loop(guest_config::ShutdownMode::default());
    };
    boot.step("ignoring argv", |b| b.ignore_argv(argv));
    let cmdline = boot.step("reading the kernel cmdline", Boot::read_cmdline);
    let args = boot.step("reading the vminit.* keys", |b| b.vminit_args(&cmdline));
    boot.step("registering the module helper", |_| {
        crate::modprobe::register()
    });
    let image = boot.step("loading the image config", |b| b.image_config(&args));
    let settings = Settings::resolve(&args, image.as_ref());
    logger::init(settings.log.to_level_filter());
    let prefetched = programs(image.iter().flat_map(|i| i.services.values()), &[]);
    boot.step("prefetching the services' programs", |_| {
        crate::prefetch::spawn(prefetched.clone())
    });
    boot.step("starting the health endpoint", |b| {
        b.start_health(&settings)
    });
    let mut modules = boot.step("loading modules", |b| {
        b.load_modules(&cmdline, &args, image.as_ref())
    });
    boot.step("opening the power buttons", |b| {
        b.buttons = crate::power_button::Buttons::watch()
    });
    boot.step("starting the vsock health listener", |b| {
        b.start_vsock_health(&settings)
    });
    let drive = boot.step("reading the config drive", |b| {
        b.config_drive(modules.loader.as_mut(), image.as_ref())
    });
    boot.step("prefetching the drive's programs", |_| {
        crate::prefetch::spawn(programs(drive.services.values(), &prefetched))
    });
    let modules = boot.step("reporting modules", |_| modules.finish());
    let network = boot.step("choosing the network source", |b| {
        b.network_source(&cmdline, drive.config.as_ref(), modules.diagnosis.clone())
    });
    boot.step("bringing up lo", |b| {
        b.loopback_and_hostname(&network, &drive)
    });
    boot.run_loop(LoopParts {
        settings,
        network,
        services: drive.services,
        modules: modules.doc,
        modules_ms: Some(modules.ms),
        modules_rest: modules.rest,
        run_dir: PathBuf::from("/run/vminit"),
    })
    .never()
}

/// The programs (first command words) of `services`, each once, leaving out `done`.
fn programs<'a>(services: impl Iterator<Item = &'a ServiceConfig>, done: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in services.filter_map(|s| s.command.first()) {
        if !done.contains(p) && !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// A press of a power button since the last read, as a shutdown request of the boot.
fn press_request(buttons: &mut crate::power_button::Buttons) -> Option<String> {
    let path = buttons.any_pressed()?;
    Some(format!("power button ({}) during boot", path.display()))
}

/// The boot in progress: what every step shares.
pub struct Boot {
    pub(crate) pid1: bool,
    signals: Signals,
    pub(crate) shared: Arc<health::Shared>,
    errors: Vec<String>,
    /// The shutdown requests read during the boot ("SIGTERM received"), for the loop.
    shutdown: Vec<String>,
    /// The power buttons, opened once their drivers are loaded, read between the steps.
    pub(crate) buttons: crate::power_button::Buttons,
}

/// What the boot hands to the event loop.
pub struct LoopParts {
    pub settings: Settings,
    pub network: NetworkStage,
    pub services: BTreeMap<String, ServiceConfig>,
    pub modules: ModulesDoc,
    pub modules_ms: Option<u64>,
    /// The loader for the rest of the drivers, loaded in the background once the status has
    /// left `starting` ([`crate::late_modules`]); `None` when there is no rest to load.
    pub modules_rest: Option<steps::SystemLoader>,
    pub run_dir: PathBuf,
}

/// The network source chosen, and the state the document starts with.
pub struct NetworkStage {
    pub plan: Option<NetworkPlan>,
    pub initial: NetworkState,
    /// A source is configured (so `ok` needs it up), or in error.
    pub configured: bool,
    /// The module loader's account of a missing NIC driver, for the no-interface error.
    pub diagnosis: Option<String>,
}

impl Default for NetworkStage {
    /// No source: nothing to configure, nothing to wait for.
    fn default() -> Self {
        NetworkStage {
            plan: None,
            initial: NetworkState {
                state: netconf::LinkState::Unconfigured,
                ..NetworkState::default()
            },
            configured: false,
            diagnosis: None,
        }
    }
}

/// Returned by [`Boot::run_loop`] off PID 1; as PID 1 the loop never ends.
pub struct Finished;

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

impl Boot {
    /// The first things PID 1 does: signal handlers (the kernel drops signals to PID 1 that
    /// have no handler) and ctrl-alt-del as a signal rather than an immediate reboot, so that a
    /// shutdown request at any point of the boot is heard; then the early mounts, the console,
    /// the logger, the panic hook. `None` only if the signal handlers cannot be installed.
    fn start_pid1(init_start_ms: u64) -> Option<Boot> {
        let signals = EventLoop::install_signals();
        let cad = sys::disable_cad_reboot();
        let (mount_errors, mount_warnings) = mounts::mount_early();
        let console = sys::ensure_console_stdio();
        logger::init(LevelFilter::Info);
        match sys::open_console(true) {
            Ok(f) => logger::attach_console(f),
            Err(e) => log::warn!("cannot open /dev/console for log lines ({e}); using stderr"),
        }
        crate::panic::install_hook();
        log::info!("vminit {} starting as PID 1", env!("CARGO_PKG_VERSION"));
        let signals = match signals {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot install signal handlers: {e}");
                return None;
            }
        };
        let mut boot = Boot::new(signals, true, HealthDoc::starting(init_start_ms, true));
        if let Err(e) = console {
            log::warn!("cannot attach /dev/console to stdin/stdout/stderr: {e}");
        }
        if let Err(e) = cad {
            log::warn!(
                "cannot disable the kernel's ctrl-alt-del reboot: {}",
                e.desc()
            );
        }
        for e in mount_errors {
            boot.fail(e);
        }
        for w in mount_warnings {
            log::warn!("{w} (optional; going on)");
        }
        Some(boot)
    }

    pub fn new(signals: Signals, pid1: bool, doc: HealthDoc) -> Boot {
        Boot {
            pid1,
            signals,
            shared: health::Shared::new(doc),
            errors: Vec::new(),
            shutdown: Vec::new(),
            buttons: crate::power_button::Buttons::default(),
        }
    }

    /// Logs an error on the console and lists it in `/health` `errors[]`.
    pub fn fail(&mut self, msg: impl Display) {
        let msg = msg.to_string();
        log::error!("{msg}");
        self.errors.push(msg);
    }

    /// Runs one step under the guard, after reading any signal that arrived (a shutdown
    /// request is remembered). A panic in the step is recorded and its default used.
    pub fn step<T: Default>(&mut self, what: &str, f: impl FnOnce(&mut Boot) -> T) -> T {
        self.read_signals();
        match guard::catch(what, || f(self)) {
            Ok(v) => v,
            Err(msg) => {
                self.fail(msg);
                T::default()
            }
        }
    }

    /// Signals pending in the handler's pipe and presses of the power buttons: a shutdown
    /// request is kept for the loop; SIGCHLD needs nothing (the loop reaps when it starts).
    fn read_signals(&mut self) {
        let mut requests: Vec<String> = self
            .signals
            .pending()
            .filter(|sig| SHUTDOWN_SIGNALS.contains(sig))
            .map(|sig| {
                format!(
                    "{} received during boot",
                    crate::event_loop::signal_name(sig)
                )
            })
            .collect();
        requests.extend(press_request(&mut self.buttons));
        for what in requests {
            if self.shutdown.is_empty() {
                log::info!("shutdown requested: {what}; finishing the boot steps that cannot be skipped, starting no service");
            }
            self.shutdown.push(what);
        }
    }

    /// Starts the network thread and the services, then runs the event loop.
    pub fn run_loop(mut self, p: LoopParts) -> Finished {
        self.read_signals();
        let mut doc = HealthDoc::starting(self.shared.doc().boot.init_start_ms, self.pid1);
        doc.modules = p.modules;
        doc.boot.modules_ms = p.modules_ms;
        let network = Arc::new(Mutex::new(p.network.initial));
        let published = Published {
            doc,
            network: Arc::clone(&network),
            network_configured: p.network.configured,
        };
        let (pid1, shared) = (self.pid1, Arc::clone(&self.shared));
        let created = EventLoop::new(self.signals, pid1, shared, published, p.settings.shutdown);
        let (mut el, waker) = match created {
            Ok(x) => x,
            Err(e) => {
                log::error!("cannot create the event loop: {e}");
                crate::panic::publish_failure(&self.shared, &format!("event loop: {e}"));
                if self.pid1 {
                    crate::panic::fallback_loop(p.settings.shutdown);
                }
                return Finished;
            }
        };
        // Started now so that it can hear the status leave `starting`; it waits for that.
        let stopping = !self.shutdown.is_empty();
        let rest_started = match (p.modules_rest, stopping) {
            (Some(loader), false) => {
                match crate::late_modules::spawn(loader, Arc::clone(&self.shared)) {
                    Ok(()) => true,
                    Err(e) => {
                        log::warn!(
                            "modules: cannot start the thread for the rest of the drivers: {e}"
                        );
                        false
                    }
                }
            }
            _ => false,
        };
        el.published_mut().doc.modules.rest_pending = rest_started;
        let _network_thread = match (p.network.plan, stopping) {
            (Some(plan), false) => {
                let waker = Arc::clone(&waker);
                let shared = Arc::clone(&self.shared);
                steps::spawn_network(
                    plan,
                    p.network.diagnosis,
                    network,
                    waker,
                    shared,
                    &mut self.errors,
                )
            }
            _ => None,
        };
        let console: Box<dyn std::io::Write + Send> = match sys::open_console(self.pid1) {
            Ok(f) => Box::new(f),
            Err(e) => {
                log::warn!("cannot open the console for service output ({e}); using stderr");
                Box::new(std::io::stderr())
            }
        };
        let mut opts = supervisor::Options::new(console);
        let (pid1, services, errors) = (self.pid1, &p.services, &mut self.errors);
        let cgroups = guard::catch("setting up the cgroups", || {
            crate::cgroups::set_up(pid1, services, errors)
        });
        opts.cgroups = cgroups.unwrap_or_else(|msg| {
            log::error!("{msg}");
            self.errors.push(msg);
            None
        });
        el.published_mut().doc.cgroups = opts.cgroups.as_ref().map(|h| CgroupsDoc {
            controllers: h.enabled().to_vec(),
            missing: h.missing().to_vec(),
        });
        opts.notify_dir = p.run_dir;
        opts.waker = Some(waker);
        if let Err(e) = std::fs::create_dir_all(&opts.notify_dir) {
            log::warn!("cannot create {}: {e}", opts.notify_dir.display());
        }
        el.published_mut().doc.errors = std::mem::take(&mut self.errors);
        let created = guard::catch("creating the supervisor", || {
            Supervisor::new(p.services, opts).map_err(|e| format!("services: {e}"))
        });
        let sup = match created.and_then(|r| r) {
            Ok(sup) => sup,
            Err(msg) => {
                log::error!("{msg}");
                el.published_mut().doc.errors.push(msg);
                Supervisor::empty()
            }
        };
        // The signals are the loop's now; a press since the last step still stops the starts.
        self.shutdown.extend(press_request(&mut self.buttons));
        el.take_buttons(std::mem::take(&mut self.buttons));
        el.start_services(sup, &self.shutdown);
        el.run();
        Finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step that panics is recorded with its name, message and place, its default is used,
    /// and the boot goes on to the next step.
    #[test]
    fn a_panicking_step_falls_back_and_the_boot_goes_on() {
        crate::panic::install_hook();
        let signals = Signals::new(Vec::<i32>::new()).expect("signal pipe");
        let mut boot = Boot::new(signals, false, HealthDoc::starting(0, false));
        let got: u32 = boot.step("the test step", |_| panic!("boom in a step"));
        assert_eq!(got, 0);
        assert_eq!(boot.step("the next step", |_| 5u32), 5);
        assert_eq!(boot.errors.len(), 1, "{:?}", boot.errors);
        let msg = &boot.errors[0];
        assert!(msg.contains("the test step"), "{msg}");
        assert!(msg.contains("boom in a step"), "{msg}");
        assert!(msg.contains("boot/mod.rs"), "no location: {msg}");
    }
}
