//! The kernel cmdline tokenizer (on bytes, as /proc/cmdline is) and the `vminit.*` keys
//! built on it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (c, _warnings) = guest_config::Cmdline::from_bytes(data);
    let args = guest_config::VminitArgs::from_cmdline(&c);
    let _ = c.module_params();
    let _ = guest_config::Settings::resolve(&args, None);
    if let Some(ip) = c.get("ip") {
        let _ = guest_config::ip::parse(ip);
    }
});
