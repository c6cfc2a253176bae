//! The strings of a DHCP reply are input from whoever answers on the segment: the host name
//! (option 12), the domain name (option 15), the domain search list (option 119) and the
//! NAK message (option 56). Names are checked before they reach `sethostname(2)` or
//! `/etc/resolv.conf`; anything that reaches the console is escaped first. Pure: no I/O.

use std::fmt::Write as _;

use guest_config::names::check_hostname;

/// RFC 1035 §2.3.4: a domain name is at most 253 bytes in its text form (255 on the wire).
pub const MAX_DOMAIN: usize = 253;
/// RFC 1035 §2.3.4: a label is at most 63 bytes.
pub const MAX_LABEL: usize = 63;
/// How many search domains go to resolv.conf: glibc before 2.26 reads at most six
/// (MAXDNSRCH), and a server sending more is more likely broken than helpful.
pub const MAX_SEARCH: usize = 6;

/// `s` with control characters, non-ASCII bytes and `\` shown as `\xNN` (`\\` for the
/// backslash), so a hostile value cannot move the cursor, clear the console or forge a log
/// line. Bounded: at most 256 input bytes are shown, then `...`.
pub fn escape(s: &[u8]) -> String {
    const SHOWN: usize = 256;
    let mut out = String::with_capacity(s.len().min(SHOWN));
    for &b in s.iter().take(SHOWN) {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if s.len() > SHOWN {
        out.push_str("...");
    }
    out
}

/// A domain name for `search` in resolv.conf: dot-separated RFC 1123 labels (letters, digits,
/// `-`, not at either end of a label), each at most 63 bytes, at most 253 bytes in all. One
/// trailing dot (the root) is allowed and dropped. Returns the name to use.
pub fn check_domain(s: &str) -> Result<&str, &'static str> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_DOMAIN {
        return Err("longer than 253 bytes");
    }
    for label in name.split('.') {
        if label.len() > MAX_LABEL {
            return Err("a label is longer than 63 bytes");
        }
        // The configuration's own host name check, label by label: a single label has no
        // dot, so it checks exactly the RFC 1123 label rules (its 64-byte total cannot bind
        // after the 63-byte check above).
        check_hostname(label)?;
    }
    Ok(name)
}

/// A host name from the server, checked like the configuration's (guest-config's
/// `check_hostname`: RFC 1123 labels, and at most 64 bytes, which is what `sethostname(2)`
/// takes, stricter than the 253 of a domain name).
pub fn check_dhcp_hostname(s: &str) -> Result<&str, &'static str> {
    let name = s.strip_suffix('.').unwrap_or(s);
    check_hostname(name).map(|()| name)
}

