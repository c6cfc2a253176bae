//! Reads a filesystem's type, label and identity from the first 64 KiB of a block device,
//! without mounting: vfat (boot sector), iso9660 (primary volume descriptor), ext2/3/4
//! (superblock). Pure functions over a byte buffer, so corrupt or short input (host data)
//! yields "not recognised", never a panic; only [`probe_device`] does IO.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// How many bytes of a device [`probe`] looks at: the iso9660 volume descriptors from
/// sector 16 up to sector 31.
pub const PROBE_LEN: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FsType {
    Vfat,
    Iso9660,
    /// ext2, ext3 and ext4 share a superblock; the `ext4` driver mounts all three.
    Ext4,
}

impl FsType {
    /// The name `mount(2)` takes and the `fs-<name>` module alias.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Vfat => "vfat",
            FsType::Iso9660 => "iso9660",
            FsType::Ext4 => "ext4",
        }
    }
}

impl FsType {
    /// The module alias that loads the driver (`request_module("fs-vfat")` does the same).
    pub fn module_alias(self) -> String {
        format!("fs-{}", self.as_str())
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What tells one filesystem from another with the same label: the vfat volume serial,
/// the ext UUID, the iso9660 creation date (to the hundredth of a second; two images made
/// from scratch in the same instant would look alike, which is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VolumeId {
    VfatSerial(u32),
    ExtUuid([u8; 16]),
    IsoCreated([u8; 17]),
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeId::VfatSerial(s) => write!(f, "serial {:04X}-{:04X}", s >> 16, s & 0xffff),
            VolumeId::ExtUuid(u) => {
                f.write_str("uuid ")?;
                for (i, b) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            VolumeId::IsoCreated(d) => write!(f, "created {}", String::from_utf8_lossy(&d[..16])),
        }
    }
}

/// A recognised filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub fs: FsType,
    /// The label with its padding (spaces, NULs) trimmed; empty if none.
    pub label: String,
    pub id: VolumeId,
}

fn bytes<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn label(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.trim_end_matches([' ', '\0']).to_string()
}

/// ext2/3/4: superblock at 1024, magic 0xEF53 at +56, UUID at +104, label at +120.
fn ext(buf: &[u8]) -> Option<Probe> {
    const SB: usize = 1024;
    if u16::from_le_bytes(bytes(buf, SB + 56)?) != 0xEF53 {
        return None;
    }
    let raw: [u8; 16] = bytes(buf, SB + 120)?;
    Some(Probe {
        fs: FsType::Ext4,
        label: label(&raw),
        id: VolumeId::ExtUuid(bytes(buf, SB + 104)?),
    })
}

/// iso9660: volume descriptors from sector 16 (2 KiB sectors); the primary one is type 1
/// with `CD001` version 1; volume id at +40 (32 bytes), creation date at +813 (17 bytes).
fn iso9660(buf: &[u8]) -> Option<Probe> {
    for d in buf.get(16 * 2048..)?.chunks(2048).take(16) {
        let head: [u8; 7] = bytes(d, 0)?;
        if &head[1..6] != b"CD001" {
            return None;
        }
        match head[0] {
            1 => {
                let raw: [u8; 32] = bytes(d, 40)?;
                return Some(Probe {
                    fs: FsType::Iso9660,
                    label: label(&raw),
                    id: VolumeId::IsoCreated(bytes(d, 813)?),
                });
            }
            255 => return None,
            _ => {}
        }
    }
    None
}

/// vfat: boot signature 55 AA at 510, a sane BPB, then the extended boot record of FAT12/16
/// (signature at 38, serial 39, label 43, type "FAT..." at 54) or FAT32 (66, 67, 71, 82).
fn vfat(buf: &[u8]) -> Option<Probe> {
    if bytes::<2>(buf, 510)? != [0x55, 0xAA] {
        return None;
    }
    let sector = u16::from_le_bytes(bytes(buf, 11)?);
    let per_cluster = *buf.get(13)?;
    if !matches!(sector, 512 | 1024 | 2048 | 4096) || !per_cluster.is_power_of_two() {
        return None;
    }
    let fat16_size = u16::from_le_bytes(bytes(buf, 22)?);
    // The extended boot record, after the FAT32 or the FAT12/16 BPB.
    let ebr = buf.get(if fat16_size == 0 { 64 } else { 36 }..)?;
    let sig = *ebr.get(2)?;
    let fs_type: [u8; 8] = bytes(ebr, 18)?;
    if !matches!(sig, 0x28 | 0x29) || &fs_type[..3] != b"FAT" {
        return None;
    }
    let raw: [u8; 11] = bytes(ebr, 7)?;
    let mut name = label(&raw);
    if name == "NO NAME" {
        name.clear();
    }
    Some(Probe {
        fs: FsType::Vfat,
        label: name,
        id: VolumeId::VfatSerial(u32::from_le_bytes(bytes(ebr, 3)?)),
    })
}

/// Recognises the filesystem whose first bytes are `buf` (up to [`PROBE_LEN`]). iso9660 and
/// ext are tried before vfat because their magic is unambiguous, while an old boot sector
/// can survive at sector 0 under another filesystem.
pub fn probe(buf: &[u8]) -> Option<Probe> {
    iso9660(buf).or_else(|| ext(buf)).or_else(|| vfat(buf))
}

/// Reads the head of the device at `path` and probes it.
pub fn probe_device(path: &Path) -> io::Result<Option<Probe>> {
    let mut buf = Vec::with_capacity(PROBE_LEN);
    File::open(path)?
        .take(PROBE_LEN as u64)
        .read_to_end(&mut buf)?;
    Ok(probe(&buf))
}

#[cfg(test)]
pub(crate) mod tests;
