//! The depmod index readers and the modalias glob matcher (the module tree is image input).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &str| {
    let _ = modules::parse::parse_dep(data);
    let _ = modules::parse::parse_builtin(data);
    let _ = modules::parse::parse_softdep(data);
    if let Ok(aliases) = modules::parse::parse_alias(data) {
        let _ = aliases.len();
    }
    // First line as a pattern, the rest as the text it is matched against.
    let (pattern, text) = data.split_once('\n').unwrap_or((data, data));
    let _ = modules::glob::matches(pattern, text);
    let _ = modules::glob::literal_prefix(pattern);
});
