//! depmod's binary indexes (`modules.dep.bin`, `modules.alias.bin`, `modules.builtin.bin`,
//! `modules.builtin.alias.bin`): the prefix tries kmod reads instead of the text files. A
//! lookup reads the nodes on its path (and, past a wildcard, that pattern's subtree) in
//! 16 KiB chunks fetched on demand, where the text twin has to be parsed whole: Debian's
//! `modules.alias` is 1.3 MB, 170–210 ms of a TCG boot, against a few chunks here.
//!
//! Owns the file format and the two searches kmod runs on it (libkmod-index.c): exact, for
//! module names, and wildcard, for modaliases against alias patterns. Choosing between a
//! binary index and its text twin, and falling back, is `index.rs`'s job.
//!
//! The file is image input: every offset, length and count is checked, walks are bounded,
//! and a damaged file is an error naming it and the offset, never a panic or an endless loop.
//!
//! Layout (big-endian u32s): magic `0xB007F457`, version `0x0002xxxx`, root node offset. A
//! node offset's top bits say what the node has ([`PREFIX`], [`CHILDS`], [`VALUES`]), the low
//! 28 bits where it is. A node is its prefix (NUL-terminated); then `first`, `last` (bytes)
//! and one child offset per byte from `first` to `last` (0: no child); then the value count
//! and, per value, a priority and a NUL-terminated string. depmod sorts values by priority.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::glob;

const MAGIC: u32 = 0xB007_F457;
const VERSION_MAJOR: u32 = 2;
const HEADER_LEN: u64 = 12;
const PREFIX: u32 = 0x8000_0000;
const VALUES: u32 = 0x4000_0000;
const CHILDS: u32 = 0x2000_0000;
const OFFSET_MASK: u32 = 0x0FFF_FFFF;
const CHUNK: u64 = 16 * 1024;
/// Longest prefix or value accepted: depmod's longest are dependency lists, a few KiB.
const MAX_STRING: usize = 64 * 1024;
/// Most values one node may carry (a popular alias has a handful).
const MAX_VALUES: u32 = 1 << 16;
/// Deepest wildcard walk: one level per pattern byte, and Debian's longest alias has 89.
const MAX_DEPTH: usize = 1024;
/// Most nodes one wildcard search may visit; Debian's largest subtree (`acpi*`) has a few
/// thousand. Past it the file loops or is not an index.
const MAX_NODES: usize = 1 << 20;

/// One value of a node: depmod's priority (the module's place in `modules.order`) and the
/// string (a module name, or a `modules.dep` line).
pub type Value = (u32, String);

enum Data {
    /// An open index file, read in chunks as the searches reach them.
    File {
        file: File,
        len: u64,
        chunks: Mutex<HashMap<u64, Arc<[u8]>>>,
    },
    /// The whole index in memory (tests, fuzzing).
    Memory(Arc<[u8]>),
}

/// One depmod binary index, opened and its header checked.
pub struct BinIndex {
    path: PathBuf,
    data: Data,
    root: u32,
    /// Flattened wildcard subtrees by (node offset, prefix position).
    subtrees: Mutex<HashMap<(u32, usize), Patterns>>,
}

impl std::fmt::Debug for BinIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinIndex")
            .field("path", &self.path)
            .finish()
    }
}

/// A node's layout: where its parts are, read from the file only when a search needs them.
struct Node {
    prefix_at: u64,
    prefix_len: usize,
    first: u8,
    /// Child offsets (0: none), one per byte from `first` on.
    children: usize,
    children_at: u64,
    values_at: Option<u64>,
}

/// The patterns below a wildcard: each one's bytes from the wildcard on, and where its values
/// are. Built on a subtree's first visit and kept, since every modalias of a bus walks the
/// same one (all `acpi:` devices share `acpi*`'s ~700 patterns).
type Patterns = Arc<Vec<(Vec<u8>, u64)>>;

fn is_wild(byte: u8) -> bool {
    matches!(byte, b'*' | b'?' | b'[')
}

