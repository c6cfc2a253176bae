//! Checks that serde cannot make: each service's values (empty command, relative paths, bad
//! readiness targets, a zero budget, inverted backoff) and the relations between services
//! (`after` targets exist, no cycles). Every problem is collected; each names the service and
//! key and, when the config came from a file, the line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crate::doc::Origin;
use crate::error::{ConfigError, Problem};
use crate::image::ImageConfig;
use crate::names::check_env_name;
use crate::service::{Ready, ServiceConfig, AFTER_NETWORK};

/// Every problem in an image config (values of each service, `after` targets, cycles,
/// module names).
pub fn validate(cfg: &ImageConfig) -> Vec<ConfigError> {
    validate_parts(cfg, &[])
}

/// As [`validate()`]; `unparsed` names services that failed to parse: valid `after` targets,
/// though their own relations cannot be checked.
pub(crate) fn validate_parts(cfg: &ImageConfig, unparsed: &[String]) -> Vec<ConfigError> {
    let o = &cfg.origin;
    let mut errors = Vec::new();
    for (name, s) in &cfg.services {
        errors.extend(check_service(name, s, o));
    }
    for m in &cfg.modules.load {
        if !crate::cmdline::valid_module_name(m) {
            errors.push(o.error(
                "modules.load",
                Problem::BadName {
                    value: m.clone(),
                    reason: "letters, digits, '_' and '-' only",
                },
            ));
        }
    }
    for (m, line) in &cfg.modules.options {
        if !crate::cmdline::valid_module_name(m) {
            errors.push(o.error(
                format!("modules.options.{m}"),
                Problem::BadName {
                    value: m.clone(),
                    reason: "letters, digits, '_' and '-' only",
                },
            ));
        }
        if line.contains('\n') || line.contains('\0') {
            errors.push(o.error(
                format!("modules.options.{m}"),
                Problem::Schema(format!("{line:?}: parameters must be on one line")),
            ));
        }
    }
    errors.extend(check_relations(&cfg.services, unparsed, |_| o));
    errors
}

fn check_argv(argv: &[String], key: &str, o: &Origin, out: &mut Vec<ConfigError>) {
    if argv.is_empty() {
        out.push(o.error(key, Problem::EmptyCommand));
        return;
    }
    for (i, a) in argv.iter().enumerate() {
        if (i == 0 && a.is_empty()) || a.contains('\0') {
            out.push(o.error(
                key,
                Problem::BadArgument {
                    index: i,
                    value: a.clone(),
                },
            ));
        }
    }
}

/// Checks `http://HOST[:PORT][/PATH]` with an IP literal or `localhost` as host: the probe
/// runs before (or without) DNS, and the init speaks no TLS.
fn check_url(url: &str) -> Result<(), &'static str> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            "https is not supported (the init has no TLS); probe a plain http health port"
        } else {
            "must start with http://"
        });
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("user info is not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unterminated [IPv6] host")?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "bad IPv6 host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    if host != "localhost" && host.parse::<IpAddr>().is_err() {
        return Err("the host must be an IP address or localhost (no DNS at probe time)");
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err("bad port"),
        }
    }
    Ok(())
}

