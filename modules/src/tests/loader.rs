//! Loader over the synthetic tree with the recording fake kernel.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use super::fakes::{self, FakeClock, FakeKernel};
use crate::{Errno, Error, InitFlags, KernelError, LoadFailure, Loader, ModuleIndex};

fn loader(kernel: FakeKernel) -> (tempfile::TempDir, Loader<FakeKernel, FakeClock>) {
    let (tmp, idx) = fakes::index();
    (tmp, Loader::new(Ok(idx), kernel, FakeClock::default()))
}

#[test]
fn loads_in_plan_order_and_times_each() {
    let clock = FakeClock::default();
    let kernel = FakeKernel {
        time: Some(clock.now.clone()),
        load_cost: Duration::from_micros(1500),
        ..FakeKernel::default()
    };
    let (_tmp, idx) = fakes::index();
    let mut l = Loader::new(Ok(idx), kernel, clock);
    l.load("virtio_net").unwrap();
    assert_eq!(
        l.kernel.modules(),
        [
            "virtio_ring",
            "virtio",
            "failover",
            "net_failover",
            "virtio_net"
        ]
    );
    let r = l.report();
    assert_eq!(r.loaded.len(), 5);
    assert!(
        r.loaded.iter().all(|x| (x.ms - 1.5).abs() < 1e-9),
        "{:?}",
        r.loaded
    );
    assert!(l.is_loaded("virtio-net"));
    // A second request loads nothing again.
    l.load("virtio_blk").unwrap();
    assert_eq!(l.kernel.modules().len(), 6);
}

#[test]
fn proc_modules_and_eexist_count_as_loaded() {
    let mut kernel = FakeKernel::default();
    kernel
        .fail
        .insert("virtio".into(), KernelError::Init(Errno::EEXIST));
    let (_tmp, l) = loader(kernel);
    let mut l = l.with_loaded("virtio_ring 45056 2 virtio_net,virtio, Live 0x0000000000000000\n");
    l.load("virtio_blk").unwrap();
    assert_eq!(l.kernel.modules(), ["virtio", "virtio_blk"]);
    assert_eq!(l.report().already_loaded, ["virtio"]);
    assert_eq!(l.report().loaded.len(), 1);
    assert!(l.report().failed.is_empty());
}

