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
pub(crate) fn matches_bytes(mut pat: &[u8], mut text: &[u8]) -> bool {
    // Where to resume after the most recent `*`: (the pattern after the star, the text the
    // star currently stops at). Backtracking only to the last star keeps this linear in
    // practice and never exponential.
    let mut star: Option<(&[u8], &[u8])> = None;
    while let Some((&tc, text_rest)) = text.split_first() {
        if let Some((&pc, pat_rest)) = pat.split_first() {
            // The pattern after `pc` matched `tc`, if it did.
            let next = match pc {
                b'*' => {
                    star = Some((pat_rest, text));
                    pat = pat_rest;
                    continue;
                }
                b'?' => Some(pat_rest),
                b'[' => match match_class(pat_rest, tc) {
                    Class::Hit(after) => Some(after),
                    Class::Miss => None,
                    // An unterminated `[` is an ordinary character, as in fnmatch.
                    Class::Unterminated => (tc == b'[').then_some(pat_rest),
                },
                // A trailing `\` matches nothing, as in glibc.
                b'\\' => match pat_rest {
                    [quoted, after @ ..] if *quoted == tc => Some(after),
                    _ => None,
                },
                c => (c == tc).then_some(pat_rest),
            };
            if let Some(after) = next {
                (pat, text) = (after, text_rest);
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                // `st` is a text the loop went into, so not empty.
                let st = st.get(1..).unwrap_or_default();
                (pat, text) = (sp, st);
                star = Some((sp, st));
            }
            None => return false,
        }
    }
    pat.iter().all(|&c| c == b'*')
}

enum Class<'a> {
    /// Matched; the pattern goes on with this.
    Hit(&'a [u8]),
    Miss,
    /// No closing `]`: the `[` is literal.
    Unterminated,
}

/// Matches `c` against the class `pat` begins with, just after its `[`.
fn match_class(pat: &[u8], c: u8) -> Class<'_> {
    let (negate, mut pat) = match pat {
        [b'!' | b'^', rest @ ..] => (true, rest),
        _ => (false, pat),
    };
    let mut first = true;
    loop {
        let Some((&cur, after)) = pat.split_first() else {
            return Class::Unterminated;
        };
        if cur == b']' && !first {
            return if negate {
                Class::Hit(after)
            } else {
                Class::Miss
            };
        }
        first = false;
        let hit;
        if let [b'[', b':', name @ ..] = pat {
            match named_class(name, c) {
                Named::Class(class_hit, next) => {
                    hit = class_hit;
                    pat = next;
                }
                // glibc fails this alignment on an unknown class name.
                Named::Invalid => return Class::Miss,
                Named::NotAName => match member(pat, c) {
                    Some(m) => (hit, pat) = m,
                    None => return Class::Unterminated,
                },
            }
        } else {
            match member(pat, c) {
                Some(m) => (hit, pat) = m,
                None => return Class::Unterminated,
            }
        }
        if hit {
            // As glibc: once a member matched, the rest is skipped rather
            // than checked; a negated class then fails.
            return match skip_rest(pat) {
                Some(next) if !negate => Class::Hit(next),
                Some(_) => Class::Miss,
                None => Class::Unterminated,
            };
        }
    }
}

/// The member `pat` begins with: a byte or a range `a-z`. `(matched, the pattern after it)`,
/// or `None` when the pattern ends inside it.
fn member(pat: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (lo, after_lo) = class_byte(pat)?;
    match after_lo {
        [b'-', hi @ ..] if hi.first().is_some_and(|&b| b != b']') => {
            let (hi, after_hi) = class_byte(hi)?;
            Some((lo <= c && c <= hi, after_hi))
        }
        _ => Some((lo == c, after_lo)),
    }
}

/// The pattern after the `]` closing a class whose members from `pat` on need not be
/// examined; `None` if it never closes (then the `[` is literal).
fn skip_rest(mut pat: &[u8]) -> Option<&[u8]> {
    loop {
        let (&c, after) = pat.split_first()?;
        pat = after;
        match (c, pat) {
            (b'\\', _) => pat = pat.get(1..)?,
            (b'[', [b':', name @ ..]) => {
                if let Some((_, next)) = class_name(name) {
                    pat = next;
                }
            }
            (b']', _) => return Some(pat),
            _ => {}
        }
    }
}

/// For a name that `pat` begins with (after `[:`): the name and the pattern after its `:]`,
/// if it is made of the letters glibc accepts in class names (`a`..`y`).
fn class_name(pat: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = pat.iter().position(|b| !(b'a'..=b'y').contains(b))?;
    let (name, after) = pat.split_at(len);
    Some((name, after.strip_prefix(b":]")?))
}

/// The (possibly backslash-quoted) byte a class's `pat` begins with, and the pattern after.
fn class_byte(pat: &[u8]) -> Option<(u8, &[u8])> {
    match pat.split_first()? {
        (b'\\', quoted) => quoted.split_first().map(|(&b, after)| (b, after)),
        (&b, after) => Some((b, after)),
    }
}

enum Named<'a> {
    /// `(matched, the pattern after ":]")`.
    Class(bool, &'a [u8]),
    /// Looks like a class name (lower-case letters) but is not one.
    Invalid,
    /// Not a `[:name:]` at all: the `[` is an ordinary member.
    NotAName,
}

/// `[:name:]` inside a class, `pat` beginning after `[:`.
fn named_class(pat: &[u8], c: u8) -> Named<'_> {
    // Like glibc: only `a`..`y` make a name; anything else means the `[`
    // was an ordinary member.
    let Some((name, after)) = class_name(pat) else {
        return Named::NotAName;
    };
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
    Named::Class(hit, after)
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
