//! Choosing a subset of kernel modules: parsing `modules.dep`,
//! `modules.alias` and `modules.softdep` and closing a set of names over
//! hard dependencies and `pre:`/`post:` soft dependencies (ext4 needs
//! `crc32c`, which is only an alias). Pure: callers pass file contents.

use std::collections::{BTreeMap, BTreeSet};

/// The module index of one kernel release.
#[derive(Debug, Default)]
pub struct ModIndex {
    /// Module name (underscores) → (path relative to the release dir, deps).
    modules: BTreeMap<String, (String, Vec<String>)>,
    /// Alias → module names.
    aliases: BTreeMap<String, Vec<String>>,
    /// Module name → soft dependency names (pre and post).
    softdeps: BTreeMap<String, Vec<String>>,
}

/// `kernel/fs/ext4/ext4.ko.xz` → `ext4`; dashes become underscores, as
/// modprobe treats them alike.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

impl ModIndex {
    /// Builds the index from the texts of `modules.dep`, `modules.alias` and
    /// `modules.softdep` (either of the last two may be empty).
    pub fn parse(dep: &str, alias: &str, softdep: &str) -> Self {
        let mut index = ModIndex::default();
        for line in dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let deps = deps.split_whitespace().map(module_name).collect();
            index
                .modules
                .insert(module_name(path), (path.trim().to_string(), deps));
        }
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(name), Some(module)) =
                (words.next(), words.next(), words.next())
            {
                index
                    .aliases
                    .entry(name.to_string())
                    .or_default()
                    .push(module.replace('-', "_"));
            }
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if let (Some("softdep"), Some(module)) = (words.next(), words.next()) {
                // Soft dependency targets may be aliases, which keep their dashes.
                let names = words.filter(|w| !w.ends_with(':')).map(str::to_string);
                index
                    .softdeps
                    .entry(module.replace('-', "_"))
                    .or_default()
                    .extend(names);
            }
        }
        index
    }

    /// Module names a request resolves to: the module itself, else every
    /// module carrying it as an exact alias.
    fn resolve(&self, name: &str) -> Vec<String> {
        let module = name.replace('-', "_");
        if self.modules.contains_key(&module) {
            return vec![module];
        }
        self.aliases
            .get(name)
            .or_else(|| self.aliases.get(&module))
            .map(|mods| {
                mods.iter()
                    .filter(|m| self.modules.contains_key(*m))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The paths (relative to the release dir) of `names` and everything
    /// they depend on. Soft dependencies that resolve to nothing are skipped
    /// (they are often built in); a requested name that resolves to nothing
    /// is returned as the error.
    pub fn closure(&self, names: &[&str]) -> Result<BTreeSet<String>, String> {
        let mut todo: Vec<String> = Vec::new();
        for name in names {
            let found = self.resolve(name);
            if found.is_empty() {
                return Err((*name).to_string());
            }
            todo.extend(found);
        }
        let mut seen = BTreeSet::new();
        let mut paths = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some((path, deps)) = self.modules.get(&name) else {
                continue;
            };
            paths.insert(path.clone());
            todo.extend(deps.iter().cloned());
            for soft in self.softdeps.get(&name).into_iter().flatten() {
                todo.extend(self.resolve(soft));
            }
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n\
        kernel/fs/jbd2/jbd2.ko:\n\
        kernel/fs/mbcache.ko:\n\
        kernel/crypto/crc32c_generic.ko:\n\
        kernel/drivers/virtio/virtio-pci.ko.xz: kernel/drivers/virtio/virtio.ko.xz\n\
        kernel/drivers/virtio/virtio.ko.xz:\n\
        kernel/net/unrelated.ko:\n";
    const ALIAS: &str =
        "# Aliases\nalias crc32c crc32c_generic\nalias crypto-crc32c crc32c_generic\n";
    const SOFT: &str = "# Soft dependencies\nsoftdep ext4 pre: crypto-crc32c post: nothing_such\n";

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio-pci.ko.xz"),
            "virtio_pci"
        );
        assert_eq!(module_name("a/b/ext4.ko"), "ext4");
    }

    #[test]
    fn closure_follows_hard_and_soft_deps_through_aliases() {
        let idx = ModIndex::parse(DEP, ALIAS, SOFT);
        let got = idx.closure(&["ext4", "virtio-pci"]).unwrap();
        let want: BTreeSet<String> = [
            "kernel/fs/ext4/ext4.ko",
            "kernel/fs/jbd2/jbd2.ko",
            "kernel/fs/mbcache.ko",
            "kernel/crypto/crc32c_generic.ko",
            "kernel/drivers/virtio/virtio-pci.ko.xz",
            "kernel/drivers/virtio/virtio.ko.xz",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_requested_module_is_an_error() {
        let idx = ModIndex::parse(DEP, ALIAS, SOFT);
        assert_eq!(idx.closure(&["ext4", "nope"]).unwrap_err(), "nope");
        assert!(idx
            .closure(&["crc32c"])
            .unwrap()
            .contains("kernel/crypto/crc32c_generic.ko"));
    }
}
