//! Contract §1: `vminit` is one statically linked executable: no ELF interpreter, no dynamic
//! section. Checked on the built binary's program headers, the way the kernel's loader sees it.

use std::process::Command;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Program header types of an x86-64 little-endian ELF file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let phoff = usize::try_from(u64_at(elf, 0x20)).unwrap();
    let phentsize = usize::from(u16_at(elf, 0x36));
    let phnum = usize::from(u16_at(elf, 0x38));
    (0..phnum)
        .map(|i| u32_at(elf, phoff + i * phentsize))
        .collect()
}

#[test]
fn guest_binaries_are_fully_static() {
    for name in ["vminit", "test-agent", "trivial-init"] {
        let path = qemu_harness::static_binary(name).unwrap();
        let elf = std::fs::read(&path).unwrap();
        let types = program_header_types(&elf);
        assert!(!types.is_empty(), "{name}: no program headers");
        assert!(
            !types.contains(&PT_INTERP),
            "{name} has an ELF interpreter: {types:?}"
        );
        assert!(
            !types.contains(&PT_DYNAMIC),
            "{name} has a dynamic section: {types:?}"
        );
    }
}

#[test]
fn version_and_usage_off_pid1() {
    let bin = qemu_harness::static_binary("vminit").unwrap();
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vminit "));
    let out = Command::new(&bin).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}
