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

use crate::alias::AliasIndex;
use crate::error::{Error, Result};
use crate::parse::{self, normalize_name, AliasLine, SoftdepLine};

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

#[derive(Debug, Clone)]
pub struct ModuleIndex {
    dir: PathBuf,
    modules: HashMap<String, Entry>,
    aliases: AliasIndex,
    builtin: HashSet<String>,
    builtin_aliases: AliasIndex,
    softdeps: HashMap<String, SoftdepLine>,
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
    while let Some(at) = rest.find(KEY) {
        let module = rest[..at].rsplit('\0').next().unwrap_or_default();
        let tail = &rest[at + KEY.len()..];
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

impl ModuleIndex {
    /// Reads `<dir>/modules.{dep,alias,builtin,softdep}` (the first two are
    /// required) and `modules.builtin.modinfo` if present. `dir` is
    /// `/lib/modules/<release>`; its absence is [`Error::MissingTree`].
    pub fn load(dir: &Path) -> Result<ModuleIndex> {
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
        let parse_err = |source| Error::Parse {
            dir: dir.to_path_buf(),
            source,
        };
        let dep = read(dir, "modules.dep", true)?.unwrap_or_default();
        let alias = read(dir, "modules.alias", true)?.unwrap_or_default();
        let builtin = read(dir, "modules.builtin", false)?.unwrap_or_default();
        let softdep = read(dir, "modules.softdep", false)?.unwrap_or_default();
        let modinfo = read(dir, "modules.builtin.modinfo", false)?.unwrap_or_default();

        let modules = parse::parse_dep(&dep)
            .map_err(parse_err)?
            .into_iter()
            .map(|l| {
                (
                    parse::module_name(&l.path),
                    Entry {
                        path: l.path,
                        deps: l.deps,
                    },
                )
            })
            .collect();
        let softdeps = parse::parse_softdep(&softdep)
            .map_err(parse_err)?
            .into_iter()
            .map(|s| (s.module.clone(), s))
            .collect();
        Ok(ModuleIndex {
            dir: dir.to_path_buf(),
            modules,
            aliases: AliasIndex::new(parse::parse_alias(&alias).map_err(parse_err)?),
            builtin: parse::parse_builtin(&builtin)
                .map_err(parse_err)?
                .into_iter()
                .collect(),
            builtin_aliases: AliasIndex::new(builtin_aliases(&modinfo)),
            softdeps,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `(modules, aliases, builtins)` counts, for the boot log.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.modules.len(), self.aliases.len(), self.builtin.len())
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize_name(name))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.modules.contains_key(&normalize_name(name))
    }

    /// Modules (loadable or built in) whose alias matches `modalias`.
    pub fn lookup_alias(&self, modalias: &str) -> Vec<String> {
        let mut out = self.aliases.lookup(modalias);
        for m in self.builtin_aliases.lookup(modalias) {
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
        if self.modules.contains_key(&norm) || self.builtin.contains(&norm) {
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
        let deps = self
            .index
            .modules
            .get(name)
            .map(|e| e.deps.clone())
            .unwrap_or_default();
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
        let entry = self.index.modules.get(name);
        let kind = match entry.map(|e| e.path.as_str()).or(path) {
            _ if self.index.builtin.contains(name) => StepKind::Builtin,
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
