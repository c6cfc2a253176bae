use super::*;
use crate::error::Pos;

fn parse(text: &str) -> Result<ImageConfig, Vec<ConfigError>> {
    ImageConfig::parse(text, Path::new("/etc/vminit/vminit.toml"))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn full_image_config() {
    let c = parse(
        r#"
log = "debug"
shutdown = "reboot"

[health]
listen = "127.0.0.1:9000"
expose_logs = true

[modules]
load = ["virtio_net", "ext4"]
options = { virtio-net = "napi_tx=1 name=\"a b\"" }

[services.oauth]
command = ["/usr/bin/oauth-agent"]
ready = { http = "http://127.0.0.1:8080/health" }

[services.webrtc]
command = ["/usr/bin/webrtc"]
restart = "always"
after = ["oauth", "network"]
"#,
    )
    .unwrap();
    assert_eq!(c.log, Some(LogLevel::Debug));
    assert_eq!(c.shutdown, Some(ShutdownMode::Reboot));
    assert_eq!(
        c.health.listen.unwrap(),
        [crate::Listener::Tcp("127.0.0.1:9000".parse().unwrap())]
    );
    assert!(c.health.expose_logs);
    assert_eq!(c.modules.load, vec!["virtio_net", "ext4"]);
    assert_eq!(
        c.modules.params("virtio_net"),
        vec!["napi_tx=1", "name=\"a b\""]
    );
    assert!(c.modules.params("ext4").is_empty());
    assert_eq!(c.modules.coldplug, ColdplugMode::All, "the default");
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.services["webrtc"].after, vec!["oauth", "network"]);
    assert_eq!(c.origin.file, Path::new("/etc/vminit/vminit.toml"));
}

#[test]
fn empty_file_is_a_valid_config() {
    let c = parse("").unwrap();
    assert!(c.services.is_empty());
    assert_eq!(c.health, HealthConfig::default());
}

