//! The guest's overall `status`: the init's policy over what the supervisor, the network thread
//! and the boot report. Pure: it reads a snapshot and decides, so every rule is unit-tested here
//! without a process or a network.
//!
//! - `failed`: a required service failed, or the network is in `error` (a conflict, a bring-up
//!   that cannot succeed);
//! - `starting`: some required service has not yet been ready once, and none failed;
//! - `ok`: every required service is ready, nothing is failed or in backoff, the network (when
//!   a source is configured) is `up` with no `network.error`, and the boot recorded no error;
//! - `degraded`: anything else — a non-required service failed, a service in backoff, a
//!   config-drive error, a gateway silent to ARP, a network still down after the services.

use std::collections::BTreeMap;

use netconf::LinkState;
use serde::Serialize;
use supervisor::{ServiceStatus, ServicesHealth};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Ok,
    Degraded,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Starting,
        Status::Ok,
        Status::Degraded,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
        }
    }
}

/// The network's part in the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkView {
    /// A source is configured, so `ok` needs the network `up`.
    pub configured: bool,
    pub state: LinkState,
    /// `network.error` is set (with `state` `up`: a warning such as a silent gateway).
    pub has_error: bool,
}

/// The overall status (see the module doc). `boot_errors`: the boot recorded an error (a
/// config-drive error, a module that failed, a panic caught).
pub fn overall(
    services: &BTreeMap<String, ServiceStatus>,
    network: NetworkView,
    boot_errors: bool,
) -> Status {
    let services = ServicesHealth::of(services);
    if network.state == LinkState::Error || services == ServicesHealth::Failed {
        return Status::Failed;
    }
    if services == ServicesHealth::Starting {
        return Status::Starting;
    }
    let network_ok = !network.configured || (network.state == LinkState::Up && !network.has_error);
    if network_ok && services == ServicesHealth::Ready && !boot_errors {
        Status::Ok
    } else {
        Status::Degraded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(state: &str, ready: bool, ever: bool, required: bool) -> ServiceStatus {
        let state = supervisor::ServiceState::ALL
            .into_iter()
            .find(|s| s.as_str() == state)
            .unwrap();
        ServiceStatus {
            ready,
            required,
            ever_ready: ever,
            ..ServiceStatus::new(state)
        }
    }

    fn map(list: &[(&str, ServiceStatus)]) -> BTreeMap<String, ServiceStatus> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    fn net(state: LinkState, has_error: bool) -> NetworkView {
        NetworkView {
            configured: true,
            state,
            has_error,
        }
    }

    const NO_NET: NetworkView = NetworkView {
        configured: false,
        state: LinkState::Unconfigured,
        has_error: false,
    };

    #[test]
    fn ok_when_everything_required_is_ready() {
        let s = map(&[
            ("a", svc("ready", true, true, true)),
            ("b", svc("exited", true, true, true)),
        ]);
        assert_eq!(overall(&s, net(LinkState::Up, false), false), Status::Ok);
        assert_eq!(overall(&s, NO_NET, false), Status::Ok);
        assert_eq!(overall(&BTreeMap::new(), NO_NET, false), Status::Ok);
    }

    #[test]
    fn idle_restart_of_a_ready_service_stays_ok() {
        let up = net(LinkState::Up, false);
        let s = map(&[("rtc", svc("starting", true, true, true))]);
        assert_eq!(overall(&s, up, false), Status::Ok);
        let s = map(&[("rtc", svc("running", true, true, true))]);
        assert_eq!(overall(&s, up, false), Status::Ok);
    }

    #[test]
    fn starting_until_each_required_service_settles() {
        let up = net(LinkState::Up, false);
        let s = map(&[
            ("a", svc("ready", true, true, true)),
            ("b", svc("waiting", false, false, true)),
        ]);
        assert_eq!(overall(&s, up, false), Status::Starting);
        let s = map(&[("a", svc("running", false, false, true))]);
        assert_eq!(overall(&s, up, false), Status::Starting);
        // A non-required service does not hold up the boot.
        let s = map(&[
            ("a", svc("ready", true, true, true)),
            ("b", svc("running", false, false, false)),
        ]);
        assert_eq!(overall(&s, up, false), Status::Ok);
    }

    #[test]
    fn failed_when_a_required_service_failed_or_the_network_errs() {
        let s = map(&[
            ("a", svc("failed", false, false, true)),
            ("b", svc("waiting", false, false, true)),
        ]);
        assert_eq!(
            overall(&s, net(LinkState::Up, false), false),
            Status::Failed
        );
        let s = map(&[("a", svc("ready", true, true, true))]);
        assert_eq!(
            overall(&s, net(LinkState::Error, true), false),
            Status::Failed
        );
    }

    #[test]
    fn a_silent_gateway_is_degraded_and_clears_when_it_answers() {
        let s = map(&[("a", svc("ready", true, true, true))]);
        assert_eq!(
            overall(&s, net(LinkState::Up, true), false),
            Status::Degraded
        );
        assert_eq!(overall(&s, net(LinkState::Up, false), false), Status::Ok);
    }

    #[test]
    fn degraded_cases() {
        let up = net(LinkState::Up, false);
        let ready = svc("ready", true, true, true);
        let s = map(&[
            ("a", ready.clone()),
            ("b", svc("failed", false, false, false)),
        ]);
        assert_eq!(overall(&s, up, false), Status::Degraded);
        let s = map(&[("a", svc("backoff", false, true, true))]);
        assert_eq!(overall(&s, up, false), Status::Degraded);
        let s = map(&[
            ("a", ready.clone()),
            ("b", svc("backoff", false, false, false)),
        ]);
        assert_eq!(overall(&s, up, false), Status::Degraded);
        let s = map(&[("a", ready.clone())]);
        assert_eq!(overall(&s, up, true), Status::Degraded, "a boot error");
        assert_eq!(
            overall(&s, net(LinkState::Down, false), false),
            Status::Degraded
        );
        let s = map(&[("a", svc("stopped", false, true, true))]);
        assert_eq!(overall(&s, up, false), Status::Degraded);
    }

    #[test]
    fn serialises_as_the_contract_words() {
        for s in Status::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }
}