impl BinIndex {
    /// Opens `path` and checks its header; `Ok(None)` when the file does not exist.
    pub fn open(path: &Path) -> Result<Option<BinIndex>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(read_err(path, source)),
        };
        let len = file
            .metadata()
            .map_err(|source| read_err(path, source))?
            .len();
        let data = Data::File {
            file,
            len,
            chunks: Mutex::new(HashMap::new()),
        };
        Self::with_data(path.to_path_buf(), data).map(Some)
    }

    /// An index held in memory, named `path` in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<BinIndex> {
        Self::with_data(path.into(), Data::Memory(bytes.into()))
    }

    fn with_data(path: PathBuf, data: Data) -> Result<BinIndex> {
        let mut me = BinIndex {
            path,
            data,
            root: 0,
            subtrees: Mutex::new(HashMap::new()),
        };
        if me.len() < HEADER_LEN {
            let reason = format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                me.len()
            );
            return Err(me.damaged(0, reason));
        }
        let mut r = Reader::new(&me);
        let magic = r.u32(0)?;
        let version = r.u32(4)?;
        let root = r.u32(8)?;
        if magic != MAGIC {
            return Err(me.damaged(0, format!("not a depmod index (magic {magic:#010x})")));
        }
        if version >> 16 != VERSION_MAJOR {
            return Err(me.damaged(
                4,
                format!("index format {version:#010x}, expected 0x0002xxxx"),
            ));
        }
        me.root = root;
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn damaged(&self, offset: u64, reason: String) -> Error {
        Error::DamagedIndex {
            path: self.path.clone(),
            offset: Some(offset),
            reason,
        }
    }

    fn len(&self) -> u64 {
        match &self.data {
            Data::File { len, .. } => *len,
            Data::Memory(bytes) => bytes.len() as u64,
        }
    }

    /// The chunk holding byte `at`, and where it starts.
    fn chunk(&self, at: u64) -> Result<(u64, Arc<[u8]>)> {
        let (file, chunks) = match &self.data {
            Data::Memory(bytes) => return Ok((0, bytes.clone())),
            Data::File { file, chunks, .. } => (file, chunks),
        };
        let start = at.saturating_sub(at % CHUNK);
        let mut cache = chunks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.get(&start) {
            return Ok((start, c.clone()));
        }
        let want = usize::try_from(CHUNK.min(self.len().saturating_sub(start))).unwrap_or(0);
        let mut buf = vec![0; want];
        let mut got = 0;
        while got < want {
            // A position inside the file (`start + got <= len`), so this cannot saturate.
            match file.read_at(&mut buf[got..], start.saturating_add(got as u64)) {
                Ok(0) => break,
                Ok(n) => got = got.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(read_err(&self.path, source)),
            }
        }
        buf.truncate(got);
        let c: Arc<[u8]> = buf.into();
        cache.insert(start, c.clone());
        Ok((start, c))
    }

    fn node(&self, r: &mut Reader<'_>, raw: u32) -> Result<Node> {
        let mut at = u64::from(raw & OFFSET_MASK);
        if at < HEADER_LEN {
            return Err(self.damaged(at, "a node offset points into the header".into()));
        }
        let mut node = Node {
            prefix_at: at,
            prefix_len: 0,
            first: 0,
            children: 0,
            children_at: at,
            values_at: None,
        };
        if raw & PREFIX != 0 {
            (node.prefix_len, at) = r.cstr(at)?;
        }
        if raw & CHILDS != 0 {
            let (first, last) = (r.byte(at)?, r.byte_at(at, 1)?);
            if last < first {
                return Err(self.damaged(at, format!("child range {first}..{last} is reversed")));
            }
            node.first = first;
            node.children = (first..=last).len();
            node.children_at = r.add(at, 2)?;
            at = r.slot(node.children_at, node.children)?;
        }
        if raw & VALUES != 0 {
            node.values_at = Some(at);
        }
        Ok(node)
    }

    /// The offset of `node`'s child for `byte`, if it has one.
    fn child(&self, r: &mut Reader<'_>, node: &Node, byte: u8) -> Result<Option<u32>> {
        let Some(k) = byte.checked_sub(node.first).map(usize::from) else {
            return Ok(None);
        };
        if k >= node.children {
            return Ok(None);
        }
        let child = self.child_at(r, node, k)?;
        Ok(Some(child).filter(|&c| c != 0))
    }

    /// The offset of `node`'s `k`th child (0: none).
    fn child_at(&self, r: &mut Reader<'_>, node: &Node, k: usize) -> Result<u32> {
        r.u32(r.slot(node.children_at, k)?)
    }

    fn values(&self, r: &mut Reader<'_>, mut at: u64) -> Result<Vec<Value>> {
        let count = r.u32(at)?;
        if count > MAX_VALUES {
            return Err(self.damaged(at, format!("{count} values in one node")));
        }
        at = r.add(at, 4)?;
        let mut out = Vec::new();
        for _ in 0..count {
            let priority = r.u32(at)?;
            let string_at = r.add(at, 4)?;
            let (len, end) = r.cstr(string_at)?;
            let bytes = r.bytes(string_at, len)?;
            let value = String::from_utf8(bytes)
                .map_err(|_| self.damaged(string_at, "a value is not UTF-8".into()))?;
            out.push((priority, value));
            at = end;
        }
        Ok(out)
    }

    /// The rest of `key` after `node`'s prefix, if `key` starts with it.
    fn strip_prefix<'k>(
        r: &mut Reader<'_>,
        node: &Node,
        key: &'k [u8],
    ) -> Result<Option<&'k [u8]>> {
        let Some((head, rest)) = key.split_at_checked(node.prefix_len) else {
            return Ok(None);
        };
        for (k, &want) in head.iter().enumerate() {
            if r.byte_at(node.prefix_at, k)? != want {
                return Ok(None);
            }
        }
        Ok(Some(rest))
    }

    /// The first value stored under exactly `key` (kmod's `index_search`): a module's
    /// `modules.dep` line, or `""` for a built-in in `modules.builtin.bin`.
    pub fn search(&self, key: &str) -> Result<Option<String>> {
        let mut key = key.as_bytes();
        let mut r = Reader::new(self);
        let mut raw = self.root;
        // Each step takes at least one byte of the key, so this ends.
        loop {
            let node = self.node(&mut r, raw)?;
            let Some(rest) = Self::strip_prefix(&mut r, &node, key)? else {
                return Ok(None);
            };
            let Some((&byte, rest)) = rest.split_first() else {
                return match node.values_at {
                    Some(at) => Ok(self.values(&mut r, at)?.into_iter().next().map(|v| v.1)),
                    None => Ok(None),
                };
            };
            let Some(child) = self.child(&mut r, &node, byte)? else {
                return Ok(None);
            };
            (raw, key) = (child, rest);
        }
    }

    /// Every value whose key, as a glob pattern, matches `key` (kmod's `index_searchwild`):
    /// the modules of every alias pattern a modalias matches, in the file's order.
    pub fn search_wild(&self, key: &str) -> Result<Vec<Value>> {
        let mut key = key.as_bytes();
        let mut r = Reader::new(self);
        let mut out = Vec::new();
        let mut raw = self.root;
        loop {
            let node = self.node(&mut r, raw)?;
            for j in 0..node.prefix_len {
                let byte = r.byte_at(node.prefix_at, j)?;
                if is_wild(byte) {
                    let rest = key.get(j..).unwrap_or_default();
                    self.match_subtree(&mut r, raw, j, &[], rest, &mut out)?;
                    return Ok(out);
                }
                if key.get(j) != Some(&byte) {
                    return Ok(out);
                }
            }
            key = key.get(node.prefix_len..).unwrap_or_default();
            for wild in [b'*', b'?', b'['] {
                if let Some(child) = self.child(&mut r, &node, wild)? {
                    self.match_subtree(&mut r, child, 0, &[wild], key, &mut out)?;
                }
            }
            let Some((&byte, rest)) = key.split_first() else {
                if let Some(at) = node.values_at {
                    out.extend(self.values(&mut r, at)?);
                }
                return Ok(out);
            };
            // A key byte that is itself a metacharacter was matched as the glob just above.
            // kmod also follows it into the pattern's branch as a literal, so that the key
            // `x[0-2]` matches the pattern `x[0-2]`; fnmatch, and the text index, say no.
            // The kernel never writes these bytes into a modalias.
            if is_wild(byte) {
                return Ok(out);
            }
            let Some(child) = self.child(&mut r, &node, byte)? else {
                return Ok(out);
            };
            (raw, key) = (child, rest);
        }
    }

    /// Adds the values of every pattern in the subtree at `raw` (from byte `j` of its prefix
    /// on, after `lead`) that matches `rest` of the key (kmod's `searchwild_all`).
    fn match_subtree<'a>(
        &'a self,
        r: &mut Reader<'a>,
        raw: u32,
        j: usize,
        lead: &[u8],
        rest: &[u8],
        out: &mut Vec<Value>,
    ) -> Result<()> {
        let cached = self
            .subtrees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(raw, j))
            .cloned();
        let patterns = match cached {
            Some(p) => p,
            None => {
                let mut flat = Flatten {
                    index: self,
                    r,
                    out: Vec::new(),
                    pattern: Vec::new(),
                    visited: 0,
                };
                flat.walk(raw, j, 0)?;
                let p: Patterns = Arc::new(flat.out);
                self.subtrees
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((raw, j), p.clone());
                p
            }
        };
        let mut pattern = lead.to_vec();
        for (suffix, values_at) in patterns.iter() {
            pattern.truncate(lead.len());
            pattern.extend_from_slice(suffix);
            if glob::matches_bytes(&pattern, rest) {
                out.extend(self.values(r, *values_at)?);
            }
        }
        Ok(())
    }
}

