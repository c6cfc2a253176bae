//! The config drive (contract §2): a block device whose filesystem is labelled `VMINIT`,
//! with `vminit.toml` at its root. Owns the drive's schema ([`DriveConfig`]: `hostname`,
//! `[network]`, `[env]`, `[services.NAME]`) and finding the drive by its label without
//! mounting ([`mod@find`], [`superblock`]). Mounting it, and merging it with the image config
//! ([`crate::merge`]) or the cmdline ([`mod@crate::arbitrate`]), happen elsewhere.

pub mod find;
mod network;
pub mod superblock;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::de::DeValue;

use crate::doc::{from_value, per_key, sort_errors, Doc, Origin};
use crate::error::{ConfigError, Problem};
use crate::image::services_of;
use crate::names::{check_env_name, check_hostname, check_service_name};
use crate::network::NetworkPlan;
use crate::service::ServiceConfig;
use crate::validate::check_service;

pub use find::{find, FindError, FoundDrive};
pub use network::DriveNetwork;
pub use superblock::{FsType, Probe, VolumeId};

/// The filesystem label that marks the config drive.
pub const LABEL: &str = "VMINIT";
/// The config file at the drive's root.
pub const FILE: &str = "vminit.toml";

/// The config drive's `vminit.toml`, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DriveConfig {
    pub hostname: Option<String>,
    pub network: Option<DriveNetwork>,
    /// Added to every service's environment (see [`crate::merge`] for precedence).
    pub env: BTreeMap<String, String>,
    pub services: BTreeMap<String, DriveService>,
    pub origin: Origin,
}

/// A drive `[services.NAME]`: an env override of an image service, or a new service.
#[derive(Debug, Clone, PartialEq)]
pub enum DriveService {
    /// Only `env = {...}`: overrides variables of the image service `NAME`.
    Override { env: BTreeMap<String, String> },
    /// A full service with its own `command`, added to the image's.
    Extra(Box<ServiceConfig>),
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    network: Option<network::RawNetwork>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvOnly {
    env: BTreeMap<String, String>,
}

impl DriveConfig {
    /// Reads and parses `path` (on the mounted drive): host input, so only a regular file
    /// of at most 1 MiB, never through a symlink ([`crate::hostfile::read_host_file`]).
    pub fn load(path: &Path) -> Result<DriveConfig, Vec<ConfigError>> {
        let text = crate::error::read_file(path, false)?;
        DriveConfig::parse(&text, path)
    }

    /// Parses and checks `text`; every problem is returned with its location. Relations
    /// between services (`after`) need the image config and are checked by the merge.
    pub fn parse(text: &str, path: &Path) -> Result<DriveConfig, Vec<ConfigError>> {
        let mut doc = Doc::parse(text, path)?;
        let mut errors = Vec::new();
        let services = doc.take("services");
        let root = std::mem::take(&mut doc.root);
        let mut cfg = DriveConfig::default();
        let mut top = Top::default();
        per_key(&doc, root, &mut errors, |key, part: Top| match key {
            "hostname" => top.hostname = part.hostname,
            "env" => top.env = part.env,
            _ => top.network = part.network,
        });
        if let Some(h) = &top.hostname {
            if let Err(reason) = check_hostname(h) {
                errors.push(doc.origin.error(
                    "hostname",
                    Problem::BadName {
                        value: h.clone(),
                        reason,
                    },
                ));
            }
        }
        check_env(&top.env, "env", &doc.origin, &mut errors);
        if let Some(raw) = top.network {
            match raw.check(&doc.origin) {
                Ok(n) => cfg.network = Some(n),
                Err(e) => errors.extend(e),
            }
        }
        cfg.hostname = top.hostname;
        cfg.env = top.env;
        for (name, value) in services_of(&doc, services, &mut errors) {
            let key = format!("services.{name}");
            if let Err(reason) = check_service_name(&name) {
                errors.push(doc.origin.error(
                    &key,
                    Problem::BadName {
                        value: name.clone(),
                        reason,
                    },
                ));
            }
            let (s, service_errors) = service(&doc, &name, value);
            errors.extend(service_errors);
            if let Some(s) = s {
                cfg.services.insert(name, s);
            }
        }
        for (name, s) in &cfg.services {
            match s {
                DriveService::Override { env } => check_env(
                    env,
                    &format!("services.{name}.env"),
                    &doc.origin,
                    &mut errors,
                ),
                DriveService::Extra(s) => errors.extend(check_service(name, s, &doc.origin)),
            }
        }
        cfg.origin = doc.origin;
        sort_errors(&mut errors);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The drive's network plan (source `drive`), if it has a `[network]`.
    pub fn network_plan(&self) -> Option<NetworkPlan> {
        self.network
            .as_ref()
            .map(|n| n.to_plan(self.hostname.clone()))
    }
}

/// A drive service and every error in it (see [`crate::recover`]); with errors, the
/// service is only good for further checks, the drive is refused.
fn service<'a>(
    doc: &Doc<'a>,
    name: &str,
    value: toml::Spanned<DeValue<'a>>,
) -> (Option<DriveService>, Vec<ConfigError>) {
    let key = format!("services.{name}");
    let keys: Vec<String> = match value.get_ref() {
        DeValue::Table(t) => t.keys().map(|k| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    };
    if keys.iter().any(|k| k == "env") && keys.len() == 1 {
        return match from_value::<EnvOnly>(value) {
            Ok(e) => (Some(DriveService::Override { env: e.env }), Vec::new()),
            Err(e) => (None, vec![doc.de_error(&e, &key)]),
        };
    }
    if !keys.is_empty() && !keys.iter().any(|k| k == "command") {
        let keys = keys.into_iter().filter(|k| k != "env").collect();
        let e = doc.origin.error(&key, Problem::PartialService { keys });
        return (None, vec![e]);
    }
    let (s, errors) = crate::recover::service(doc, name, value);
    (s.map(|s| DriveService::Extra(Box::new(s))), errors)
}

fn check_env(env: &BTreeMap<String, String>, key: &str, o: &Origin, errors: &mut Vec<ConfigError>) {
    for var in env.keys() {
        if let Err(reason) = check_env_name(var) {
            errors.push(o.error(
                key,
                Problem::BadName {
                    value: var.clone(),
                    reason,
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests;
