//! The `vminit.*` cmdline keys of contract §2. A bad value is an error naming key and value
//! and leaves that setting unset (the default or the image config then applies); every key is
//! still read, so one typo does not hide another.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use super::Cmdline;
use crate::listener::{default_listeners, parse_listeners, Listener, LISTENER_FORM};
use crate::settings::{LogLevel, ShutdownMode};

/// The `vminit.*` keys. `None` means "not on the cmdline"; see [`crate::Settings::resolve`]
/// for what applies then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VminitArgs {
    pub health: Option<Vec<Listener>>,
    pub log: Option<LogLevel>,
    /// Extra modules to load (`vminit.modules=a,b,c`), in order.
    pub modules: Vec<String>,
    pub config: Option<PathBuf>,
    pub shutdown: Option<ShutdownMode>,
    /// Unknown `vminit.*` keys, one message each: worth a console line, not fatal.
    pub warnings: Vec<String>,
    /// Keys with bad values; each such key is left unset.
    pub errors: Vec<CmdlineError>,
}

/// A `vminit.*` key with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineError {
    pub key: &'static str,
    pub value: String,
    /// What is wrong or what was expected; for a list, which element is wrong.
    pub expected: String,
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel cmdline {}={:?}: expected {}; ignoring it",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for CmdlineError {}

const KNOWN: &[&str] = &[
    "vminit.health",
    "vminit.log",
    "vminit.modules",
    "vminit.config",
    "vminit.shutdown",
];

/// A module name as `modprobe` takes it: no path, no whitespace, no parameters.
pub fn valid_module_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 56
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The value of `key`, parsed; a bad value is recorded in `errors` with what was expected.
fn take<T>(
    c: &Cmdline,
    key: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
    errors: &mut Vec<CmdlineError>,
) -> Option<T> {
    let v = c.get(key)?;
    parse(v)
        .map_err(|expected| {
            errors.push(CmdlineError {
                key,
                value: v.to_string(),
                expected,
            })
        })
        .ok()
}

fn parse_health(v: &str) -> Result<Vec<Listener>, String> {
    parse_listeners(v)
        .map_err(|e| format!("{LISTENER_FORM}; listener {:?}: {}", e.listener, e.reason))
}

fn parse_config_path(v: &str) -> Result<PathBuf, String> {
    if v.starts_with('/') && !v.contains('\0') {
        Ok(PathBuf::from(v))
    } else {
        Err("an absolute path, e.g. /etc/vminit/vminit.toml".into())
    }
}

fn parse_modules(v: &str) -> Result<Vec<String>, String> {
    let names: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    if names.iter().all(|m| valid_module_name(m)) {
        Ok(names.into_iter().map(str::to_string).collect())
    } else {
        Err("comma-separated module names, e.g. virtio_net,ext4".into())
    }
}

/// Warnings for `vminit.*` keys nobody knows and known keys given without a value, once each.
fn unknown_keys(c: &Cmdline) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut warnings = Vec::new();
    for p in &c.params {
        let known = KNOWN.contains(&p.key.as_str());
        if p.key.starts_with("vminit.") && !known && seen.insert(p.key.clone()) {
            warnings.push(format!(
                "kernel cmdline: unknown key {:?} ignored (known: {})",
                p.key,
                KNOWN.join(", ")
            ));
        } else if known && p.value.is_none() && seen.insert(p.key.clone()) {
            warnings.push(format!(
                "kernel cmdline: {:?} without a value ignored",
                p.key
            ));
        }
    }
    warnings
}

impl VminitArgs {
    pub fn from_cmdline(c: &Cmdline) -> VminitArgs {
        let mut errors = Vec::new();
        let e = &mut errors;
        VminitArgs {
            health: take(c, "vminit.health", parse_health, e),
            log: take(
                c,
                "vminit.log",
                |v| v.parse().map_err(|()| LogLevel::NAMES.into()),
                e,
            ),
            shutdown: take(
                c,
                "vminit.shutdown",
                |v| v.parse().map_err(|()| ShutdownMode::NAMES.into()),
                e,
            ),
            config: take(c, "vminit.config", parse_config_path, e),
            modules: take(c, "vminit.modules", parse_modules, e).unwrap_or_default(),
            warnings: unknown_keys(c),
            errors,
        }
    }