/// Lists every pattern of a subtree with where its values are, depth first.
struct Flatten<'a, 'r> {
    index: &'a BinIndex,
    r: &'r mut Reader<'a>,
    out: Vec<(Vec<u8>, u64)>,
    pattern: Vec<u8>,
    visited: usize,
}

impl Flatten<'_, '_> {
    fn walk(&mut self, raw: u32, j: usize, depth: usize) -> Result<()> {
        self.visited = self.visited.saturating_add(1);
        if depth > MAX_DEPTH || self.visited > MAX_NODES {
            return Err(self.too_far(raw));
        }
        let node = self.index.node(self.r, raw)?;
        let base = self.pattern.len();
        for k in j..node.prefix_len {
            let b = self.r.byte_at(node.prefix_at, k)?;
            self.pattern.push(b);
        }
        for k in 0..node.children {
            let child = self.index.child_at(self.r, &node, k)?;
            if child == 0 {
                continue;
            }
            // `k < children <= 256 - first`, so the sum fits a byte.
            let byte = node.first.wrapping_add(k as u8);
            self.pattern.push(byte);
            // Below MAX_DEPTH, checked above.
            self.walk(child, 0, depth.saturating_add(1))?;
            self.pattern.pop();
        }
        if let Some(at) = node.values_at {
            self.out.push((self.pattern.clone(), at));
        }
        self.pattern.truncate(base);
        Ok(())
    }

