//! What each event-loop turn decides from what the other parts report: whether services
//! `after = ["network"]` may run ([`NetworkGate`]), and the health document rebuilt from the
//! network thread's state and the services' snapshot, with the milestones it crosses
//! ([`assemble`]).
//!
//! Pure: no lock, no clock, no syscall; the time of a milestone is given. The loop
//! ([`crate::event_loop`]) reads the inputs and carries out the effects (the supervisor's
//! gate, the health thread's priority, the late modules, `READY=1`).

use std::collections::BTreeMap;

use netconf::{LinkState, NetworkState};
use supervisor::ServiceStatus;

use crate::health::{HealthDoc, NetworkDoc};
use crate::report::ModulesDoc;
use crate::status::{self, NetworkView, Status};

/// Whether the network is up for the services that wait for it; remembers the last answer so
/// that the supervisor hears only changes.
#[derive(Debug, Default)]
pub struct NetworkGate {
    up: bool,
}

impl NetworkGate {
    /// The gate for `state`, when it changed: `up` and `unconfigured` (`ip=off`, nothing to
    /// wait for) open it; `down` and `error` close it.
    pub fn observe(&mut self, state: LinkState) -> Option<bool> {
        let up = matches!(state, LinkState::Up | LinkState::Unconfigured);
        if up == self.up {
            return None;
        }
        self.up = up;
        Some(up)
    }
}

/// What a turn read from the other parts.
pub struct Inputs {
    pub network: NetworkState,
    /// A network source is configured (so `ok` needs it `up`).
    pub network_configured: bool,
    pub services: BTreeMap<String, ServiceStatus>,
    /// Faults other threads and the supervisor recorded since the last turn.
    pub faults: Vec<String>,
    /// The late module stage's report, when it has one.
    pub late_modules: Option<ModulesDoc>,
}

/// The milestones the document crossed or stands past after [`assemble`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Milestones {
    /// `ok` for the first time: `boot.ready_ms` was set now.
    pub became_ready: bool,
    /// The boot's own work is over: the network has an outcome, or the status left
    /// `starting`. Services still starting are not the boot's work.
    pub settled: bool,
    /// The status is past `starting` (the late drivers wait for this; so does `READY=1`).
    pub left_starting: bool,
}

/// Rebuilds `doc` from `inputs`; `now_ms` (ms since the kernel started) is asked only when
/// the document becomes ready.
pub fn assemble(doc: &mut HealthDoc, inputs: Inputs, now_ms: impl FnOnce() -> u64) -> Milestones {
    let Inputs {
        network: n,
        network_configured,
        services,
        faults,
        late_modules,
    } = inputs;
    doc.errors.extend(faults);
    if let Some(m) = late_modules {
        doc.modules = m;
    }
    doc.status = status::overall(
        &services,
        NetworkView {
            configured: network_configured,
            state: n.state,
            has_error: n.error.is_some(),
        },
        !doc.errors.is_empty(),
    );
    doc.network = NetworkDoc {
        source: n.source,
        state: n.state,
        interface: n.interface,
        addresses: n.addresses,
        error: n.error,
    };
    doc.boot.network_ms = n.timings.configured_ms;
    doc.services = services;
    let became_ready = doc.boot.ready_ms.is_none() && doc.status == Status::Ok;
    if became_ready {
        doc.boot.ready_ms = Some(now_ms());
    }
    let left_starting = doc.status != Status::Starting;
    Milestones {
        became_ready,
        settled: left_starting || doc.network.state != LinkState::Down,
        left_starting,
    }
}

