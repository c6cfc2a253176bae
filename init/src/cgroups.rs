//! The init's side of the services' cgroups: where the layout goes, the init's own OOM
//! protection, and how a missing layout is reported. The layout itself is
//! `supervisor::cgroup`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use guest_config::ServiceConfig;
use supervisor::cgroup::{delegation, own_cgroup, Hierarchy, Scope};

const MOUNT: &str = "/sys/fs/cgroup";

/// The OOM killer never picks PID 1 (its death is a kernel panic); it picks a service.
const OOM_SCORE_ADJ: &str = "-1000";

/// Sets up the layout for `services`. Problems that matter to the host (limits that cannot
/// be applied, the init's protection not written, a controller offered but refused) go to
/// `errors`, which the boot publishes in `/health` `errors[]`; the rest is logged. `None`:
/// services run in process groups.
pub fn set_up(
    pid1: bool,
    services: &BTreeMap<String, ServiceConfig>,
    errors: &mut Vec<String>,
) -> Option<Hierarchy> {
    if pid1 {
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ) {
            log::warn!("cannot set the init's oom_score_adj to {OOM_SCORE_ADJ}: {e}");
        }
    }
    let (base, scope) = if pid1 {
        (PathBuf::from(MOUNT), Scope::Pid1)
    } else {
        let own = own_cgroup(Path::new("/proc/self/cgroup"));
        let base = match &own {
            Some(own) => Path::new(MOUNT).join(own.trim_start_matches('/')),
            None => PathBuf::from(MOUNT).join("-"),
        };
        let facts = delegation::Facts::read(&base, own);
        (base, Scope::Started(facts))
    };
    match Hierarchy::set_up(&base, scope, std::process::id()) {
        Ok(h) => {
            let delegated = h
                .delegated()
                .map(|d| format!(" (delegated to vminit: {d})"))
                .unwrap_or_default();
            log::info!(
                "cgroups: services in {} with controllers [{}]{delegated}",
                h.dir().display(),
                h.enabled().join(" ")
            );
            if !h.missing().is_empty() {
                log::warn!(
                    "cgroups: the kernel offers no {} controller: limits needing it are not applied",
                    h.missing().join(", ")
                );
            }
            // An init left unprotected (or a controller offered but refused) is what the
            // host needs to know before a runaway service starves `/health`.
            for p in &h.problems {
                let msg = format!("cgroups: {p}");
                log::warn!("{msg}");
                errors.push(msg);
            }
            Some(h)
        }
        Err(e) => {
            let limited: Vec<&str> = services
                .iter()
                .filter(|(_, c)| c.has_cgroup_limits())
                .map(|(n, _)| n.as_str())
                .collect();
            if limited.is_empty() {
                log::info!("cgroups: {e}; services run in process groups only");
            } else {
                let msg = format!(
                    "cgroups: {e}; limits of {} not applied, services run unconfined",
                    limited.join(", ")
                );
                log::error!("{msg}");
                errors.push(msg);
            }
            None
        }
    }
}
