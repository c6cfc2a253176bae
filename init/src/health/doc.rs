//! The health document as the init publishes it, typed end to end: states are enums whose serde
//! names are the words of the reference (`docs/REFERENCE.md`), and `/metrics` renders from the
//! same value ([`super::metrics`]). The event loop builds a [`HealthDoc`] whenever its state
//! changes; the server only reads it.

use std::collections::BTreeMap;

use guest_config::NetworkSource;
use netconf::LinkState;
use serde::{Serialize, Serializer};
use supervisor::ServiceStatus;

use crate::report::ModulesDoc;
use crate::status::Status;

fn source_word<S: Serializer>(v: &NetworkSource, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn link_word<S: Serializer>(v: &LinkState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkDoc {
    #[serde(serialize_with = "source_word")]
    pub source: NetworkSource,
    #[serde(serialize_with = "link_word")]
    pub state: LinkState,
    pub interface: Option<String>,
    pub addresses: Vec<String>,
    pub error: Option<String>,
}

impl Default for NetworkDoc {
    fn default() -> Self {
        NetworkDoc {
            source: NetworkSource::None,
            state: LinkState::Unconfigured,
            interface: None,
            addresses: Vec::new(),
            error: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BootDoc {
    pub init_start_ms: u64,
    pub modules_ms: Option<u64>,
    pub network_ms: Option<u64>,
    pub ready_ms: Option<u64>,
}

/// Which cgroup controllers the services have (`cpu`, `memory`, `pids`), and which the
/// kernel lacks: a limit needing a missing one is not applied (and is in `errors`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CgroupsDoc {
    pub controllers: Vec<String>,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthDoc {
    /// Grows by one whenever anything but a figure changes ([`HealthDoc::same_but_figures`]);
    /// `GET /health?wait=N` answers once it exceeds N.
    pub generation: u64,
    pub status: Status,
    pub network: NetworkDoc,
    pub services: BTreeMap<String, ServiceStatus>,
    pub boot: BootDoc,
    /// Module loader report: loaded, failed, unmatched devices.
    pub modules: ModulesDoc,
    pub errors: Vec<String>,
    /// The services' cgroup layout; `null` when services run in process groups only.
    pub cgroups: Option<CgroupsDoc>,
    pub version: &'static str,
    pub pid1: bool,
    pub shutting_down: bool,
}

impl HealthDoc {
    pub fn starting(init_start_ms: u64, pid1: bool) -> Self {
        HealthDoc {
            generation: 0,
            status: Status::Starting,
            network: NetworkDoc::default(),
            services: BTreeMap::new(),
            boot: BootDoc {
                init_start_ms,
                ..BootDoc::default()
            },
            modules: ModulesDoc::default(),
            errors: Vec::new(),
            cgroups: None,
            version: env!("CARGO_PKG_VERSION"),
            pid1,
            shutting_down: false,
        }
    }

    /// True when `self` and `other` differ at most in figures: times, counters, resource use
    /// and the generation itself. Those change on their own (a clock, a retry countdown), and
    /// a long poll woken by them would wake on every publish, so they do not make a new
    /// generation; a state, an error, an address or a pid does.
    pub fn same_but_figures(&self, other: &HealthDoc) -> bool {
        self.without_figures() == other.without_figures()
    }

    fn without_figures(&self) -> HealthDoc {
        let mut d = self.clone();
        d.generation = 0;
        d.boot = BootDoc::default();
        d.modules.total_ms = 0.0;
        for m in &mut d.modules.loaded {
            m.ms = 0.0;
        }
        for s in d.services.values_mut() {
            s.restarts = 0;
            s.failures = 0;
            s.next_retry_ms = None;
            s.budget_left = 0;
            s.memory_bytes = None;
            s.cpu_ms = None;
            s.pids = None;
            s.oom_kills = None;
        }
        d
    }

    /// HTTP status for `/health`: 200 only when `ok`.
    pub fn http_status(&self) -> u16 {
        if self.status == Status::Ok {
            200
        } else {
            503
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_doc_has_contract_fields() {
        let d = HealthDoc::starting(42, true);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["status"], "starting");
        assert_eq!(v["network"]["source"], "none");
        assert_eq!(v["network"]["state"], "unconfigured");
        assert_eq!(v["network"]["error"], serde_json::Value::Null);
        assert_eq!(v["boot"]["init_start_ms"], 42);
        assert!(v["services"].as_object().unwrap().is_empty());
        assert!(v["errors"].as_array().unwrap().is_empty());
        assert!(v["modules"]["loaded"].as_array().unwrap().is_empty());
        assert_eq!(d.http_status(), 503);
    }

    fn service(state: supervisor::ServiceState) -> supervisor::ServiceStatus {
        supervisor::ServiceStatus {
            pid: Some(7),
            ..supervisor::ServiceStatus::new(state)
        }
    }

    #[test]
    fn figures_alone_do_not_make_a_new_generation() {
        let mut a = HealthDoc::starting(1, true);
        a.services
            .insert("web".into(), service(supervisor::ServiceState::Running));
        let mut b = a.clone();
        b.generation = 9;
        b.boot.network_ms = Some(120);
        b.boot.ready_ms = Some(300);
        b.modules.total_ms = 4.5;
        if let Some(s) = b.services.get_mut("web") {
            s.restarts = 3;
            s.failures = 2;
            s.next_retry_ms = Some(800);
            s.budget_left = 1;
            s.memory_bytes = Some(1 << 20);
            s.cpu_ms = Some(1500);
            s.pids = Some(3);
            s.oom_kills = Some(1);
        }
        assert!(a.same_but_figures(&b));
    }

    #[test]
    fn states_errors_and_addresses_make_a_new_generation() {
        let mut a = HealthDoc::starting(1, true);
        a.services
            .insert("web".into(), service(supervisor::ServiceState::Running));
        let changes: [fn(&mut HealthDoc); 6] = [
            |d| d.status = Status::Ok,
            |d| d.errors.push("x".into()),
            |d| d.network.addresses.push("10.0.2.15/24".into()),
            |d| d.network.error = Some("no carrier".into()),
            |d| d.shutting_down = true,
            |d| {
                if let Some(s) = d.services.get_mut("web") {
                    s.state = supervisor::ServiceState::Ready;
                }
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut b = a.clone();
            change(&mut b);
            assert!(!a.same_but_figures(&b), "change {i} not seen");
        }
    }

    #[test]
    fn network_words_are_the_references() {
        let n = NetworkDoc {
            source: NetworkSource::Drive,
            state: LinkState::Up,
            ..NetworkDoc::default()
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!((&v["source"], &v["state"]), (&"drive".into(), &"up".into()));
    }
}
