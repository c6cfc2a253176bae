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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthDoc {
    pub status: Status,
    pub network: NetworkDoc,
    pub services: BTreeMap<String, ServiceStatus>,
    pub boot: BootDoc,
    /// Module loader report: loaded, failed, unmatched devices.
    pub modules: ModulesDoc,
    pub errors: Vec<String>,
    pub version: &'static str,
    pub pid1: bool,
    pub shutting_down: bool,
}

impl HealthDoc {
    pub fn starting(init_start_ms: u64, pid1: bool) -> Self {
        HealthDoc {
            status: Status::Starting,
            network: NetworkDoc::default(),
            services: BTreeMap::new(),
            boot: BootDoc {
                init_start_ms,
                ..BootDoc::default()
            },
            modules: ModulesDoc::default(),
            errors: Vec::new(),
            version: env!("CARGO_PKG_VERSION"),
            pid1,
            shutting_down: false,
        }
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
