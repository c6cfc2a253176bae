//! The binary index reader against tries written here the way depmod writes them (children
//! before their parent, chains of single children folded into a prefix), and against
//! damaged files. The real tree's tries are checked against its text files in `real_tree.rs`.

use std::collections::BTreeMap;

use crate::alias::AliasIndex;
use crate::index::modules_by_priority;
use crate::parse::{normalize_alias, parse_alias};
use crate::{BinIndex, Error, ModuleIndex};

#[derive(Default)]
struct Trie {
    children: BTreeMap<u8, Trie>,
    values: Vec<(u32, String)>,
}

impl Trie {
    fn insert(&mut self, key: &str, priority: u32, value: &str) {
        let mut node = self;
        for b in key.bytes() {
            node = node.children.entry(b).or_default();
        }
        node.values.push((priority, value.to_string()));
        node.values.sort_by_key(|v| v.0);
    }

    /// Writes the node (and first its subtree) to `out`; its offset with the flag bits.
    fn write(&self, out: &mut Vec<u8>) -> u32 {
        let mut prefix = Vec::new();
        let mut node = self;
        while node.values.is_empty() && node.children.len() == 1 {
            let (b, child) = node.children.iter().next().unwrap();
            prefix.push(*b);
            node = child;
        }
        let children: Vec<(u8, u32)> = node
            .children
            .iter()
            .map(|(b, c)| (*b, c.write(out)))
            .collect();
        let at = out.len() as u32;
        let mut flags = 0;
        if !prefix.is_empty() {
            flags |= 0x8000_0000;
            out.extend(&prefix);
            out.push(0);
        }
        if let (Some(first), Some(last)) = (children.first(), children.last()) {
            flags |= 0x2000_0000;
            out.extend([first.0, last.0]);
            for b in first.0..=last.0 {
                let off = children.iter().find(|c| c.0 == b).map_or(0, |c| c.1);
                out.extend(off.to_be_bytes());
            }
        }
        if !node.values.is_empty() {
            flags |= 0x4000_0000;
            out.extend((node.values.len() as u32).to_be_bytes());
            for (p, v) in &node.values {
                out.extend(p.to_be_bytes());
                out.extend(v.as_bytes());
                out.push(0);
            }
        }
        at | flags
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0; 12];
        let root = self.write(&mut out);
        out[..4].copy_from_slice(&0xB007_F457u32.to_be_bytes());
        out[4..8].copy_from_slice(&0x0002_0001u32.to_be_bytes());
        out[8..12].copy_from_slice(&root.to_be_bytes());
        out
    }
}

const ALIASES: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias pci:v00001AF4d00001000sv*sd*bc02sc*i* legacy_net
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias acpi*:LNRO0005:* virtio_mmio
alias acpi*:PNP0C0C:* button
alias acpi*:PNP0A0[38]:* pci_root
alias fs-vfat vfat
alias fs-iso9660 isofs
alias *:anything:* catchall
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias of:N*T*Cvirtio,mmio virtio_mmio
alias dmi?:bvnQEMU:* qemu_fw
alias usb:v13FDp3940d0[0-2]*dc* usb_storage
";

/// The alias trie depmod would write for `text`: normalised patterns, each module's
/// priority its first line (depmod numbers modules in `modules.order`, as the file lists them).
fn alias_trie(text: &str) -> BinIndex {
    let mut trie = Trie::default();
    let mut order: Vec<String> = Vec::new();
    for l in parse_alias(text).unwrap() {
        let priority = match order.iter().position(|m| *m == l.module) {
            Some(p) => p,
            None => {
                order.push(l.module.clone());
                order.len() - 1
            }
        };
        trie.insert(&normalize_alias(&l.pattern), priority as u32, &l.module);
    }
    BinIndex::from_bytes("modules.alias.bin", trie.to_bytes()).unwrap()
}

fn modules(bin: &BinIndex, key: &str) -> Vec<String> {
    modules_by_priority(bin.search_wild(&normalize_alias(key)).unwrap())
}