    /// Out of `walk`, whose stack frame is paid once per level.
    fn too_far(&self, raw: u32) -> Error {
        let at = u64::from(raw & OFFSET_MASK);
        let reason = format!(
            "a wildcard search went past {MAX_DEPTH} levels or {MAX_NODES} nodes (a loop?)"
        );
        self.index.damaged(at, reason)
    }
}

/// Bytes of an index, through the chunk last used.
struct Reader<'a> {
    index: &'a BinIndex,
    start: u64,
    chunk: Arc<[u8]>,
}

impl<'a> Reader<'a> {
    fn new(index: &'a BinIndex) -> Self {
        Reader {
            index,
            start: 0,
            chunk: Arc::from(Vec::new()),
        }
    }

    fn byte(&mut self, at: u64) -> Result<u8> {
        let within = |r: &Self| {
            at.checked_sub(r.start)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| r.chunk.get(i).copied())
        };
        if let Some(b) = within(self) {
            return Ok(b);
        }
        if at >= self.index.len() {
            return Err(self.index.damaged(
                at,
                format!("an offset points past the end ({} bytes)", self.index.len()),
            ));
        }
        (self.start, self.chunk) = self.index.chunk(at)?;
        within(self).ok_or_else(|| {
            self.index
                .damaged(at, "the file is shorter than it was when opened".into())
        })
    }

    /// `at + n`. Offsets, lengths and counts come from the file: past `u64` it is damaged.
    fn add(&self, at: u64, n: usize) -> Result<u64> {
        let sum = u64::try_from(n).ok().and_then(|n| at.checked_add(n));
        sum.ok_or_else(|| {
            self.index
                .damaged(at, format!("offset {at} + {n} overflows"))
        })
    }

    /// Where entry `k` of the array of u32s at `at` is (a saturated product is past any end).
    fn slot(&self, at: u64, k: usize) -> Result<u64> {
        self.add(at, k.saturating_mul(4))
    }

    fn byte_at(&mut self, at: u64, k: usize) -> Result<u8> {
        self.byte(self.add(at, k)?)
    }

    fn u32(&mut self, at: u64) -> Result<u32> {
        let mut b = [0; 4];
        for (k, slot) in b.iter_mut().enumerate() {
            *slot = self.byte_at(at, k)?;
        }
        Ok(u32::from_be_bytes(b))
    }

    /// The NUL-terminated string at `at`: its length, and the offset after its NUL.
    fn cstr(&mut self, at: u64) -> Result<(usize, u64)> {
        for len in 0..=MAX_STRING {
            let here = self.add(at, len)?;
            if self.byte(here)? == 0 {
                return Ok((len, self.add(here, 1)?));
            }
        }
        Err(self.index.damaged(
            at,
            format!("a string runs past {MAX_STRING} bytes without its NUL"),
        ))
    }

    fn bytes(&mut self, at: u64, len: usize) -> Result<Vec<u8>> {
        (0..len).map(|k| self.byte_at(at, k)).collect()
    }
}

fn read_err(path: &Path, source: io::Error) -> Error {
    Error::ReadIndex {
        path: path.to_path_buf(),
        source,
    }
}
