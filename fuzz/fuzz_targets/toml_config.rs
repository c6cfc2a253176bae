//! The image config and config-drive schemas (TOML, validation, merge, arbitration).
#![no_main]
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &str| {
    let path = Path::new("fuzz.toml");
    let image = guest_config::ImageConfig::parse(data, path).ok();
    let drive = guest_config::DriveConfig::parse(data, path).ok();
    let _ = guest_config::check::check_config_text(data, path);
    let _ = guest_config::merge_services(image.as_ref(), drive.as_ref());
    let _ = guest_config::resolve_services(image.as_ref(), drive.as_ref());
    if let Some(d) = &drive {
        let _ = guest_config::arbitrate(Some("dhcp"), Some((d, "fuzz")));
        let _ = guest_config::arbitrate(None, Some((d, "fuzz")));
    }
});
