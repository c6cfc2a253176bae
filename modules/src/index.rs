//! The module tree's indexes, loaded once: which file each module is, what it
//! depends on, which names and modaliases map to it, what is built in. Turns a
//! name into an ordered load plan, as modprobe would.
//!
//! Pure lookups over data read at `load` time; no syscalls beyond reading the
//! index files. Executing a plan is `loader.rs`'s job.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::alias::AliasIndex;
use crate::bin_index::BinIndex;
use crate::error::{Error, Result};
use crate::parse::{self, normalize_alias, normalize_name, AliasLine, SoftdepLine};

#[derive(Debug, Clone)]
struct Entry {
    /// Relative to the tree, as modules.dep writes it.
    path: String,
    /// Every dependency (modules.dep is transitively closed), as written.
    deps: Vec<String>,
}

/// What a plan step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// finit_module(2) this file (absolute path).
    Load { path: PathBuf },
    /// Built into the kernel: nothing to do, already satisfied.
    Builtin,
    /// Named by an alias or softdep but absent from modules.dep: stale indexes.
    Unlisted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub module: String,
    pub kind: StepKind,
    /// Pulled in by a softdep: its failure does not fail the request.
    pub optional: bool,
    /// Modules that must be loaded before this one (from modules.dep).
    pub deps: Vec<String>,
}

/// Steps in load order: softdep `pre:` modules, dependencies right to left,
/// the module itself, then softdep `post:` modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn modules(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.module.as_str()).collect()
    }

    pub fn position(&self, module: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.module == module)
    }
}

