//! Against the real Debian 6.1 indexes from the harness's kernel cache:
//! `$VMINIT_MODULES_DIR`, else `$VMINIT_KERNEL_CACHE/current/lib/modules/<release>`,
//! else `<workspace>/.cache/kernel/current/lib/modules/<release>`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{ModuleIndex, StepKind};

pub fn real_modules_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMINIT_MODULES_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("VMINIT_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/kernel"));
    let lib = cache.join("current/lib/modules");
    let release = fs::read_dir(&lib)
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(|e| e.ok());
    let Some(release) = release else {
        panic!(
            "the real kernel module tree is missing: expected {}/<release>/ with depmod indexes; \
             run `cargo run -p qemu-harness -- fetch-kernel` first (or set VMINIT_MODULES_DIR)",
            lib.display()
        );
    };
    let dir = release.path();
    assert!(
        dir.join("modules.dep").is_file(),
        "{} has no modules.dep; run `cargo run -p qemu-harness -- fetch-kernel`",
        dir.display()
    );
    dir
}

/// The index as vminit reads it: depmod's binary tries.
fn real_index() -> ModuleIndex {
    let idx = ModuleIndex::load(&real_modules_dir()).unwrap();
    assert_eq!(idx.format(), "binary");
    idx
}

#[test]
fn real_alias_lookups() {
    let text = ModuleIndex::load_text(&real_modules_dir()).unwrap();
    assert_eq!(text.format(), "text");
    let (modules, aliases, builtins) = text.counts().unwrap();
    assert!(
        modules > 3000 && aliases > 20000 && builtins > 100,
        "{modules} {aliases} {builtins}"
    );
    let idx = real_index();
    assert_eq!(idx.counts(), None);
    assert_eq!(
        idx.lookup_alias("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
        ["virtio_pci"]
    );
    assert_eq!(
        idx.lookup_alias("pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"),
        ["virtio_pci"]
    );
    assert_eq!(
        idx.lookup_alias("virtio:d00000001v00001AF4"),
        ["virtio_net"]
    );
    assert_eq!(
        idx.lookup_alias("virtio:d00000002v00001AF4"),
        ["virtio_blk"]
    );
    assert_eq!(idx.lookup_alias("acpi:LNRO0005:"), ["virtio_mmio"]);
    assert_eq!(idx.lookup_alias("fs-vfat"), ["vfat"]);
    assert_eq!(idx.lookup_alias("fs-iso9660"), ["isofs"]);
    assert_eq!(idx.lookup_alias("fs-ext4"), ["ext4"]);
    assert!(idx.lookup_alias("virtio:d000000FEv00001AF4").is_empty());
}

fn load_path(idx: &ModuleIndex, plan: &crate::Plan, module: &str) -> PathBuf {
    let step = &plan.steps[plan.position(module).unwrap()];
    match &step.kind {
        StepKind::Load { path } => {
            assert!(path.starts_with(idx.dir()));
            path.clone()
        }
        other => panic!("{module}: {other:?}"),
    }
}

#[test]
fn real_plans_in_valid_order() {
    let idx = real_index();
    let net = idx.resolve("virtio_net").unwrap();
    assert_eq!(net.modules().last(), Some(&"virtio_net"));
    for dep in ["virtio", "virtio_ring", "net_failover", "failover"] {
        assert!(
            net.position(dep).unwrap() < net.position("virtio_net").unwrap(),
            "{dep}"
        );
    }
    assert!(net.position("virtio_ring").unwrap() < net.position("virtio").unwrap());
    assert!(net.position("failover").unwrap() < net.position("net_failover").unwrap());
    assert!(load_path(&idx, &net, "virtio_net").ends_with("kernel/drivers/net/virtio_net.ko"));

    let pci = idx
        .resolve("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
        .unwrap();
    assert_eq!(pci.modules().last(), Some(&"virtio_pci"));
    assert!(pci.position("virtio_pci_modern_dev").is_some());

    let ext4 = idx.resolve_fs("ext4").unwrap();
    let at = |m: &str| {
        ext4.position(m)
            .unwrap_or_else(|| panic!("{m} not in {:?}", ext4.modules()))
    };
    for dep in ["jbd2", "mbcache", "crc16"] {
        assert!(at(dep) < at("ext4"), "{dep}");
        assert!(!ext4.steps[at(dep)].optional);
    }
    // softdep pre: crypto-crc32c (an alias) before jbd2, optional.
    assert!(at("crc32c_generic") < at("jbd2"));
    assert!(ext4.steps[at("crc32c_generic")].optional);
    assert_eq!(ext4.modules().last(), Some(&"ext4"));

    let iso = idx.resolve_fs("iso9660").unwrap();
    assert_eq!(iso.modules(), ["cdrom", "isofs"]);
    let vfat = idx.resolve_fs("vfat").unwrap();
    assert_eq!(vfat.modules(), ["fat", "vfat"]);

    // Every planned file exists in the tree.
    for plan in [&net, &pci, &ext4, &iso, &vfat] {
        for step in &plan.steps {
            if let StepKind::Load { path } = &step.kind {
                assert!(path.is_file(), "{} missing", path.display());
            }
        }
    }
}

#[test]
fn real_builtins() {
    let idx = real_index();
    let dir = real_modules_dir();
    let text = fs::read_to_string(dir.join("modules.builtin")).unwrap();
    let first = crate::parse::module_name(text.lines().next().unwrap());
    assert!(idx.is_builtin(&first));
    let plan = idx.resolve(&first).unwrap();
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].kind, StepKind::Builtin);
}

