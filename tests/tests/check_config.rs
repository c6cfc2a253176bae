//! `vminit --check-config FILE` (contract §1): every error printed with its location, exit
//! non-zero if any; a good image config or drive file passes.

use std::process::Command;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vminit.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(qemu_harness::static_binary("vminit").unwrap())
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_examples_pass() {
    for f in ["examples/agents.toml", "examples/drive.toml"] {
        let text = std::fs::read_to_string(qemu_harness::workspace_root().join(f)).unwrap();
        let (ok, out, err) = check(&text);
        assert!(ok, "{f}: {out}{err}");
    }
}

#[test]
fn every_error_is_printed_with_its_line() {
    let (ok, _, err) = check(
        r#"log = "info"

[services.a]
command = []
after = ["nope"]

[services.b]
command = ["/bin/b"]
restrat = "always"
"#,
    );
    assert!(!ok);
    // The unknown key, with its line, and the problems of service a.
    assert!(err.contains(":9:") && err.contains("restrat"), "{err}");
    assert!(err.contains("services.a"), "{err}");
    assert!(err.contains("error(s)"), "{err}");
}

#[test]
fn network_in_the_image_config_is_refused() {
    let (ok, _, err) = check("log = \"info\"\n[network]\ndhcp = true\n");
    assert!(!ok);
    assert!(err.contains("network"), "{err}");
}
