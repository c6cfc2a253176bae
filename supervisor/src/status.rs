//! What the supervisor reports to the host: per-service status in the contract's words (§4),
//! exit statuses, and the pure function computing the overall `status`. Owns no processes.

use std::collections::BTreeMap;
use std::fmt;

use guest_config::StopSignal;
use nix::sys::wait::WaitStatus;
use serde::Serialize;

/// How a process ended, as `waitpid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Not a termination (stopped/continued): the process is still alive.
    NotExited,
}

impl ExitStatus {
    /// From nix's decoded `waitpid` result.
    pub fn from_wait_status(ws: WaitStatus) -> ExitStatus {
        match ws {
            WaitStatus::Exited(_, code) => ExitStatus::Code(code),
            WaitStatus::Signaled(_, sig, _) => ExitStatus::Signal(sig as i32),
            _ => ExitStatus::NotExited,
        }
    }

    /// From a raw `wait(2)` status word.
    pub fn from_raw(raw: i32) -> ExitStatus {
        if libc::WIFEXITED(raw) {
            ExitStatus::Code(libc::WEXITSTATUS(raw))
        } else if libc::WIFSIGNALED(raw) {
            ExitStatus::Signal(libc::WTERMSIG(raw))
        } else {
            ExitStatus::NotExited
        }
    }
}

/// The last way a service's process ended, as serialised in `last_exit`:
/// `{"code": 1}`, `{"signal": "SIGKILL"}`, `{"spawn_error": "…"}` (the command could not be
/// started), or `{"ready_timeout": "30s"}` (readiness not proven in time; the group was killed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LastExit {
    Code(i32),
    Signal(String),
    SpawnError(String),
    ReadyTimeout(String),
}

impl LastExit {
    pub fn from_status(st: ExitStatus) -> LastExit {
        match st {
            ExitStatus::Code(c) => LastExit::Code(c),
            ExitStatus::Signal(s) => LastExit::Signal(signal_name(s)),
            ExitStatus::NotExited => LastExit::Code(-1),
        }
    }
}

fn signal_name(sig: i32) -> String {
    StopSignal::name_of(sig)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {sig}"))
}

impl fmt::Display for LastExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastExit::Code(c) => write!(f, "exit code {c}"),
            LastExit::Signal(s) => write!(f, "killed by {s}"),
            LastExit::SpawnError(e) => write!(f, "could not start: {e}"),
            LastExit::ReadyTimeout(d) => write!(f, "not ready within {d}"),
        }
    }
}

/// One service as the health document shows it (contract §4, plus extra fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// `waiting|starting|running|ready|backoff|exited|failed|stopped`.
    pub state: &'static str,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub failures: u32,
    pub last_exit: Option<LastExit>,
    /// Counts as ready for the overall status (ready, exited, or between the exit and the
    /// restart of an idle `restart = "always"` service that was ready).
    pub ready: bool,
    pub required: bool,
    /// Milliseconds until the next restart, while one is scheduled.
    pub next_retry_ms: Option<u64>,
    /// Crashes still allowed within the current `restart_limit.interval` window.
    pub budget_left: u32,
    /// A stop is in progress (shutdown).
    pub stopping: bool,
    /// Last `STATUS=` sent through `NOTIFY_SOCKET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_status: Option<String>,
    /// It has been ready at least once since boot (the end of `starting` for the overall
    /// status). Not serialised.
    #[serde(skip)]
    pub ever_ready: bool,
}

/// The network's part in the overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetworkHealth {
    /// A network source is configured, so `ok` needs it up.
    pub configured: bool,
    pub up: bool,
    pub error: bool,
}

/// The contract's overall `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Ok,
    Degraded,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
        }
    }
}

