//! Every mistake in a `[services.NAME]` table in one run (`vminit --check-config` used to
//! stop at a service's first type error: one fix per run). serde stops at a struct's first
//! error, so [`service`] keeps that error, drops the key it is about and deserializes the
//! rest again, at most once per key. A key inside an inline table (`backoff.initial`) is
//! dropped from that table alone, so its siblings (`backoff.max`) are still checked. A missing or unusable `command` is replaced by a
//! placeholder so that the other keys (`after` above all) are still checked. Errors get a
//! hint for the common slips ([`hint`]).

use std::borrow::Cow;

use toml::de::{DeArray, DeValue};
use toml::Spanned;

use crate::doc::{from_value, table_value, Doc};
use crate::error::{ConfigError, Problem};
use crate::service::ServiceConfig;

/// The service, if it could be read at all, and every error found. With errors, the
/// service (defaults in place of the bad keys) is only good for checking relations: the
/// caller refuses the config.
pub(crate) fn service<'a>(
    doc: &Doc<'a>,
    name: &str,
    value: Spanned<DeValue<'a>>,
) -> (Option<ServiceConfig>, Vec<ConfigError>) {
    let key = format!("services.{name}");
    let span = value.span();
    let mut table = match value.into_inner() {
        DeValue::Table(t) => t,
        other => {
            let e = from_value::<ServiceConfig>(Spanned::new(span, other));
            return (
                None,
                e.err()
                    .map(|e| doc.de_error(&e, &key))
                    .into_iter()
                    .collect(),
            );
        }
    };
    let mut errors = Vec::new();
    // Each round drops one key, top-level or one level down.
    let keys = table
        .values()
        .map(|v| match v.get_ref() {
            DeValue::Table(t) => t.len().saturating_add(1),
            _ => 1,
        })
        .fold(0usize, usize::saturating_add);
    for _ in 0..keys.saturating_add(2) {
        let e = match from_value::<ServiceConfig>(table_value(table.clone(), span.clone())) {
            Ok(s) => return (Some(s), errors),
            Err(e) => e,
        };
        let mut err = doc.de_error(&e, &key);
        let path: Option<Vec<String>> = err
            .key
            .strip_prefix(&format!("{key}."))
            .map(|rest| rest.split('.').map(str::to_string).collect());
        let field = path.as_ref().and_then(|p| p.first().cloned());
        let inner = path.as_ref().and_then(|p| p.get(1).cloned());
        if let (Some(field), Some(inner)) = (&field, &inner) {
            if let Some(DeValue::Table(t)) = table.get_mut(field.as_str()).map(|v| v.get_mut()) {
                if t.remove(inner.as_str()).is_some() {
                    errors.push(err);
                    continue;
                }
            }
        }
        match field {
            Some(field) if table.contains_key(field.as_str()) => {
                add_hint(
                    &mut err,
                    &field,
                    table.get(field.as_str()).map(|v| v.get_ref()),
                );
                table.remove(field.as_str());
                if field == "command" {
                    table.insert(placeholder_key(&span), placeholder_command(&span));
                }
            }
            None if !table.contains_key("command") && e.message().contains("`command`") => {
                table.insert(placeholder_key(&span), placeholder_command(&span));
            }
            _ => {
                errors.push(err);
                return (None, errors);
            }
        }
        errors.push(err);
    }
    (None, errors)
}

fn placeholder_key<'a>(span: &std::ops::Range<usize>) -> Spanned<Cow<'a, str>> {
    Spanned::new(span.clone(), Cow::Borrowed("command"))
}

/// `command = ["-"]`: stands in for a bad command while the other keys are checked.
fn placeholder_command<'a>(span: &std::ops::Range<usize>) -> Spanned<DeValue<'a>> {
    let mut argv = DeArray::new();
    argv.push(Spanned::new(
        span.clone(),
        DeValue::String(Cow::Borrowed("-")),
    ));
    Spanned::new(span.clone(), DeValue::Array(argv))
}

fn add_hint(err: &mut ConfigError, field: &str, value: Option<&DeValue<'_>>) {
    if let (Problem::Schema(msg), Some(h)) = (&mut err.problem, hint(field, value)) {
        msg.push_str("; ");
        msg.push_str(&h);
    }
}

/// The keys of `[services.NAME]`: a bad value there is not a systemd spelling.
const SERVICE_KEYS: &[&str] = &[
    "command",
    "env",
    "user",
    "group",
    "workdir",
    "after",
    "restart",
    "restart_limit",
    "backoff",
    "success_exit",
    "ready",
    "ready_timeout",
    "stop_signal",
    "stop_timeout",
    "required",
];

/// What to write instead, for the slips people make coming from a shell or from systemd.
/// `field` is the key as written, `value` its value when known.
pub(crate) fn hint(field: &str, value: Option<&DeValue<'_>>) -> Option<String> {
    match (field, value) {
        ("command", Some(DeValue::String(s))) => {
            let argv: Vec<String> = s.split_whitespace().map(|w| format!("{w:?}")).collect();
            Some(format!(
                "command is an argv array, run without a shell: command = [{}]",
                argv.join(", ")
            ))
        }
        ("restart", Some(DeValue::String(s))) => {
            let word = match s.as_ref() {
                "no" => "never",
                "on-abnormal" | "on-abort" | "on-watchdog" | "on-success" => "on-failure",
                _ => return None,
            };
            Some(format!(
                "systemd's Restart={s} is closest to restart = \"{word}\""
            ))
        }
        _ if SERVICE_KEYS.contains(&field) => None,
        _ => systemd_key(field).map(|k| format!("systemd's {field}= is vminit's {k}")),
    }
}

/// The vminit key for a systemd unit directive (compared without case or `_`).
fn systemd_key(field: &str) -> Option<&'static str> {
    let f: String = field
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Some(match f.as_str() {
        "execstart" => "command (an argv array)",
        "restartsec" => "backoff = { initial = \"1s\" }",
        "after" | "requires" | "wants" => "after = [\"name\"]",
        "environment" => "env = { NAME = \"value\" }",
        "workingdirectory" => "workdir",
        "timeoutstopsec" => "stop_timeout",
        "timeoutstartsec" => "ready_timeout",
        "killsignal" => "stop_signal",
        "type" => "ready (\"started\", \"notify\", ...)",
        "startlimitburst" => "restart_limit = { burst = 5 }",
        "startlimitintervalsec" | "startlimitinterval" => "restart_limit = { interval = \"60s\" }",
        "successexitstatus" => "success_exit",
        "restart" => "restart (\"always\", \"on-failure\" or \"never\")",
        "user" => "user",
        "group" => "group",
        "environmentfile" => "env (the config drive's [env] for per-VM values)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_for_common_slips() {
        let v = DeValue::String(Cow::Borrowed("sleep 1"));
        assert_eq!(
            hint("command", Some(&v)).unwrap(),
            "command is an argv array, run without a shell: command = [\"sleep\", \"1\"]"
        );
        assert!(hint("ExecStart", None)
            .unwrap()
            .contains("vminit's command"));
        assert!(hint("Restart", None).unwrap().contains("restart"));
        assert!(hint("RestartSec", None).unwrap().contains("backoff"));
        assert!(hint("After", None).unwrap().contains("after"));
        let v = DeValue::String(Cow::Borrowed("no"));
        assert!(hint("restart", Some(&v)).unwrap().contains("\"never\""));
        assert_eq!(hint("bogus", None), None);
        assert_eq!(hint("after", None), None);
        assert_eq!(hint("user", None), None);
    }
}