#[test]
fn wildcard_search_agrees_with_the_text_index() {
    let bin = alias_trie(ALIASES);
    let text = AliasIndex::new(parse_alias(ALIASES).unwrap());
    let mut keys = vec![
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string(),
        "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00".into(),
        "virtio:d00000001v00001AF4".into(),
        "virtio:d00000003v00001AF4".into(),
        "acpi:LNRO0005:".into(),
        "acpi:PNP0C0C:".into(),
        "acpi:PNP0A08:PNP0A03:".into(),
        "acpi:PNP0A09:".into(),
        "fs-vfat".into(),
        "fs_vfat".into(),
        "fs-vfatx".into(),
        "x:anything:y".into(),
        "crypto-crc32c".into(),
        "of:NvirtioTCvirtio,mmio".into(),
        "dmi1:bvnQEMU:pvr".into(),
        "dmi:bvnQEMU:".into(),
        "usb:v13FDp3940d01xxdc00".into(),
        "usb:v13FDp3940d03xxdc00".into(),
        // Metacharacters in the key are text to match, never a path into a pattern.
        "usb:v13FDp3940d0[0-2]*dc*".into(),
        "acpi*:LNRO0005:*".into(),
        String::new(),
        "p".into(),
    ];
    // Every prefix of every key as well: the walk must stop cleanly anywhere.
    let prefixes: Vec<String> = keys
        .iter()
        .flat_map(|k| (0..k.len()).map(move |n| k[..n].to_string()))
        .collect();
    keys.extend(prefixes);
    for key in &keys {
        assert_eq!(modules(&bin, key), text.lookup(key), "key {key:?}");
    }
    assert_eq!(
        modules(&bin, "crypto-crc32c"),
        ["crc32c_intel", "crc32c_generic"]
    );
    assert_eq!(modules(&bin, "acpi:LNRO0005:"), ["virtio_mmio"]);
    assert_eq!(modules(&bin, "acpi:x:anything:"), ["catchall"]);
}

#[test]
fn exact_search() {
    let mut trie = Trie::default();
    trie.insert("virtio_net", 3, "kernel/virtio_net.ko: kernel/virtio.ko");
    trie.insert("virtio", 1, "kernel/virtio.ko:");
    trie.insert("virtio_blk", 2, "kernel/virtio_blk.ko: kernel/virtio.ko");
    trie.insert("builtin", 0, "");
    let bin = BinIndex::from_bytes("modules.dep.bin", trie.to_bytes()).unwrap();
    assert_eq!(
        bin.search("virtio_net").unwrap().as_deref(),
        Some("kernel/virtio_net.ko: kernel/virtio.ko")
    );
    assert_eq!(
        bin.search("virtio").unwrap().as_deref(),
        Some("kernel/virtio.ko:")
    );
    assert_eq!(bin.search("builtin").unwrap().as_deref(), Some(""));
    for absent in ["virtio_", "virtio_nett", "virt", "", "x", "virtio_*"] {
        assert_eq!(bin.search(absent).unwrap(), None, "{absent:?}");
    }
}

