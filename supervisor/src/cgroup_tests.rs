//! The layout and limit decisions over a fake cgroup tree in a tempdir: each file the kernel
//! would offer is created empty, so a write to a file the kernel would not have fails.

use std::fs;
use std::path::Path;

use super::*;

fn touch(p: &Path) {
    fs::write(p, "").unwrap();
}

/// A cgroup2 root offering `controllers`, with the files a cgroup has for them.
fn fake_root(controllers: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("cgroup.controllers"), controllers).unwrap();
    touch(&t.path().join("cgroup.subtree_control"));
    t
}

/// What the kernel creates in a new child cgroup (here: before `set_up`/`service` run).
fn fake_child(dir: &Path, controllers: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for f in [
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.kill",
        "cpu.stat",
    ] {
        touch(&dir.join(f));
    }
    for c in controllers {
        let files: &[&str] = match *c {
            "cpu" => &["cpu.max", "cpu.weight"],
            "memory" => &["memory.max", "memory.high", "memory.min", "memory.events"],
            "pids" => &["pids.max", "pids.current"],
            _ => &[],
        };
        for f in files {
            touch(&dir.join(f));
        }
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

fn cfg(extra: &str) -> ServiceConfig {
    toml::from_str(&format!("command = [\"x\"]\n{extra}")).unwrap()
}

#[test]
fn pid1_layout_moves_the_init_enables_what_is_offered_and_protects_it() {
    let root = fake_root("cpuset cpu io memory hugetlb pids rdma misc\n");
    let all = ["cpu", "memory", "pids"];
    fake_child(&root.path().join("vminit"), &all);
    fake_child(&root.path().join("vminit/init"), &all);
    let h = Hierarchy::set_up(root.path(), Scope::Pid1, 4242).unwrap();
    assert_eq!(h.enabled(), ["cpu", "memory", "pids"]);
    assert!(h.missing().is_empty() && h.problems.is_empty(), "{h:?}");
    assert_eq!(read(&root.path().join("vminit/init/cgroup.procs")), "4242");
    // The last controller written wins in the fake (the kernel accumulates): at least the
    // writes went to both levels.
    assert_eq!(read(&root.path().join("cgroup.subtree_control")), "+pids");
    assert_eq!(
        read(&root.path().join("vminit/cgroup.subtree_control")),
        "+pids"
    );
    assert_eq!(read(&root.path().join("vminit/init/cpu.weight")), "1000");
    // Both levels: the kernel caps the init's effective memory.min by its parent's.
    for d in ["vminit", "vminit/init"] {
        assert_eq!(
            read(&root.path().join(d).join("memory.min")),
            (16u64 << 20).to_string(),
            "{d}/memory.min"
        );
    }
}

#[test]
fn a_protection_the_kernel_refuses_is_a_problem_naming_the_file() {
    let root = fake_root("cpu memory pids");
    let all = ["cpu", "memory", "pids"];
    fake_child(&root.path().join("vminit"), &all);
    fake_child(&root.path().join("vminit/init"), &all);
    // No memory.min on the parent: as if the kernel refused it.
    fs::remove_file(root.path().join("vminit/memory.min")).unwrap();
    let h = Hierarchy::set_up(root.path(), Scope::Pid1, 7).unwrap();
    assert!(h.has("memory"), "{h:?}");
    assert_eq!(h.problems.len(), 1, "{:?}", h.problems);
    let p = &h.problems[0];
    assert!(
        p.contains("cannot protect the init")
            && p.contains("vminit/memory.min")
            && p.contains(&(16u64 << 20).to_string()),
        "{p}"
    );
    // The init's own is still written: it counts as soon as the parent's is fixed.
    assert_eq!(
        read(&root.path().join("vminit/init/memory.min")),
        (16u64 << 20).to_string()
    );
}

#[test]
fn missing_controllers_are_named_and_their_limits_refused_with_the_key() {
    let root = fake_root("cpu pids");
    fake_child(&root.path().join("vminit"), &["cpu", "pids"]);
    fake_child(&root.path().join("vminit/init"), &["cpu", "pids"]);
    let h = Hierarchy::set_up(root.path(), Scope::Pid1, 7).unwrap();
    assert_eq!(h.missing(), ["memory"]);
    assert!(h.has("cpu") && !h.has("memory"));
    fake_child(&root.path().join("vminit/hog"), &["cpu", "pids"]);
    let c = cfg("memory_max = \"64M\"\npids_max = 64\ncpu_max = \"50%\"\ncpu_weight = 50");
    let (cg, errors) = h.service("hog", &c);
    assert!(cg.is_some());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("hog") && errors[0].contains("memory_max = 64M"),
        "{}",
        errors[0]
    );
    let dir = root.path().join("vminit/hog");
    assert_eq!(read(&dir.join("pids.max")), "64");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(&dir.join("cpu.weight")), "50");
}

