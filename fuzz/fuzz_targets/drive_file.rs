//! The config drive's file as PID 1 reads it: any bytes, through the bounded host-file reader
//! (size limit, UTF-8 check), then the drive schema.
#![no_main]
use std::path::PathBuf;

use guest_config::hostfile::{read_host_file, MAX_HOST_FILE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // One file per fuzzing process, rewritten for every input.
    let path: PathBuf = std::env::temp_dir().join(format!("vminit-fuzz-drive-{}.toml", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    // A small limit as well as the real one, so the size refusal is exercised too.
    let _ = read_host_file(&path, 64);
    if let Ok(text) = read_host_file(&path, MAX_HOST_FILE) {
        if let Ok(d) = guest_config::DriveConfig::parse(&text, &path) {
            let _ = guest_config::merge_services(None, Some(&d));
            let _ = guest_config::arbitrate(None, Some((&d, "fuzz")));
        }
    }
});
