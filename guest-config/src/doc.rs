//! The bridge between TOML text and located errors: parses a document keeping spans, so that
//! each part can be deserialized on its own (one bad service does not hide the others) and
//! every error, from the parser, from serde or from validation, gets a line and column.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::error::{ConfigError, Pos, Problem};

/// Where a configuration came from, with the position of every key, so that errors found
/// after parsing (validation, merge) still point at a line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    keys: BTreeMap<String, Pos>,
}

impl Origin {
    /// An origin with no positions (for configs built in code).
    pub fn new(file: impl Into<PathBuf>) -> Origin {
        Origin {
            file: file.into(),
            keys: BTreeMap::new(),
        }
    }

    /// Position of `key` (dotted), or of its nearest parent that has one.
    pub fn pos(&self, key: &str) -> Option<Pos> {
        let mut k = key;
        loop {
            if let Some(p) = self.keys.get(k) {
                return Some(*p);
            }
            k = &k[..k.rfind('.')?];
        }
    }

    pub fn error(&self, key: impl Into<String>, problem: Problem) -> ConfigError {
        let key = key.into();
        ConfigError {
            file: self.file.clone(),
            pos: self.pos(&key),
            key,
            problem,
        }
    }
}

/// One key of the document: its dotted path and the spans of the key and of its value.
struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

/// A parsed document: text, root table and every key with its spans.
pub(crate) struct Doc<'a> {
    pub text: &'a str,
    pub root: DeTable<'a>,
    pub origin: Origin,
    entries: Vec<Entry>,
}

impl<'a> Doc<'a> {
    /// Parses `text`; all syntax errors the parser can recover from are returned together.
    pub fn parse(text: &'a str, file: &Path) -> Result<Doc<'a>, Vec<ConfigError>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            return Err(errors
                .into_iter()
                .map(|e| ConfigError {
                    file: file.to_path_buf(),
                    pos: e.span().map(|s| Pos::at(text, s.start)),
                    key: String::new(),
                    problem: Problem::Syntax(e.message().trim().to_string()),
                })
                .collect());
        }
        let root = root.into_inner();
        let mut entries = Vec::new();
        collect(&root, "", &mut entries);
        let keys = entries
            .iter()
            .map(|e| (e.path.clone(), Pos::at(text, e.key.start)))
            .collect();
        Ok(Doc {
            text,
            root,
            origin: Origin {
                file: file.to_path_buf(),
                keys,
            },
            entries,
        })
    }

    /// The dotted key an error at byte `offset` concerns: the innermost key whose key or
    /// value contains it, else the last key before it.
    fn key_at(&self, offset: usize) -> String {
        // An empty range (a key with no value) still holds its start.
        let inside = |r: &Range<usize>| r.contains(&offset) || r.start == offset;
        let hit = self
            .entries
            .iter()
            .filter(|e| inside(&e.key) || inside(&e.value))
            .max_by_key(|e| e.path.len());
        let before = || {
            self.entries
                .iter()
                .filter(|e| e.key.start <= offset)
                .max_by_key(|e| e.key.start)
        };
        hit.or_else(before)
            .map(|e| e.path.clone())
            .unwrap_or_default()
    }

    /// A serde error turned into a located [`ConfigError`]; `fallback` is the key named when
    /// the error carries no span.
    pub fn de_error(&self, e: &toml::de::Error, fallback: &str) -> ConfigError {
        let (pos, key) = match e.span() {
            Some(s) => (Some(Pos::at(self.text, s.start)), self.key_at(s.start)),
            None => (self.origin.pos(fallback), fallback.to_string()),
        };
        // A span on the whole table (e.g. "missing field") resolves to a parent; keep the
        // more precise of the two.
        let key = if key.len() < fallback.len() && fallback.starts_with(&key) {
            fallback.to_string()
        } else {
            key
        };
        ConfigError {
            file: self.origin.file.clone(),
            pos,
            key,
            problem: Problem::Schema(e.message().trim().to_string()),
        }
    }

    /// Removes and returns a top-level key.
    pub fn take(&mut self, key: &str) -> Option<Spanned<DeValue<'a>>> {
        self.root.remove(key)
    }
}

/// Deserializes `T` from each top-level key of `root` on its own, handing each result to
/// `set` with its key: serde stops at a struct's first error, this way every key that is
/// wrong is reported. Errors are pushed to `errors`.
pub(crate) fn per_key<'a, T: Deserialize<'a>>(
    doc: &Doc<'a>,
    root: DeTable<'a>,
    errors: &mut Vec<ConfigError>,
    mut set: impl FnMut(&str, T),
) {
    for (k, v) in root {
        let key = k.get_ref().to_string();
        let span = k.span().start..v.span().end.max(k.span().end);
        let mut one = DeTable::new();
        one.insert(k, v);
        match from_value::<T>(table_value(one, span)) {
            Ok(t) => set(&key, t),
            Err(e) => errors.push(doc.de_error(&e, &key)),
        }
    }
}

/// Orders errors by position (those without one last), keeping the order of equals.
pub(crate) fn sort_errors(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (e.pos.is_none(), e.pos));
}

/// Deserializes one part of a document.
pub(crate) fn from_value<'a, T: Deserialize<'a>>(
    v: Spanned<DeValue<'a>>,
) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(v))
}

/// A table as a value, for [`from_value`], spanning `span`.
pub(crate) fn table_value(t: DeTable<'_>, span: Range<usize>) -> Spanned<DeValue<'_>> {
    Spanned::new(span, DeValue::Table(t))
}

fn collect(t: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        match v.get_ref() {
            DeValue::Table(inner) => collect(inner, &path, out),
            DeValue::Array(a) => {
                for item in a.iter() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        collect(inner, &path, out);
                    }
                }
            }
            _ => {}
        }
        out.push(Entry {
            path,
            key: k.span(),
            value: v.span(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_columns() {
        let t = "a = 1\nbb = é2\n";
        assert_eq!(Pos::at(t, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::at(t, 6), Pos { line: 2, col: 1 });
        // The é is two bytes but one column.
        assert_eq!(Pos::at(t, 13), Pos { line: 2, col: 7 });
        assert_eq!(Pos::at(t, 999).line, 3);
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = Doc::parse("a = 1\nb = = 2\n", Path::new("/x.toml"))
            .err()
            .unwrap();
        assert_eq!(e[0].pos.unwrap().line, 2, "{e:?}");
        assert!(e[0].to_string().starts_with("/x.toml:2:"), "{}", e[0]);
    }

    #[test]
    fn origin_falls_back_to_parent_key() {
        let d = Doc::parse("x = 0\n[services.web]\ncommand = []\n", Path::new("f"))
            .ok()
            .unwrap();
        assert_eq!(d.origin.pos("services.web.command").unwrap().line, 3);
        assert_eq!(d.origin.pos("services.web.after").unwrap().line, 2);
        assert_eq!(d.origin.pos("nope"), None);
    }
}
