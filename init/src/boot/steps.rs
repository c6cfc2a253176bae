//! The steps of the boot, in the order [`super::run_pid1`] calls them. Each reads what it needs,
//! records failures with [`Boot::fail`] and returns a small named value; none of them ends the
//! boot.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};

use guest_config::drive as config_drive;
use guest_config::{
    AddressMethod, Cmdline, ColdplugMode, DriveConfig, ImageConfig, NetworkPlan, NetworkSource,
    ServiceConfig, Settings, VminitArgs,
};
use mio::Waker;
use netconf::{LinkState, NetworkState};

use super::drive::read_config;
use super::{Boot, NetworkStage, DEFAULT_CONFIG};
use crate::health;
use crate::report::{self, ModulesDoc};
use crate::{logger, sys};

pub type SystemLoader = modules::Loader<modules::SystemKernel, modules::SystemClock>;

/// The module loader after the boot's coldplug stage, until the config drive's file system is
/// loaded too.
#[derive(Default)]
pub struct ModulesStage {
    pub loader: Option<SystemLoader>,
    pub ms: u64,
    pub mode: ColdplugMode,
}

/// What the module stage leaves for the health document and the network.
#[derive(Default)]
pub struct ModulesDone {
    pub doc: ModulesDoc,
    pub ms: u64,
    pub diagnosis: Option<String>,
    /// The loader, kept for the rest of the drivers (`coldplug = "all"`): see
    /// [`crate::late_modules`].
    pub rest: Option<SystemLoader>,
}

impl ModulesStage {
    /// Logs the stage and turns its report into the document's `modules`; keeps the loader
    /// when the rest of the drivers are still to come.
    pub fn finish(&mut self) -> ModulesDone {
        let Some(loader) = self.loader.take() else {
            return ModulesDone::default();
        };
        let r = loader.snapshot();
        let label = match self.mode {
            ColdplugMode::All | ColdplugMode::Essential => "essential",
            ColdplugMode::None => "no coldplug",
        };
        report::log_module_report(&r, label, report::Seen::default());
        let mut doc = ModulesDoc::from_report(&r);
        let rest = (self.mode == ColdplugMode::All).then_some(loader);
        doc.rest_pending = rest.is_some();
        ModulesDone {
            doc,
            ms: self.ms,
            diagnosis: match self.mode {
                // No device was looked at: the sysfs-based diagnosis would say "no network
                // card visible", which is not the cause. Used only when the interface is
                // missing.
                ColdplugMode::None => Some(
                    "no driver is loaded by device ([modules] coldplug = \"none\"); \
                     name the network driver in [modules] load or vminit.modules="
                        .to_string(),
                ),
                ColdplugMode::All | ColdplugMode::Essential => modules::diagnose_network(&r),
            },
            rest,
        }
    }
}

/// The config drive as accepted, and the services to run (the image's, with the drive's
/// changes when the drive was accepted).
#[derive(Default)]
pub struct DriveStage {
    pub config: Option<(DriveConfig, String)>,
    pub services: BTreeMap<String, ServiceConfig>,
}

impl Boot {
    /// The kernel hands init every cmdline word it does not know; they are not for us.
    pub(super) fn ignore_argv(&mut self, argv: &[OsString]) {
        if !argv.is_empty() {
            let words: Vec<String> = argv
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect();
            log::warn!(
                "ignoring arguments the kernel passed to init: {}",
                words.join(" ")
            );
        }
    }

    /// `/proc/cmdline` as bytes: a word that is not UTF-8 is warned about and skipped, the
    /// rest stands.
    pub(super) fn read_cmdline(&mut self) -> Cmdline {
        match std::fs::read("/proc/cmdline") {
            Ok(bytes) => {
                let (cmdline, warnings) = Cmdline::from_bytes(&bytes);
                for w in warnings {
                    log::warn!("{w}");
                }
                cmdline
            }
            Err(e) => {
                self.fail(format!("cannot read /proc/cmdline: {e}; using defaults"));
                Cmdline::default()
            }
        }
    }

