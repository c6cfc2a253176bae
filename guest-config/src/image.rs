//! The image config, `/etc/vminit/vminit.toml` (contract §2): log level, shutdown mode, the
//! health listener, module coldplug and extra modules ([`ModulesConfig`]), and the services. Owns its schema and its loading with
//! located errors; it holds no `[network]`, which is refused with an error pointing at the
//! two places the network may come from. Relations between services are checked in
//! [`mod@crate::validate`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::de::DeValue;

use crate::cmdline::Cmdline;
use crate::doc::{per_key, sort_errors, Doc, Origin};
use crate::error::{ConfigError, Problem};
use crate::listener::{de_listeners, Listener};
use crate::names::check_service_name;
use crate::service::ServiceConfig;
use crate::settings::{LogLevel, ShutdownMode};
use crate::validate;

/// The default location of the image config in the guest.
pub const DEFAULT_PATH: &str = "/etc/vminit/vminit.toml";

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    #[serde(default)]
    pub log: Option<LogLevel>,
    #[serde(default)]
    pub shutdown: Option<ShutdownMode>,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub modules: ModulesConfig,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// The file it was read from and where each key is, for later errors.
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `"ADDR:PORT,vsock:PORT"` or `["ADDR:PORT", "vsock:PORT"]` ([`crate::listener`]).
    #[serde(default, deserialize_with = "de_listeners")]
    pub listen: Option<Vec<Listener>>,
    /// Serve service log lines on the health endpoint (contract §4: off unless opted in).
    #[serde(default)]
    pub expose_logs: bool,
}

/// `[modules]`: which device drivers the boot loads by itself, and the modules and
/// parameters the image adds.
///
/// ```toml
/// [modules]
/// coldplug = "all"          # "all" (default) | "essential" | "none"
/// load = ["ext4"]
/// options = { virtio_net = "napi_tx=1" }
/// ```
///
/// `coldplug`: `all` loads the drivers of the devices the job needs (network, block, vsock,
/// rng, console, virtio transports, the power button) before the network and the services
/// start, and every other device's driver later, in the background at low priority, once
/// the status has left `starting`; `essential` loads only the first set; `none` loads no
/// driver by modalias at all, only `vminit.modules=` and `load` (nor the modules given a
/// `device=` parameter, such as Firecracker's `virtio_mmio.device=`: name them in `load`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesConfig {
    /// Which devices the boot loads drivers for by their modalias.
    #[serde(default)]
    pub coldplug: ColdplugMode,
    /// Modules to load at boot, in order, in addition to what the devices need.
    #[serde(default)]
    pub load: Vec<String>,
    /// Parameters by module, as on a modprobe.d `options` line: `"p=v p2=\"a b\""`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `[modules] coldplug` (see [`ModulesConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColdplugMode {
    /// Essential drivers during the boot, the rest in the background once it has settled.
    #[default]
    All,
    /// Essential drivers only.
    Essential,
    /// No driver by modalias.
    None,
}

impl ColdplugMode {
    pub const NAMES: &'static str = "all, essential or none";

    pub fn as_str(self) -> &'static str {
        match self {
            ColdplugMode::All => "all",
            ColdplugMode::Essential => "essential",
            ColdplugMode::None => "none",
        }
    }
}

impl std::str::FromStr for ColdplugMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "all" => Ok(ColdplugMode::All),
            "essential" => Ok(ColdplugMode::Essential),
            "none" => Ok(ColdplugMode::None),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for ColdplugMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ColdplugMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::settings::de_named(d, "coldplug mode", ColdplugMode::NAMES)
    }
}

impl ModulesConfig {
    /// The `param=value` words for `module` (name compared with `-` and `_` alike), split
    /// and unquoted the way the kernel splits module parameters.
    pub fn params(&self, module: &str) -> Vec<String> {
        let want = module.replace('-', "_");
        self.options
            .iter()
            .filter(|(m, _)| m.replace('-', "_") == want)
            .flat_map(|(_, line)| Cmdline::parse(line).params)
            .map(|p| match p.value {
                Some(v) if v.bytes().any(|b| b.is_ascii_whitespace()) => {
                    format!("{}=\"{v}\"", p.key)
                }
                Some(v) => format!("{}={v}", p.key),
                None => p.key,
            })
            .collect()
    }
}

impl ImageConfig {
    /// Reads and parses the image's own config at `path` (symlinks followed: an image may
    /// link its config); every problem found is returned, each with its location.
    pub fn load(path: &Path) -> Result<ImageConfig, Vec<ConfigError>> {
        let text = crate::error::read_file(path, true)?;
        ImageConfig::parse(&text, path)
    }

    /// As [`ImageConfig::load`] for a path the host named (`vminit.config=`): host input,
    /// so a symlink is refused like any file that is not regular
    /// ([`crate::hostfile::read_host_file`]).
    pub fn load_host(path: &Path) -> Result<ImageConfig, Vec<ConfigError>> {
        let text = crate::error::read_file(path, false)?;
        ImageConfig::parse(&text, path)
    }

    /// Parses and validates `text` (read from `path`, which errors name).
    pub fn parse(text: &str, path: &Path) -> Result<ImageConfig, Vec<ConfigError>> {
        let mut doc = Doc::parse(text, path)?;
        let mut errors = Vec::new();
        if doc.take("network").is_some() {
            errors.push(doc.origin.error("network", Problem::NetworkInImage));
        }
        let services = doc.take("services");
        let root = std::mem::take(&mut doc.root);
        let mut cfg = ImageConfig::default();
        per_key(
            &doc,
            root,
            &mut errors,
            |key, part: ImageConfig| match key {
                "log" => cfg.log = part.log,
                "shutdown" => cfg.shutdown = part.shutdown,
                "health" => cfg.health = part.health,
                _ => cfg.modules = part.modules,
            },
        );
        let mut failed = Vec::new();
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
            let (service, service_errors) = crate::recover::service(&doc, &name, value);
            errors.extend(service_errors);
            match service {
                Some(s) => {
                    cfg.services.insert(name, s);
                }
                None => failed.push(name),
            }
        }
        cfg.origin = doc.origin;
        errors.extend(validate::validate_parts(&cfg, &failed));
        sort_errors(&mut errors);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}

/// The `[services.NAME]` entries of a document, each still unparsed so that one bad service
/// does not hide the others.
pub(crate) fn services_of<'a>(
    doc: &Doc<'a>,
    services: Option<toml::Spanned<DeValue<'a>>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, toml::Spanned<DeValue<'a>>)> {
    let Some(services) = services else {
        return Vec::new();
    };
    match services.into_inner() {
        DeValue::Table(t) => t
            .into_iter()
            .map(|(k, v)| (k.into_inner().into_owned(), v))
            .collect(),
        other => {
            errors.push(doc.origin.error(
                "services",
                Problem::Schema(format!(
                    "expected a table [services.NAME], found a {}",
                    other.type_str()
                )),
            ));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