#[test]
fn failed_dependency_fails_dependants_without_trying_them() {
    let mut kernel = FakeKernel::default();
    kernel
        .fail
        .insert("failover".into(), KernelError::Init(Errno::ENOEXEC));
    let (_tmp, mut l) = loader(kernel);
    let err = l.load("virtio_net").unwrap_err();
    match &err {
        Error::Load {
            module,
            failure: LoadFailure::Kernel { errno, .. },
        } => {
            assert_eq!(module, "failover");
            assert_eq!(*errno, Errno::ENOEXEC);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(l.kernel.modules(), ["virtio_ring", "virtio", "failover"]);
    let r = l.report();
    assert!(r
        .failure("failover")
        .unwrap()
        .reason
        .contains("Exec format error"));
    assert_eq!(
        r.failure("net_failover").unwrap().reason,
        "its dependency failover failed to load"
    );
    // modules.dep lists net_failover first; either names the broken chain.
    assert_eq!(
        r.failure("virtio_net").unwrap().reason,
        "its dependency net_failover failed to load"
    );
}

#[test]
fn softdep_failure_does_not_fail_the_request() {
    let mut kernel = FakeKernel::default();
    kernel
        .fail
        .insert("crc32c_intel".into(), KernelError::Init(Errno::ENODEV));
    let (_tmp, mut l) = loader(kernel);
    l.load_fs("ext4").unwrap();
    assert_eq!(
        l.kernel.modules(),
        [
            "crc32c_intel",
            "crc32c_generic",
            "jbd2",
            "mbcache",
            "crc16",
            "ext4"
        ]
    );
    // No SSE4.2 under TCG: the driver finds nothing to drive, which is not a failure.
    assert!(l.report().failure("crc32c_intel").is_none());
    assert_eq!(l.report().no_device, ["crc32c_intel"]);
}

/// ENODEV and ENXIO (acpi_cpufreq, pcc_cpufreq in a VM) are listed apart from the failures;
/// the module is not retried, and a real error stays a failure.
#[test]
fn no_device_is_not_a_failure() {
    let mut kernel = FakeKernel::default();
    kernel
        .fail
        .insert("vfat".into(), KernelError::Init(Errno::ENXIO));
    kernel
        .fail
        .insert("virtio_blk".into(), KernelError::Init(Errno::ENODEV));
    kernel
        .fail
        .insert("virtio_net".into(), KernelError::Init(Errno::ENOEXEC));
    let (_tmp, mut l) = loader(kernel);
    let err = l.load_fs("vfat").unwrap_err();
    assert!(err.is_no_device(), "{err}");
    assert!(
        err.to_string().contains("found no device to drive"),
        "{err}"
    );
    assert!(l.load("virtio_blk").unwrap_err().is_no_device());
    let net = l.load("virtio_net").unwrap_err();
    assert!(!net.is_no_device(), "{net}");
    // Asked again: answered from memory, no second finit_module.
    assert!(l.load("virtio_blk").unwrap_err().is_no_device());
    let r = l.report();
    assert_eq!(r.no_device, ["vfat", "virtio_blk"]);
    let failed: Vec<&str> = r.failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(failed, ["virtio_net"]);
    let calls = l.kernel.modules();
    assert_eq!(
        calls.iter().filter(|m| *m == "virtio_blk").count(),
        1,
        "{calls:?}"
    );
}

#[test]
fn builtins_are_reported_not_loaded() {
    let (_tmp, mut l) = loader(FakeKernel::default());
    l.load_fs("iso9660").unwrap();
    assert!(l.kernel.calls.is_empty());
    assert_eq!(l.report().builtin, ["isofs"]);
}

#[test]
fn missing_module_file_is_named() {
    let (_tmp, idx) = fakes::index();
    fs::remove_file(idx.dir().join("kernel/fs/fat/vfat.ko")).unwrap();
    let mut l = Loader::new(Ok(idx), FakeKernel::default(), FakeClock::default());
    let err = l.load_fs("vfat").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("module vfat: module file "), "{msg}");
    assert!(
        msg.ends_with("kernel/fs/fat/vfat.ko is listed in modules.dep but missing from the image"),
        "{msg}"
    );
}

#[test]
fn compressed_module_flag_and_rejection() {
    // Supported: the flag is passed.
    let (_tmp, mut l) = loader(FakeKernel::default());
    l.load("virtio_rng").unwrap();
    let call = l.kernel.calls.last().unwrap();
    assert_eq!(call.flags, InitFlags { compressed: true });
    assert_eq!(l.kernel.calls[0].flags, InitFlags { compressed: false });

    // Debian 6.1: no CONFIG_MODULE_DECOMPRESS, the kernel says EINVAL.
    for errno in [Errno::EINVAL, Errno::EOPNOTSUPP] {
        let mut kernel = FakeKernel::default();
        kernel
            .fail
            .insert("virtio_rng".into(), KernelError::Init(errno));
        let (_tmp, mut l) = loader(kernel);
        let msg = l.load("virtio_rng").unwrap_err().to_string();
        assert!(
            msg.contains("kernel cannot load compressed module"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "virtio-rng.ko.xz (no CONFIG_MODULE_DECOMPRESS); ship uncompressed .ko files"
            ),
            "{msg}"
        );
    }
    // EINVAL on an uncompressed module is just EINVAL.
    let mut kernel = FakeKernel::default();
    kernel
        .fail
        .insert("vfat".into(), KernelError::Init(Errno::EINVAL));
    let (_tmp, mut l) = loader(kernel);
    let msg = l.load("vfat").unwrap_err().to_string();
    assert!(
        msg.contains("Invalid argument") && !msg.contains("compressed"),
        "{msg}"
    );
}

#[test]
fn params_are_passed_and_quoted() {
    let mut params = BTreeMap::new();
    params.insert(
        "virtio-net".to_string(),
        vec!["napi_tx=1".to_string(), "name=a b".to_string()],
    );
    params.insert(
        "virtio_mmio".to_string(),
        vec!["device=4K@0xd0000000:5".to_string()],
    );
    let (_tmp, l) = loader(FakeKernel::default());
    let mut l = l.with_params(params);
    l.load("virtio_net").unwrap();
    let net = l
        .kernel
        .calls
        .iter()
        .find(|c| c.module() == "virtio_net")
        .unwrap();
    assert_eq!(net.params, "napi_tx=1 name=\"a b\"");
    let ring = l
        .kernel
        .calls
        .iter()
        .find(|c| c.module() == "virtio_ring")
        .unwrap();
    assert_eq!(ring.params, "");
    assert_eq!(l.param_string("virtio_mmio"), "device=4K@0xd0000000:5");
    assert_eq!(l.cmdline_device_modules(), ["virtio_mmio"]);
}

#[test]
fn unusable_tree_fails_each_load_with_the_reason() {
    let (tmp, _dir) = fakes::module_tree();
    let missing = tmp.path().join("lib/modules/9.9.9");
    let mut l = Loader::new(
        ModuleIndex::load(&missing),
        FakeKernel::default(),
        FakeClock::default(),
    );
    assert!(l.report().tree_missing);
    assert_eq!(l.report().release, "9.9.9");
    let msg = l.load("virtio_net").unwrap_err().to_string();
    assert!(
        msg.contains("no usable module tree: ")
            && msg.ends_with("9.9.9 does not exist (no modules for kernel 9.9.9)"),
        "{msg}"
    );
    assert_eq!(l.report().failed[0].name, "virtio_net");
    let msg = l.load("nonesuch").unwrap_err().to_string();
    assert!(msg.contains("lib/modules/9.9.9"), "{msg}");
}

#[test]
fn unknown_module_is_recorded() {
    let (_tmp, mut l) = loader(FakeKernel::default());
    let msg = l.load("nonesuch").unwrap_err().to_string();
    assert!(
        msg.starts_with("no module, built-in or alias named nonesuch in "),
        "{msg}"
    );
    assert_eq!(l.report().failed[0].name, "nonesuch");
    let msg = l.load_fs("btrfs").unwrap_err().to_string();
    assert!(msg.contains("fs-btrfs"), "{msg}");
    assert_eq!(l.report().failed[1].name, "fs-btrfs");
}

#[test]
fn for_release_reads_tree_and_proc_modules() {
    let (tmp, dir) = fakes::module_tree();
    let proc_modules = tmp.path().join("proc-modules");
    fs::write(
        &proc_modules,
        "virtio_ring 45056 0 - Live 0x0\nvirtio 20480 0 - Live 0x0\n",
    )
    .unwrap();
    let lib = dir.parent().unwrap();
    let mut l = Loader::for_release(
        lib,
        fakes::RELEASE,
        &proc_modules,
        BTreeMap::new(),
        FakeKernel::default(),
        FakeClock::default(),
    );
    assert_eq!(l.report().release, fakes::RELEASE);
    l.load("virtio_blk").unwrap();
    assert_eq!(l.kernel.modules(), ["virtio_blk"]);

    // Unreadable /proc/modules: noted, not fatal.
    let l = Loader::for_release(
        lib,
        fakes::RELEASE,
        &tmp.path().join("nope"),
        BTreeMap::new(),
        FakeKernel::default(),
        FakeClock::default(),
    );
    assert!(
        l.report().errors[0].starts_with("cannot read "),
        "{:?}",
        l.report().errors
    );

    // Another kernel's release: the tree is missing.
    let l = Loader::for_release(
        lib,
        "6.9.9-other",
        &proc_modules,
        BTreeMap::new(),
        FakeKernel::default(),
        FakeClock::default(),
    );
    assert!(l.report().tree_missing);
    assert_eq!(l.report().modules_dir, lib.join("6.9.9-other"));
}