/// The generation of `doc` given the last one published: the same when only figures moved
/// (a long poll must not wake for a CPU counter), one more otherwise.
pub fn generation(doc: &HealthDoc, last: &HealthDoc) -> u64 {
    if doc.same_but_figures(last) {
        last.generation
    } else {
        last.generation.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_config::NetworkSource;
    use supervisor::ServiceState;

    fn net(state: LinkState) -> NetworkState {
        NetworkState {
            source: NetworkSource::Cmdline,
            state,
            ..NetworkState::default()
        }
    }

    fn one(state: ServiceState) -> BTreeMap<String, ServiceStatus> {
        let ready = state == ServiceState::Ready;
        let status = ServiceStatus {
            ready,
            ever_ready: ready,
            ..ServiceStatus::new(state)
        };
        BTreeMap::from([("agent".to_string(), status)])
    }

    fn inputs(state: LinkState, svc: ServiceState) -> Inputs {
        Inputs {
            network: net(state),
            network_configured: true,
            services: one(svc),
            faults: Vec::new(),
            late_modules: None,
        }
    }

    #[test]
    fn the_gate_opens_on_up_or_nothing_to_configure_and_reports_changes_only() {
        let mut g = NetworkGate::default();
        assert_eq!(g.observe(LinkState::Down), None, "closed from the start");
        assert_eq!(g.observe(LinkState::Up), Some(true));
        assert_eq!(g.observe(LinkState::Up), None);
        assert_eq!(g.observe(LinkState::Down), Some(false), "carrier lost");
        assert_eq!(g.observe(LinkState::Error), None);
        assert_eq!(g.observe(LinkState::Unconfigured), Some(true), "ip=off");
    }

    #[test]
    fn a_boot_crosses_settled_then_ready_once() {
        let mut doc = HealthDoc::starting(100, true);
        let m = assemble(
            &mut doc,
            inputs(LinkState::Down, ServiceState::Waiting),
            || unreachable!("not ready"),
        );
        assert_eq!(doc.status, Status::Starting);
        assert!(!m.settled && !m.left_starting && !m.became_ready);

        let mut up = inputs(LinkState::Up, ServiceState::Starting);
        up.network.timings.configured_ms = Some(900);
        let m = assemble(&mut doc, up, || unreachable!("not ready"));
        assert!(m.settled, "the network has an outcome");
        assert!(!m.left_starting);
        assert_eq!(doc.boot.network_ms, Some(900));
        assert_eq!(doc.network.state, LinkState::Up);

        let m = assemble(&mut doc, inputs(LinkState::Up, ServiceState::Ready), || {
            1200
        });
        assert_eq!(doc.status, Status::Ok);
        assert!(m.became_ready && m.left_starting && m.settled);
        assert_eq!(doc.boot.ready_ms, Some(1200));

        // Later turns keep the first ready time, even across a carrier loss and back.
        let m = assemble(
            &mut doc,
            inputs(LinkState::Down, ServiceState::Ready),
            || 5000,
        );
        assert!(!m.became_ready);
        assert_ne!(doc.status, Status::Ok, "{:?}", doc.status);
        let m = assemble(&mut doc, inputs(LinkState::Up, ServiceState::Ready), || {
            6000
        });
        assert!(!m.became_ready);
        assert_eq!(doc.boot.ready_ms, Some(1200));
    }

    #[test]
    fn a_network_error_settles_the_boot_and_fails_the_status() {
        let mut doc = HealthDoc::starting(0, true);
        let mut i = inputs(LinkState::Error, ServiceState::Waiting);
        i.network.error = Some("network: eth0 has no carrier".into());
        let m = assemble(&mut doc, i, || unreachable!());
        assert_eq!(doc.status, Status::Failed);
        assert!(m.settled && m.left_starting && !m.became_ready);
        assert_eq!(
            doc.network.error.as_deref(),
            Some("network: eth0 has no carrier")
        );
    }

    #[test]
    fn faults_accumulate_and_late_modules_replace_the_report() {
        let mut doc = HealthDoc::starting(0, true);
        let mut i = inputs(LinkState::Up, ServiceState::Ready);
        i.faults = vec!["panic caught: x".into()];
        assemble(&mut doc, i, || 1);
        let mut i = inputs(LinkState::Up, ServiceState::Ready);
        i.faults = vec!["service agent: y".into()];
        i.late_modules = Some(ModulesDoc {
            total_ms: 42.0,
            ..ModulesDoc::default()
        });
        assemble(&mut doc, i, || 2);
        assert_eq!(doc.errors, ["panic caught: x", "service agent: y"]);
        assert_eq!(doc.modules.total_ms, 42.0);
        assert_eq!(doc.status, Status::Degraded, "a recorded error degrades");
    }

    #[test]
    fn the_generation_moves_on_a_change_not_on_figures() {
        let mut last = HealthDoc::starting(0, true);
        last.generation = 7;
        let mut doc = last.clone();
        assert_eq!(generation(&doc, &last), 7);
        doc.status = Status::Ok;
        assert_eq!(generation(&doc, &last), 8);
    }
}
