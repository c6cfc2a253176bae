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

use std::collections::BTreeMap;

use crate::drive::{DriveConfig, DriveService};
use crate::error::{ConfigError, Problem};
use crate::image::ImageConfig;
use crate::service::ServiceConfig;
use crate::validate::check_relations;

pub fn merge_services(
    image: &ImageConfig,
    drive: Option<&DriveConfig>,
) -> Result<BTreeMap<String, ServiceConfig>, Vec<ConfigError>> {
    let mut services = image.services.clone();
    let mut errors = Vec::new();
    let Some(drive) = drive else {
        let errors = check_relations(&services, &[], |_| &image.origin);
        return if errors.is_empty() {
            Ok(services)
        } else {
            Err(errors)
        };
    };
    let image_names: Vec<String> = image.services.keys().cloned().collect();
    for (name, s) in &drive.services {
        let key = format!("services.{name}");
        match s {
            DriveService::Extra(_) if image.services.contains_key(name) => {
                errors.push(
                    drive
                        .origin
                        .error(format!("{key}.command"), Problem::RedefinesImageService),
                );
            }
            DriveService::Extra(s) => {
                services.insert(name.clone(), (**s).clone());
            }
            DriveService::Override { .. } if !image.services.contains_key(name) => {
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
            &image.origin
        }
    }));
    if errors.is_empty() {
        Ok(services)
    } else {
        Err(errors)
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
        let s = merge_services(&image(IMAGE), Some(&d)).unwrap();
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
        assert_eq!(merge_services(&i, None).unwrap(), i.services);
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
        let s = merge_services(&image(IMAGE), Some(&d)).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s["probe"].after, vec!["web"]);
        // the drive's [env] outranks a service's own env, also for drive services
        assert_eq!(s["probe"].env["X"], "drive");
    }

    #[test]
    fn redefining_an_image_service_is_an_error() {
        let d = drive("\n\n[services.web]\ncommand = [\"/bin/evil\"]\n");
        let e = merge_services(&image(IMAGE), Some(&d)).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].problem, Problem::RedefinesImageService);
        assert_eq!(e[0].key, "services.web.command");
        assert_eq!(e[0].pos.unwrap().line, 4);
        assert!(e[0].to_string().starts_with("drive.toml:4:"), "{}", e[0]);
    }

    #[test]
    fn override_of_unknown_service_is_an_error() {
        let d = drive("[services.wbe]\nenv = { A = \"1\" }\n");
        let e = merge_services(&image(IMAGE), Some(&d)).unwrap_err();
        assert!(e[0].to_string().contains("db, web"), "{}", e[0]);
        assert_eq!(e[0].key, "services.wbe.env");
    }

    #[test]
    fn relations_are_checked_over_the_merged_set() {
        let i = image("[services.a]\ncommand = [\"x\"]\n");
        let d = drive("[services.b]\ncommand = [\"x\"]\nafter = [\"c\"]\n[services.c]\ncommand = [\"x\"]\nafter = [\"b\"]\n[services.d]\ncommand = [\"x\"]\nafter = [\"nope\"]\n");
        let e = merge_services(&i, Some(&d)).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|e| e.to_string().contains("b -> c -> b")));
        assert!(e.iter().all(|e| e.file == Path::new("drive.toml")));
    }
}
