use std::path::PathBuf;

use super::*;
use crate::drive::superblock::tests::make_image;

/// A fake `/sys` and `/dev` in a temporary directory.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(t.sys().join("class/block")).unwrap();
        fs::create_dir_all(t.dev()).unwrap();
        fs::create_dir_all(t.dir.path().join("img")).unwrap();
        t
    }
    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }
    fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }
    /// A block device `name` whose node holds `image` (or nothing if `None`).
    fn disk(&self, name: &str, image: Option<&Path>, partition: bool) {
        let d = self.sys().join("class/block").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("size"), "2880\n").unwrap();
        if partition {
            fs::write(d.join("partition"), "1\n").unwrap();
        }
        if let Some(img) = image {
            std::os::unix::fs::symlink(img, self.dev().join(name)).unwrap();
        }
    }
    fn image(&self, name: &str, kind: &str, label: &str) -> PathBuf {
        make_image(&self.dir.path().join("img"), name, kind, label)
    }
    fn find(&self) -> Result<Option<FoundDrive>, FindError> {
        find(&self.sys(), &self.dev())
    }
}

#[test]
fn mformat_alias_is_one_drive() {
    let t = Tree::new();
    let img = t.image("cfg", "mformat", "VMINIT");
    t.disk("vda", Some(&t.image("root", "ext4", "rootfs")), false);
    // vdb1 sorts after vdb and is a partition: the whole disk wins either way
    t.disk("vdb1", Some(&img), true);
    t.disk("vdb", Some(&img), false);
    let d = t.find().unwrap().unwrap();
    assert_eq!(d.name, "vdb");
    assert_eq!(d.device, t.dev().join("vdb"));
    assert_eq!(d.fs, FsType::Vfat);
    assert_eq!(d.aliases, vec!["vdb1"]);
    assert_eq!(
        d.describe(),
        format!("{} (vfat)", t.dev().join("vdb").display())
    );
}

#[test]
fn two_different_filesystems_are_an_error_naming_both() {
    let t = Tree::new();
    t.disk("vdb", Some(&t.image("a", "ext4", "VMINIT")), false);
    t.disk("vdc", Some(&t.image("b", "iso", "VMINIT")), false);
    let e = t.find().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, FindError::Ambiguous { .. }));
    assert!(
        msg.contains("vdb (ext4") && msg.contains("vdc (iso9660"),
        "{msg}"
    );
    // even two vfat filesystems: different serials
    let t = Tree::new();
    t.disk("vdb", Some(&t.image("a", "vfat", "VMINIT")), false);
    t.disk("vdc", Some(&t.image("b", "vfat", "VMINIT")), false);
    assert!(matches!(t.find(), Err(FindError::Ambiguous { .. })));
}

#[test]
fn each_filesystem_type_is_found() {
    for kind in ["vfat", "iso", "ext4"] {
        let t = Tree::new();
        t.disk("vda", Some(&t.image("root", "ext4", "root")), false);
        t.disk("vdb", Some(&t.image("cfg", kind, "VMINIT")), false);
        let d = t.find().unwrap().unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(d.name, "vdb", "{kind}");
        assert!(d.aliases.is_empty());
    }
}

#[test]
fn label_must_match_exactly() {
    let t = Tree::new();
    t.disk("vdb", Some(&t.image("a", "ext4", "vminit")), false);
    t.disk("vdc", Some(&t.image("b", "ext4", "VMINIT2")), false);
    assert_eq!(t.find().unwrap(), None);
}

#[test]
fn skipped_devices() {
    let t = Tree::new();
    let img = t.image("cfg", "ext4", "VMINIT");
    for name in ["ram0", "zram0", "loop0"] {
        t.disk(name, Some(&img), false);
    }
    // an empty CD drive reports size 0
    t.disk("sr0", Some(&img), false);
    fs::write(t.sys().join("class/block/sr0/size"), "0\n").unwrap();
    // a device whose node is missing is skipped, not fatal
    t.disk("vdz", None, false);
    assert_eq!(t.find().unwrap(), None);
    // a loop device with a backing file is a candidate
    t.disk("loop1", Some(&img), false);
    fs::create_dir_all(t.sys().join("class/block/loop1/loop")).unwrap();
    fs::write(
        t.sys().join("class/block/loop1/loop/backing_file"),
        "/img/cfg\n",
    )
    .unwrap();
    assert_eq!(t.find().unwrap().unwrap().name, "loop1");
}

#[test]
fn partition_alone_is_found() {
    let t = Tree::new();
    t.disk("vdb", Some(&t.image("mbr", "ext4", "other")), false);
    t.disk("vdb1", Some(&t.image("cfg", "vfat", "VMINIT")), true);
    assert_eq!(t.find().unwrap().unwrap().name, "vdb1");
}

#[test]
fn missing_sysfs_is_an_error() {
    let e = find(Path::new("/nonexistent/sys"), Path::new("/dev")).unwrap_err();
    assert!(
        e.to_string().contains("/nonexistent/sys/class/block"),
        "{e}"
    );
}
