//! The kernel command line as the kernel itself splits it (`next_arg()` in lib/cmdline.c),
//! the `vminit.*` keys ([`VminitArgs`]) and the `module.param=value` words for the module
//! loader. Owns tokenizing and interpreting; reading `/proc/cmdline` is the caller's.
//!
//! Tokenizing follows the kernel to the byte: words are separated by whitespace outside
//! double quotes; a word may be quoted whole (`"a=b c"`) or only its value (`a="b c"`), and
//! those surrounding quotes are dropped while quotes elsewhere are kept; the first `=` splits
//! key from value; a bare `--` ends the kernel's parameters (what follows is the init's
//! argv, see [`Cmdline::init_args`]). The cmdline is bytes, not text: a word that is not
//! UTF-8 is skipped with a warning ([`Cmdline::from_bytes`]). One difference: the kernel's `isspace()` also treats
//! byte 0xA0 as a space; here only ASCII whitespace separates words, so UTF-8 text (where
//! 0xA0 is a continuation byte) is never split inside a character.

mod args;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

pub use args::{valid_module_name, CmdlineError, VminitArgs};

/// One word of the cmdline: `key` or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

/// A tokenized kernel cmdline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// The kernel's parameters, in order, up to a `--`.
    pub params: Vec<Param>,
    /// The words after `--`, which the kernel hands to init as argv (split on whitespace).
    pub init_args: Vec<String>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    s.get(n..).unwrap_or_default()
}