    /// The cmdline's health listeners, or the contract default.
    pub fn health_or_default(&self) -> Vec<Listener> {
        self.health.clone().unwrap_or_else(default_listeners)
    }

    /// The cmdline's log level, or the contract default (`info`).
    pub fn log_or_default(&self) -> LogLevel {
        self.log.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> VminitArgs {
        VminitArgs::from_cmdline(&Cmdline::parse(s))
    }

    #[test]
    fn defaults_when_absent() {
        let a = args("console=ttyS0");
        assert_eq!(a, VminitArgs::default());
        assert_eq!(a.health_or_default(), default_listeners());
        assert_eq!(a.log_or_default(), LogLevel::Info);
    }

    #[test]
    fn all_keys_parse() {
        let a = args(
            "vminit.health=127.0.0.1:9000,vsock:1234 vminit.log=trace vminit.modules=virtio_net,,ext4 \
             vminit.config=/etc/x.toml vminit.shutdown=reboot",
        );
        assert_eq!(
            a.health.unwrap(),
            [
                Listener::Tcp("127.0.0.1:9000".parse().unwrap()),
                Listener::Vsock(1234)
            ]
        );
        assert_eq!(a.log, Some(LogLevel::Trace));
        assert_eq!(a.modules, vec!["virtio_net", "ext4"]);
        assert_eq!(a.config.unwrap(), PathBuf::from("/etc/x.toml"));
        assert_eq!(a.shutdown, Some(ShutdownMode::Reboot));
        assert!(a.errors.is_empty() && a.warnings.is_empty());
    }

    #[test]
    fn every_bad_value_is_reported_with_key_and_value() {
        let a = args(
            "vminit.health=8900 vminit.log=verbose vminit.modules=../evil vminit.config=etc/x \
             vminit.shutdown=halt",
        );
        let keys: Vec<&str> = a.errors.iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "vminit.health",
                "vminit.log",
                "vminit.shutdown",
                "vminit.config",
                "vminit.modules"
            ]
        );
        for (e, v) in a
            .errors
            .iter()
            .zip(["8900", "verbose", "halt", "etc/x", "../evil"])
        {
            assert_eq!(e.value, v);
            let msg = e.to_string();
            assert!(msg.contains(e.key) && msg.contains(v), "{msg}");
        }
        assert_eq!(a.health, None);
        assert_eq!(a.log, None);
        assert!(a.modules.is_empty());
    }

    #[test]
    fn a_bad_health_listener_is_named() {
        let a = args("vminit.health=0.0.0.0:8900,vsock:eighty");
        assert_eq!(a.health, None);
        let msg = a.errors[0].to_string();
        assert!(msg.contains("listener \"vsock:eighty\""), "{msg}");
    }

    #[test]
    fn one_bad_key_keeps_the_others() {
        let a = args("vminit.log=loud vminit.shutdown=reboot");
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.shutdown, Some(ShutdownMode::Reboot));
    }

    #[test]
    fn unknown_keys_warn_once() {
        let a = args("vminit.helth=1 vminit.helth=2 vminit.log vminit.log=debug");
        assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
        assert!(a.warnings[0].contains("vminit.helth"));
        assert_eq!(a.log, Some(LogLevel::Debug));
    }

    #[test]
    fn last_value_wins() {
        assert_eq!(
            args("vminit.log=debug vminit.log=error").log,
            Some(LogLevel::Error)
        );
        // a bad last value is an error even if an earlier one was good: the kernel's rule is
        // "last wins", and silently picking an earlier one would be guessing
        let a = args("vminit.log=debug vminit.log=nope");
        assert_eq!(a.log, None);
        assert_eq!(a.errors[0].value, "nope");
    }
}