/// The per-service checks.
pub(crate) fn check_service(name: &str, s: &ServiceConfig, o: &Origin) -> Vec<ConfigError> {
    let k = |key: &str| format!("services.{name}.{key}");
    let mut e = Vec::new();
    check_argv(&s.command, &k("command"), o, &mut e);
    for var in s.env.keys() {
        if let Err(reason) = check_env_name(var) {
            e.push(o.error(
                k("env"),
                Problem::BadName {
                    value: var.clone(),
                    reason,
                },
            ));
        }
    }
    for (key, v) in [("user", &s.user), ("group", &s.group)] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            e.push(o.error(k(key), Problem::EmptyValue));
        }
    }
    if let Some(w) = &s.workdir {
        if !w.is_absolute() {
            e.push(o.error(k("workdir"), Problem::NotAbsolute(w.display().to_string())));
        }
    }
    match &s.ready {
        Ready::Http(url) => {
            if let Err(reason) = check_url(url) {
                e.push(o.error(
                    k("ready"),
                    Problem::BadReadyUrl {
                        url: url.clone(),
                        reason,
                    },
                ));
            }
        }
        Ready::Tcp(addr) if addr.parse::<SocketAddr>().is_err() => {
            e.push(o.error(k("ready"), Problem::BadReadyTcp(addr.clone())));
        }
        Ready::File(p) if !p.is_absolute() => {
            e.push(o.error(k("ready"), Problem::NotAbsolute(p.display().to_string())));
        }
        Ready::Exec(argv) => check_argv(argv, &k("ready"), o, &mut e),
        _ => {}
    }
    if s.restart_limit.burst == 0 {
        e.push(o.error(k("restart_limit"), Problem::ZeroBurst));
    }
    if s.restart_limit.interval.get().is_zero() {
        e.push(o.error(k("restart_limit"), Problem::ZeroDuration));
    }
    if s.backoff.initial > s.backoff.max {
        e.push(o.error(
            k("backoff"),
            Problem::BackoffInverted {
                initial: s.backoff.initial,
                max: s.backoff.max,
            },
        ));
    }
    if s.ready_timeout.get().is_zero() {
        e.push(o.error(k("ready_timeout"), Problem::ZeroDuration));
    }
    for &c in &s.success_exit {
        if !(0..=255).contains(&c) {
            e.push(o.error(k("success_exit"), Problem::BadExitCode(c)));
        }
    }
    e
}

/// `after` targets and cycles over a set of services; `origin` says which file each
/// service came from (image or drive, after a merge).
pub(crate) fn check_relations<'o>(
    services: &BTreeMap<String, ServiceConfig>,
    unparsed: &[String],
    origin: impl Fn(&str) -> &'o Origin,
) -> Vec<ConfigError> {
    let mut known: Vec<String> = services.keys().chain(unparsed).cloned().collect();
    known.sort();
    let mut e = Vec::new();
    for (name, s) in services {
        let key = format!("services.{name}.after");
        if name == AFTER_NETWORK {
            e.push(origin(name).error(
                format!("services.{name}"),
                Problem::BadName {
                    value: name.clone(),
                    reason: "\"network\" is reserved for `after = [\"network\"]`",
                },
            ));
        }
        for t in &s.after {
            if t == name {
                e.push(origin(name).error(&key, Problem::AfterSelf));
            } else if t != AFTER_NETWORK && !known.contains(t) {
                e.push(origin(name).error(
                    &key,
                    Problem::UnknownAfter {
                        target: t.clone(),
                        known: known.clone(),
                    },
                ));
            }
        }
    }
    for cycle in find_cycles(services) {
        let first = cycle[0].clone();
        e.push(origin(&first).error(format!("services.{first}.after"), Problem::Cycle(cycle)));
    }
    e
}

/// Every distinct cycle through `after` (self-loops excluded: reported on their own), each
/// rotated to start at its smallest name and closed (`a -> b -> a`).
pub fn find_cycles(services: &BTreeMap<String, ServiceConfig>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        services: &'a BTreeMap<String, ServiceConfig>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        marks.insert(n, Mark::OnStack);
        stack.push(n);
        let deps = services
            .get(n)
            .map(|s| s.after.as_slice())
            .unwrap_or_default();
        for d in deps {
            let Some((d, _)) = services.get_key_value(d.as_str()) else {
                continue;
            };
            if d == n {
                continue;
            }
            match marks.get(d.as_str()).copied().unwrap_or(Mark::New) {
                Mark::New => visit(d, services, marks, stack, found),
                Mark::OnStack => {
                    let at = stack.iter().position(|s| *s == d).unwrap_or(0);
                    let mut cyc: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                    let min = cyc
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| *s)
                        .map_or(0, |(i, _)| i);
                    cyc.rotate_left(min);
                    cyc.push(cyc[0].clone());
                    found.insert(cyc);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = BTreeSet::new();
    for n in services.keys() {
        if marks.get(n.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            visit(n, services, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests;