/// Contract §4: `failed` when a required service failed or the network is in error;
/// `starting` until every required service has been ready or has failed; `ok` when the
/// network (if configured) is up, every required service is ready and nothing is failed or
/// in backoff and the config drive read cleanly; `degraded` otherwise.
pub fn overall_status(
    services: &BTreeMap<String, ServiceStatus>,
    network: NetworkHealth,
    drive_error: bool,
) -> Status {
    let required = || services.values().filter(|s| s.required);
    if network.error || required().any(|s| s.state == "failed") {
        return Status::Failed;
    }
    if required().any(|s| !s.ever_ready && !s.ready) {
        return Status::Starting;
    }
    let network_ok = !network.configured || network.up;
    let all_ready = required().all(|s| s.ready);
    let troubled = services
        .values()
        .any(|s| s.state == "failed" || s.state == "backoff");
    if network_ok && all_ready && !troubled && !drive_error {
        Status::Ok
    } else {
        Status::Degraded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(state: &'static str, ready: bool, ever: bool, required: bool) -> ServiceStatus {
        ServiceStatus {
            state,
            pid: None,
            restarts: 0,
            failures: 0,
            last_exit: None,
            ready,
            required,
            next_retry_ms: None,
            budget_left: 5,
            stopping: false,
            notify_status: None,
            ever_ready: ever,
        }
    }

    fn map(list: &[(&str, ServiceStatus)]) -> BTreeMap<String, ServiceStatus> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    const NET_UP: NetworkHealth = NetworkHealth {
        configured: true,
        up: true,
        error: false,
    };
    const NO_NET: NetworkHealth = NetworkHealth {
        configured: false,
        up: false,
        error: false,
    };

    #[test]
    fn ok_when_everything_required_is_ready() {
        let s = map(&[
            ("a", svc("ready", true, true, true)),
            ("b", svc("exited", true, true, true)),
        ]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Ok);
        assert_eq!(overall_status(&s, NO_NET, false), Status::Ok);
        assert_eq!(overall_status(&BTreeMap::new(), NO_NET, false), Status::Ok);
    }

    #[test]
    fn idle_restart_of_a_ready_service_stays_ok() {
        let s = map(&[("rtc", svc("starting", true, true, true))]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Ok);
        let s = map(&[("rtc", svc("running", true, true, true))]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Ok);
    }

    #[test]
    fn starting_until_each_required_service_settles() {
        let s = map(&[
            ("a", svc("ready", true, true, true)),
            ("b", svc("waiting", false, false, true)),
        ]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Starting);
        let s = map(&[("a", svc("running", false, false, true))]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Starting);
        // A non-required service does not hold up the boot.
        let s = map(&[
            ("a", svc("ready", true, true, true)),
            ("b", svc("running", false, false, false)),
        ]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Ok);
    }

    #[test]
    fn failed_when_a_required_service_failed_or_the_network_errs() {
        let s = map(&[
            ("a", svc("failed", false, false, true)),
            ("b", svc("waiting", false, false, true)),
        ]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Failed);
        let s = map(&[("a", svc("ready", true, true, true))]);
        let err = NetworkHealth {
            configured: true,
            up: false,
            error: true,
        };
        assert_eq!(overall_status(&s, err, false), Status::Failed);
    }

    #[test]
    fn degraded_cases() {
        let ready = svc("ready", true, true, true);
        let s = map(&[
            ("a", ready.clone()),
            ("b", svc("failed", false, false, false)),
        ]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Degraded);
        let s = map(&[("a", svc("backoff", false, true, true))]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Degraded);
        let s = map(&[
            ("a", ready.clone()),
            ("b", svc("backoff", false, false, false)),
        ]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Degraded);
        let s = map(&[("a", ready.clone())]);
        assert_eq!(overall_status(&s, NET_UP, true), Status::Degraded);
        let down = NetworkHealth {
            configured: true,
            up: false,
            error: false,
        };
        assert_eq!(overall_status(&s, down, false), Status::Degraded);
        let s = map(&[("a", svc("stopped", false, true, true))]);
        assert_eq!(overall_status(&s, NET_UP, false), Status::Degraded);
    }

    #[test]
    fn service_status_has_the_contract_fields() {
        let mut st = svc("backoff", false, true, true);
        st.pid = Some(12);
        st.last_exit = Some(LastExit::Code(2));
        let v = serde_json::to_value(&st).unwrap();
        for key in [
            "state",
            "pid",
            "restarts",
            "failures",
            "last_exit",
            "required",
            "budget_left",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert_eq!(v["state"], "backoff");
        assert_eq!(v["last_exit"]["code"], 2);
        assert!(v.get("ever_ready").is_none() && v.get("notify_status").is_none());
    }

    #[test]
    fn exit_statuses_serialise_as_documented() {
        let j = |e: LastExit| serde_json::to_string(&e).unwrap();
        assert_eq!(j(LastExit::Code(1)), r#"{"code":1}"#);
        assert_eq!(
            j(LastExit::from_status(ExitStatus::Signal(9))),
            r#"{"signal":"SIGKILL"}"#
        );
        assert_eq!(
            j(LastExit::ReadyTimeout("5s".into())),
            r#"{"ready_timeout":"5s"}"#
        );
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Code(3));
        assert_eq!(
            ExitStatus::from_raw(libc::SIGTERM),
            ExitStatus::Signal(libc::SIGTERM)
        );
        assert_eq!(Status::Degraded.as_str(), "degraded");
    }
}
