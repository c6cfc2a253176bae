//! Contract §1: `vminit` is one statically linked executable: no ELF interpreter, no dynamic
//! section. Checked on the built binary's program headers, the way the kernel's loader sees it,
//! for x86_64 and for arm64 (issue 16).

use std::process::Command;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The machine (`e_machine`) and the program header types of a 64-bit little-endian ELF file.
fn program_header_types(elf: &[u8]) -> (u16, Vec<u32>) {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let phoff = usize::try_from(u64_at(elf, 0x20)).unwrap();
    let phentsize = usize::from(u16_at(elf, 0x36));
    let phnum = usize::from(u16_at(elf, 0x38));
    let types = (0..phnum)
        .map(|i| u32_at(elf, phoff + i * phentsize))
        .collect();
    (u16_at(elf, 0x12), types)
}

fn fully_static(arch: qemu_harness::Arch, names: &[&str]) {
    let machine = match arch {
        qemu_harness::Arch::X86_64 => EM_X86_64,
        qemu_harness::Arch::Aarch64 => EM_AARCH64,
    };
    for name in names {
        let path = qemu_harness::static_binary_for(name, arch).unwrap();
        let elf = std::fs::read(&path).unwrap();
        let (found, types) = program_header_types(&elf);
        assert_eq!(found, machine, "{}: e_machine", path.display());
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
fn guest_binaries_are_fully_static() {
    fully_static(
        qemu_harness::Arch::X86_64,
        &["vminit", "test-agent", "trivial-init"],
    );
}

#[test]
fn arm64_guest_binaries_are_fully_static() {
    fully_static(qemu_harness::Arch::Aarch64, &["vminit", "test-agent"]);
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