    pub(super) fn vminit_args(&mut self, cmdline: &Cmdline) -> VminitArgs {
        let args = VminitArgs::from_cmdline(cmdline);
        if let Some(level) = args.log {
            logger::init(level.to_level_filter());
        }
        for w in &args.warnings {
            log::warn!("{w}");
        }
        for e in &args.errors {
            self.fail(e);
        }
        args
    }

    pub(super) fn image_config(&mut self, args: &VminitArgs) -> Option<ImageConfig> {
        match &args.config {
            Some(p) => load_image(self, p, ImageSource::Cmdline),
            None => load_image(self, Path::new(DEFAULT_CONFIG), ImageSource::Default),
        }
    }

    pub(crate) fn start_health(&mut self, settings: &Settings) {
        let priority = if self.pid1 {
            health::Priority::YieldToBoot
        } else {
            health::Priority::Normal
        };
        // As PID 1 the vsock listener waits for the module loader: its transport driver is
        // bound by coldplug ([`Self::start_vsock_health`]). Off PID 1 the host's kernel has
        // whatever it has now.
        let now: Vec<_> = settings
            .health
            .iter()
            .copied()
            .filter(|l| !(self.pid1 && l.is_vsock()))
            .collect();
        let results = health::spawn(&now, Arc::clone(&self.shared), priority);
        for r in results {
            self.report_listener(r);
        }
    }