fn read(dir: &Path, file: &str, required: bool) -> Result<Option<String>> {
    let path = dir.join(file);
    match fs::read(&path) {
        // Valid UTF-8 (always, from depmod) is kept without a copy; the lossy pass only
        // runs for a damaged file.
        Ok(bytes) => {
            Ok(Some(String::from_utf8(bytes).unwrap_or_else(|e| {
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            })))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(None),
        Err(source) => Err(Error::ReadIndex { path, source }),
    }
}

/// `modules.builtin.modinfo` is NUL-separated `module.key=value`; the
/// `alias` keys let `fs-ext4` resolve to a built-in ext4.
fn builtin_aliases(modinfo: &str) -> Vec<AliasLine> {
    // Only a few dozen of its thousands of entries are aliases: find those by their key
    // rather than splitting every entry.
    const KEY: &str = ".alias=";
    let mut out = Vec::new();
    let mut rest = modinfo;
    while let Some((head, tail)) = rest.split_once(KEY) {
        let module = head.rsplit('\0').next().unwrap_or_default();
        let pattern = tail.split('\0').next().unwrap_or_default();
        // `module.parm=x.alias=y` would be a parameter's value, not an alias key.
        if !module.is_empty() && !module.contains(['.', '=']) {
            out.push(AliasLine {
                pattern: pattern.to_string(),
                module: normalize_name(module),
            });
        }
        rest = &tail[pattern.len()..];
    }
    out
}

/// One table of the index: depmod's binary trie when the image has a sound one, else its text
/// twin parsed whole. A trie found damaged during a lookup is left for the text twin, once,
/// with a warning: a broken index costs speed, never a driver.
#[derive(Debug)]
struct Table<T> {
    bin: Option<BinIndex>,
    /// Set when a lookup found the trie damaged.
    damaged: AtomicBool,
    /// The text twin: `None` inside once it could not be read either (logged then).
    text: OnceLock<Option<T>>,
    /// The module tree, and how to read the text twin from it.
    dir: PathBuf,
    load_text: fn(&Path) -> Result<T>,
}

impl<T> Table<T> {
    /// `bin_name` (`None`: text only) if it opens with a sound header, else `load_text` now,
    /// so that a tree with neither fails at load as before.
    fn open(dir: &Path, bin_name: Option<&str>, load_text: fn(&Path) -> Result<T>) -> Result<Self> {
        let bin = match bin_name.map(|name| BinIndex::open(&dir.join(name))) {
            None => None,
            Some(Ok(bin)) => bin,
            Some(Err(e)) => {
                log::warn!("{e}; reading its text twin instead");
                None
            }
        };
        let text = OnceLock::new();
        if bin.is_none() {
            let _ = text.set(Some(load_text(dir)?));
        }
        Ok(Table {
            bin,
            damaged: AtomicBool::new(false),
            text,
            dir: dir.to_path_buf(),
            load_text,
        })
    }

    /// Answers through the trie, or through the text twin (loaded on first need).
    fn query<R>(
        &self,
        bin: impl FnOnce(&BinIndex) -> Result<R>,
        text: impl FnOnce(&T) -> R,
        neither: R,
    ) -> R {
        if let Some(index) = self.bin.as_ref().filter(|_| !self.damaged.load(Relaxed)) {
            match bin(index) {
                Ok(r) => return r,
                Err(e) => {
                    log::warn!("{e}; reading its text twin instead");
                    self.damaged.store(true, Relaxed);
                }
            }
        }
        let loaded = self.text.get_or_init(|| {
            (self.load_text)(&self.dir)
                .map_err(|e| log::error!("module index unusable: {e}"))
                .ok()
        });
        loaded.as_ref().map_or(neither, text)
    }

    fn is_binary(&self) -> bool {
        self.bin.is_some() && !self.damaged.load(Relaxed)
    }
}

fn load_deps(dir: &Path) -> Result<HashMap<String, Entry>> {
    let text = read(dir, "modules.dep", true)?.unwrap_or_default();
    let lines = parse::parse_dep(&text).map_err(|source| parse_err(dir, source))?;
    Ok(lines
        .into_iter()
        .map(|l| {
            let entry = Entry {
                path: l.path,
                deps: l.deps,
            };
            (parse::module_name(&entry.path), entry)
        })
        .collect())
}

fn load_aliases(dir: &Path) -> Result<AliasIndex> {
    let text = read(dir, "modules.alias", true)?.unwrap_or_default();
    let lines = parse::parse_alias(&text).map_err(|source| parse_err(dir, source))?;
    Ok(AliasIndex::new(lines))
}

fn load_builtin(dir: &Path) -> Result<HashSet<String>> {
    let text = read(dir, "modules.builtin", false)?.unwrap_or_default();
    let names = parse::parse_builtin(&text).map_err(|source| parse_err(dir, source))?;
    Ok(names.into_iter().collect())
}

fn load_builtin_aliases(dir: &Path) -> Result<AliasIndex> {
    let modinfo = read(dir, "modules.builtin.modinfo", false)?.unwrap_or_default();
    Ok(AliasIndex::new(builtin_aliases(&modinfo)))
}

fn parse_err(dir: &Path, source: parse::ParseError) -> Error {
    Error::Parse {
        dir: dir.to_path_buf(),
        source,
    }
}

/// Modules of the values a wildcard search found, by priority (the module's place in
/// `modules.order`, which is also `modules.alias`'s order), without duplicates.
pub(crate) fn modules_by_priority(mut values: Vec<(u32, String)>) -> Vec<String> {
    values.sort_by_key(|v| v.0);
    let mut out: Vec<String> = Vec::new();
    for (_, module) in values {
        if !out.contains(&module) {
            out.push(module);
        }
    }
    out
}

#[derive(Debug)]
pub struct ModuleIndex {
    dir: PathBuf,
    modules: Table<HashMap<String, Entry>>,
    aliases: Table<AliasIndex>,
    builtin: Table<HashSet<String>>,
    builtin_aliases: Table<AliasIndex>,
    softdeps: HashMap<String, SoftdepLine>,
}

impl ModuleIndex {
    /// Opens the index of `dir` (`/lib/modules/<release>`; its absence is
    /// [`Error::MissingTree`]): depmod's binary tries (`modules.dep.bin`, `modules.alias.bin`,
    /// `modules.builtin.bin`, `modules.builtin.alias.bin`) where present, as kmod reads them,
    /// else the text files (`modules.dep` and `modules.alias` required, `modules.builtin` and
    /// `modules.builtin.modinfo` optional); `modules.softdep` is text only.
    pub fn load(dir: &Path) -> Result<ModuleIndex> {
        Self::load_with(dir, true)
    }

    /// [`ModuleIndex::load`] from the text files only, ignoring the binary tries.
    pub fn load_text(dir: &Path) -> Result<ModuleIndex> {
        Self::load_with(dir, false)
    }

    fn load_with(dir: &Path, binary: bool) -> Result<ModuleIndex> {
        if !dir.is_dir() {
            let release = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(Error::MissingTree {
                release,
                dir: dir.to_path_buf(),
                wanted: Vec::new(),
            });
        }
        let bin = |name| binary.then_some(name);
        let softdep = read(dir, "modules.softdep", false)?.unwrap_or_default();
        let softdeps = parse::parse_softdep(&softdep)
            .map_err(|source| parse_err(dir, source))?
            .into_iter()
            .map(|s| (s.module.clone(), s))
            .collect();
        Ok(ModuleIndex {
            dir: dir.to_path_buf(),
            modules: Table::open(dir, bin("modules.dep.bin"), load_deps)?,
            aliases: Table::open(dir, bin("modules.alias.bin"), load_aliases)?,
            builtin: Table::open(dir, bin("modules.builtin.bin"), load_builtin)?,
            builtin_aliases: Table::open(
                dir,
                bin("modules.builtin.alias.bin"),
                load_builtin_aliases,
            )?,
            softdeps,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which form the two large tables are read from, for the boot log.
    pub fn format(&self) -> &'static str {
        match (self.modules.is_binary(), self.aliases.is_binary()) {
            (true, true) => "binary",
            (false, false) => "text",
            _ => "binary and text",
        }
    }

    /// `(modules, aliases, builtins)` counts of an index read from text
    /// ([`ModuleIndex::load_text`]); `None` for the parts read from binary tries, which
    /// are never read whole.
    pub fn counts(&self) -> Option<(usize, usize, usize)> {
        let count = |t: Option<&Option<usize>>| t.copied().flatten();
        Some((
            count(
                self.modules
                    .text
                    .get()
                    .map(|t| t.as_ref().map(HashMap::len))
                    .as_ref(),
            )?,
            count(
                self.aliases
                    .text
                    .get()
                    .map(|t| t.as_ref().map(AliasIndex::len))
                    .as_ref(),
            )?,
            count(
                self.builtin
                    .text
                    .get()
                    .map(|t| t.as_ref().map(HashSet::len))
                    .as_ref(),
            )?,
        ))
    }

    /// The `modules.dep` entry of module `name` (normalised).
    fn entry(&self, name: &str) -> Option<Entry> {
        self.modules.query(
            |bin| {
                let Some(line) = bin.search(name)? else {
                    return Ok(None);
                };
                let parsed = parse::parse_dep(&line).map_err(|source| Error::DamagedIndex {
                    path: bin.path().to_path_buf(),
                    offset: None,
                    reason: format!("the entry of {name}: {source}"),
                })?;
                Ok(parsed.into_iter().next().map(|l| Entry {
                    path: l.path,
                    deps: l.deps,
                }))
            },
            |map| map.get(name).cloned(),
            None,
        )
    }

    fn builtin_contains(&self, name: &str) -> bool {
        self.builtin.query(
            |bin| Ok(bin.search(name)?.is_some()),
            |set| set.contains(name),
            false,
        )
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin_contains(&normalize_name(name))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entry(&normalize_name(name)).is_some()
    }

    /// Modules (loadable or built in) whose alias matches `modalias`.
    pub fn lookup_alias(&self, modalias: &str) -> Vec<String> {
        let key = normalize_alias(modalias);
        let wild = |bin: &BinIndex| bin.search_wild(&key).map(modules_by_priority);
        let mut out = self.aliases.query(wild, |a| a.lookup(modalias), Vec::new());
        let builtin = self
            .builtin_aliases
            .query(wild, |a| a.lookup(modalias), Vec::new());
        for m in builtin {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// What a name means, as modprobe reads it: a module, a built-in, or an
    /// alias (which may stand for several modules).
    pub fn names_for(&self, name: &str) -> Vec<String> {
        let norm = normalize_name(name);
        if self.entry(&norm).is_some() || self.builtin_contains(&norm) {
            return vec![norm];
        }
        self.lookup_alias(name)
    }

    /// The ordered load plan for `name` (module, built-in or alias).
    pub fn resolve(&self, name: &str) -> Result<Plan> {
        let targets = self.names_for(name);
        if targets.is_empty() {
            return Err(Error::UnknownModule {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        let mut b = Builder {
            index: self,
            done: HashSet::new(),
            plan: Plan::default(),
        };
        for t in &targets {
            b.add_full(t, None, false);
        }
        Ok(b.plan)
    }

    /// The plan for filesystem `fstype` through its `fs-<type>` alias.
    pub fn resolve_fs(&self, fstype: &str) -> Result<Plan> {
        self.resolve(&format!("fs-{fstype}"))
            .map_err(|_| Error::UnknownFilesystem {
                fstype: fstype.to_string(),
                dir: self.dir.clone(),
            })
    }
}

struct Builder<'a> {
    index: &'a ModuleIndex,
    done: HashSet<String>,
    plan: Plan,
}

impl Builder<'_> {
    /// A module after all its dependencies, each with its softdeps around it,
    /// like kmod's probe list. `path` is used when modules.dep names the file
    /// only as someone's dependency.
    fn add_full(&mut self, name: &str, path: Option<&str>, optional: bool) {
        if self.done.contains(name) {
            return;
        }
        let deps = self.index.entry(name).map(|e| e.deps).unwrap_or_default();
        for dep in deps.iter().rev() {
            self.add_one(&parse::module_name(dep), Some(dep), optional);
        }
        self.add_one(name, path, optional);
    }

    fn add_one(&mut self, name: &str, path: Option<&str>, optional: bool) {
        // Marked before the softdeps so a softdep cycle ends here.
        if !self.done.insert(name.to_string()) {
            return;
        }
        let soft = self.index.softdeps.get(name).cloned().unwrap_or_default();
        for pre in &soft.pre {
            for m in self.index.names_for(pre) {
                self.add_full(&m, None, true);
            }
        }
        let entry = self.index.entry(name);
        let kind = match entry.as_ref().map(|e| e.path.as_str()).or(path) {
            _ if self.index.builtin_contains(name) => StepKind::Builtin,
            Some(rel) => StepKind::Load {
                path: self.index.dir.join(rel),
            },
            None => StepKind::Unlisted,
        };
        let deps = entry
            .map(|e| e.deps.iter().map(|d| parse::module_name(d)).collect())
            .unwrap_or_default();
        self.plan.steps.push(Step {
            module: name.to_string(),
            kind,
            optional,
            deps,
        });
        for post in &soft.post {
            for m in self.index.names_for(post) {
                self.add_full(&m, None, true);
            }
        }
    }
}
