//! The [`Loader`]: owns the set of loaded modules, the module parameters and
//! the [`Report`], and executes load plans through the [`Kernel`] seam.
//!
//! Decides what a kernel answer means (`EEXIST` is success, `EINVAL` on a
//! compressed file means no in-kernel decompression, a failed dependency
//! fails its dependants); does not decide which modules to load (that is the
//! caller's, or `coldplug.rs`'s).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Errno, Error, LoadFailure, Result};
use crate::index::{ModuleIndex, Plan, Step, StepKind};
use crate::kernel::{self, Clock, InitFlags, Kernel, KernelError, SystemClock, SystemKernel};
use crate::parse::normalize_name;
use crate::report::{Failed, Loaded, Report};

/// Where production reads from.
pub const LIB_MODULES: &str = "/lib/modules";
pub const PROC_MODULES: &str = "/proc/modules";

pub struct Loader<K: Kernel, C: Clock> {
    pub(crate) index: Result<ModuleIndex>,
    pub(crate) kernel: K,
    pub(crate) clock: C,
    params: BTreeMap<String, Vec<String>>,
    loaded: BTreeSet<String>,
    failed: BTreeMap<String, LoadFailure>,
    pub(crate) report: Report,
}

impl Loader<SystemKernel, SystemClock> {
    /// The production loader: `/lib/modules/$(uname -r)`, `/proc/modules`.
    /// Never fails: problems are kept and reported by each load.
    pub fn system(params: BTreeMap<String, Vec<String>>) -> Self {
        match kernel::kernel_release() {
            Ok(release) => Loader::for_release(
                Path::new(LIB_MODULES),
                &release,
                Path::new(PROC_MODULES),
                params,
                SystemKernel::default(),
                SystemClock::default(),
            ),
            Err(source) => Loader::new(
                Err(Error::Release { source }),
                SystemKernel::default(),
                SystemClock::default(),
            )
            .with_params(params),
        }
    }
}

impl<K: Kernel, C: Clock> Loader<K, C> {
    /// Loads the index of `<lib_modules>/<release>` and marks what
    /// `proc_modules` lists as loaded; every path injectable for tests.
    pub fn for_release(
        lib_modules: &Path,
        release: &str,
        proc_modules: &Path,
        params: BTreeMap<String, Vec<String>>,
        kernel: K,
        clock: C,
    ) -> Self {
        let start = clock.now();
        let index = ModuleIndex::load(&lib_modules.join(release));
        let index_ms = clock.now().saturating_sub(start).as_secs_f64() * 1000.0;
        let mut loader = Loader::new(index, kernel, clock).with_params(params);
        loader.report.index_ms = index_ms;
        loader.read_proc_modules(proc_modules);
        loader
    }
}

