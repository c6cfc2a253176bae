use std::path::Path;

use super::*;

fn errs(text: &str) -> Vec<ConfigError> {
    ImageConfig::parse(text, Path::new("img.toml")).unwrap_err()
}

fn svc(after: &[&str]) -> ServiceConfig {
    let after: Vec<String> = after.iter().map(|s| format!("{s:?}")).collect();
    toml::from_str(&format!(
        "command = [\"/bin/x\"]\nafter = [{}]",
        after.join(",")
    ))
    .unwrap()
}

#[test]
fn each_bad_value_names_service_and_key() {
    let cases = [
        ("command = []", "command", "command is empty"),
        ("command = [\"\"]", "command", "argument 0"),
        (
            "command = [\"x\"]\nuser = \"\"",
            "user",
            "must not be empty",
        ),
        (
            "command = [\"x\"]\ngroup = \" \"",
            "group",
            "must not be empty",
        ),
        (
            "command = [\"x\"]\nworkdir = \"srv\"",
            "workdir",
            "absolute",
        ),
        ("command = [\"x\"]\nenv = { \"A=B\" = \"1\" }", "env", "A=B"),
        (
            "command = [\"x\"]\nready = { http = \"https://127.0.0.1/\" }",
            "ready",
            "https",
        ),
        (
            "command = [\"x\"]\nready = { http = \"127.0.0.1:80/health\" }",
            "ready",
            "http://",
        ),
        (
            "command = [\"x\"]\nready = { http = \"http://example.com/\" }",
            "ready",
            "IP address",
        ),
        (
            "command = [\"x\"]\nready = { http = \"http://127.0.0.1:99999/\" }",
            "ready",
            "port",
        ),
        (
            "command = [\"x\"]\nready = { tcp = \"localhost:80\" }",
            "ready",
            "localhost:80",
        ),
        (
            "command = [\"x\"]\nready = { tcp = \"127.0.0.1\" }",
            "ready",
            "IP:PORT",
        ),
        (
            "command = [\"x\"]\nready = { file = \"run/ok\" }",
            "ready",
            "absolute",
        ),
        ("command = [\"x\"]\nready = { exec = [] }", "ready", "empty"),
        (
            "command = [\"x\"]\nrestart_limit = { burst = 0 }",
            "restart_limit",
            "burst = 0",
        ),
        (
            "command = [\"x\"]\nrestart_limit = { interval = \"0s\" }",
            "restart_limit",
            "0s",
        ),
        (
            "command = [\"x\"]\nbackoff = { initial = \"10s\", max = \"1s\" }",
            "backoff",
            "10s is longer than max 1s",
        ),
        (
            "command = [\"x\"]\nready_timeout = \"0ms\"",
            "ready_timeout",
            "0s",
        ),
        (
            "command = [\"x\"]\nsuccess_exit = [0, 256]",
            "success_exit",
            "256",
        ),
        ("command = [\"x\"]\nafter = [\"web\"]", "after", "itself"),
        ("command = [\"x\"]\nafter = [\"db\"]", "after", "\"db\""),
    ];
    for (body, key, needle) in cases {
        let text = format!("# comment\n[services.web]\n{body}\n");
        let e = errs(&text);
        assert_eq!(e.len(), 1, "{body}: {e:?}");
        assert_eq!(e[0].key, format!("services.web.{key}"), "{body}");
        let msg = e[0].to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(msg.starts_with("img.toml:"), "{msg}");
        // the line is the key's own line when it is written, else the [services.web] header
        let line = e[0].pos.unwrap().line;
        assert!(
            line == 2 || text.lines().nth(line - 1).unwrap().starts_with(key),
            "{body}: line {line}"
        );
    }
}

#[test]
fn good_urls_and_addrs() {
    for u in [
        "http://127.0.0.1:8080/health",
        "http://localhost/",
        "http://[::1]:80/x?y",
        "http://10.0.0.1",
    ] {
        assert_eq!(check_url(u), Ok(()), "{u}");
    }
    for u in [
        "http://",
        "http://:80/",
        "http://a@127.0.0.1/",
        "http://[::1/",
        "http://127.0.0.1:0/",
        "ftp://x",
    ] {
        assert!(check_url(u).is_err(), "{u}");
    }
}

#[test]
fn cycles_are_named() {
    let e = errs(
        "[services.a]\ncommand = [\"x\"]\nafter = [\"b\"]\n[services.b]\ncommand = [\"x\"]\nafter = [\"a\"]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].problem,
        Problem::Cycle(vec!["a".into(), "b".into(), "a".into()])
    );
    assert!(e[0].to_string().contains("a -> b -> a"));
    assert_eq!(e[0].pos.unwrap().line, 3);
}

#[test]
fn find_cycles_finds_each_once() {
    let mut s = BTreeMap::new();
    s.insert("a".to_string(), svc(&["b"]));
    s.insert("b".to_string(), svc(&["c", "network"]));
    s.insert("c".to_string(), svc(&["a"]));
    s.insert("d".to_string(), svc(&["e"]));
    s.insert("e".to_string(), svc(&["d", "a"]));
    s.insert("f".to_string(), svc(&["a", "d"]));
    let c = find_cycles(&s);
    assert_eq!(
        c,
        vec![vec!["a", "b", "c", "a"], vec!["d", "e", "d"]]
            .into_iter()
            .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    // a DAG has none
    let mut dag = BTreeMap::new();
    dag.insert("a".to_string(), svc(&[]));
    dag.insert("b".to_string(), svc(&["a"]));
    dag.insert("c".to_string(), svc(&["a", "b"]));
    assert!(find_cycles(&dag).is_empty());
}

#[test]
fn network_is_a_reserved_name() {
    let e = errs("[services.network]\ncommand = [\"x\"]\n");
    assert!(e[0].to_string().contains("reserved"), "{e:?}");
}

#[test]
fn all_errors_are_collected() {
    let e = errs(
        "[services.a]\ncommand = []\nafter = [\"zzz\"]\n[services.b]\ncommand = [\"x\"]\n\
         restart_limit = { burst = 0 }\nbackoff = { initial = \"1m\", max = \"1s\" }\n",
    );
    assert_eq!(e.len(), 4, "{e:#?}");
}

#[test]
fn validate_runs_on_configs_built_in_code() {
    let mut cfg = ImageConfig::default();
    cfg.services.insert("a".into(), svc(&["missing"]));
    let e = validate(&cfg);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].pos, None);
    assert!(matches!(&e[0].problem, Problem::UnknownAfter { target, .. } if target == "missing"));
}