#[test]
fn a_limit_file_the_kernel_refuses_is_an_error_naming_path_and_value() {
    let root = fake_root("cpu memory pids");
    let all = ["cpu", "memory", "pids"];
    fake_child(&root.path().join("vminit"), &all);
    fake_child(&root.path().join("vminit/init"), &all);
    let h = Hierarchy::set_up(root.path(), Scope::Pid1, 7).unwrap();
    // No memory.high file: as if the kernel refused it.
    fake_child(&root.path().join("vminit/web"), &["cpu", "pids"]);
    touch(&root.path().join("vminit/web/memory.max"));
    let (_, errors) = h.service("web", &cfg("memory_max = \"2G\"\nmemory_high = \"1G\""));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("memory_high = 1G") && errors[0].contains("memory.high"),
        "{}",
        errors[0]
    );
    assert_eq!(
        read(&root.path().join("vminit/web/memory.max")),
        (2u64 << 30).to_string()
    );
}

#[test]
fn without_cgroup2_or_delegation_there_is_no_layout() {
    let t = tempfile::tempdir().unwrap();
    let e = Hierarchy::set_up(t.path(), Scope::Pid1, 7).unwrap_err();
    assert!(matches!(e, Unavailable::NoCgroup2 { .. }), "{e}");
    assert!(e.to_string().contains("cgroup.controllers"), "{e}");
    // Off PID 1 in a cgroup nobody delegated (root in a systemd service without
    // Delegate=yes): not ours to divide, and nothing is made in it.
    let root = fake_root("cpu");
    let undelegated = delegation::Facts {
        own: Some("/system.slice/agent.service".into()),
        writable: true,
        ..delegation::Facts::default()
    };
    let e = Hierarchy::set_up(root.path(), Scope::Started(undelegated), 7).unwrap_err();
    assert!(matches!(e, Unavailable::NotDelegated { .. }), "{e}");
    assert!(
        e.to_string().contains("is not delegated to vminit")
            && e.to_string().contains("/system.slice/agent.service"),
        "{e}"
    );
    assert!(!root.path().join("vminit").exists());
    // A move that fails is a setup error naming the file.
    let root = fake_root("cpu");
    let e = Hierarchy::set_up(root.path(), Scope::Pid1, 7).unwrap_err();
    assert!(e.to_string().contains("init/cgroup.procs"), "{e}");
}

#[test]
fn figures_and_oom_kills_are_read_from_the_kernel_files() {
    let t = tempfile::tempdir().unwrap();
    let cg = ServiceCgroup {
        dir: t.path().to_path_buf(),
    };
    assert_eq!(cg.figures(), Figures::default());
    assert!(cg.is_empty());
    fs::write(t.path().join("memory.current"), "1048576\n").unwrap();
    fs::write(
        t.path().join("cpu.stat"),
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
    )
    .unwrap();
    fs::write(t.path().join("pids.current"), "3\n").unwrap();
    fs::write(
        t.path().join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
    fs::write(t.path().join("cgroup.procs"), "").unwrap();
    assert_eq!(
        cg.figures(),
        Figures {
            memory_bytes: Some(1 << 20),
            cpu_ms: Some(2500),
            pids: Some(3),
            oom_kills: Some(1),
        }
    );
    assert!(cg.is_empty());
    assert_eq!(cg.kill().unwrap(), Killed::Empty);
}

#[test]
fn kill_uses_cgroup_kill_when_the_kernel_has_it() {
    let t = tempfile::tempdir().unwrap();
    let cg = ServiceCgroup {
        dir: t.path().to_path_buf(),
    };
    // Pid 1 is listed (as a hostile or broken cgroup.procs could): nothing is sent to it.
    fs::write(t.path().join("cgroup.procs"), "1\n").unwrap();
    touch(&t.path().join("cgroup.kill"));
    assert!(!cg.is_empty());
    assert_eq!(cg.kill().unwrap(), Killed::CgroupKill);
    assert_eq!(read(&t.path().join("cgroup.kill")), "1");
    fs::remove_file(t.path().join("cgroup.kill")).unwrap();
    assert_eq!(cg.kill().unwrap(), Killed::EachPid(0));
}

#[test]
fn own_cgroup_reads_the_unified_line() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("cgroup");
    fs::write(&p, "0::/user.slice/vminit.scope\n").unwrap();
    assert_eq!(own_cgroup(&p).as_deref(), Some("/user.slice/vminit.scope"));
    fs::write(&p, "12:pids:/x\n").unwrap();
    assert_eq!(own_cgroup(&p), None);
}

#[test]
fn off_pid1_a_delegated_cgroup_gets_the_same_layout_and_says_why() {
    let root = fake_root("cpu memory pids");
    let all = ["cpu", "memory", "pids"];
    fake_child(&root.path().join("vminit"), &all);
    fake_child(&root.path().join("vminit/init"), &all);
    let marked = delegation::Facts {
        own: Some("/system.slice/vminit.service".into()),
        marked: Some("trusted.delegate"),
        ..delegation::Facts::default()
    };
    let h = Hierarchy::set_up(root.path(), Scope::Started(marked), 4242).unwrap();
    assert_eq!(
        h.delegated(),
        Some(delegation::Delegated::Marked("trusted.delegate"))
    );
    assert_eq!(h.enabled(), ["cpu", "memory", "pids"]);
    assert_eq!(read(&root.path().join("vminit/init/cgroup.procs")), "4242");
    assert_eq!(
        read(&root.path().join("vminit/memory.min")),
        (16u64 << 20).to_string()
    );
}
