//! The services the supervisor runs: the image config's, adjusted and extended by the
//! config drive. Owns the merge and the checks of the merged set.
//!
//! Environment precedence, lowest to highest:
//! 1. the service's own `env` in the image config (or in the drive, for a drive service);
//! 2. the drive's top-level `[env]`, added to every service;
//! 3. the drive's `[services.NAME.env]` for that service.
//!
//! So a host can set `HTTPS_PROXY` for everything with `[env]` and still give one service a
//! different value. A drive `[services.NAME]` with a `command` is a new service; one that
//! reuses an image service's name is an error (the drive tunes the image, it does not
//! replace its programs), as is an env override for a service the image does not have.
//! `after` targets and cycles are checked over the merged set, since a drive service may
//! come after an image service.
//!
//! A drive with any error is refused as a whole: its `[network]`, `hostname`, `[env]` and
//! services. The image's own services then run as configured and the errors are reported
//! (contract §2: "an error in the drive's file never takes the image's own services down").
//! [`resolve_services`] applies that rule; a drive that fails to parse never gets here (the
//! caller has no [`DriveConfig`], which is the same outcome).

use std::collections::BTreeMap;

use crate::drive::{DriveConfig, DriveService};
use crate::error::{ConfigError, Problem};
use crate::image::ImageConfig;
use crate::service::ServiceConfig;
use crate::validate::check_relations;