/// Every line of the real modules.alias parses, and looking up each alias
/// pattern's literal prefix never panics and finds its own module when the
/// pattern is a literal.
#[test]
fn real_literal_aliases_find_themselves() {
    let idx = real_index();
    let text = fs::read_to_string(real_modules_dir().join("modules.alias")).unwrap();
    let lines = crate::parse::parse_alias(&text).unwrap();
    let mut checked = 0;
    for l in lines.iter().filter(|l| crate::glob::is_literal(&l.pattern)) {
        assert!(
            idx.lookup_alias(&l.pattern).contains(&l.module),
            "{} -> {}",
            l.pattern,
            l.module
        );
        checked += 1;
    }
    assert!(checked > 1000, "{checked}");
}

/// The binary tries and the text files of the real tree give the same answers: the modules
/// of a string built from each of the ~26k alias patterns (and of each pattern itself), the
/// plan of every module, and every built-in.
#[test]
fn real_binary_and_text_agree() {
    let dir = real_modules_dir();
    let bin = real_index();
    let text = ModuleIndex::load_text(&dir).unwrap();
    let aliases = fs::read_to_string(dir.join("modules.alias")).unwrap();
    let lines = crate::parse::parse_alias(&aliases).unwrap();
    let mut matched = 0;
    for l in &lines {
        for key in [crate::glob::sample_match(&l.pattern), l.pattern.clone()] {
            let got = bin.lookup_alias(&key);
            assert_eq!(got, text.lookup_alias(&key), "modalias {key:?}");
            matched += usize::from(!got.is_empty());
        }
    }
    assert!(matched > lines.len(), "{matched} of {}", lines.len());
    let deps = fs::read_to_string(dir.join("modules.dep")).unwrap();
    for l in crate::parse::parse_dep(&deps).unwrap() {
        let name = crate::parse::module_name(&l.path);
        assert_eq!(
            bin.resolve(&name).unwrap(),
            text.resolve(&name).unwrap(),
            "{name}"
        );
    }
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap();
    for name in crate::parse::parse_builtin(&builtin).unwrap() {
        assert!(bin.is_builtin(&name) && text.is_builtin(&name), "{name}");
    }
    assert!(!bin.is_builtin("virtio_net") && !bin.contains("nonesuch"));
    assert_eq!(
        bin.format(),
        "binary",
        "a lookup found the real tries damaged"
    );
}

/// The devices of issue 18's Debian guest against Debian's own aliases: the job's drivers
/// and the power button's are essential, the slow display, watchdog and speaker drivers
/// are left for the rest stage.
#[test]
fn real_essential_and_rest_drivers() {
    let idx = real_index();
    let cases: &[(&str, &str, bool)] = &[
        ("virtio:d00000001v00001AF4", "virtio_net", true),
        (
            "virtio:d00000013v00001AF4",
            "vmw_vsock_virtio_transport",
            true,
        ),
        ("virtio:d00000004v00001AF4", "virtio_rng", true),
        ("virtio:d00000003v00001AF4", "virtio_console", true),
        ("acpi:LNRO0005:", "virtio_mmio", true),
        ("acpi:PNP0C0C:", "button", true),
        ("acpi:LNXPWRBN:", "button", true),
        (
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
            "e1000e",
            true,
        ),
        (
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
            "bochs",
            false,
        ),
        ("virtio:d00000010v00001AF4", "virtio_gpu", false),
        ("platform:pcspkr", "pcspkr", false),
        ("platform:iTCO_wdt", "iTCO_wdt", false),
    ];
    for (modalias, module, essential) in cases {
        let found = idx.lookup_alias(modalias);
        assert!(found.iter().any(|m| m == module), "{modalias}: {found:?}");
        assert_eq!(crate::is_essential(modalias), *essential, "{modalias}");
    }
}
