//! depmod's binary index reader (`modules.*.bin`; the module tree is image input): any bytes
//! as a trie, then both searches with the keys a boot asks for.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(index) = modules::BinIndex::from_bytes("fuzz.bin", data.to_vec()) else {
        return;
    };
    for key in [
        "virtio:d00000001v00001AF4",
        "acpi:LNRO0005:",
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
        "virtio_net",
        "",
    ] {
        let _ = index.search(key);
        let _ = index.search_wild(key);
    }
});
