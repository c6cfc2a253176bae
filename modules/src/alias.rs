//! The alias table, indexed by each pattern's literal prefix so a lookup tries
//! only the patterns that could match: Debian's 6.1 kernel has ~26k aliases and
//! a guest has dozens of modaliases to match at every boot.
//!
//! A pattern `pci:v00001AF4d*sv*…` can only match strings starting with
//! `pci:v00001AF4d`, so for a modalias we look up each of its prefixes in a
//! hash map (one lookup per byte of the modalias) and run the glob only on the
//! patterns filed under those prefixes.

use std::collections::HashMap;

use crate::glob;
use crate::parse::{normalize_alias, AliasLine};

#[derive(Debug, Default, Clone)]
pub struct AliasIndex {
    /// Literal prefix → (position in the file, normalised pattern, module).
    by_prefix: HashMap<String, Vec<(usize, String, String)>>,
    /// The distinct prefix lengths, ascending: only these are probed.
    prefix_lens: Vec<usize>,
    len: usize,
}

impl AliasIndex {
    pub fn new(lines: Vec<AliasLine>) -> AliasIndex {
        let mut index = AliasIndex {
            by_prefix: HashMap::with_capacity(lines.len() / 2),
            ..AliasIndex::default()
        };
        for AliasLine { pattern, module } in lines {
            // Most patterns have no `-`: keep their allocation.
            let pattern = if pattern.contains('-') {
                normalize_alias(&pattern)
            } else {
                pattern
            };
            let prefix = glob::literal_prefix(&pattern).to_string();
            index.prefix_lens.push(prefix.len());
            index
                .by_prefix
                .entry(prefix)
                .or_default()
                .push((index.len, pattern, module));
            index.len = index.len.saturating_add(1);
        }
        index.prefix_lens.sort_unstable();
        index.prefix_lens.dedup();
        index
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Modules whose alias pattern matches `name` (a modalias, or a name such
    /// as `fs-vfat`), without duplicates, in the order modules.alias lists them.
    pub fn lookup(&self, name: &str) -> Vec<String> {
        let name = normalize_alias(name);
        let mut hits: Vec<(usize, &str)> = Vec::new();
        let fits = self
            .prefix_lens
            .iter()
            .take_while(|&&len| len <= name.len());
        for &end in fits.filter(|&&e| name.is_char_boundary(e)) {
            let Some(candidates) = name.get(..end).and_then(|p| self.by_prefix.get(p)) else {
                continue;
            };
            for (order, pattern, module) in candidates {
                if glob::matches(pattern, &name) {
                    hits.push((*order, module));
                }
            }
        }
        hits.sort_unstable_by_key(|&(order, _)| order);
        let mut out: Vec<String> = Vec::new();
        for (_, module) in hits {
            if !out.iter().any(|m| m == module) {
                out.push(module.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_alias;

    fn index(text: &str) -> AliasIndex {
        AliasIndex::new(parse_alias(text).unwrap())
    }

    const SAMPLE: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias acpi*:LNRO0005:* virtio_mmio
alias fs-vfat vfat
alias fs-iso9660 isofs
alias *:anything:* catchall
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
";

    #[test]
    fn lookups() {
        let idx = index(SAMPLE);
        assert_eq!(idx.len(), 9);
        assert_eq!(
            idx.lookup("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
            ["virtio_pci"]
        );
        assert_eq!(idx.lookup("virtio:d00000001v00001AF4"), ["virtio_net"]);
        assert_eq!(
            idx.lookup("virtio:d00000003v00001AF4"),
            Vec::<String>::new()
        );
        assert_eq!(idx.lookup("acpi:LNRO0005:"), ["virtio_mmio"]);
        assert_eq!(idx.lookup("fs-vfat"), ["vfat"]);
        assert_eq!(idx.lookup("fs_vfat"), ["vfat"]);
        assert!(idx.lookup("fs-vfatx").is_empty());
        // Patterns with an empty literal prefix are still tried.
        assert_eq!(idx.lookup("x:anything:y"), ["catchall"]);
        // Several modules for one alias: all of them, in file order.
        assert_eq!(
            idx.lookup("crypto-crc32c"),
            ["crc32c_intel", "crc32c_generic"]
        );
    }

    /// The index must find exactly what a linear scan over all patterns finds.
    #[test]
    fn index_agrees_with_linear_scan() {
        let lines = parse_alias(SAMPLE).unwrap();
        let idx = AliasIndex::new(lines.clone());
        let queries = [
            "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00",
            "pci:v00008086d00001000sv0sd0bc02sc00i00",
            "virtio:d00000002v00001AF4",
            "acpi:LNRO0005:",
            "fs-iso9660",
            "",
            "q:anything:",
        ];
        for q in queries {
            let mut linear: Vec<String> = Vec::new();
            for l in &lines {
                if glob::matches(&normalize_alias(&l.pattern), &normalize_alias(q))
                    && !linear.contains(&l.module)
                {
                    linear.push(l.module.clone());
                }
            }
            let mut got = idx.lookup(q);
            got.sort();
            linear.sort();
            assert_eq!(got, linear, "query {q:?}");
        }
    }
}
