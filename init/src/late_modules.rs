//! The rest of the drivers (`[modules] coldplug = "all"`, the default), loaded after the boot
//! has done its work and never in its way.
//!
//! The boot coldplugs only the essential devices (network, storage, console, rng, vsock, the
//! virtio transports, the power button: [`modules::is_essential`]) before the network and the
//! services start. On a real image the others are many and slow (Debian under TCG: `drm`
//! alone 2.8–3.7 s, issue 18) and the job needs none of them. They are loaded here, on a
//! thread of their own:
//! - it waits until the status has first left `starting` (the event loop says so through
//!   [`health::Shared::mark_left_starting`]), or [`WAIT_MAX`] if it never does: a readiness
//!   is never delayed by a driver, and a boot stuck in `starting` still gets its drivers;
//! - it runs at nice 19 ([`crate::sys::set_thread_nice`] is per thread), so on a one-vCPU
//!   guest the services, the event loop and health polls go first;
//! - never on the event loop: `finit_module` blocks for as long as the driver's probe takes;
//! - it hands the whole report (essential and rest stages) to the loop through
//!   [`health::Shared::hand_in_modules`], which wakes the loop to publish it in `modules`.
//!
//! Modules that failed in the essential stage are not tried again (the loader remembers them).

use std::sync::Arc;
use std::time::Duration;

use modules::{Clock, Coldplug, Kernel, Loader, Stage};

use crate::health;
use crate::report::{self, ModulesDoc, Seen};

/// Longest wait for the status to leave `starting` before the rest is loaded anyway.
pub const WAIT_MAX: Duration = Duration::from_secs(30);
/// The thread's nice value: the lowest priority.
const NICE: i32 = 19;
/// The rest stage's coldplug budget: it delays nothing, and a slow driver (drm under TCG) is
/// seconds, so it is given longer than the boot's essential stage.
const REST_BUDGET: Duration = Duration::from_secs(30);

/// Starts the thread that loads the rest of the drivers with `loader` (the one the essential
/// stage used, so nothing is loaded or tried twice).
pub fn spawn<K, C>(loader: Loader<K, C>, shared: Arc<health::Shared>) -> std::io::Result<()>
where
    K: Kernel + Send + 'static,
    C: Clock + Send + 'static,
{
    std::thread::Builder::new()
        .name("modules".into())
        .spawn(move || {
            if let Err(e) = crate::sys::set_thread_nice(NICE) {
                log::debug!("modules: cannot lower the rest stage's priority: {e}");
            }
            let opts = Coldplug {
                budget: REST_BUDGET,
                ..Coldplug::default()
            };
            run(loader, &opts, &shared, WAIT_MAX);
        })
        .map(|_| ())
}

/// The thread's work, with the sysfs root and the wait given (tests shorten them). A panic in
/// the loader is caught: the essential stage's report stays published, and the error is
/// listed in `errors[]`.
fn run<K: Kernel, C: Clock>(
    mut loader: Loader<K, C>,
    opts: &Coldplug,
    shared: &health::Shared,
    wait_max: Duration,
) {
    if !shared.wait_left_starting(wait_max) {
        log::debug!("modules: still starting after {wait_max:?}; loading the rest anyway");
    }
    let stage = Coldplug {
        stage: Stage::Rest,
        ..opts.clone()
    };
    let result = crate::guard::catch("the rest of the drivers", || {
        let before = Seen::of(loader.report());
        if let Err(e) = loader.coldplug(&stage) {
            // The essential stage met the same problem (no tree, no sysfs) and listed it.
            log::debug!("modules (rest): {e}");
        }
        let r = loader.into_report();
        report::log_module_report(&r, "rest", before);
        ModulesDoc::from_report(&r)
    });
    match result {
        Ok(doc) => shared.hand_in_modules(doc),
        Err(msg) => shared.report_fault(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthDoc;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    struct NoKernel;

    impl Kernel for NoKernel {
        fn finit_module(
            &mut self,
            _: &Path,
            _: &str,
            _: modules::InitFlags,
        ) -> Result<(), modules::KernelError> {
            Ok(())
        }
    }

    /// A loader with no module tree, over a sysfs with one unbound PCI display: the rest
    /// stage ends at once with the tree missing, which is enough to see it run and report.
    fn loader(sys: &Path) -> (Loader<NoKernel, modules::SystemClock>, Coldplug) {
        let dev = sys.join("devices/0000:00:01.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            dev.join("modalias"),
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00\n",
        )
        .unwrap();
        let bus = sys.join("bus/pci/devices");
        std::fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink(&dev, bus.join("0000:00:01.0")).unwrap();
        let index = Err(modules::Error::MissingTree {
            release: "6.1.0-test".into(),
            dir: PathBuf::from("/lib/modules/6.1.0-test"),
            wanted: Vec::new(),
        });
        let l = Loader::new(index, NoKernel, modules::SystemClock::default());
        let opts = Coldplug {
            sys: sys.to_path_buf(),
            ..Coldplug::default()
        };
        (l, opts)
    }

    fn wait_for_modules(shared: &health::Shared) -> ModulesDoc {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(doc) = shared.take_modules() {
                return doc;
            }
            assert!(Instant::now() < deadline, "the rest stage never reported");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_rest_waits_until_the_status_leaves_starting() {
        let tmp = tempfile::tempdir().unwrap();
        let (l, opts) = loader(tmp.path());
        let shared = health::Shared::new(HealthDoc::starting(0, true));
        let s = Arc::clone(&shared);
        let t = std::thread::spawn(move || run(l, &opts, &s, Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(200));
        assert!(shared.take_modules().is_none(), "ran while still starting");
        shared.mark_left_starting();
        let doc = wait_for_modules(&shared);
        assert!(doc.tree_missing);
        assert_eq!(doc.unmatched.len(), 1, "{doc:?}");
        assert!(!doc.rest_pending);
        t.join().unwrap();
    }

    #[test]
    fn the_rest_goes_ahead_after_the_longest_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let (l, opts) = loader(tmp.path());
        let shared = health::Shared::new(HealthDoc::starting(0, true));
        let s = Arc::clone(&shared);
        let start = Instant::now();
        let t = std::thread::spawn(move || run(l, &opts, &s, Duration::from_millis(100)));
        wait_for_modules(&shared);
        assert!(start.elapsed() >= Duration::from_millis(100));
        t.join().unwrap();
    }
}
