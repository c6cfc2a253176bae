//! Real images made by the real tools (mkfs.vfat, mformat, genisoimage, mkfs.ext4), plus
//! hand-made corrupt buffers.

use std::path::PathBuf;
use std::process::Command;

use super::*;

pub(crate) fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds an image of `kind` labelled `label` at `dir/name`.
pub(crate) fn make_image(dir: &Path, name: &str, kind: &str, label: &str) -> PathBuf {
    let p = dir.join(name);
    let ps = p.to_str().unwrap();
    match kind {
        "vfat" => run("mkfs.vfat", &["-n", label, "-C", ps, "2048"]),
        "vfat32" => run("mkfs.vfat", &["-F", "32", "-n", label, "-C", ps, "40000"]),
        "mformat" => {
            run("truncate", &["-s", "1440K", ps]);
            run(
                "mformat",
                &["-i", ps, "-v", label, "-C", "-f", "1440", "::"],
            );
        }
        "iso" => {
            let src = dir.join(format!("{name}.d"));
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("vminit.toml"), "hostname = \"x\"\n").unwrap();
            run(
                "genisoimage",
                &["-quiet", "-V", label, "-o", ps, src.to_str().unwrap()],
            );
        }
        "ext4" => {
            run("truncate", &["-s", "4M", ps]);
            run("mkfs.ext4", &["-q", "-F", "-L", label, ps]);
        }
        _ => panic!("{kind}"),
    }
    p
}

#[test]
fn real_images_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("vfat", FsType::Vfat),
        ("vfat32", FsType::Vfat),
        ("mformat", FsType::Vfat),
        ("iso", FsType::Iso9660),
        ("ext4", FsType::Ext4),
    ];
    for (kind, fs) in cases {
        let p = make_image(dir.path(), kind, kind, "VMINIT");
        let probe = probe_device(&p)
            .unwrap()
            .unwrap_or_else(|| panic!("{kind} not recognised"));
        assert_eq!(probe.fs, fs, "{kind}");
        assert_eq!(probe.label, "VMINIT", "{kind}");
        let other = make_image(dir.path(), &format!("{kind}-other"), kind, "OTHER");
        assert_eq!(
            probe_device(&other).unwrap().unwrap().label,
            "OTHER",
            "{kind}"
        );
    }
}

#[test]
fn identities_tell_filesystems_apart() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["vfat", "ext4"] {
        let a = probe_device(&make_image(
            dir.path(),
            &format!("{kind}-a"),
            kind,
            "VMINIT",
        ))
        .unwrap()
        .unwrap();
        let b = probe_device(&make_image(
            dir.path(),
            &format!("{kind}-b"),
            kind,
            "VMINIT",
        ))
        .unwrap()
        .unwrap();
        assert_ne!(a.id, b.id, "{kind}: two mkfs runs gave the same identity");
    }
    let a = probe_device(&make_image(dir.path(), "e", "ext4", "VMINIT"))
        .unwrap()
        .unwrap();
    assert!(a.id.to_string().starts_with("uuid "), "{}", a.id);
    assert_eq!(a.id.to_string().len(), "uuid ".len() + 36);
}

#[test]
fn short_labels_and_unlabelled() {
    let dir = tempfile::tempdir().unwrap();
    let p = make_image(dir.path(), "a", "ext4", "VM");
    assert_eq!(probe_device(&p).unwrap().unwrap().label, "VM");
    let p = dir.path().join("nolabel");
    run("mkfs.vfat", &["-C", p.to_str().unwrap(), "2048"]);
    assert_eq!(probe_device(&p).unwrap().unwrap().label, "");
}

#[test]
fn every_truncation_of_real_images_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["vfat", "vfat32", "iso", "ext4"] {
        let full = std::fs::read(make_image(dir.path(), kind, kind, "VMINIT")).unwrap();
        let full = &full[..full.len().min(PROBE_LEN)];
        for len in (0..full.len()).step_by(61) {
            // a short read is "not recognised" or the right answer, never a panic
            if let Some(p) = probe(&full[..len]) {
                assert_eq!(p.label, "VMINIT");
            }
        }
        assert!(probe(full).is_some());
    }
}

#[test]
fn corrupt_buffers() {
    assert_eq!(probe(&[]), None);
    assert_eq!(probe(&[0u8; PROBE_LEN]), None);
    assert_eq!(probe(&[0xffu8; PROBE_LEN]), None);
    // ext magic right at the end of the buffer, label beyond it
    let mut b = vec![0u8; 1024 + 58];
    b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    assert_eq!(probe(&b), None);
    b.resize(2048, 0);
    b[1024 + 120..1024 + 126].copy_from_slice(b"VMINIT");
    assert_eq!(probe(&b).unwrap().label, "VMINIT");
    // a boot signature without a FAT BPB
    let mut b = vec![0u8; 512];
    b[510] = 0x55;
    b[511] = 0xAA;
    assert_eq!(probe(&b), None);
    // a plausible BPB but a type string that is not FAT
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = 4;
    b[22] = 1;
    b[38] = 0x29;
    b[43..54].copy_from_slice(b"VMINIT     ");
    b[54..62].copy_from_slice(b"NTFS    ");
    assert_eq!(probe(&b), None);
    b[54..62].copy_from_slice(b"FAT16   ");
    assert_eq!(probe(&b).unwrap().label, "VMINIT");
    // sectors per cluster not a power of two
    b[13] = 3;
    assert_eq!(probe(&b), None);
    // iso descriptors that never reach a primary one, and a set that ends before it
    let mut b = vec![0u8; PROBE_LEN];
    for s in 16..32 {
        b[s * 2048] = 2;
        b[s * 2048 + 1..s * 2048 + 6].copy_from_slice(b"CD001");
    }
    assert_eq!(probe(&b), None);
    b[16 * 2048] = 255;
    assert_eq!(probe(&b), None);
    // a primary descriptor cut short
    let mut b = vec![0u8; 32768 + 50];
    b[32768] = 1;
    b[32769..32774].copy_from_slice(b"CD001");
    assert_eq!(probe(&b), None);
    // non-UTF-8 label bytes are replaced, not trusted
    let mut b = vec![0u8; 2048];
    b[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    b[1024 + 120] = 0xff;
    assert_ne!(probe(&b).unwrap().label, "VMINIT");
}

#[test]
fn unreadable_device_is_an_io_error() {
    assert!(probe_device(Path::new("/nonexistent/vdz")).is_err());
}
