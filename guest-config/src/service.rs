//! The `[services.NAME]` schema of contract §3: what a service is, as configuration.
//! Owns the types, their defaults and per-field validation. It does not run anything
//! (that is the `supervisor` crate) and does not check relations between services
//! (`after` names, cycles: see [`mod@crate::validate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::duration::Dur;
use crate::limits::{Bytes, Count, CpuMax, CpuWeight, Nofile};

/// One supervised service, as written in TOML (defaults applied).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// argv, no shell. Must not be empty.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Names of other services, or `"network"`.
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default)]
    pub restart_limit: RestartLimit,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default = "default_success_exit")]
    pub success_exit: Vec<i32>,
    #[serde(default)]
    pub ready: Ready,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Dur,
    #[serde(default)]
    pub stop_signal: StopSignal,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Dur,
    #[serde(default = "default_true")]
    pub required: bool,
    /// `PR_SET_NO_NEW_PRIVS` for the service and everything it starts: no `execve` gains
    /// privileges (setuid/setgid bits, file capabilities are ignored). Default false.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `memory.max` of the service's cgroup: above it the OOM killer acts inside the service.
    #[serde(default)]
    pub memory_max: Option<Bytes>,
    /// `memory.high`: above it the service is throttled and reclaimed, not killed.
    #[serde(default)]
    pub memory_high: Option<Bytes>,
    /// `cpu.max`.
    #[serde(default)]
    pub cpu_max: Option<CpuMax>,
    /// `cpu.weight`.
    #[serde(default)]
    pub cpu_weight: Option<CpuWeight>,
    /// `pids.max`.
    #[serde(default)]
    pub pids_max: Option<Count>,
    /// RLIMIT_NOFILE (soft and hard), set in the child before `execve`.
    #[serde(default)]
    pub nofile: Option<Nofile>,
}

impl ServiceConfig {
    /// Whether any cgroup limit is set (`nofile` is not one).
    pub fn has_cgroup_limits(&self) -> bool {
        self.memory_max.is_some()
            || self.memory_high.is_some()
            || self.cpu_max.is_some()
            || self.cpu_weight.is_some()
            || self.pids_max.is_some()
    }
}

/// The dependency name that means "the network is up".
pub const AFTER_NETWORK: &str = "network";

fn default_success_exit() -> Vec<i32> {
    vec![0]
}
fn default_ready_timeout() -> Dur {
    Dur::from_secs(30)
}
fn default_stop_timeout() -> Dur {
    Dur::from_secs(10)
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Always,
    #[default]
    OnFailure,
    Never,
}

/// More than `burst` crashes within `interval` puts the service in `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartLimit {
    #[serde(default = "default_burst")]
    pub burst: u32,
    #[serde(default = "default_interval")]
    pub interval: Dur,
}

fn default_burst() -> u32 {
    5
}
fn default_interval() -> Dur {
    Dur::from_secs(60)
}

impl Default for RestartLimit {
    fn default() -> Self {
        RestartLimit {
            burst: default_burst(),
            interval: default_interval(),
        }
    }
}

/// Delay before restarting a crashed service: `initial`, doubling, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "default_backoff_initial")]
    pub initial: Dur,
    #[serde(default = "default_backoff_max")]
    pub max: Dur,
}

fn default_backoff_initial() -> Dur {
    Dur::from_millis(250)
}
fn default_backoff_max() -> Dur {
    Dur::from_secs(30)
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
        }
    }
}

/// How the supervisor learns that a service is ready.
/// TOML: `"started"`, `"notify"`, `{ http = URL }`, `{ tcp = "ADDR:PORT" }`,
/// `{ file = PATH }`, `{ exec = [argv] }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Ready {
    #[default]
    Started,
    Notify,
    Http(String),
    Tcp(String),
    File(PathBuf),
    Exec(Vec<String>),
}

/// A signal named in configuration (`"SIGTERM"` or `"TERM"`), checked against the signals
/// that make sense to stop a service with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal {
    pub name: &'static str,
    pub number: i32,
}

const SIGNALS: &[(&str, i32)] = &[
    ("SIGTERM", libc::SIGTERM),
    ("SIGINT", libc::SIGINT),
    ("SIGHUP", libc::SIGHUP),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGWINCH", libc::SIGWINCH),
];

impl StopSignal {
    /// Parses `SIGTERM`, `TERM` or `sigterm`.
    pub fn parse(s: &str) -> Option<StopSignal> {
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        SIGNALS
            .iter()
            .find(|(n, _)| *n == full)
            .map(|&(name, number)| StopSignal { name, number })
    }

