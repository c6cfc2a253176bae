//! Shell-style glob matching with the semantics modprobe gets from
//! `fnmatch(pattern, string, 0)`: `*` matches any run of bytes (including `/`),
//! `?` any one byte, `[...]` a class (`!` or `^` negates, `a-z` ranges, a `]`
//! right after the opening bracket is literal, `[:alpha:]`-style named classes),
//! and `\` quotes the next byte. Matching is byte-wise and case-sensitive, as in
//! the C locale the kernel's modalias strings are written in. glibc's corner
//! cases are followed too (an unterminated `[` is literal, a trailing `\`
//! matches nothing, an unknown `[:name:]` fails unless a member before it
//! matched); `tests/fnmatch_oracle.rs` checks this against the C library.
//!
//! Owns only matching; which patterns are tried against which string is
//! `alias.rs`'s business.

/// Whether `text` matches the glob `pattern` in full.
pub fn matches(pattern: &str, text: &str) -> bool {
    matches_bytes(pattern.as_bytes(), text.as_bytes())
}

/// The bytes before the first glob metacharacter: every string the pattern
/// matches starts with them, which is what the alias index keys on.
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern
        .bytes()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    // The metacharacters are ASCII, so `end` is always a char boundary.
    pattern.get(..end).unwrap_or("")
}

