//! What the supervisor reports about its services: per-service status in the health
//! document's words and exit statuses. Owns no processes; the guest's overall `status` is the
//! init's policy (`init/src/status.rs`), not the supervisor's.

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
/// started), `{"ready_timeout": "30s"}` (readiness not proven in time; the group was killed),
/// or `{"oom_kill": true}` (the OOM killer killed a process of the service's cgroup, and the
/// service ended in failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LastExit {
    Code(i32),
    Signal(String),
    SpawnError(String),
    ReadyTimeout(String),
    /// Always `true`: the variant carries a value so that it serialises as the contract's
    /// `{"oom_kill": true}`.
    OomKill(bool),
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
            LastExit::OomKill(_) => f.write_str("killed by the OOM killer"),
        }
    }
}

/// A service's `state` in the health document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Its `after` dependencies are not ready yet.
    Waiting,
    /// Being started again after a success exit (`restart = "always"`).
    Starting,
    /// Started; readiness not yet proven.
    Running,
    Ready,
    /// A crash; the next start is scheduled.
    Backoff,
    /// A `restart = "never"` service that finished with a success code.
    Exited,
    /// Out of restarts.
    Failed,
    /// Stopped on purpose (shutdown).
    Stopped,
}

impl ServiceState {
    pub const ALL: [ServiceState; 8] = [
        ServiceState::Waiting,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Ready,
        ServiceState::Backoff,
        ServiceState::Exited,
        ServiceState::Failed,
        ServiceState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Ready => "ready",
            ServiceState::Backoff => "backoff",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }

    /// Ready, or finished for good with a success code: what `vminit_service_ready` counts.
    pub fn is_ready(self) -> bool {
        matches!(self, ServiceState::Ready | ServiceState::Exited)
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service as the health document shows it (plus extra fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub state: ServiceState,
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
    /// Live resource use from the service's cgroup (figures: they do not make a new
    /// generation). Absent without a cgroup or its controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
}

impl ServiceStatus {
    /// A required service in `state` with nothing else to report yet: no process, no runs,
    /// the default budget, no figures. Callers set what they know with struct-update syntax.
    pub fn new(state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            state,
            pid: None,
            restarts: 0,
            failures: 0,
            last_exit: None,
            ready: false,
            required: true,
            next_retry_ms: None,
            budget_left: 5,
            stopping: false,
            notify_status: None,
            ever_ready: false,
            memory_bytes: None,
            cpu_ms: None,
            pids: None,
            oom_kills: None,
        }
    }
}

/// The services' part in the guest's `status`; the init's policy combines it with the network
/// and the boot's own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServicesHealth {
    /// A required service failed.
    Failed,
    /// Some required service has not yet been ready once.
    Starting,
    /// Every required service ready; none failed or in backoff.
    Ready,
    /// Settled, with something wrong: a service failed or in backoff, or a required one not
    /// ready now (stopped).
    Troubled,
}

impl ServicesHealth {
    pub fn of(services: &BTreeMap<String, ServiceStatus>) -> ServicesHealth {
        let required = || services.values().filter(|s| s.required);
        if required().any(|s| s.state == ServiceState::Failed) {
            return ServicesHealth::Failed;
        }
        if required().any(|s| !s.ever_ready && !s.ready) {
            return ServicesHealth::Starting;
        }
        let troubled = services
            .values()
            .any(|s| matches!(s.state, ServiceState::Failed | ServiceState::Backoff));
        if required().all(|s| s.ready) && !troubled {
            ServicesHealth::Ready
        } else {
            ServicesHealth::Troubled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            ever_ready: true,
            ..ServiceStatus::new(state)
        }
    }

    #[test]
    fn states_serialise_as_their_words() {
        for st in ServiceState::ALL {
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::json!(st.as_str())
            );
        }
        assert!(ServiceState::Exited.is_ready() && !ServiceState::Running.is_ready());
    }

    #[test]
    fn service_status_has_the_contract_fields() {
        let mut st = svc(ServiceState::Backoff);
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
        assert_eq!(j(LastExit::OomKill(true)), r#"{"oom_kill":true}"#);
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Code(3));
        assert_eq!(
            ExitStatus::from_raw(libc::SIGTERM),
            ExitStatus::Signal(libc::SIGTERM)
        );
    }
}