impl<K: Kernel, C: Clock> Loader<K, C> {
    /// `index` is `ModuleIndex::load(dir)`'s result, kept even when it failed
    /// so that every later request can say why it cannot be served.
    pub fn new(index: Result<ModuleIndex>, kernel: K, clock: C) -> Self {
        let mut report = Report::default();
        match &index {
            Ok(i) => report.modules_dir = i.dir().to_path_buf(),
            Err(Error::MissingTree { release, dir, .. }) => {
                report.release = release.clone();
                report.modules_dir = dir.clone();
                report.tree_missing = true;
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        if let Some(release) = report.modules_dir.file_name() {
            report.release = release.to_string_lossy().into_owned();
        }
        Loader {
            index,
            kernel,
            clock,
            params: BTreeMap::new(),
            loaded: BTreeSet::new(),
            failed: BTreeMap::new(),
            report,
        }
    }

    /// Parameters per module (`virtio_net` → `["napi_tx=1"]`), merged by the
    /// caller from the kernel cmdline and the image config.
    pub fn with_params(mut self, params: BTreeMap<String, Vec<String>>) -> Self {
        for (module, values) in params {
            self.params
                .entry(normalize_name(&module))
                .or_default()
                .extend(values);
        }
        self
    }

    /// Marks the modules in `/proc/modules` (text) as loaded.
    pub fn with_loaded(mut self, proc_modules: &str) -> Self {
        self.loaded.extend(
            proc_modules
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(normalize_name),
        );
        self
    }

    fn read_proc_modules(&mut self, path: &Path) {
        match fs::read_to_string(path) {
            Ok(text) => {
                let names = text
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .map(normalize_name);
                self.loaded.extend(names);
            }
            Err(source) => {
                let e = Error::ReadProcModules {
                    path: path.to_path_buf(),
                    source,
                };
                self.report.errors.push(e.to_string());
            }
        }
    }

    pub fn index(&self) -> Option<&ModuleIndex> {
        self.index.as_ref().ok()
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report so far, as [`Self::into_report`] gives it, for a loader that goes on (the
    /// init keeps it for the rest stage).
    pub fn snapshot(&self) -> Report {
        let mut report = self.report.clone();
        if let Ok(index) = &self.index {
            report.index_format = index.format();
        }
        report
    }

    /// The report, with the index's final form (a trie found damaged is read as text).
    pub fn into_report(mut self) -> Report {
        if let Ok(index) = &self.index {
            self.report.index_format = index.format();
        }
        self.report
    }

    pub fn is_loaded(&self, module: &str) -> bool {
        self.loaded.contains(&normalize_name(module))
    }

    /// Loads `name` (module, built-in or alias) with its dependencies and
    /// softdeps. Each failure is also recorded in the report.
    pub fn load(&mut self, name: &str) -> Result<()> {
        let plan = self.plan(name, |i| i.resolve(name))?;
        self.execute(&plan)
    }

    /// Loads the module providing filesystem `fstype` (`vfat`, `iso9660`, `ext4`).
    pub fn load_fs(&mut self, fstype: &str) -> Result<()> {
        let label = format!("fs-{fstype}");
        let plan = self.plan(&label, |i| i.resolve_fs(fstype))?;
        self.execute(&plan)
    }

    fn plan(
        &mut self,
        label: &str,
        resolve: impl FnOnce(&ModuleIndex) -> Result<Plan>,
    ) -> Result<Plan> {
        let failure = match &self.index {
            Ok(index) => match resolve(index) {
                Ok(plan) => return Ok(plan),
                Err(e) => {
                    self.record_failure(label, e.to_string());
                    return Err(e);
                }
            },
            Err(Error::MissingTree { release, dir, .. }) => LoadFailure::NoTree {
                reason: format!(
                    "{} does not exist (no modules for kernel {release})",
                    dir.display()
                ),
            },
            Err(e) => LoadFailure::NoTree {
                reason: e.to_string(),
            },
        };
        self.record_failure(label, failure.to_string());
        Err(Error::Load {
            module: label.to_string(),
            failure,
        })
    }

    /// Runs every step; the first failure of a required step is returned.
    pub fn execute(&mut self, plan: &Plan) -> Result<()> {
        let mut first = None;
        for step in &plan.steps {
            if let Err(failure) = self.run_step(step) {
                if !step.optional && first.is_none() {
                    first = Some(Error::Load {
                        module: step.module.clone(),
                        failure,
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn run_step(&mut self, step: &Step) -> std::result::Result<(), LoadFailure> {
        let name = step.module.as_str();
        if self.loaded.contains(name) {
            return Ok(());
        }
        if let Some(f) = self.failed.get(name) {
            return Err(f.clone());
        }
        let path = match &step.kind {
            StepKind::Builtin => {
                self.loaded.insert(name.to_string());
                self.report.builtin.push(name.to_string());
                return Ok(());
            }
            StepKind::Unlisted => {
                let dir = self.report.modules_dir.clone();
                return Err(self.fail(name, LoadFailure::Unlisted { dir }));
            }
            StepKind::Load { path } => path.clone(),
        };
        if let Some(dep) = step.deps.iter().find(|d| self.failed.contains_key(*d)) {
            let failure = LoadFailure::Dependency {
                dependency: dep.clone(),
            };
            return Err(self.fail(name, failure));
        }
        let compressed = is_compressed(&path);
        let params = self.param_string(name);
        let start = self.clock.now();
        let result = self
            .kernel
            .finit_module(&path, &params, InitFlags { compressed });
        let ms = (self.clock.now().saturating_sub(start)).as_secs_f64() * 1000.0;
        match result {
            Ok(()) => {
                // The stage's one info line is the caller's; each module is in the report.
                log::debug!("loaded module {name} in {ms:.1} ms");
                self.loaded.insert(name.to_string());
                self.report.loaded.push(Loaded {
                    name: name.to_string(),
                    ms,
                });
                Ok(())
            }
            Err(KernelError::Init(Errno::EEXIST)) => {
                self.loaded.insert(name.to_string());
                self.report.already_loaded.push(name.to_string());
                Ok(())
            }
            Err(e) => {
                let failure = classify(e, path, compressed);
                Err(self.fail(name, failure))
            }
        }
    }

    /// Remembers the failure (never retried; dependants fail with it) and reports it: in
    /// `failed`, or in `no_device` when the module found no hardware, which is not an error.
    fn fail(&mut self, name: &str, failure: LoadFailure) -> LoadFailure {
        self.failed.insert(name.to_string(), failure.clone());
        if let LoadFailure::NoDevice { .. } = failure {
            log::debug!("module {name}: {failure}");
            if !self.report.no_device.iter().any(|n| n == name) {
                self.report.no_device.push(name.to_string());
            }
        } else {
            log::warn!("module {name}: {failure}");
            self.record_failure(name, failure.to_string());
        }
        failure
    }

    pub(crate) fn record_failure(&mut self, name: &str, reason: String) {
        if self.report.failure(name).is_none() {
            self.report.failed.push(Failed {
                name: name.to_string(),
                reason,
            });
        }
    }

    /// The finit_module(2) parameter string. Values with blanks are quoted
    /// the way the kernel's `parse_args` expects (`p="a b"`).
    pub fn param_string(&self, module: &str) -> String {
        let Some(values) = self.params.get(module) else {
            return String::new();
        };
        values
            .iter()
            .map(|p| match p.split_once('=') {
                Some((k, v)) if v.contains(char::is_whitespace) && !v.starts_with('"') => {
                    format!("{k}=\"{v}\"")
                }
                _ => p.clone(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Modules whose parameters declare devices (`virtio_mmio.device=...`):
    /// such devices exist only on the cmdline, never in sysfs, until their
    /// module is loaded, so coldplug loads these first.
    pub(crate) fn cmdline_device_modules(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(_, values)| values.iter().any(|v| v.starts_with("device=")))
            .map(|(m, _)| m.clone())
            .collect()
    }
}

fn is_compressed(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("xz" | "zst" | "gz")
    )
}

fn classify(e: KernelError, path: PathBuf, compressed: bool) -> LoadFailure {
    match e {
        KernelError::Open(Errno::ENOENT) => LoadFailure::FileMissing { path },
        KernelError::Open(errno) => LoadFailure::Open { path, errno },
        KernelError::Init(Errno::EINVAL | Errno::EOPNOTSUPP) if compressed => {
            LoadFailure::CompressedUnsupported { path }
        }
        KernelError::Init(errno @ (Errno::ENODEV | Errno::ENXIO)) => {
            LoadFailure::NoDevice { path, errno }
        }
        KernelError::Init(errno) => LoadFailure::Kernel { path, errno },
    }
}