/// A string built from `pattern` for tests and benchmarks: `*` → nothing, `?` → `0`, a
/// class → its first listed byte (so a negated class gives a string it does not match).
pub fn sample_match(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => {}
            '?' => out.push('0'),
            '\\' => out.extend(chars.next()),
            '[' => {
                let mut first = None;
                for d in chars.by_ref() {
                    if d == ']' && first.is_some() {
                        break;
                    }
                    if first.is_none() && d != '!' && d != '^' {
                        first = Some(d);
                    }
                }
                out.extend(first);
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `pattern` contains no metacharacter (so it matches only itself).
pub fn is_literal(pattern: &str) -> bool {
    literal_prefix(pattern).len() == pattern.len()
}

/// [`matches`] on bytes.
pub(crate) fn matches_bytes(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the most recent `*`: (pattern index after the
    // star, text index the star currently stops at). Backtracking only to the
    // last star keeps this linear in practice and never exponential.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(&pc) = pat.get(p) {
            match pc {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => match match_class(pat, p, text[t]) {
                    Class::Hit(next) => {
                        p = next;
                        t += 1;
                        continue;
                    }
                    Class::Miss => {}
                    // An unterminated `[` is an ordinary character, as in fnmatch.
                    Class::Unterminated if text[t] == b'[' => {
                        p += 1;
                        t += 1;
                        continue;
                    }
                    Class::Unterminated => {}
                },
                // A trailing `\` matches nothing, as in glibc.
                b'\\' if pat.get(p + 1) == Some(&text[t]) => {
                    p += 2;
                    t += 1;
                    continue;
                }
                b'\\' => {}
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

enum Class {
    /// Matched; the pattern goes on at this index.
    Hit(usize),
    Miss,
    /// No closing `]`: the `[` is literal.
    Unterminated,
}

/// Matches `c` against the class starting at `pat[start] == b'['`.
fn match_class(pat: &[u8], start: usize, c: u8) -> Class {
    let mut i = start + 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&cur) = pat.get(i) else {
            return Class::Unterminated;
        };
        if cur == b']' && !first {
            return if negate {
                Class::Hit(i + 1)
            } else {
                Class::Miss
            };
        }
        first = false;
        let hit;
        if let (b'[', Some(b':')) = (cur, pat.get(i + 1)) {
            match named_class(pat, i + 2, c) {
                Named::Class(class_hit, next) => {
                    hit = class_hit;
                    i = next;
                }
                // glibc fails this alignment on an unknown class name.
                Named::Invalid => return Class::Miss,
                Named::NotAName => match member(pat, i, c) {
                    Some(m) => (hit, i) = m,
                    None => return Class::Unterminated,
                },
            }
        } else {
            match member(pat, i, c) {
                Some(m) => (hit, i) = m,
                None => return Class::Unterminated,
            }
        }
        if hit {
            // As glibc: once a member matched, the rest is skipped rather
            // than checked; a negated class then fails.
            return match skip_rest(pat, i) {
                Some(next) if !negate => Class::Hit(next),
                Some(_) => Class::Miss,
                None => Class::Unterminated,
            };
        }
    }
}

/// One member at `i`: a byte or a range `a-z`. `(matched, next index)`, or
/// `None` when the pattern ends inside it.
fn member(pat: &[u8], i: usize, c: u8) -> Option<(bool, usize)> {
    let (lo, after_lo) = class_byte(pat, i)?;
    if pat.get(after_lo) == Some(&b'-') && pat.get(after_lo + 1).is_some_and(|&b| b != b']') {
        let (hi, after_hi) = class_byte(pat, after_lo + 1)?;
        Some((lo <= c && c <= hi, after_hi))
    } else {
        Some((lo == c, after_lo))
    }
}

/// Index after the `]` closing a class whose members from `i` on need not
/// be examined; `None` if it never closes (then the `[` is literal).
fn skip_rest(pat: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let c = *pat.get(i)?;
        i += 1;
        match c {
            b'\\' => {
                pat.get(i)?;
                i += 1;
            }
            b'[' if pat.get(i) == Some(&b':') => {
                if let Some(next) = class_name_end(pat, i + 1) {
                    i = next;
                }
            }
            b']' => return Some(i),
            _ => {}
        }
    }
}

/// For a name starting at `start` (after `[:`): the index after its `:]`,
/// if it is made of the letters glibc accepts in class names (`a`..`y`).
fn class_name_end(pat: &[u8], start: usize) -> Option<usize> {
    let rest = pat.get(start..)?;
    let len = rest.iter().position(|b| !(b'a'..=b'y').contains(b))?;
    (rest.get(len..len + 2) == Some(b":]".as_slice())).then_some(start + len + 2)
}

/// One (possibly backslash-quoted) byte inside a class.
fn class_byte(pat: &[u8], i: usize) -> Option<(u8, usize)> {
    match *pat.get(i)? {
        b'\\' => Some((*pat.get(i + 1)?, i + 2)),
        b => Some((b, i + 1)),
    }
}

enum Named {
    /// `(matched, index after ":]")`.
    Class(bool, usize),
    /// Looks like a class name (lower-case letters) but is not one.
    Invalid,
    /// Not a `[:name:]` at all: the `[` is an ordinary member.
    NotAName,
}

/// `[:name:]` inside a class, `name_start` pointing after `[:`.
fn named_class(pat: &[u8], name_start: usize, c: u8) -> Named {
    // Like glibc: only `a`..`y` make a name; anything else means the `[`
    // was an ordinary member.
    let Some(end) = class_name_end(pat, name_start) else {
        return Named::NotAName;
    };
    let name = &pat[name_start..end - 2];
    let hit = match name {
        b"alpha" => c.is_ascii_alphabetic(),
        b"digit" => c.is_ascii_digit(),
        b"alnum" => c.is_ascii_alphanumeric(),
        b"upper" => c.is_ascii_uppercase(),
        b"lower" => c.is_ascii_lowercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        b"space" => c.is_ascii_whitespace() || c == 0x0b,
        b"blank" => c == b' ' || c == b'\t',
        b"punct" => c.is_ascii_punctuation(),
        b"print" => (0x20..0x7f).contains(&c),
        b"graph" => c.is_ascii_graphic(),
        b"cntrl" => c.is_ascii_control(),
        _ => return Named::Invalid,
    };
    Named::Class(hit, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_wildcards() {
        assert!(matches("fs-vfat", "fs-vfat"));
        assert!(!matches("fs-vfat", "fs-vfa"));
        assert!(!matches("fs-vfa", "fs-vfat"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything/at:all"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(!matches("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        assert!(matches("**a**", "xxaxx"));
        assert!(matches("*a*b*c", "aXbXbXc"));
        assert!(!matches("*a*b*c", "aXbXbXcX"));
        assert!(matches("acpi*:LNRO0005:*", "acpi:LNRO0005:"));
        assert!(!matches("acpi*:LNRO0005:*", "acpi:LNRO0006:"));
    }

    #[test]
    fn pci_virtio_alias() {
        let pat = "pci:v00001AF4d*sv*sd*bc*sc*i*";
        assert!(matches(
            pat,
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!matches(
            pat,
            "pci:v00008086d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        // Case matters: fnmatch without FNM_CASEFOLD.
        assert!(!matches(
            pat,
            "pci:v00001af4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
    }

    #[test]
    fn classes() {
        assert!(matches("[abc]", "b"));
        assert!(!matches("[abc]", "d"));
        assert!(matches("[!abc]", "d"));
        assert!(matches("[^abc]", "d"));
        assert!(!matches("[!abc]", "a"));
        assert!(matches("x[0-9A-F]y", "xBy"));
        assert!(!matches("x[0-9A-F]y", "xby"));
        assert!(matches("[]]", "]"));
        assert!(matches("[!]]", "a"));
        assert!(!matches("[!]]", "]"));
        assert!(matches("[a-]", "-"));
        assert!(matches("[[:digit:]]x", "7x"));
        assert!(!matches("[[:digit:]]x", "ax"));
        assert!(matches("[[:xdigit:]_]", "_"));
        assert!(matches(
            "usb:v*p*d*dc*dsc*dp*ic03isc01ip0[12]in*",
            "usb:v1p2d3dc0dsc0dp0ic03isc01ip02in00"
        ));
        assert!(!matches(
            "usb:v*p*d*dc*dsc*dp*ic03isc01ip0[12]in*",
            "usb:v1p2d3dc0dsc0dp0ic03isc01ip03in00"
        ));
    }

    #[test]
    fn unterminated_class_and_escapes() {
        assert!(matches("a[b", "a[b"));
        assert!(!matches("a[b", "ab"));
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "axb"));
        assert!(matches(r"[\]]", "]"));
        // glibc: a trailing backslash never matches.
        assert!(!matches(r"a\", r"a\"));
        assert!(!matches(r"a\", "a"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(literal_prefix("pci:v00001AF4d*sv*"), "pci:v00001AF4d");
        assert_eq!(literal_prefix("fs-vfat"), "fs-vfat");
        assert_eq!(literal_prefix("*x"), "");
        assert_eq!(literal_prefix("ab[cd]"), "ab");
        assert!(is_literal("fs-ext4"));
        assert!(!is_literal("virtio:d00000001v*"));
    }

    /// Every prefix claim must hold: a string the pattern matches starts
    /// with the pattern's literal prefix (the alias index relies on it).
    #[test]
    fn prefix_is_sound() {
        let cases = [
            ("pci:v00001AF4d*", "pci:v00001AF4d00001000"),
            ("ab?d", "abcd"),
            ("ab[c]d", "abcd"),
            (r"ab\*", "ab*"),
        ];
        for (pat, text) in cases {
            assert!(matches(pat, text), "{pat} vs {text}");
            assert!(text.starts_with(literal_prefix(pat)));
        }
    }
}