/// A NUL-terminated string read out of `buf` from `start`, as the kernel's C strings are.
fn c_str(buf: &[u8], start: usize) -> Vec<u8> {
    let tail = buf.get(start..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    tail[..end].to_vec()
}

/// One word as the kernel splits it, still bytes: `word` is the word as written (for
/// messages), `key` and `value` what the kernel's `next_arg()` makes of it.
struct RawParam<'a> {
    word: &'a [u8],
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// `next_arg()` of lib/cmdline.c: the next word of `args` (which starts at a non-space) and
/// the rest. Works on a copy with the same NUL writes as the C code, so every quoting corner
/// case comes out as the kernel's does.
// why: the C code's index arithmetic, kept to compare with it: `equals < i <= body.len()`,
// `i > equals + 1` where `word[i - 1]` follows a value's opening quote, `consumed <= args.len()`.
#[allow(clippy::arithmetic_side_effects)]
fn next_arg(args: &[u8]) -> (RawParam<'_>, &[u8]) {
    let quoted = args.first() == Some(&b'"');
    let body = if quoted { &args[1..] } else { args };
    let mut in_quote = quoted;
    let mut equals = 0;
    let mut i = 0;
    while i < body.len() {
        if is_space(body[i]) && !in_quote {
            break;
        }
        // `equals == 0` doubles as "not found yet", so a `=` at index 0 is skipped over
        // exactly as in the kernel.
        if equals == 0 && body[i] == b'=' {
            equals = i;
        }
        if body[i] == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let mut word = body[..i].to_vec();
    let value = if equals == 0 {
        None
    } else {
        word[equals] = 0;
        let mut v = equals + 1;
        if word.get(v) == Some(&b'"') {
            v += 1;
            if word[i - 1] == b'"' {
                word[i - 1] = 0;
            }
        }
        Some(v)
    };
    if quoted && i > 0 && word[i - 1] == b'"' {
        word[i - 1] = 0;
    }
    // The separator itself is consumed; `i` is at a space or at the end.
    let consumed = usize::from(quoted) + i + usize::from(i < body.len());
    let param = RawParam {
        word: &args[..consumed.min(args.len())],
        key: c_str(&word, 0),
        value: value.map(|v| c_str(&word, v)),
    };
    (param, skip_spaces(args.get(consumed..).unwrap_or_default()))
}

/// The warning for a word that is not UTF-8: its 1-based position and its bytes escaped
/// (`\xff`), so the console line itself stays clean text.
fn not_utf8(what: &str, position: usize, word: &[u8]) -> String {
    let shown = word.trim_ascii().escape_ascii();
    format!("{what} word {position} (\"{shown}\") is not UTF-8; skipped")
}

/// Words handed to init as `argv` (or `envp`) turned into strings: a word that is not UTF-8
/// is left out with a warning naming its 1-based position, and the others stand. Returns
/// the words and the warnings.
pub fn utf8_words(words: &[OsString]) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::with_capacity(words.len());
    let mut warnings = Vec::new();
    for (i, w) in words.iter().enumerate() {
        match w.to_str() {
            Some(s) => out.push(s.to_string()),
            None => warnings.push(not_utf8("argv", i.saturating_add(1), w.as_bytes())),
        }
    }
    (out, warnings)
}

impl Cmdline {
    /// Tokenizes a cmdline that is known to be text (module options, tests).
    pub fn parse(text: &str) -> Cmdline {
        Cmdline::from_bytes(text.as_bytes()).0
    }

    /// Tokenizes the cmdline as the kernel hands it over: bytes. A word whose key or value
    /// is not UTF-8 is skipped with a warning (returned second) naming its position; every
    /// other word stands, so a stray byte cannot hide `ip=` or `vminit.*`.
    pub fn from_bytes(raw: &[u8]) -> (Cmdline, Vec<String>) {
        let mut out = Cmdline::default();
        let mut warnings = Vec::new();
        let mut rest = skip_spaces(raw);
        let mut position = 0usize;
        while !rest.is_empty() {
            let (p, next) = next_arg(rest);
            rest = next;
            position = position.saturating_add(1);
            if p.value.is_none() && p.key == b"--" {
                for w in rest.split(|&b| is_space(b)).filter(|w| !w.is_empty()) {
                    position = position.saturating_add(1);
                    match std::str::from_utf8(w) {
                        Ok(s) => out.init_args.push(s.to_string()),
                        Err(_) => warnings.push(not_utf8("cmdline", position, w)),
                    }
                }
                break;
            }
            let key = String::from_utf8(p.key);
            let value = p.value.map(String::from_utf8).transpose();
            match (key, value) {
                (Ok(key), Ok(value)) => out.params.push(Param { key, value }),
                _ => warnings.push(not_utf8("cmdline", position, p.word)),
            }
        }
        (out, warnings)
    }

    /// The value of the last `key=value` word (repeated keys: last wins, as in the kernel).
    /// A bare `key` without `=` is not a value: see [`Cmdline::flag`].
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|p| p.key == key && p.value.is_some())
            .and_then(|p| p.value.as_deref())
    }

    /// Whether the bare word `key` (no `=`) is present.
    pub fn flag(&self, key: &str) -> bool {
        self.params
            .iter()
            .any(|p| p.key == key && p.value.is_none())
    }

    /// `module.param[=value]` words for the module loader, by module name (with `-`
    /// normalised to `_`, as module names are), each entry ready for `init_module`'s
    /// parameter string (`param=value`, the value re-quoted if it holds whitespace).
    ///
    /// Only `vminit.*` is left out. The kernel's own dotted parameters (`printk.time`,
    /// `i8042.noaux`, `rcupdate.*`...) are harmless here: they name built-in code, which is
    /// never loaded as a module, and the loader only looks up the entries of the modules it
    /// actually loads (as modprobe does with `/proc/cmdline`).
    pub fn module_params(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &self.params {
            let Some((module, param)) = p.key.split_once('.') else {
                continue;
            };
            if module.is_empty() || param.is_empty() || module == "vminit" {
                continue;
            }
            let entry = match &p.value {
                None => param.to_string(),
                Some(v) if v.bytes().any(is_space) => format!("{param}=\"{v}\""),
                Some(v) => format!("{param}={v}"),
            };
            out.entry(module.replace('-', "_")).or_default().push(entry);
        }
        out
    }
}

#[cfg(test)]
mod tests;
