//! `vminit --check-config FILE`: validates an image config or a config drive file and
//! either summarises it or returns every error with its location.
//!
//! Which schema applies is decided by content, not by file name (both are `vminit.toml`):
//! a top-level `log`, `shutdown`, `health` or `modules` makes it an image config (where a
//! `[network]` is then reported as misplaced); otherwise `hostname`, `network` or `env`
//! makes it a drive file; otherwise (only services, or empty) it is a drive file if a
//! service has nothing but `env` (an override), else an image config. A drive file is
//! checked alone: its `after` targets may be image services, so only cycles among its own
//! services are checked; the full check happens at boot in [`crate::merge`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::DeValue;

use crate::doc::Doc;
use crate::drive::{DriveConfig, DriveService};
use crate::error::{ConfigError, Problem};
use crate::image::ImageConfig;
use crate::network::{AddressMethod, NetworkPlan};
use crate::validate::find_cycles;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Image,
    Drive,
}

/// What a valid file holds, for the `--check-config` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub file: PathBuf,
    pub kind: ConfigKind,
    pub services: Vec<String>,
    /// For a drive file with `[network]`: the plan in one phrase.
    pub network: Option<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ConfigKind::Image => "image config",
            ConfigKind::Drive => "config drive file",
        };
        write!(
            f,
            "{}: valid {kind}; {} service(s)",
            self.file.display(),
            self.services.len()
        )?;
        if !self.services.is_empty() {
            write!(f, ": {}", self.services.join(", "))?;
        }
        if let Some(n) = &self.network {
            write!(f, "; network: {n}")?;
        }
        Ok(())
    }
}

const IMAGE_ONLY: &[&str] = &["log", "shutdown", "health", "modules"];
const DRIVE_ONLY: &[&str] = &["hostname", "network", "env"];

/// Which schema `text` is meant for (see the module doc).
pub fn kind_of(text: &str, path: &Path) -> Result<ConfigKind, Vec<ConfigError>> {
    let doc = Doc::parse(text, path)?;
    let has = |keys: &[&str]| keys.iter().any(|k| doc.root.contains_key(*k));
    if has(IMAGE_ONLY) {
        return Ok(ConfigKind::Image);
    }
    if has(DRIVE_ONLY) {
        return Ok(ConfigKind::Drive);
    }
    let env_only = match doc.root.get("services").map(|s| s.get_ref()) {
        Some(DeValue::Table(t)) => t.values().any(|v| match v.get_ref() {
            DeValue::Table(s) => s.len() == 1 && s.contains_key("env"),
            _ => false,
        }),
        _ => false,
    };
    Ok(if env_only {
        ConfigKind::Drive
    } else {
        ConfigKind::Image
    })
}

/// Checks the text of a config file read from `path`.
pub fn check_config_text(text: &str, path: &Path) -> Result<Summary, Vec<ConfigError>> {
    match kind_of(text, path)? {
        ConfigKind::Image => {
            let c = ImageConfig::parse(text, path)?;
            Ok(Summary {
                file: path.to_path_buf(),
                kind: ConfigKind::Image,
                services: c.services.keys().cloned().collect(),
                network: None,
            })
        }
        ConfigKind::Drive => {
            let d = DriveConfig::parse(text, path)?;
            let extras: BTreeMap<_, _> = d
                .services
                .iter()
                .filter_map(|(n, s)| match s {
                    DriveService::Extra(s) => Some((n.clone(), (**s).clone())),
                    DriveService::Override { .. } => None,
                })
                .collect();
            let cycles: Vec<ConfigError> = find_cycles(&extras)
                .into_iter()
                .map(|c| {
                    d.origin
                        .error(format!("services.{}.after", c[0]), Problem::Cycle(c))
                })
                .collect();
            if !cycles.is_empty() {
                return Err(cycles);
            }
            Ok(Summary {
                file: path.to_path_buf(),
                kind: ConfigKind::Drive,
                services: d.services.keys().cloned().collect(),
                network: d.network_plan().map(|p| describe(&p)),
            })
        }
    }
}

/// A network plan in one phrase: `192.0.2.10/24 via 192.0.2.1 on eth0`, `DHCP on the VM's
/// one Ethernet interface` (no device named: whatever its name, found at bring-up).
pub fn describe(p: &NetworkPlan) -> String {
    let how = match &p.method {
        AddressMethod::Off => "no address".to_string(),
        AddressMethod::Dhcp => "DHCP".to_string(),
        AddressMethod::Static {
            addresses,
            gateway,
            gateway6,
        } => {
            let mut s: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            s.extend(gateway.map(|g| format!("via {g}")));
            s.extend(gateway6.map(|g| format!("via {g}")));
            s.join(" ")
        }
    };
    format!("{how} on {}", p.interface)
}

