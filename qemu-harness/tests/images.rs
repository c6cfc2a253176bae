//! Host-only checks of the images the harness builds, read back with the
//! standard tools: `cpio -t`/`cpio -i` for the initramfs, `blkid` for the
//! config drive labels, `mtools`/`isoinfo`/`debugfs` for the file contents.

use std::process::Command;

use qemu_harness::{make_drive, DriveFs, Initramfs, Kernel, Modules};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cpio_list(archive: &std::path::Path) -> Vec<String> {
    let out = Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn cpio_round_trip_with_gnu_cpio() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("img.cpio");
    let mut img = Initramfs::new();
    img.file("/init", b"#!/bin/true\n".to_vec(), 0o755)
        .config("[services.a]\ncommand = [\"/bin/a\"]\n")
        .file("/deep/er/file.bin", vec![0u8, 1, 2, 3, 4], 0o600)
        .symlink("/sbin/init", "/init");
    img.write(&archive).unwrap();

    let names = cpio_list(&archive);
    for want in [
        "init",
        "etc/vminit/vminit.toml",
        "deep",
        "deep/er",
        "deep/er/file.bin",
        "dev/console",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(&archive)
        .arg("--nonmatching")
        .arg("dev/*")
        .current_dir(&out));
    assert_eq!(
        std::fs::read(out.join("deep/er/file.bin")).unwrap(),
        [0, 1, 2, 3, 4]
    );
    let toml = std::fs::read_to_string(out.join("etc/vminit/vminit.toml")).unwrap();
    assert!(toml.contains("[services.a]"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("init"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(out.join("sbin/init")).unwrap().to_str(),
        Some("/init")
    );
}

/// The virtio subset of the real Debian module tree: the closure is in the
/// archive and the regenerated modules.dep names only files that are there.
#[test]
fn virtio_module_subset_is_self_consistent() {
    let kernel = Kernel::get().unwrap();
    let modules_dir = kernel.modules_dir.clone().unwrap();
    let mut img = Initramfs::new();
    img.modules(&kernel.release, &modules_dir, &Modules::Virtio.names())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("m.cpio");
    img.write(&archive).unwrap();

    let prefix = format!("lib/modules/{}/", kernel.release);
    let names = cpio_list(&archive);
    let kos: Vec<&String> = names.iter().filter(|n| n.ends_with(".ko")).collect();
    for module in [
        "virtio_net.ko",
        "virtio_blk.ko",
        "virtio_pci.ko",
        "virtio_mmio.ko",
        "ext4.ko",
        "jbd2.ko",
        "isofs.ko",
        "vfat.ko",
        "fat.ko",
        "crc32c_generic.ko",
        "virtio_ring.ko",
    ] {
        assert!(
            kos.iter().any(|k| k.ends_with(&format!("/{module}"))),
            "{module} not in {kos:?}"
        );
    }
    assert!(kos.len() < 40, "subset too large: {}", kos.len());
    for index in [
        "modules.dep",
        "modules.alias",
        "modules.builtin",
        "modules.softdep",
        "modules.order",
        "modules.builtin.modinfo",
        "modules.dep.bin",
    ] {
        assert!(
            names.contains(&format!("{prefix}{index}")),
            "{index} missing"
        );
    }

    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("cpio")
        .args(["-i", "-d", "--quiet", "-F"])
        .arg(&archive)
        .arg(format!("{prefix}*"))
        .current_dir(&out));
    let dep = std::fs::read_to_string(out.join(&prefix).join("modules.dep")).unwrap();
    assert_eq!(dep.lines().count(), kos.len());
    for line in dep.lines() {
        for path in line.replace(':', " ").split_whitespace() {
            assert!(
                out.join(&prefix).join(path).is_file(),
                "modules.dep names missing {path}"
            );
        }
    }
}

fn blkid(image: &std::path::Path) -> (String, String) {
    let tag = |t: &str| {
        run(Command::new("blkid")
            .args(["-o", "value", "-s", t])
            .arg(image))
        .trim()
        .to_string()
    };
    (tag("TYPE"), tag("LABEL"))
}

#[test]
fn drive_labels_and_contents_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let toml: &[u8] = b"hostname = \"h1\"\n";
    let files: &[(&str, &[u8])] = &[("vminit.toml", toml), ("sub/extra.txt", b"x")];
    for (fs, want_type) in [
        (DriveFs::Vfat, "vfat"),
        (DriveFs::Iso9660, "iso9660"),
        (DriveFs::Ext4, "ext4"),
    ] {
        let image = dir.path().join(format!("{want_type}.img"));
        make_drive(fs, "VMINIT", files, &image).unwrap();
        assert_eq!(
            blkid(&image),
            (want_type.to_string(), "VMINIT".to_string()),
            "{fs:?}"
        );
        let content = match fs {
            DriveFs::Vfat => run(Command::new("mtype")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i"])
                .arg(&image)
                .arg("::vminit.toml")),
            DriveFs::Iso9660 => run(Command::new("isoinfo")
                .args(["-R", "-x", "/vminit.toml", "-i"])
                .arg(&image)),
            DriveFs::Ext4 => run(Command::new("debugfs")
                .args(["-R", "cat /vminit.toml"])
                .arg(&image)),
        };
        assert_eq!(content.as_bytes(), toml, "{fs:?}");
    }
    let other = dir.path().join("other.img");
    make_drive(DriveFs::Vfat, "OTHER", files, &other).unwrap();
    assert_eq!(blkid(&other).1, "OTHER");
}
