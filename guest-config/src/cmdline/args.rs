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

impl VminitArgs {
    pub fn from_cmdline(c: &Cmdline) -> VminitArgs {
        let mut a = VminitArgs::default();
        let mut err = |key, value: &str, expected: &str| {
            a.errors.push(CmdlineError {
                key,
                value: value.to_string(),
                expected: expected.to_string(),
            })
        };
        let mut health = None;
        let mut log = None;
        let mut shutdown = None;
        let mut config = None;
        let mut modules = Vec::new();
        if let Some(v) = c.get("vminit.health") {
            match parse_listeners(v) {
                Ok(l) => health = Some(l),
                Err(e) => err(
                    "vminit.health",
                    v,
                    &format!("{LISTENER_FORM}; listener {:?}: {}", e.listener, e.reason),
                ),
            }
        }
        if let Some(v) = c.get("vminit.log") {
            match v.parse() {
                Ok(l) => log = Some(l),
                Err(()) => err("vminit.log", v, LogLevel::NAMES),
            }
        }
        if let Some(v) = c.get("vminit.shutdown") {
            match v.parse() {
                Ok(s) => shutdown = Some(s),
                Err(()) => err("vminit.shutdown", v, ShutdownMode::NAMES),
            }
        }
        if let Some(v) = c.get("vminit.config") {
            if v.starts_with('/') && !v.contains('\0') {
                config = Some(PathBuf::from(v));
            } else {
                err(
                    "vminit.config",
                    v,
                    "an absolute path, e.g. /etc/vminit/vminit.toml",
                );
            }
        }
        if let Some(v) = c.get("vminit.modules") {
            let names: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect();
            if names.iter().all(|m| valid_module_name(m)) {
                modules = names.into_iter().map(str::to_string).collect();
            } else {
                err(
                    "vminit.modules",
                    v,
                    "comma-separated module names, e.g. virtio_net,ext4",
                );
            }
        }
        a.health = health;
        a.log = log;
        a.shutdown = shutdown;
        a.config = config;
        a.modules = modules;
        let mut unknown = BTreeSet::new();
        for p in &c.params {
            let known = KNOWN.contains(&p.key.as_str());
            if p.key.starts_with("vminit.") && !known && unknown.insert(p.key.clone()) {
                a.warnings.push(format!(
                    "kernel cmdline: unknown key {:?} ignored (known: {})",
                    p.key,
                    KNOWN.join(", ")
                ));
            } else if known && p.value.is_none() && unknown.insert(p.key.clone()) {
                a.warnings.push(format!(
                    "kernel cmdline: {:?} without a value ignored",
                    p.key
                ));
            }
        }
        a
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