    /// The conventional name of a signal number, for exit reports (`"SIGKILL"`), if known.
    pub fn name_of(number: i32) -> Option<&'static str> {
        const MORE: &[(&str, i32)] = &[
            ("SIGSEGV", libc::SIGSEGV),
            ("SIGABRT", libc::SIGABRT),
            ("SIGBUS", libc::SIGBUS),
            ("SIGFPE", libc::SIGFPE),
            ("SIGILL", libc::SIGILL),
            ("SIGPIPE", libc::SIGPIPE),
            ("SIGALRM", libc::SIGALRM),
            ("SIGTRAP", libc::SIGTRAP),
            ("SIGSYS", libc::SIGSYS),
        ];
        SIGNALS
            .iter()
            .chain(MORE.iter())
            .find(|(_, n)| *n == number)
            .map(|(name, _)| *name)
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal {
            name: "SIGTERM",
            number: libc::SIGTERM,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl<'de> Deserialize<'de> for StopSignal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StopSignal::parse(&s).ok_or_else(|| {
            let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
            serde::de::Error::custom(format!(
                "unknown stop_signal {s:?} (one of {})",
                known.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ServiceConfig, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = parse(r#"command = ["/bin/agent", "--port", "8080"]"#).unwrap();
        assert_eq!(s.restart, Restart::OnFailure);
        assert_eq!(s.restart_limit.burst, 5);
        assert_eq!(s.restart_limit.interval, Dur::from_secs(60));
        assert_eq!(s.backoff.initial, Dur::from_millis(250));
        assert_eq!(s.backoff.max, Dur::from_secs(30));
        assert_eq!(s.success_exit, vec![0]);
        assert_eq!(s.ready, Ready::Started);
        assert_eq!(s.ready_timeout, Dur::from_secs(30));
        assert_eq!(s.stop_signal.number, libc::SIGTERM);
        assert_eq!(s.stop_timeout, Dur::from_secs(10));
        assert!(s.required);
        assert!(!s.no_new_privileges);
    }

    #[test]
    fn every_ready_form_parses() {
        let cases = [
            (r#"ready = "started""#, Ready::Started),
            (r#"ready = "notify""#, Ready::Notify),
            (
                r#"ready = { http = "http://127.0.0.1:8080/health" }"#,
                Ready::Http("http://127.0.0.1:8080/health".into()),
            ),
            (
                r#"ready = { tcp = "127.0.0.1:9" }"#,
                Ready::Tcp("127.0.0.1:9".into()),
            ),
            (
                r#"ready = { file = "/run/ok" }"#,
                Ready::File("/run/ok".into()),
            ),
            (
                r#"ready = { exec = ["/bin/true"] }"#,
                Ready::Exec(vec!["/bin/true".into()]),
            ),
        ];
        for (line, want) in cases {
            let s = parse(&format!("command = [\"x\"]\n{line}")).unwrap();
            assert_eq!(s.ready, want, "{line}");
        }
    }

    #[test]
    fn full_service_parses() {
        let s = parse(
            r#"
            command = ["/bin/webrtc"]
            restart = "always"
            restart_limit = { burst = 3, interval = "10s" }
            backoff = { initial = "100ms", max = "2s" }
            success_exit = [0, 3]
            stop_signal = "INT"
            stop_timeout = "2s"
            required = false
            no_new_privileges = true
            after = ["network", "oauth"]
            user = "nobody"
            workdir = "/tmp"
            env = { A = "1" }
            "#,
        )
        .unwrap();
        assert_eq!(s.restart, Restart::Always);
        assert_eq!(s.restart_limit.burst, 3);
        assert_eq!(s.stop_signal.name, "SIGINT");
        assert_eq!(s.after, vec!["network", "oauth"]);
        assert!(!s.required);
        assert!(s.no_new_privileges);
    }

    #[test]
    fn errors_name_the_key_or_value() {
        let e = parse("command = [\"x\"]\nrestrat = \"always\"").unwrap_err();
        assert!(e.to_string().contains("restrat"), "{e}");
        let e = parse("command = [\"x\"]\nstop_signal = \"SIGFOO\"").unwrap_err();
        assert!(e.to_string().contains("SIGFOO"), "{e}");
        let e = parse("command = [\"x\"]\nready_timeout = \"5\"").unwrap_err();
        assert!(e.to_string().contains("\"5\""), "{e}");
        let e = parse("command = [\"x\"]\nready = { htp = \"x\" }").unwrap_err();
        assert!(e.to_string().contains("htp"), "{e}");
    }

    #[test]
    fn limits_parse_and_bad_values_are_located() {
        let s = parse(
            r#"
            command = ["x"]
            memory_max = "64M"
            memory_high = 50331648
            cpu_max = "50%"
            cpu_weight = 200
            pids_max = 64
            nofile = 65536
            "#,
        )
        .unwrap();
        assert_eq!(s.memory_max.as_ref().unwrap().bytes, 64 << 20);
        assert_eq!(s.memory_high.as_ref().unwrap().bytes, 48 << 20);
        assert_eq!(s.cpu_max.as_ref().unwrap().quota_us, 50_000);
        assert_eq!(s.cpu_weight, Some(CpuWeight(200)));
        assert_eq!(s.pids_max, Some(Count(64)));
        assert_eq!(s.nofile, Some(Nofile(65536)));
        assert!(s.has_cgroup_limits());
        assert!(!parse("command = [\"x\"]\nnofile = 8")
            .unwrap()
            .has_cgroup_limits());
        for (line, needle) in [
            ("memory_max = \"64Q\"", "64Q"),
            ("memory_high = \"12\"", "minimum"),
            ("cpu_max = \"fast\"", "fast"),
            ("cpu_max = \"0%\"", "out of range"),
            ("cpu_weight = 0", "cpu_weight 0"),
            ("cpu_weight = 10001", "10001"),
            ("pids_max = 0", "positive"),
            ("nofile = -1", "positive"),
            ("nofile = 4294967296", "nofile"),
        ] {
            let e = parse(&format!("command = [\"x\"]\n{line}")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(needle), "{line}: {msg}");
            // toml's located error: the line of the bad value is shown.
            assert!(msg.contains("line 2"), "{line}: not located: {msg}");
        }
    }

    #[test]
    fn signal_names() {
        assert_eq!(StopSignal::parse("term").unwrap().number, libc::SIGTERM);
        assert_eq!(StopSignal::name_of(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(StopSignal::name_of(libc::SIGSEGV), Some("SIGSEGV"));
        assert!(StopSignal::parse("SIGFOO").is_none());
    }
}