fn damaged(bytes: Vec<u8>) -> String {
    let err = match BinIndex::from_bytes("/lib/modules/r/modules.alias.bin", bytes) {
        Err(e) => e,
        Ok(bin) => match (
            bin.search_wild("pci:v00001AF4d00001000"),
            bin.search("virtio"),
        ) {
            (Err(e), _) | (_, Err(e)) => e,
            other => panic!("no error: {other:?}"),
        },
    };
    assert!(matches!(err, Error::DamagedIndex { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn damaged_files_are_errors_naming_the_file_and_offset() {
    let mut trie = Trie::default();
    trie.insert("pci:v00001AF4d*", 0, "virtio_pci");
    trie.insert("virtio", 1, "x");
    let bytes = trie.to_bytes();

    let mut bad_magic = bytes.clone();
    bad_magic[0] = 0;
    let e = damaged(bad_magic);
    assert!(
        e.contains("/lib/modules/r/modules.alias.bin at byte 0: not a depmod index"),
        "{e}"
    );

    let mut bad_version = bytes.clone();
    bad_version[5] = 3;
    assert!(damaged(bad_version).contains("index format 0x00030001"));

    assert!(damaged(bytes[..6].to_vec())
        .contains("at byte 0: 6 bytes, shorter than the 12-byte header"));
    assert!(damaged(bytes[..bytes.len() - 3].to_vec()).contains("past the end"));

    // The root points at itself as its own '*' child: a loop.
    let mut looped = Trie::default();
    looped.insert("p", 0, "m");
    looped.insert("q", 0, "m");
    let mut b = looped.to_bytes();
    let root = u32::from_be_bytes(b[8..12].try_into().unwrap());
    let at = (root & 0x0FFF_FFFF) as usize;
    // Root node: no prefix, children 'p'..'q'; make 'p' point back at the root and turn
    // the range into '*'..'*'.
    b[at] = b'*';
    b[at + 1] = b'*';
    b[at + 2..at + 6].copy_from_slice(&root.to_be_bytes());
    let e = damaged(b);
    assert!(e.contains("a loop?"), "{e}");

    // A child offset into the header.
    let mut into_header = Trie::default();
    into_header.insert("pa", 0, "m");
    into_header.insert("pb", 0, "m");
    let mut b = into_header.to_bytes();
    let root = u32::from_be_bytes(b[8..12].try_into().unwrap()) & 0x0FFF_FFFF;
    let at = root as usize + 2; // after "p\0": first, last, child offsets
    b[at + 2..at + 6].copy_from_slice(&4u32.to_be_bytes());
    let bin = BinIndex::from_bytes("m.bin", b).unwrap();
    let e = bin.search("pa").unwrap_err().to_string();
    assert!(
        e.contains("m.bin at byte 4: a node offset points into the header"),
        "{e}"
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut trie = Trie::default();
    for (i, l) in parse_alias(ALIASES).unwrap().iter().enumerate() {
        trie.insert(&normalize_alias(&l.pattern), i as u32, &l.module);
    }
    let bytes = trie.to_bytes();
    // Every single-byte corruption of a real trie: an answer or an error, never a panic.
    for at in 0..bytes.len() {
        for v in [0x00, 0xff, 0x2a, 0x40, 0x80] {
            let mut b = bytes.clone();
            b[at] = v;
            if let Ok(bin) = BinIndex::from_bytes("x.bin", b) {
                let _ = bin.search_wild("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
                let _ = bin.search_wild("acpi:LNRO0005:");
                let _ = bin.search("virtio:d00000001v*");
            }
        }
    }
}

/// A tree with damaged tries still loads every module: the text files answer instead.
#[test]
fn index_falls_back_to_text_when_a_trie_is_damaged() {
    let (tmp, text) = super::fakes::index();
    let dir = text.dir().to_path_buf();
    assert_eq!(text.format(), "text");
    // A header that is not an index: read as text from the start.
    std::fs::write(dir.join("modules.alias.bin"), b"garbage!garbage!").unwrap();
    let idx = ModuleIndex::load(&dir).unwrap();
    assert_eq!(idx.format(), "text");
    // A sound header over a damaged body: found at the first lookup, then text.
    let mut trie = Trie::default();
    trie.insert("virtio_net", 0, "x");
    let mut b = trie.to_bytes();
    b.truncate(14);
    std::fs::write(dir.join("modules.dep.bin"), b).unwrap();
    std::fs::remove_file(dir.join("modules.alias.bin")).unwrap();
    let idx = ModuleIndex::load(&dir).unwrap();
    assert_eq!(idx.format(), "binary and text");
    assert_eq!(
        idx.resolve("virtio_net").unwrap(),
        text.resolve("virtio_net").unwrap()
    );
    assert_eq!(idx.format(), "text");
    // A sound trie whose entry is not a `modules.dep` line: the same fallback.
    let mut trie = Trie::default();
    trie.insert("virtio_net", 0, "no colon here");
    std::fs::write(dir.join("modules.dep.bin"), trie.to_bytes()).unwrap();
    let idx = ModuleIndex::load(&dir).unwrap();
    assert_eq!(
        idx.resolve("virtio_net").unwrap(),
        text.resolve("virtio_net").unwrap()
    );
    assert_eq!(idx.format(), "text");
    let e = Error::DamagedIndex {
        path: "m.bin".into(),
        offset: None,
        reason: "x".into(),
    };
    assert_eq!(
        e.to_string(),
        "damaged module index m.bin: x (rerun depmod when building the image)"
    );
    drop(tmp);
}

/// Shared children make a small file describe a huge tree: the walk stops at its node budget
/// with an error instead of running for hours.
#[test]
fn a_tree_of_shared_children_is_cut_off() {
    let mut b = vec![0; 12];
    let mut raw = b.len() as u32 | 0x4000_0000;
    b.extend(1u32.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.extend(b"m\0");
    for _ in 0..40 {
        let at = b.len() as u32;
        b.extend([b'a', b'b']);
        b.extend(raw.to_be_bytes());
        b.extend(raw.to_be_bytes());
        raw = at | 0x2000_0000;
    }
    let root = b.len() as u32 | 0x2000_0000;
    b.extend([b'*', b'*']);
    b.extend(raw.to_be_bytes());
    b[..4].copy_from_slice(&0xB007_F457u32.to_be_bytes());
    b[4..8].copy_from_slice(&0x0002_0001u32.to_be_bytes());
    b[8..12].copy_from_slice(&root.to_be_bytes());
    let bin = BinIndex::from_bytes("shared.bin", b).unwrap();
    let e = bin.search_wild("x").unwrap_err().to_string();
    assert!(e.contains("shared.bin") && e.contains("(a loop?)"), "{e}");
}
