//! The kernel cmdline tokenizer and the `vminit.*` keys built on it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &str| {
    let c = guest_config::Cmdline::parse(data);
    let args = guest_config::VminitArgs::from_cmdline(&c);
    let _ = c.module_params();
    let _ = guest_config::Settings::resolve(&args, None);
    if let Some(ip) = c.get("ip") {
        let _ = guest_config::ip::parse(ip);
    }
});
