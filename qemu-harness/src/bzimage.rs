//! Extracting the uncompressed ELF `vmlinux` from a bzImage.
//!
//! Under TCG most of a bzImage boot is the guest decompressing itself; QEMU
//! boots the ELF directly through its PVH entry note instead. The boot
//! protocol's setup header (Documentation/arch/x86/boot.rst) says where the
//! compressed payload lies; the payload is the kernel's own `vmlinux.bin`
//! (an ELF with its notes kept), followed by 4 bytes of little-endian
//! uncompressed size that the decompressor tools must not see.
//! Parsing is pure; decompression runs the `xz`/`zstd`/`gzip` tool.

use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const KERNEL_VERSION: usize = 0x20e;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

/// The compression of a bzImage payload, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    fn detect(payload: &[u8]) -> Option<Self> {
        if payload.starts_with(b"\xfd7zXZ\0") {
            Some(Self::Xz)
        } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
            Some(Self::Zstd)
        } else if payload.starts_with(b"\x1f\x8b") {
            Some(Self::Gzip)
        } else {
            None
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Where the compressed kernel lies in `image` (without the trailing size
/// word) and how it is compressed.
pub fn payload(image: &[u8]) -> std::result::Result<(Range<usize>, Compression), String> {
    if image.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        return Err("no `HdrS` setup header: not a bzImage".into());
    }
    let version = le_u16(image, VERSION).ok_or("truncated setup header")?;
    if version < 0x208 {
        return Err(format!(
            "boot protocol {version:#x} predates payload_offset (2.08)"
        ));
    }
    let sects = match image.get(SETUP_SECTS).copied().unwrap_or(0) {
        0 => 4,
        n => usize::from(n),
    };
    let offset = le_u32(image, PAYLOAD_OFFSET).ok_or("truncated setup header")?;
    let length = le_u32(image, PAYLOAD_LENGTH).ok_or("truncated setup header")?;
    let start = (sects + 1) * 512 + offset as usize;
    let end = start + length as usize;
    if end > image.len() || length < 8 {
        return Err(format!(
            "payload {start}..{end} does not fit in the {}-byte image",
            image.len()
        ));
    }
    let compression = Compression::detect(&image[start..end])
        .ok_or_else(|| format!("payload at {start} has an unsupported compression"))?;
    Ok((start..end - 4, compression))
}

/// The `kernel_version` string of the setup header, e.g.
/// `6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP ...`.
pub fn version_string(image: &[u8]) -> Option<String> {
    let ptr = usize::from(le_u16(image, KERNEL_VERSION)?);
    if ptr == 0 {
        return None;
    }
    let rest = image.get(ptr + 0x200..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The release (first word of the version string), e.g. `6.1.0-56-amd64`.
pub fn release(image: &[u8]) -> Option<String> {
    version_string(image)?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// Whether `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Decompresses the payload of the bzImage at `bzimage` into the ELF file
/// `out` (written to a temporary name first, so a crash leaves no half file).
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<()> {
    let image = std::fs::read(bzimage).map_err(Error::io("read", bzimage))?;
    let (range, compression) = payload(&image).map_err(|reason| Error::Kernel {
        path: bzimage.to_path_buf(),
        reason,
    })?;
    let elf = decompress(compression, &image[range])?;
    if !is_elf(&elf) {
        return Err(Error::Kernel {
            path: bzimage.to_path_buf(),
            reason: "the decompressed payload is not an ELF file".into(),
        });
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &elf).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, out).map_err(Error::io("rename into place", out))
}

fn decompress(compression: Compression, data: &[u8]) -> Result<Vec<u8>> {
    let tool = compression.tool();
    let mut cmd = Command::new(tool);
    cmd.arg("-dc");
    if compression == Compression::Xz {
        cmd.arg("--single-stream");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: tool.into(),
            source,
        })?;
    // Feed stdin from a thread: the tool's stdout fills long before all the
    // compressed input is written.
    let mut stdin = child.stdin.take();
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            // A write error shows up as the tool's failure below.
            let _ = stdin.write_all(&input);
        }
    });
    let output = child.wait_with_output().map_err(|source| Error::Spawn {
        program: tool.into(),
        source,
    })?;
    let _ = feeder.join();
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{tool} -dc"),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(setup_sects: u8, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 {
            4
        } else {
            setup_sects as usize
        };
        let mut img = vec![0u8; (sects + 1) * 512];
        img[SETUP_SECTS] = setup_sects;
        img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        img[VERSION..VERSION + 2].copy_from_slice(&0x20fu16.to_le_bytes());
        img[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&16u32.to_le_bytes());
        let len = payload.len() as u32 + 4;
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&len.to_le_bytes());
        // kernel_version points 0x200 before the string
        let vpos = 0x300usize;
        img[KERNEL_VERSION..KERNEL_VERSION + 2]
            .copy_from_slice(&((vpos - 0x200) as u16).to_le_bytes());
        img[vpos..vpos + 15].copy_from_slice(b"6.1.0-test #1\0\0");
        img.extend_from_slice(&[0xaa; 16]);
        img.extend_from_slice(payload);
        img.extend_from_slice(&1234u32.to_le_bytes());
        img
    }

    #[test]
    fn payload_range_skips_setup_offset_and_size_word() {
        let body = b"\xfd7zXZ\0rest-of-stream";
        let img = fake_image(3, body);
        let (range, comp) = payload(&img).unwrap();
        assert_eq!(comp, Compression::Xz);
        assert_eq!(&img[range], body);
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let body = b"\x28\xb5\x2f\xfdzstd-data";
        let img = fake_image(0, body);
        let (range, comp) = payload(&img).unwrap();
        assert_eq!(comp, Compression::Zstd);
        assert_eq!(range.start, 5 * 512 + 16);
    }

    #[test]
    fn rejects_non_bzimage_and_bad_payloads() {
        assert!(payload(&[0u8; 4096]).unwrap_err().contains("HdrS"));
        let mut img = fake_image(3, b"\xfd7zXZ\0x");
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload(&img).unwrap_err().contains("does not fit"));
        let img = fake_image(3, b"unknown-compression");
        assert!(payload(&img).unwrap_err().contains("unsupported"));
    }

    #[test]
    fn reads_release_from_version_string() {
        let img = fake_image(3, b"\xfd7zXZ\0x");
        assert_eq!(release(&img).as_deref(), Some("6.1.0-test"));
    }
}