/// The domain options of a reply turned into a search list: option 15 first (some servers put
/// several names in it, separated by spaces), then option 119's names, without duplicates,
/// at most [`MAX_SEARCH`]. Every name refused is described in `refused` (escaped).
pub fn search_list(
    domain: Option<&str>,
    search: &[String],
    refused: &mut Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Option 15 split on spaces only, and only when it is printable ASCII as a whole: a
    // newline or other control character voids the whole value (it is an injection attempt
    // or garbage, not a list), rather than leaving its pieces to pass one by one.
    let domain = domain.and_then(|d| {
        if d.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Some(d)
        } else {
            refused.push(format!(
                "domain name (option 15) \"{}\": control or non-ASCII characters",
                escape(d.as_bytes())
            ));
            None
        }
    });
    let candidates = domain
        .into_iter()
        .flat_map(|d| d.split(' ').filter(|w| !w.is_empty()))
        .map(|d| ("domain name (option 15)", d))
        .chain(
            search
                .iter()
                .map(|d| ("domain search (option 119)", d.as_str())),
        );
    for (what, d) in candidates {
        match check_domain(d) {
            Ok(name) => {
                if out.len() >= MAX_SEARCH {
                    refused.push(format!(
                        "{what} \"{}\": more than {MAX_SEARCH} search domains",
                        escape(name.as_bytes())
                    ));
                } else if !out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                    out.push(name.to_string());
                }
            }
            Err(why) => refused.push(format!("{what} \"{}\": {why}", escape(d.as_bytes()))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_shows_control_and_non_ascii_as_hex() {
        assert_eq!(escape(b"plain-name.example"), "plain-name.example");
        assert_eq!(escape(b"a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape(b"line\nforged"), "line\\x0aforged");
        assert_eq!(escape("é".as_bytes()), "\\xc3\\xa9");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(b"\x7f\x00"), "\\x7f\\x00");
        let long = vec![b'a'; 300];
        let e = escape(&long);
        assert!(e.ends_with("...") && e.len() == 259, "{}", e.len());
    }

    #[test]
    fn domains_follow_rfc_1123_labels() {
        assert_eq!(check_domain("example.internal"), Ok("example.internal"));
        assert_eq!(check_domain("example.internal."), Ok("example.internal"));
        assert_eq!(check_domain("corp"), Ok("corp"));
        assert_eq!(check_domain("a-b.c0"), Ok("a-b.c0"));
        assert!(check_domain("").is_err());
        assert!(check_domain(".").is_err());
        assert!(check_domain("a..b").is_err());
        assert!(check_domain("-a.b").is_err());
        assert!(check_domain("a-.b").is_err());
        assert!(check_domain("a_b.c").is_err());
        assert!(check_domain("a b").is_err());
        assert!(check_domain("evil\nnameserver 6.6.6.6").is_err());
        assert!(check_domain("ex\u{e9}.com").is_err());
        // 63-byte labels pass, 64 do not.
        let l63 = "a".repeat(63);
        assert!(check_domain(&format!("{l63}.com")).is_ok());
        assert_eq!(
            check_domain(&format!("{l63}a.com")),
            Err("a label is longer than 63 bytes")
        );
        // 253 bytes in all pass, 254 do not: 4 labels of 63 + 3 dots = 255; trim to size.
        let d253 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(d253.len(), 253);
        assert!(check_domain(&d253).is_ok());
        let d254 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(62));
        assert_eq!(check_domain(&d254), Err("longer than 253 bytes"));
    }

    #[test]
    fn hostnames_checked_like_the_configs() {
        assert_eq!(check_dhcp_hostname("leased-vm"), Ok("leased-vm"));
        assert_eq!(check_dhcp_hostname("vm1.example."), Ok("vm1.example"));
        assert!(check_dhcp_hostname("").is_err());
        assert!(check_dhcp_hostname("-vm").is_err());
        assert!(check_dhcp_hostname("vm-").is_err());
        assert!(check_dhcp_hostname("vm\x1b]0;owned\x07").is_err());
        assert!(check_dhcp_hostname("v m").is_err());
        assert!(check_dhcp_hostname(&"a".repeat(64)).is_err());
        // sethostname(2) takes 64 bytes at most, whatever a domain may be.
        assert!(check_dhcp_hostname(&format!("{}.{}", "a".repeat(40), "b".repeat(30))).is_err());
    }

    #[test]
    fn search_list_keeps_the_good_and_names_the_bad() {
        let mut refused = Vec::new();
        let s = search_list(
            Some("corp.example bad_name.example"),
            &[
                "corp.example".to_string(),
                "x\u{1b}[31m".to_string(),
                "lab.example".to_string(),
            ],
            &mut refused,
        );
        assert_eq!(s, vec!["corp.example", "lab.example"]);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("option 15") && refused[0].contains("bad_name.example"));
        assert!(refused[1].contains("option 119") && refused[1].contains("x\\x1b[31m"));
        assert!(refused.iter().all(|r| !r.contains('\u{1b}')));

        let mut refused = Vec::new();
        let many: Vec<String> = (0..8).map(|i| format!("d{i}.example")).collect();
        let s = search_list(None, &many, &mut refused);
        assert_eq!(s.len(), MAX_SEARCH);
        assert_eq!(refused.len(), 2);

        // A newline in option 15 voids all of it, even the parts that look like names.
        let mut refused = Vec::new();
        let s = search_list(Some("corp.example\nnameserver 6.6.6.6"), &[], &mut refused);
        assert!(s.is_empty(), "{s:?}");
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].contains("corp.example\\x0anameserver 6.6.6.6"),
            "{refused:?}"
        );
    }
}