/// Reads and checks `path`: what `vminit --check-config FILE` runs. The operator names the
/// file, so a symlink is followed; the target is still read only if regular and small.
pub fn check_config_file(path: &Path) -> Result<Summary, Vec<ConfigError>> {
    let text = crate::error::read_file(path, true)?;
    check_config_text(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(t: &str) -> ConfigKind {
        kind_of(t, Path::new("f")).unwrap()
    }

    #[test]
    fn kind_by_content() {
        assert_eq!(kind(""), ConfigKind::Image);
        assert_eq!(
            kind("log = \"info\"\n[network]\ndhcp = true\n"),
            ConfigKind::Image
        );
        assert_eq!(kind("hostname = \"a\"\n"), ConfigKind::Drive);
        assert_eq!(kind("[services.a]\ncommand = [\"x\"]\n"), ConfigKind::Image);
        assert_eq!(
            kind("[services.a]\nenv = { A = \"1\" }\n"),
            ConfigKind::Drive
        );
    }

    #[test]
    fn image_with_network_reports_the_contract_rule() {
        let e = check_config_text("log = \"info\"\n[network]\ndhcp = true\n", Path::new("f"))
            .unwrap_err();
        assert_eq!(e[0].problem, Problem::NetworkInImage);
    }

    #[test]
    fn drive_file_summary_and_cycles() {
        let s = check_config_text(
            "[network]\ndhcp = true\n[services.a]\nenv = { A = \"1\" }\n",
            Path::new("d"),
        )
        .unwrap();
        assert_eq!(s.kind, ConfigKind::Drive);
        assert_eq!(s.services, vec!["a"]);
        assert!(
            s.to_string()
                .contains("network: DHCP on the VM's one Ethernet interface"),
            "{s}"
        );
        let e = check_config_text(
            "env = {}\n[services.a]\ncommand = [\"x\"]\nafter = [\"b\"]\n[services.b]\ncommand = [\"x\"]\nafter = [\"a\"]\n",
            Path::new("d"),
        )
        .unwrap_err();
        assert!(matches!(&e[0].problem, Problem::Cycle(c) if c.len() == 3));
    }

    #[test]
    fn file_errors_list_every_problem_with_location() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vminit.toml");
        std::fs::write(&p, "log = \"loud\"\n[services.a]\ncommand = []\n[services.b]\ncommand = [\"x\"]\nafter = [\"zz\"]\n").unwrap();
        let e = check_config_file(&p).unwrap_err();
        let lines: Vec<usize> = e.iter().map(|e| e.pos.unwrap().line).collect();
        assert_eq!(lines, vec![1, 3, 6], "{e:#?}");
        for err in &e {
            assert!(err.to_string().starts_with(&p.display().to_string()));
        }
        std::fs::write(&p, "[services.a]\ncommand = [\"/bin/a\"]\n").unwrap();
        let s = check_config_file(&p).unwrap();
        assert_eq!(s.kind, ConfigKind::Image);
        assert!(check_config_file(&dir.path().join("missing")).is_err());
        std::fs::write(
            &p,
            "[network]\naddresses = [\"192.0.2.10/24\"]\ngateway = \"192.0.2.1\"\n",
        )
        .unwrap();
        let s = check_config_file(&p).unwrap().to_string();
        assert!(
            s.ends_with("network: 192.0.2.10/24 via 192.0.2.1 on the VM's one Ethernet interface"),
            "{s}"
        );
    }

    #[test]
    fn five_mistakes_are_five_errors_in_one_run() {
        let text = "log = \"info\"\n\
                    [network]\n\
                    dhcp = true\n\
                    [services.web]\n\
                    command = \"sleep 1\"\n\
                    restart = \"sometimes\"\n\
                    ready_timeout = \"10\"\n\
                    after = [\"db\"]\n";
        let e = check_config_text(text, Path::new("vminit.toml")).unwrap_err();
        let got: Vec<(usize, &str)> = e
            .iter()
            .map(|e| (e.pos.unwrap().line, e.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "network"),
                (5, "services.web.command"),
                (6, "services.web.restart"),
                (7, "services.web.ready_timeout"),
                (8, "services.web.after"),
            ],
            "{e:#?}"
        );
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            msgs[1].contains("command = [\"sleep\", \"1\"]"),
            "{}",
            msgs[1]
        );
        assert!(msgs[2].contains("sometimes"), "{}", msgs[2]);
        assert!(msgs[3].contains("add a unit: \"10s\""), "{}", msgs[3]);
        assert!(msgs[4].contains("\"db\""), "{}", msgs[4]);
        for m in &msgs {
            assert!(m.starts_with("vminit.toml:"), "{m}");
        }
    }

    #[test]
    fn systemd_spellings_name_the_vminit_key() {
        let text = "[services.web]\nExecStart = \"/bin/web\"\nRestart = \"always\"\n\
                    RestartSec = \"5\"\nAfter = \"db\"\n";
        let e = check_config_text(text, Path::new("f")).unwrap_err();
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        let find = |k: &str| {
            msgs.iter()
                .find(|m| m.contains(k))
                .cloned()
                .unwrap_or_default()
        };
        assert!(find("ExecStart").contains("vminit's command"), "{msgs:#?}");
        assert!(
            find("field `Restart`").contains("systemd's Restart= is vminit's restart"),
            "{msgs:#?}"
        );
        assert!(find("RestartSec").contains("backoff"), "{msgs:#?}");
        assert!(find("After").contains("after = [\"name\"]"), "{msgs:#?}");
        assert!(
            msgs.iter().any(|m| m.contains("missing field `command`")),
            "{msgs:#?}"
        );
        // four unknown keys and the missing command, each on its own line
        assert_eq!(e.len(), 5, "{msgs:#?}");
    }
}
