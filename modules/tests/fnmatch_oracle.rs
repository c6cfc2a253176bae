//! Differential test: `modules::glob::matches` against the C library's
//! `fnmatch(3)` with flags 0, which is what kmod calls, over many random
//! patterns and strings built from the characters that matter to globbing.
//! A separate test crate because calling fnmatch needs `unsafe`, which the
//! library itself denies.

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn string(&mut self, alphabet: &[u8], max_len: u64) -> String {
            let len = self.next() % (max_len + 1);
            (0..len)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
                .collect()
        }
    }

    fn fnmatch(pattern: &str, text: &str) -> bool {
        let p = CString::new(pattern).unwrap();
        let t = CString::new(text).unwrap();
        // SAFETY: both pointers are valid NUL-terminated strings owned by this
        // frame for the duration of the call; fnmatch only reads them.
        unsafe { libc::fnmatch(p.as_ptr(), t.as_ptr(), 0) == 0 }
    }

    #[test]
    fn glob_agrees_with_fnmatch() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pattern_chars = b"ab-*?[]!^\\:";
        let text_chars = b"ab-]![\\:";
        let mut checked = 0;
        let mut mismatches = Vec::new();
        for _ in 0..500_000 {
            let pattern = rng.string(pattern_chars, 10);
            let text = rng.string(text_chars, 6);
            let ours = modules::glob::matches(&pattern, &text);
            if ours != fnmatch(&pattern, &text) {
                mismatches.push(format!("pattern {pattern:?} text {text:?}: ours {ours}"));
            }
            checked += 1;
        }
        assert_eq!(checked, 500_000);
        assert!(
            mismatches.is_empty(),
            "{} mismatches, e.g. {:#?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(15)]
        );
    }

    /// Patterns assembled from tokens, so classes (named ones too) and ranges
    /// occur often rather than by chance.
    #[test]
    fn glob_agrees_with_fnmatch_on_class_tokens() {
        let tokens = [
            "a",
            "b",
            "1",
            "-",
            "*",
            "?",
            "[",
            "]",
            "!",
            "^",
            "\\",
            "[:alpha:]",
            "[:digit:]",
            "[:bogus:]",
            "a-z",
        ];
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut mismatches = Vec::new();
        for _ in 0..500_000 {
            let n = rng.next() % 9;
            let pattern: String = (0..n)
                .map(|_| tokens[(rng.next() % tokens.len() as u64) as usize])
                .collect();
            let text = rng.string(b"ab1-]![:z", 5);
            let ours = modules::glob::matches(&pattern, &text);
            if ours != fnmatch(&pattern, &text) {
                mismatches.push(format!("pattern {pattern:?} text {text:?}: ours {ours}"));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} mismatches, e.g. {:#?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(15)]
        );
    }

    #[test]
    fn glob_agrees_with_fnmatch_on_modalias_shapes() {
        let cases = [
            (
                "pci:v00001AF4d*sv*sd*bc*sc*i*",
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            ),
            (
                "usb:v*p*d*dc*dsc*dp*ic03isc01ip0[12]in*",
                "usb:v1p2d3dc0dsc0dp0ic03isc01ip02in00",
            ),
            ("acpi*:LNRO0005:*", "acpi:LNRO0005:"),
            ("of:N*T*Cvirtio,mmioC*", "of:NvirtioT<NULL>Cvirtio,mmioCfoo"),
            ("dmi*:svnQEMU*:pn*", "dmi:bvnSeaBIOS:svnQEMU:pnStandardPC"),
            ("[[:digit:]]x", "7x"),
            ("[[:alpha:]-]", "-"),
        ];
        for (p, t) in cases {
            assert_eq!(modules::glob::matches(p, t), fnmatch(p, t), "{p:?} {t:?}");
        }
    }
}
