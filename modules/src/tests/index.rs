//! ModuleIndex over the synthetic tree: resolution, order, softdeps, builtins.

use std::fs;

use super::fakes::{self, RELEASE};
use crate::{Error, ModuleIndex, StepKind};

#[test]
fn dependencies_right_to_left_then_module() {
    let (_tmp, idx) = fakes::index();
    let plan = idx.resolve("virtio_net").unwrap();
    assert_eq!(
        plan.modules(),
        [
            "virtio_ring",
            "virtio",
            "failover",
            "net_failover",
            "virtio_net"
        ]
    );
    let last = plan.steps.last().unwrap();
    assert!(!last.optional);
    assert_eq!(
        last.deps,
        ["net_failover", "failover", "virtio", "virtio_ring"]
    );
    match &last.kind {
        StepKind::Load { path } => {
            assert_eq!(path, &idx.dir().join("kernel/drivers/net/virtio_net.ko"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn softdeps_pre_first_post_last_and_optional() {
    let (_tmp, idx) = fakes::index();
    let plan = idx.resolve("with_soft").unwrap();
    assert_eq!(plan.modules(), ["leaf", "pre_a", "with_soft", "post_b"]);
    let optional: Vec<bool> = plan.steps.iter().map(|s| s.optional).collect();
    assert_eq!(optional, [false, true, false, true]);
}

/// ext4: jbd2's and ext4's `pre: crypto-crc32c` is an alias for two
/// modules; each is planned once, before jbd2.
#[test]
fn ext4_with_alias_softdeps() {
    let (_tmp, idx) = fakes::index();
    let plan = idx.resolve_fs("ext4").unwrap();
    assert_eq!(
        plan.modules(),
        [
            "crc32c_intel",
            "crc32c_generic",
            "jbd2",
            "mbcache",
            "crc16",
            "ext4"
        ]
    );
}

#[test]
fn names_aliases_and_dashes() {
    let (_tmp, idx) = fakes::index();
    assert_eq!(
        idx.resolve("virtio-rng").unwrap().modules(),
        ["virtio_ring", "virtio", "virtio_rng"]
    );
    assert_eq!(idx.resolve("fs-vfat").unwrap().modules(), ["fat", "vfat"]);
    assert_eq!(
        idx.resolve("virtio:d00000002v00001AF4").unwrap().modules(),
        ["virtio_ring", "virtio", "virtio_blk"]
    );
    match idx.resolve("nonesuch") {
        Err(Error::UnknownModule { name, .. }) => assert_eq!(name, "nonesuch"),
        other => panic!("unexpected {other:?}"),
    }
    let e = idx.resolve_fs("btrfs").unwrap_err();
    assert!(
        e.to_string()
            .contains("no module provides filesystem btrfs"),
        "{e}"
    );
}

#[test]
fn builtins_are_satisfied() {
    let (_tmp, idx) = fakes::index();
    assert!(idx.is_builtin("isofs"));
    let plan = idx.resolve_fs("iso9660").unwrap();
    assert_eq!(plan.modules(), ["isofs"]);
    assert_eq!(plan.steps[0].kind, StepKind::Builtin);
    // A builtin reached through a modalias (rtc-cmos spelt with a dash in modules.builtin).
    let plan = idx.resolve("platform:rtc_cmos").unwrap();
    assert_eq!(plan.steps[0].kind, StepKind::Builtin);
}

#[test]
fn builtin_aliases_from_modinfo() {
    let (_tmp, dir) = fakes::module_tree();
    fs::write(
        dir.join("modules.builtin.modinfo"),
        "squashfs.alias=fs-squashfs\0squashfs.license=GPL\0\
         foo.parm=x.alias=fs-bogus\0crc32c-generic.alias=crypto-zzz\0",
    )
    .unwrap();
    let idx = ModuleIndex::load(&dir).unwrap();
    assert_eq!(idx.lookup_alias("fs-squashfs"), ["squashfs"]);
    assert_eq!(idx.lookup_alias("crypto-zzz"), ["crc32c_generic"]);
    // `.alias=` inside a parameter's value is not an alias.
    assert!(idx.lookup_alias("fs-bogus").is_empty());
    // Not in modules.builtin, so the step is Unlisted: stale indexes, not a crash.
    assert_eq!(
        idx.resolve_fs("squashfs").unwrap().steps[0].kind,
        StepKind::Unlisted
    );
}

#[test]
fn missing_tree_and_missing_index() {
    let (tmp, dir) = fakes::module_tree();
    match ModuleIndex::load(&tmp.path().join("lib/modules/9.9.9")) {
        Err(Error::MissingTree {
            release,
            dir,
            wanted,
        }) => {
            assert_eq!(release, "9.9.9");
            assert!(dir.ends_with("lib/modules/9.9.9"));
            assert!(wanted.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    fs::remove_file(dir.join("modules.softdep")).unwrap();
    fs::remove_file(dir.join("modules.builtin")).unwrap();
    assert!(
        ModuleIndex::load(&dir).is_ok(),
        "softdep and builtin are optional"
    );
    fs::remove_file(dir.join("modules.dep")).unwrap();
    let e = ModuleIndex::load(&dir).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{RELEASE}/modules.dep is missing")),
        "{msg}"
    );
    assert!(msg.contains("depmod"), "{msg}");
}

#[test]
fn parse_errors_name_dir_file_line() {
    let (_tmp, dir) = fakes::module_tree();
    fs::write(dir.join("modules.alias"), "alias a b\nalias broken\n").unwrap();
    let msg = ModuleIndex::load(&dir).unwrap_err().to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("modules.alias line 2"), "{msg}");
}
