//! Parsers for the text indexes `depmod` writes under `/lib/modules/<release>/`:
//! `modules.dep`, `modules.alias`, `modules.builtin`, `modules.softdep`.
//!
//! Pure functions from `&str` to plain data; reading the files and building the
//! lookup structures is `index.rs`'s job. Errors name the file and the line.

use std::fmt;

/// `(file, 1-based line, what is wrong)`; the caller adds the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: &'static str,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// One line of `modules.dep`: `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepLine {
    /// Path relative to the module tree, as written.
    pub path: String,
    /// Dependencies as written: the ones nobody else needs first, so they are
    /// loaded right to left.
    pub deps: Vec<String>,
}

/// One `alias <pattern> <module>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasLine {
    pub pattern: String,
    pub module: String,
}

/// One `softdep <module> pre: a b post: c` line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoftdepLine {
    pub module: String,
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// Module name from a path or file name: the file stem without `.ko` and any
/// compression suffix, `-` turned into `_` (the kernel's own spelling).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))
        .unwrap_or(file);
    normalize_name(stem)
}

/// `-` to `_`: module names are spelt both ways and the kernel uses `_`.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// What kmod's `alias_normalize` does to alias patterns and lookups alike:
/// `-` becomes `_`, except inside `[...]` where it is a range operator.
pub fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_class = false;
    for c in alias.chars() {
        match c {
            '[' => in_class = true,
            ']' => in_class = false,
            _ => {}
        }
        out.push(if c == '-' && !in_class { '_' } else { c });
    }
    out
}

/// Lines that carry data: not blank, not `#` comments. Yields 1-based numbers.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        // The index files are ASCII; an ASCII trim skips decoding every character.
        .map(|(i, l)| (i.saturating_add(1), l.trim_ascii()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

pub fn parse_dep(text: &str) -> Result<Vec<DepLine>, ParseError> {
    data_lines(text)
        .map(|(n, line)| {
            let err = |reason: &str| ParseError {
                file: "modules.dep",
                line: n,
                reason: format!("{reason}: {line:?}"),
            };
            let (path, deps) = line
                .split_once(':')
                .ok_or_else(|| err("no ':' after the module path"))?;
            let path = path.trim();
            if path.is_empty() || path.contains(char::is_whitespace) {
                return Err(err("bad module path"));
            }
            Ok(DepLine {
                path: path.to_string(),
                deps: deps.split_whitespace().map(str::to_string).collect(),
            })
        })
        .collect()
}

pub fn parse_alias(text: &str) -> Result<Vec<AliasLine>, ParseError> {
    data_lines(text)
        .map(|(n, line)| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => Ok(AliasLine {
                    pattern: pattern.to_string(),
                    module: normalize_name(module),
                }),
                _ => Err(ParseError {
                    file: "modules.alias",
                    line: n,
                    reason: format!("expected `alias <pattern> <module>`, got {line:?}"),
                }),
            }
        })
        .collect()
}

/// `modules.builtin`: one path per line; returns the module names.
pub fn parse_builtin(text: &str) -> Result<Vec<String>, ParseError> {
    data_lines(text)
        .map(|(n, line)| {
            if line.bytes().any(|b| b.is_ascii_whitespace()) || !line.contains(".ko") {
                return Err(ParseError {
                    file: "modules.builtin",
                    line: n,
                    reason: format!(
                        "expected a module path like kernel/fs/ext4/ext4.ko, got {line:?}"
                    ),
                });
            }
            Ok(module_name(line))
        })
        .collect()
}

/// Names listed before any `pre:`/`post:` are ignored, as kmod ignores them
/// (Debian 6.1's cifs ships such lines: `softdep cifs gcm`).
pub fn parse_softdep(text: &str) -> Result<Vec<SoftdepLine>, ParseError> {
    data_lines(text)
        .map(|(n, line)| {
            let err = |reason: &str| ParseError {
                file: "modules.softdep",
                line: n,
                reason: format!("{reason}: {line:?}"),
            };
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                return Err(err("expected `softdep <module> pre: ... post: ...`"));
            }
            let module = words.next().ok_or_else(|| err("no module name"))?;
            let mut out = SoftdepLine {
                module: normalize_name(module),
                ..SoftdepLine::default()
            };
            #[derive(PartialEq)]
            enum Mode {
                None,
                Pre,
                Post,
            }
            let mut mode = Mode::None;
            for word in words {
                match word {
                    "pre:" => mode = Mode::Pre,
                    "post:" => mode = Mode::Post,
                    name if mode == Mode::Pre => out.pre.push(name.to_string()),
                    name if mode == Mode::Post => out.post.push(name.to_string()),
                    _ => {}
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko"), "ext4");
        assert_eq!(
            module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz"),
            "virtio_rng"
        );
        assert_eq!(module_name("a/b/c.ko.zst"), "c");
        assert_eq!(module_name("c.ko.gz"), "c");
        assert_eq!(normalize_alias("fs-vfat"), "fs_vfat");
        assert_eq!(normalize_alias("x[a-z]-y"), "x[a-z]_y");
    }

    #[test]
    fn dep_lines() {
        let text = "# comment\nkernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko\n\nkernel/fs/fat/fat.ko:\n";
        let deps = parse_dep(text).unwrap();
        assert_eq!(deps.len(), 2);
        assert_eq!(deps[0].path, "kernel/fs/ext4/ext4.ko");
        assert_eq!(
            deps[0].deps,
            ["kernel/lib/crc16.ko", "kernel/fs/mbcache.ko"]
        );
        assert!(deps[1].deps.is_empty());
    }

    #[test]
    fn dep_errors_name_file_and_line() {
        let err = parse_dep("a.ko:\nbroken line\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.file, "modules.dep");
        assert!(err.to_string().starts_with("modules.dep line 2:"), "{err}");
        assert!(parse_dep(": x.ko").is_err());
    }

    #[test]
    fn alias_lines() {
        let a =
            parse_alias("# x\nalias fs-vfat vfat\nalias virtio:d00000001v* virtio-net\n").unwrap();
        assert_eq!(
            a[0],
            AliasLine {
                pattern: "fs-vfat".into(),
                module: "vfat".into()
            }
        );
        assert_eq!(a[1].module, "virtio_net");
        let err = parse_alias("alias x\n").unwrap_err();
        assert_eq!((err.file, err.line), ("modules.alias", 1));
        assert!(parse_alias("options x y\n").is_err());
        assert!(parse_alias("alias a b c\n").is_err());
    }

    #[test]
    fn builtin_lines() {
        let b = parse_builtin("kernel/mm/zswap.ko\nkernel/crypto/crc32c_generic.ko\n").unwrap();
        assert_eq!(b, ["zswap", "crc32c_generic"]);
        let err = parse_builtin("kernel/mm/zswap.ko\nnot a path\n").unwrap_err();
        assert_eq!((err.file, err.line), ("modules.builtin", 2));
    }

    #[test]
    fn softdep_lines() {
        let s = parse_softdep(
            "softdep ext4 pre: crypto-crc32c\nsoftdep m pre: a b post: c\nsoftdep cifs gcm\n",
        )
        .unwrap();
        assert_eq!(s[0].module, "ext4");
        assert_eq!(s[0].pre, ["crypto-crc32c"]);
        assert_eq!(s[1].pre, ["a", "b"]);
        assert_eq!(s[1].post, ["c"]);
        assert!(s[2].pre.is_empty() && s[2].post.is_empty());
        let err = parse_softdep("softdep\n").unwrap_err();
        assert_eq!((err.file, err.line), ("modules.softdep", 1));
        assert!(parse_softdep("alias a b\n").is_err());
    }
}
