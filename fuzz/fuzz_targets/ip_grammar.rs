//! The kernel's `ip=` grammar: any string must parse or give an error, never panic, and an
//! accepted value must turn into a network plan.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &str| {
    if let Ok(cfg) = guest_config::ip::parse(data) {
        let _ = cfg.to_plan();
    }
});
