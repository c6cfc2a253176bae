//! Filesystem label readers (vfat, iso9660, ext4): a config drive is host input, so a
//! corrupt superblock must never crash PID 1.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = guest_config::drive::superblock::probe(data);
});
