//! Reading the services' programs into the page cache while the boot loads drivers and brings
//! up the network, so that starting a service does not wait on the disk.
//!
//! In a real image nothing has read the agents' binaries before vminit starts them: the first
//! `execve` of each one waits for its blocks (on the Debian rootfs under TCG, 150–700 ms per
//! program against ~40 ms once cached). Asked early with `POSIX_FADV_WILLNEED`, the block
//! device reads them while the vCPU does other work. Owns choosing the files (the program, the
//! interpreter of a script or of a dynamic ELF) and asking for them; it never fails the boot:
//! a file it cannot open is one the spawn will name.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How much of a file is read to find its interpreter: a `#!` line or an ELF's program
/// headers and `PT_INTERP` string sit in the first page of every program seen in practice.
const HEAD: usize = 4096;

/// The file `program` names: itself when it holds a `/`, else the first match in the
/// `:`-separated `path` (as `execvp` searches it) for which `exists` holds.
pub fn resolve(program: &str, path: &str, exists: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| exists(p))
}

/// The interpreter the kernel loads with a program whose first bytes are `head`: the path of
/// a `#!` line, or the `PT_INTERP` of a 64-bit little-endian ELF (a dynamic executable's
/// loader). `None` for anything else (a static ELF, a cut header).
pub fn interpreter(head: &[u8]) -> Option<PathBuf> {
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?;
        return text.split_whitespace().next().map(PathBuf::from);
    }
    elf_interp(head)
}

fn elf_interp(head: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    // "\x7fELF", ELFCLASS64, ELFDATA2LSB.
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    // Offsets come from the file: every sum is checked.
    let bytes = |o: usize, n: usize| head.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes(o, 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes(o, 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes(o, 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != PT_INTERP {
            continue;
        }
        let off = usize::try_from(u64_at(ph.checked_add(8)?)?).ok()?;
        let size = usize::try_from(u64_at(ph.checked_add(32)?)?).ok()?;
        let raw = bytes(off, size)?;
        let raw = raw.split(|&b| b == 0).next()?;
        return std::str::from_utf8(raw).ok().map(PathBuf::from);
    }
    None
}

/// Asks the kernel to read `path` whole, and then its interpreter, and that one's (a script
/// run by a dynamic interpreter); returns the files asked for.
fn prefetch(path: &Path) -> Vec<PathBuf> {
    let mut asked = Vec::new();
    let mut next = Some(path.to_path_buf());
    // Bounded: a `#!` chain ends within the kernel's own limit of 4 (binfmt_script).
    while let Some(p) = next.take() {
        if asked.len() >= 4 || asked.contains(&p) {
            break;
        }
        let Ok(mut f) = File::open(&p) else { break };
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
        let mut head = vec![0u8; HEAD];
        let n = f.read(&mut head).unwrap_or(0);
        head.truncate(n);
        asked.push(p);
        next = interpreter(&head);
    }
    asked
}

/// Starts a thread that prefetches `programs` (service commands' first words), resolved
/// against the services' `PATH`. Returns at once; a thread that cannot start is only a
/// debug line (the services start all the same, reading from the disk).
pub fn spawn(programs: Vec<String>) {
    if programs.is_empty() {
        return;
    }
    let run = move || {
        let exists = |p: &Path| p.is_file();
        for program in &programs {
            let Some(path) = resolve(program, supervisor::spawn::BASE_PATH, &exists) else {
                continue;
            };
            let asked = prefetch(&path);
            log::debug!("prefetch: {program}: {asked:?}");
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(run)
    {
        log::debug!("prefetch: cannot start its thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_like_execvp() {
        let exists = |p: &Path| p == Path::new("/usr/bin/agent") || p == Path::new("/bin/agent");
        let path = "/usr/local/bin::/usr/bin:/bin";
        assert_eq!(
            resolve("agent", path, &exists),
            Some(PathBuf::from("/usr/bin/agent"))
        );
        assert_eq!(resolve("missing", path, &exists), None);
        assert_eq!(
            resolve("./rel/agent", path, &exists),
            Some(PathBuf::from("./rel/agent"))
        );
        assert_eq!(resolve("", path, &exists), None);
    }

    #[test]
    fn scripts_name_their_interpreter() {
        assert_eq!(
            interpreter(b"#!/bin/sh -e\necho hi\n"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            interpreter(b"#! /usr/bin/env python3\n"),
            Some(PathBuf::from("/usr/bin/env"))
        );
        assert_eq!(interpreter(b"#!\n"), None);
        assert_eq!(interpreter(b"plain text"), None);
        assert_eq!(interpreter(b""), None);
    }

    /// A minimal ELF64 header with one PT_LOAD and one PT_INTERP program header.
    fn elf_with_interp(interp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
        f[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let ph = 64 + 56;
        f[ph..ph + 4].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        f[ph + 8..ph + 16].copy_from_slice(&0x180u64.to_le_bytes()); // p_offset
        f[ph + 32..ph + 40].copy_from_slice(&(interp.len() as u64).to_le_bytes()); // p_filesz
        f[0x180..0x180 + interp.len()].copy_from_slice(interp);
        f
    }

    #[test]
    fn dynamic_elfs_name_their_loader() {
        let f = elf_with_interp(b"/lib64/ld-linux-x86-64.so.2\0");
        assert_eq!(
            interpreter(&f),
            Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2"))
        );
    }

    #[test]
    fn static_and_cut_elfs_name_nothing() {
        let mut f = elf_with_interp(b"/lib/ld.so\0");
        f[64 + 56..64 + 60].copy_from_slice(&1u32.to_le_bytes()); // no PT_INTERP left
        assert_eq!(interpreter(&f), None);
        let f = elf_with_interp(b"/lib/ld.so\0");
        assert_eq!(interpreter(&f[..0x100]), None, "the string past the head");
        assert_eq!(interpreter(&f[..0x40]), None, "the headers past the head");
        let mut f = elf_with_interp(b"/lib/ld.so\0");
        f[0x38..0x3a].copy_from_slice(&u16::MAX.to_le_bytes()); // hostile e_phnum
        f[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes()); // hostile e_phoff
        assert_eq!(interpreter(&f), None);
    }

    #[test]
    fn a_real_binary_is_read_with_its_loader() {
        // This test binary itself: static (musl) or dynamic (glibc), the chain ends.
        let me = std::env::current_exe().unwrap();
        let asked = prefetch(&me);
        assert_eq!(asked.first(), Some(&me));
        assert!(asked.len() <= 2, "{asked:?}");
        // A script whose interpreter is a real file: both are asked.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        let asked = prefetch(&script);
        assert_eq!(asked[..2], [script, PathBuf::from("/bin/sh")]);
    }
}