    /// Starts the vsock listeners (as PID 1, once the modules are loaded), if the VM has a
    /// virtio-vsock device. Asked first in sysfs: without a device, a vsock socket can still
    /// be bound when the vsock core is loaded (built in, or pulled in by `net-pf-40`), and a
    /// listener no host can reach would only mislead.
    pub(crate) fn start_vsock_health(&mut self, settings: &Settings) {
        let wanted = settings.health.iter().any(|l| l.is_vsock());
        if wanted && !has_virtio_vsock(Path::new(VSOCK_DRIVER)) {
            let e = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no virtio device is bound to {VSOCK_DRIVER}"),
            );
            return self.report_listener(Err(health::BindError::NoVsockDevice(e)));
        }
        for l in settings.health.iter().filter(|l| l.is_vsock()) {
            let r = health::add_listener(*l, &self.shared);
            self.report_listener(r);
        }
    }

    fn report_listener(&mut self, r: Result<String, health::BindError>) {
        match r {
            Ok(name) if name.starts_with("vsock:") => {
                log::info!("health endpoint on {name} (GET /health)")
            }
            Ok(name) => log::info!("health endpoint on http://{name}/health"),
            Err(e @ health::BindError::NoVsockDevice(_)) => log::info!("{e}"),
            Err(e) => self.fail(e),
        }
    }

    /// What the devices need, then what the cmdline and the image config ask for.
    pub(super) fn load_modules(
        &mut self,
        cmdline: &Cmdline,
        args: &VminitArgs,
        image: Option<&ImageConfig>,
    ) -> ModulesStage {
        let mut params = cmdline.module_params();
        if let Some(img) = image {
            for module in img.modules.options.keys() {
                params
                    .entry(module.replace('-', "_"))
                    .or_default()
                    .extend(img.modules.params(module));
            }
        }
        let mut loader = modules::Loader::system(params);
        let mode = image.map(|i| i.modules.coldplug).unwrap_or_default();
        // The boot waits only for the drivers the job needs; with "all" the rest are loaded
        // later, off the boot's path (crate::late_modules).
        let stage = match mode {
            ColdplugMode::All | ColdplugMode::Essential => Some(modules::Stage::Essential),
            ColdplugMode::None => None,
        };
        if let Some(stage) = stage {
            let opts = modules::Coldplug {
                stage,
                ..modules::Coldplug::default()
            };
            if let Err(e) = loader.coldplug(&opts) {
                self.fail(e);
            }
        }
        let extra = args
            .modules
            .iter()
            .chain(image.iter().flat_map(|i| i.modules.load.iter()));
        for m in extra {
            match loader.load(m) {
                Ok(()) => {}
                // Asked for by name but no hardware for it: said, not an error (issue 18).
                Err(e) if e.is_no_device() => log::info!("{e}"),
                Err(e) => self.fail(format!("module {m}: {e}")),
            }
        }
        if crate::power_button::needs_evdev(Path::new("/sys/class/input")) {
            if let Err(e) = loader.load("evdev") {
                log::warn!("module evdev: {e}; the power button (ACPI shutdown) will not be heard");
            }
        }
        ModulesStage {
            loader: Some(loader),
            ms: sys::boottime_ms(),
            mode,
        }
    }

    /// Finds, mounts and reads the config drive, and merges its services with the image's. A
    /// drive with any error is refused as a whole (network, host name, env, services): the
    /// image's services run as configured and the errors are in `/health`.
    pub(super) fn config_drive(
        &mut self,
        loader: Option<&mut SystemLoader>,
        image: Option<&ImageConfig>,
    ) -> DriveStage {
        let drive = self.read_drive(loader);
        let merged = guest_config::merge_services(image, drive.as_ref().map(|(d, _)| d));
        match (merged, drive) {
            (Ok(services), drive) => DriveStage {
                config: drive,
                services,
            },
            (Err(errs), Some((_, desc))) => {
                for e in errs {
                    self.fail(format!("config drive {desc}: {e}"));
                }
                self.fail(format!(
                    "config drive {desc} refused: running the image's services only"
                ));
                DriveStage {
                    config: None,
                    services: self.image_services(image),
                }
            }
            (Err(errs), None) => {
                for e in errs {
                    self.fail(format!("config: {e}"));
                }
                DriveStage::default()
            }
        }
    }

    fn image_services(&mut self, image: Option<&ImageConfig>) -> BTreeMap<String, ServiceConfig> {
        guest_config::merge_services(image, None).unwrap_or_else(|errs| {
            for e in errs {
                self.fail(format!("config: {e}"));
            }
            BTreeMap::new()
        })
    }

    fn read_drive(&mut self, loader: Option<&mut SystemLoader>) -> Option<(DriveConfig, String)> {
        let found = match config_drive::find(Path::new("/sys"), Path::new("/dev")) {
            Ok(Some(f)) => f,
            Ok(None) => {
                log::debug!("no config drive labelled {}", config_drive::LABEL);
                return None;
            }
            Err(e) => {
                self.fail(format!("config drive: {e}"));
                return None;
            }
        };
        let desc = found.describe();
        log::info!("config drive: {desc}");
        if let Some(loader) = loader {
            if let Err(e) = loader.load_fs(found.fs.as_str()) {
                log::warn!(
                    "config drive {desc}: loading {}: {e}",
                    found.fs.module_alias()
                );
            }
        }
        let text = match read_config(&found.device, found.fs.as_str()) {
            Ok(t) => t,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        let file = found.device.join(config_drive::FILE);
        match DriveConfig::parse(&text, &file) {
            Ok(d) => Some((d, desc)),
            Err(errs) => {
                for e in errs {
                    self.fail(format!("config drive: {e}"));
                }
                None
            }
        }
    }

    /// One authoritative source: `ip=` or the drive's `[network]`, never both.
    pub(super) fn network_source(
        &mut self,
        cmdline: &Cmdline,
        drive: Option<&(DriveConfig, String)>,
        diagnosis: Option<String>,
    ) -> NetworkStage {
        let drive_ref = drive.map(|(d, desc)| (d, desc.as_str()));
        match guest_config::arbitrate(cmdline.get("ip"), drive_ref) {
            Ok(plan) => {
                let configured = plan
                    .as_ref()
                    .is_some_and(|p| p.method != AddressMethod::Off);
                let initial = NetworkState {
                    source: plan.as_ref().map(|p| p.source).unwrap_or_default(),
                    state: if configured {
                        LinkState::Down
                    } else {
                        LinkState::Unconfigured
                    },
                    ..NetworkState::default()
                };
                NetworkStage {
                    plan,
                    initial,
                    configured,
                    diagnosis,
                }
            }
            Err(e) => {
                // Conflict or malformed ip=: nothing is applied, and the state says why. Every
                // such error involves `ip=`, so the source is the cmdline's.
                let msg = e.to_string();
                self.fail(&msg);
                NetworkStage {
                    plan: None,
                    initial: NetworkState {
                        source: NetworkSource::Cmdline,
                        state: LinkState::Error,
                        error: Some(msg),
                        ..NetworkState::default()
                    },
                    configured: true,
                    diagnosis,
                }
            }
        }
    }

    /// `lo` comes up here, whatever the network source, before the network thread and the
    /// services start side by side: local services and their readiness probes on 127.0.0.1
    /// need it, and one that binds it at once must not race the network thread (whose own
    /// step then finds it up, and brings it back on a retry). With no network source at all,
    /// the drive's host name is still the guest's name.
    pub(super) fn loopback_and_hostname(&mut self, network: &NetworkStage, drive: &DriveStage) {
        match netconf::loopback_up() {
            Ok(true) => log::debug!("network: lo up"),
            Ok(false) => {}
            Err(e) => log::warn!("{e}"),
        }
        if network.plan.is_none() && network.initial.state == LinkState::Unconfigured {
            if let Some(h) = drive.config.as_ref().and_then(|(d, _)| d.hostname.as_ref()) {
                if let Err(e) = nix::unistd::sethostname(h) {
                    log::warn!("sethostname {h:?}: {}", e.desc());
                }
            }
        }
    }
}