#[test]
fn network_table_is_rejected_with_the_reason() {
    let e = errors("log = \"info\"\n\n[network]\ndhcp = true\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].problem, Problem::NetworkInImage);
    assert_eq!(e[0].pos.unwrap().line, 3);
    let msg = e[0].to_string();
    assert!(msg.starts_with("/etc/vminit/vminit.toml:3:"), "{msg}");
    assert!(msg.contains("ip=") && msg.contains("config drive"), "{msg}");
}

#[test]
fn unknown_keys_name_key_and_line() {
    let e = errors("log = \"info\"\nloglevel = \"debug\"\n");
    assert_eq!(e[0].pos.unwrap().line, 2, "{e:?}");
    assert!(e[0].to_string().contains("loglevel"), "{}", e[0]);

    let e = errors("[services.web]\ncommand = [\"/bin/web\"]\nrestrat = \"always\"\n");
    assert_eq!(e[0].pos, Some(Pos { line: 3, col: 1 }), "{e:?}");
    assert_eq!(e[0].key, "services.web.restrat");
    assert!(e[0].to_string().contains("restrat"));
}

#[test]
fn health_listen_is_a_string_or_an_array() {
    let want = vec![
        crate::Listener::Tcp("0.0.0.0:9000".parse().unwrap()),
        crate::Listener::Vsock(9000),
    ];
    let c = parse("[health]\nlisten = \"0.0.0.0:9000,vsock:9000\"\n").unwrap();
    assert_eq!(c.health.listen, Some(want.clone()));
    let c = parse("[health]\nlisten = [\"0.0.0.0:9000\", \"vsock:9000\"]\n").unwrap();
    assert_eq!(c.health.listen, Some(want));
    let e = errors("[health]\nlisten = [\"vsock:9000\", \"vsock:x\"]\n");
    assert!(e[0].to_string().contains("\"vsock:x\""), "{}", e[0]);
}

#[test]
fn bad_values_name_key_and_line() {
    let e = errors("[health]\nlisten = \"8900\"\n");
    assert_eq!(e[0].pos.unwrap().line, 2, "{e:?}");
    assert!(e[0].to_string().contains("\"8900\""), "{}", e[0]);
    let e = errors("shutdown = \"halt\"\n");
    assert!(
        e[0].to_string().contains("halt") && e[0].to_string().contains("reboot"),
        "{}",
        e[0]
    );
    let e = errors("[services.a]\ncommand = [\"x\"]\nrestart_limit = { burst = \"five\" }\n");
    assert_eq!(e[0].pos.unwrap().line, 3, "{e:?}");
    assert!(e[0].key.starts_with("services.a.restart_limit"), "{e:?}");
}

#[test]
fn coldplug_modes_and_a_bad_one_located() {
    for (text, want) in [
        ("all", ColdplugMode::All),
        ("essential", ColdplugMode::Essential),
        ("none", ColdplugMode::None),
    ] {
        let c = parse(&format!("[modules]\ncoldplug = \"{text}\"\n")).unwrap();
        assert_eq!(c.modules.coldplug, want);
    }
    let e = errors("log = \"info\"\n\n[modules]\ncoldplug = \"some\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].pos.unwrap().line, 4, "{e:?}");
    assert!(e[0].key.starts_with("modules"), "{e:?}");
    let msg = e[0].to_string();
    assert!(
        msg.contains("\"some\"") && msg.contains("all, essential or none"),
        "{msg}"
    );
}

#[test]
fn missing_command_names_the_service() {
    let e = errors("\n[services.web]\nrestart = \"always\"\n");
    assert_eq!(e[0].key, "services.web", "{e:?}");
    assert_eq!(e[0].pos.unwrap().line, 2);
    assert!(e[0].to_string().contains("command"), "{}", e[0]);
}

#[test]
fn every_broken_service_is_reported() {
    let e = errors(
        "[services.a]\ncommand = [\"x\"]\nbogus = 1\n\n[services.b]\ncommand = [\"y\"]\nready = \"maybe\"\n\n\
         [services.c]\ncommand = []\n",
    );
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(keys[0].starts_with("services.a"), "{keys:?}");
    assert!(keys[1].starts_with("services.b"), "{keys:?}");
    assert_eq!(keys[2], "services.c.command");
    assert_eq!(e[2].pos.unwrap().line, 10);
}

#[test]
fn syntax_errors_are_located() {
    let e = errors("log = \"info\"\n[services.a\ncommand = [\"x\"]\n");
    assert_eq!(e[0].pos.unwrap().line, 2, "{e:?}");
    assert!(matches!(e[0].problem, Problem::Syntax(_)));
}

#[test]
fn services_must_be_a_table() {
    let e = errors("services = 3\n");
    assert_eq!(e[0].key, "services");
}

#[test]
fn load_reports_unreadable_files() {
    let e = ImageConfig::load(Path::new("/nonexistent/vminit.toml")).unwrap_err();
    assert!(matches!(e[0].problem, Problem::Read(_)));
    assert!(e[0].to_string().contains("/nonexistent/vminit.toml"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vminit.toml");
    std::fs::write(&p, "[services.x]\ncommand = [\"/bin/x\"]\n").unwrap();
    assert_eq!(ImageConfig::load(&p).unwrap().services.len(), 1);
}

#[test]
fn bad_module_names() {
    let e = errors("[modules]\nload = [\"../x\"]\noptions = { \"a/b\" = \"x=1\" }\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].pos.unwrap().line, 2);
}

#[test]
fn every_bad_top_level_key_is_reported_in_line_order() {
    let e =
        errors("[health]\nlisten = \"0.0.0.0\"\n[modules]\nlod = []\n[services.a]\ncommand = []\n");
    let e2 = errors("shutdown = \"halt\"\nlog = \"verbose\"\nbogus = 1\n");
    let lines: Vec<usize> = e.iter().chain(&e2).map(|e| e.pos.unwrap().line).collect();
    assert_eq!(lines, vec![2, 4, 6, 1, 2, 3], "{e:#?} {e2:#?}");
}

#[test]
fn relations_still_checked_when_a_service_fails_to_parse() {
    let e = errors(
        "[services.a]\ncommand = [\"x\"]\nbogus = 1\n[services.b]\ncommand = [\"x\"]\nafter = [\"a\", \"zz\"]\n",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(matches!(&e[1].problem, Problem::UnknownAfter { target, .. } if target == "zz"));
}

#[test]
fn a_host_named_config_is_not_followed_but_the_image_default_is() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.toml");
    let link = dir.path().join("vminit.toml");
    std::fs::write(&real, "[services.x]\ncommand = [\"/bin/x\"]\n").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(ImageConfig::load(&link).unwrap().services.len(), 1);
    let e = ImageConfig::load_host(&link).unwrap_err();
    assert!(matches!(e[0].problem, Problem::Read(_)));
    let msg = e[0].to_string();
    assert!(
        msg.starts_with(&link.display().to_string()) && msg.contains("is a symlink to"),
        "{msg}"
    );
}

#[test]
fn every_duration_key_refuses_more_than_365_days_with_its_line() {
    for (key, line) in [
        ("ready_timeout", "ready_timeout = \"9999999999999999h\""),
        ("stop_timeout", "stop_timeout = \"366d\""),
        (
            "restart_limit",
            "restart_limit = { interval = \"18446744073709551615ms\" }",
        ),
        ("backoff", "backoff = { initial = \"1s\", max = \"8761h\" }"),
        ("backoff", "backoff = { initial = \"9999999999999999h\" }"),
    ] {
        let e = errors(&format!("[services.a]\ncommand = [\"x\"]\n{line}\n"));
        assert_eq!(e.len(), 1, "{line}: {e:#?}");
        assert_eq!(e[0].pos.unwrap().line, 3, "{line}");
        assert!(e[0].key.starts_with(&format!("services.a.{key}")), "{e:?}");
        assert!(e[0].to_string().contains("365 days"), "{}", e[0]);
    }
    assert!(parse("[services.a]\ncommand = [\"x\"]\nstop_timeout = \"365d\"\n").is_ok());
}

#[test]
fn every_key_of_an_inline_table_is_checked_not_only_the_first_bad_one() {
    let e = errors(
        "[services.a]\ncommand = [\"x\"]\n\
         backoff = { max = \"9999999999999999h\", initial = \"9999999999999999h\" }\n\
         restart_limit = { burst = \"five\", interval = \"9999999999999999h\" }\n",
    );
    let mut keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "services.a.backoff.initial",
            "services.a.backoff.max",
            "services.a.restart_limit.burst",
            "services.a.restart_limit.interval",
        ],
        "{e:#?}"
    );
    // Each at its own column of the line.
    let cols: std::collections::BTreeSet<usize> = e
        .iter()
        .filter(|e| e.key.contains("backoff"))
        .map(|e| e.pos.unwrap().col)
        .collect();
    assert_eq!(cols.len(), 2, "{e:#?}");
}