/// The image's services with the drive's applied (either may be absent: a drive may bring
/// the only services of an image without a config). Every problem of the merge is returned.
pub fn merge_services(
    image: Option<&ImageConfig>,
    drive: Option<&DriveConfig>,
) -> Result<BTreeMap<String, ServiceConfig>, Vec<ConfigError>> {
    let image_services = image.map(|i| &i.services);
    let mut services = image_services.cloned().unwrap_or_default();
    let image_origin = image.map(|i| i.origin.clone()).unwrap_or_default();
    let Some(drive) = drive else {
        let errors = check_relations(&services, &[], |_| &image_origin);
        return if errors.is_empty() {
            Ok(services)
        } else {
            Err(errors)
        };
    };
    let in_image = |name: &str| image_services.is_some_and(|s| s.contains_key(name));
    let image_names: Vec<String> = image_services
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    let mut errors = Vec::new();
    for (name, s) in &drive.services {
        let key = format!("services.{name}");
        match s {
            DriveService::Extra(_) if in_image(name) => {
                errors.push(
                    drive
                        .origin
                        .error(format!("{key}.command"), Problem::RedefinesImageService),
                );
            }
            DriveService::Extra(s) => {
                services.insert(name.clone(), (**s).clone());
            }
            DriveService::Override { .. } if !in_image(name) => {
                errors.push(drive.origin.error(
                    format!("{key}.env"),
                    Problem::OverrideOfUnknownService {
                        known: image_names.clone(),
                    },
                ));
            }
            DriveService::Override { .. } => {}
        }
    }
    for (name, s) in services.iter_mut() {
        s.env
            .extend(drive.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(DriveService::Override { env }) = drive.services.get(name) {
            s.env
                .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let from_drive = |n: &str| matches!(drive.services.get(n), Some(DriveService::Extra(_)));
    errors.extend(check_relations(&services, &[], |n| {
        if from_drive(n) {
            &drive.origin
        } else {
            &image_origin
        }
    }));
    if errors.is_empty() {
        Ok(services)
    } else {
        Err(errors)
    }
}

/// The service set to run, and what was wrong with the drive.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub services: BTreeMap<String, ServiceConfig>,
    /// Non-empty: the drive was refused as a whole. The caller reports these (console,
    /// `/health` errors, status `degraded`) and uses nothing else of the drive either: no
    /// `[network]` (arbitrate without the drive), no `hostname`.
    pub drive_errors: Vec<ConfigError>,
}

impl Resolved {
    /// Whether the drive's contents may be used (network, hostname): it merged cleanly.
    pub fn drive_accepted(&self) -> bool {
        self.drive_errors.is_empty()
    }
}

/// [`merge_services`] with the module's fallback rule: if the drive does not merge, the
/// image's services alone, and the drive's errors to report.
pub fn resolve_services(image: Option<&ImageConfig>, drive: Option<&DriveConfig>) -> Resolved {
    match merge_services(image, drive) {
        Ok(services) => Resolved {
            services,
            drive_errors: Vec::new(),
        },
        Err(drive_errors) => Resolved {
            // The image alone was validated when it was parsed; should it still fail here,
            // nothing runs rather than an unchecked set.
            services: merge_services(image, None).unwrap_or_default(),
            drive_errors,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn image(t: &str) -> ImageConfig {
        ImageConfig::parse(t, Path::new("image.toml")).unwrap()
    }
    fn drive(t: &str) -> DriveConfig {
        DriveConfig::parse(t, Path::new("drive.toml")).unwrap()
    }

    const IMAGE: &str = r#"
[services.web]
command = ["/bin/web"]
env = { A = "image", B = "image", C = "image" }
[services.db]
command = ["/bin/db"]
env = { A = "image-db" }
"#;

    #[test]
    fn env_precedence() {
        let d = drive(
            r#"
env = { B = "drive", C = "drive", D = "drive" }
[services.web]
env = { C = "override" }
"#,
        );
        let s = merge_services(Some(&image(IMAGE)), Some(&d)).unwrap();
        let web = &s["web"].env;
        assert_eq!(web["A"], "image");
        assert_eq!(web["B"], "drive");
        assert_eq!(web["C"], "override");
        assert_eq!(web["D"], "drive");
        let db = &s["db"].env;
        assert_eq!(db["A"], "image-db");
        assert_eq!(db["C"], "drive");
    }

    #[test]
    fn without_drive_the_image_is_unchanged() {
        let i = image(IMAGE);
        assert_eq!(merge_services(Some(&i), None).unwrap(), i.services);
    }

    #[test]
    fn extra_services_are_added_with_drive_env() {
        let d = drive(
            r#"
env = { X = "drive" }
[services.probe]
command = ["/bin/probe"]
after = ["web"]
env = { X = "own" }
"#,
        );
        let s = merge_services(Some(&image(IMAGE)), Some(&d)).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s["probe"].after, vec!["web"]);
        // the drive's [env] outranks a service's own env, also for drive services
        assert_eq!(s["probe"].env["X"], "drive");
    }

    #[test]
    fn redefining_an_image_service_is_an_error() {
        let d = drive("\n\n[services.web]\ncommand = [\"/bin/evil\"]\n");
        let e = merge_services(Some(&image(IMAGE)), Some(&d)).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].problem, Problem::RedefinesImageService);
        assert_eq!(e[0].key, "services.web.command");
        assert_eq!(e[0].pos.unwrap().line, 4);
        assert!(e[0].to_string().starts_with("drive.toml:4:"), "{}", e[0]);
    }

    #[test]
    fn override_of_unknown_service_is_an_error() {
        let d = drive("[services.wbe]\nenv = { A = \"1\" }\n");
        let e = merge_services(Some(&image(IMAGE)), Some(&d)).unwrap_err();
        assert!(e[0].to_string().contains("db, web"), "{}", e[0]);
        assert_eq!(e[0].key, "services.wbe.env");
    }

    #[test]
    fn relations_are_checked_over_the_merged_set() {
        let i = image("[services.a]\ncommand = [\"x\"]\n");
        let d = drive("[services.b]\ncommand = [\"x\"]\nafter = [\"c\"]\n[services.c]\ncommand = [\"x\"]\nafter = [\"b\"]\n[services.d]\ncommand = [\"x\"]\nafter = [\"nope\"]\n");
        let e = merge_services(Some(&i), Some(&d)).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|e| e.to_string().contains("b -> c -> b")));
        assert!(e.iter().all(|e| e.file == Path::new("drive.toml")));
    }

    #[test]
    fn a_drive_brings_services_to_an_image_without_config() {
        let d = drive(
            "env = { FLEET = \"a\" }\n[services.agent]\ncommand = [\"/bin/agent\"]\nafter = [\"network\"]\n",
        );
        let s = merge_services(None, Some(&d)).unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), ["agent"]);
        assert_eq!(s["agent"].env["FLEET"], "a");
        let r = resolve_services(None, Some(&d));
        assert!(r.drive_accepted());
        assert_eq!(r.services, s);
        assert_eq!(merge_services(None, None).unwrap(), BTreeMap::new());
    }

    #[test]
    fn a_drive_mistake_falls_back_to_the_image_services() {
        let i = image(IMAGE);
        let d = drive(
            "env = { X = \"drive\" }\n[services.agent]\ncommand = [\"/bin/agent\"]\n[services.typo.env]\nA = \"1\"\n",
        );
        let e = merge_services(Some(&i), Some(&d)).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let msg = e[0].to_string();
        assert!(msg.contains("services.typo.env"), "{msg}");
        assert!(msg.contains("image services: db, web"), "{msg}");
        let r = resolve_services(Some(&i), Some(&d));
        assert!(!r.drive_accepted());
        assert_eq!(r.drive_errors, e);
        // the image's services as configured: no drive env, no drive service
        assert_eq!(r.services, i.services);
        assert!(!r.services["web"].env.contains_key("X"));
    }

    #[test]
    fn an_override_without_image_config_names_no_services() {
        let d = drive("[services.typo.env]\nA = \"1\"\n");
        let r = resolve_services(None, Some(&d));
        assert!(r.services.is_empty());
        let msg = r.drive_errors[0].to_string();
        assert!(
            msg.contains("typo") && msg.contains("image services: none"),
            "{msg}"
        );
    }
}