/// Starts the network thread; its state changes wake the event loop.
pub(super) fn spawn_network(
    plan: NetworkPlan,
    diagnosis: Option<String>,
    network: Arc<Mutex<NetworkState>>,
    waker: Arc<Waker>,
    shared: Arc<crate::health::Shared>,
    errors: &mut Vec<String>,
) -> Option<netconf::NetworkHandle> {
    log::info!(
        "network: source {} configures {}",
        plan.source,
        plan.interface
    );
    let mut env = netconf::Env::system();
    env.driver_diagnosis = Some(Box::new(move || diagnosis.clone()));
    env.on_panic = Some(Box::new(move |next: &str| {
        shared.report_fault(crate::guard::panic_message("the network thread", next))
    }));
    let notify = Box::new(move || {
        let _ = waker.wake();
    });
    match netconf::spawn(plan, env, network, notify) {
        Ok(handle) => Some(handle),
        Err(e) => {
            let msg = format!("network: cannot start the network thread: {e}");
            log::error!("{msg}");
            errors.push(msg);
            None
        }
    }
}

/// Where the image config's path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// `/etc/vminit/vminit.toml`: part of the image, may be missing (no services) or a
    /// symlink within the image.
    Default,
    /// `vminit.config=` on the cmdline: host input, must exist, never followed as a symlink.
    Cmdline,
    /// `--config` off PID 1: the operator's own file, must exist.
    Cli,
}

/// Reads the image config. A missing default file means "no services" (an image may only want
/// the network and the health endpoint); a missing file named with `vminit.config=` or
/// `--config`, or an invalid one, is an error listed in `/health`.
pub fn load_image(boot: &mut Boot, path: &Path, source: ImageSource) -> Option<ImageConfig> {
    if source == ImageSource::Default && !path.exists() {
        log::info!("no image config at {}: no services", path.display());
        return None;
    }
    let loaded = match source {
        ImageSource::Cmdline => ImageConfig::load_host(path),
        ImageSource::Default | ImageSource::Cli => ImageConfig::load(path),
    };
    match loaded {
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
                boot.fail(format!("config: {e}"));
            }
            None
        }
    }
}

/// The virtio-vsock transport driver's sysfs directory.
const VSOCK_DRIVER: &str = "/sys/bus/virtio/drivers/vmw_vsock_virtio_transport";

/// True when a virtio device is bound to the vsock transport (`virtio<N>` links in `driver`).
fn has_virtio_vsock(driver: &Path) -> bool {
    std::fs::read_dir(driver).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("virtio"))
    })
}

#[cfg(test)]
mod vsock_tests {
    use super::*;

    #[test]
    fn a_vsock_device_is_a_virtio_link_in_the_drivers_directory() {
        let t = tempfile::tempdir().unwrap();
        let driver = t.path().join("vmw_vsock_virtio_transport");
        assert!(!has_virtio_vsock(&driver), "no driver loaded");
        std::fs::create_dir(&driver).unwrap();
        std::fs::write(driver.join("bind"), "").unwrap();
        assert!(!has_virtio_vsock(&driver), "driver loaded, no device");
        std::os::unix::fs::symlink("/nonexistent", driver.join("virtio3")).unwrap();
        assert!(has_virtio_vsock(&driver));
    }
}
