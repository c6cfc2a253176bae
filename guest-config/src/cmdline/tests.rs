use super::*;

fn kv(key: &str, value: Option<&str>) -> Param {
    Param {
        key: key.into(),
        value: value.map(Into::into),
    }
}

#[test]
fn splits_on_whitespace_and_equals() {
    let c = Cmdline::parse("console=ttyS0  reboot=k\tpanic=1 quiet\n");
    assert_eq!(
        c.params,
        vec![
            kv("console", Some("ttyS0")),
            kv("reboot", Some("k")),
            kv("panic", Some("1")),
            kv("quiet", None)
        ]
    );
}

#[test]
fn quotes_as_the_kernel_handles_them() {
    let cases = [
        // value quoted: quotes dropped
        (r#"a="b c""#, kv("a", Some("b c"))),
        // whole word quoted: quotes dropped
        (r#""a=b c""#, kv("a", Some("b c"))),
        // quote in the middle of a value: kept, and it protects the space
        (r#"a=b"c d""#, kv("a", Some("b\"c d\""))),
        // only the first = splits
        ("a=b=c", kv("a", Some("b=c"))),
        // empty value
        ("ip=", kv("ip", Some(""))),
        // a lone opening quote on the value
        ("a=\"", kv("a", Some(""))),
        // a = at index 0 is not a separator; the next one is
        ("=x=y", kv("=x", Some("y"))),
        ("=x", kv("=x", None)),
    ];
    for (text, want) in cases {
        let c = Cmdline::parse(text);
        assert_eq!(c.params, vec![want], "{text}");
    }
}

#[test]
fn unterminated_quote_runs_to_the_end() {
    let c = Cmdline::parse(r#"a="b c d"#);
    assert_eq!(c.params, vec![kv("a", Some("b c d"))]);
}

#[test]
fn double_dash_ends_kernel_params() {
    let c = Cmdline::parse("ip=dhcp -- vminit.log=debug single");
    assert_eq!(c.params, vec![kv("ip", Some("dhcp"))]);
    assert_eq!(c.init_args, vec!["vminit.log=debug", "single"]);
    assert_eq!(c.get("vminit.log"), None);
    // `--x` or `--=1` are ordinary words
    let c = Cmdline::parse("--x --=1");
    assert_eq!(c.params.len(), 2);
}

#[test]
fn last_value_wins_and_flags_are_not_values() {
    let c = Cmdline::parse("ip=dhcp vminit.log=warn ip=off ip");
    assert_eq!(c.get("ip"), Some("off"));
    assert!(c.flag("ip"));
    assert!(!c.flag("vminit.log"));
    assert_eq!(c.get("missing"), None);
}

#[test]
fn empty_and_space_only_lines() {
    assert!(Cmdline::parse("").params.is_empty());
    assert!(Cmdline::parse(" \n\t ").params.is_empty());
}

#[test]
fn utf8_survives() {
    let c = Cmdline::parse("a=é\u{a0}b c=ü");
    assert_eq!(c.get("a"), Some("é\u{a0}b"));
    assert_eq!(c.get("c"), Some("ü"));
}

#[test]
fn module_params_grouped_and_normalised() {
    let c = Cmdline::parse(
        r#"virtio-net.napi_tx=1 vminit.log=debug virtio_net.foo="a b" i8042.noaux .x=1 y.=2 -- mod.p=1"#,
    );
    let m = c.module_params();
    assert_eq!(m["virtio_net"], vec!["napi_tx=1", "foo=\"a b\""]);
    assert_eq!(m["i8042"], vec!["noaux"]);
    assert!(!m.contains_key("vminit"));
    assert!(!m.contains_key("mod"), "words after -- are init args");
    assert_eq!(m.len(), 2, "{m:?}");
}

/// A deterministic stream of hostile lines over the characters the tokenizer cares about:
/// it never panics, and no word holds unquoted whitespace.
#[test]
fn hostile_lines_never_panic() {
    let alphabet = [
        '"', '=', ' ', '\t', '\n', '-', 'a', '.', 'é', '\u{a0}', '\0',
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5000 {
        let mut line = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 24) as usize;
        let mut s = seed;
        for _ in 0..len {
            line.push(alphabet[(s % alphabet.len() as u64) as usize]);
            s /= alphabet.len() as u64;
            if s == 0 {
                s = seed.rotate_left(7);
            }
        }
        let c = Cmdline::parse(&line);
        if !line.contains('"') {
            for p in &c.params {
                assert!(!p.key.contains([' ', '\t', '\n']), "{line:?} -> {p:?}");
            }
        }
        let _ = c.module_params();
        let _ = VminitArgs::from_cmdline(&c);
    }
}

#[test]
fn words_that_are_not_utf8_are_skipped_and_named() {
    let raw = b"console=ttyS0 \xff key=\xffvalue ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off vminit.log=debug";
    let (c, warnings) = Cmdline::from_bytes(raw);
    assert_eq!(
        c.get("ip"),
        Some("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off")
    );
    assert_eq!(c.get("vminit.log"), Some("debug"));
    assert_eq!(c.get("console"), Some("ttyS0"));
    assert_eq!(c.params.len(), 3, "{c:?}");
    assert_eq!(
        warnings,
        [
            r#"cmdline word 2 ("\xff") is not UTF-8; skipped"#,
            r#"cmdline word 3 ("key=\xffvalue") is not UTF-8; skipped"#,
        ]
    );
}

#[test]
fn a_quoted_word_that_is_not_utf8_does_not_swallow_the_rest() {
    let (c, w) = Cmdline::from_bytes(b"a=\"x \xfe y\" ip=dhcp -- single \xc3(");
    assert_eq!(c.get("ip"), Some("dhcp"));
    assert_eq!(c.init_args, ["single"]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("cmdline word 1 "), "{w:?}");
    assert!(w[1].contains(r"\xc3("), "{w:?}");
}

#[test]
fn utf8_text_is_unchanged_by_the_byte_path() {
    let text = "a=\"b c\" é=ü quiet -- x";
    let (c, w) = Cmdline::from_bytes(text.as_bytes());
    assert!(w.is_empty());
    assert_eq!(c, Cmdline::parse(text));
    assert_eq!(c.get("é"), Some("ü"));
}

#[test]
fn argv_words_skip_and_warn() {
    use std::os::unix::ffi::OsStringExt;
    let words = [
        OsString::from("/sbin/init"),
        OsString::from_vec(b"bad\xff".to_vec()),
        OsString::from("single"),
    ];
    let (ok, warnings) = utf8_words(&words);
    assert_eq!(ok, ["/sbin/init", "single"]);
    assert_eq!(
        warnings,
        [r#"argv word 2 ("bad\xff") is not UTF-8; skipped"#]
    );
}
