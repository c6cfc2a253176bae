//! Resolves `user`/`group` names to ids from `<root>/passwd` and `<root>/group`, parsed here
//! (no NSS in a static binary). Owns parsing and lookup only; setting ids is `spawn`'s job.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The identity a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid included).
    pub groups: Vec<u32>,
    /// For `HOME`/`USER`, when a user was named.
    pub home: Option<String>,
    pub user: Option<String>,
}

/// A `passwd` line: name, uid, gid, home.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// A `group` line: name, gid, members.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// A uid or gid. `4294967295` is refused: it is `-1`, which setuid(2) and setgid(2) take as
/// "leave unchanged", so a service named to run as it would keep the init's root identity.
fn parse_id(s: &str) -> Option<u32> {
    s.parse().ok().filter(|&id| id != u32::MAX)
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: parse_id(f.get(2)?)?,
                gid: parse_id(f.get(3)?)?,
                home: f.get(5).unwrap_or(&"/").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: parse_id(f.get(2)?)?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Pure resolution from file contents. `None` when neither user nor group is named (the
/// service keeps the init's identity).
fn resolve_in(
    service: &str,
    user: Option<&str>,
    group: Option<&str>,
    passwd: &str,
    groups_text: &str,
    root: &Path,
) -> Result<Option<Creds>, Error> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let groups = parse_group(groups_text);
    let find_group = |name: &str| {
        groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.gid)
            .or_else(|| parse_id(name))
            .ok_or_else(|| Error::UnknownGroup {
                service: service.to_string(),
                group: name.to_string(),
                file: root.join("group"),
            })
    };
    let Some(user) = user else {
        let gid = find_group(group.unwrap_or_default())?;
        let uid = rustix::process::getuid().as_raw();
        return Ok(Some(Creds {
            uid,
            gid,
            groups: vec![gid],
            home: None,
            user: None,
        }));
    };
    let entry = parse_passwd(passwd)
        .into_iter()
        .find(|e| e.name == user)
        .ok_or_else(|| Error::UnknownUser {
            service: service.to_string(),
            user: user.to_string(),
            file: root.join("passwd"),
        })?;
    let gid = match group {
        Some(g) => find_group(g)?,
        None => entry.gid,
    };
    let mut supp = vec![gid];
    for g in &groups {
        if g.members.iter().any(|m| m == user) && !supp.contains(&g.gid) {
            supp.push(g.gid);
        }
    }
    Ok(Some(Creds {
        uid: entry.uid,
        gid,
        groups: supp,
        home: Some(entry.home),
        user: Some(entry.name),
    }))
}

/// Reads `<root>/passwd` and `<root>/group` (root is normally `/etc`) and resolves the names.
pub fn resolve(
    service: &str,
    user: Option<&str>,
    group: Option<&str>,
    root: &Path,
) -> Result<Option<Creds>, Error> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let read = |name: &str| -> Result<String, Error> {
        let path: PathBuf = root.join(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s),
            // A missing group file only matters if a group lookup fails.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "group" => {
                Ok(String::new())
            }
            Err(source) => Err(Error::ReadUserDb { path, source }),
        }
    };
    let passwd = if user.is_some() {
        read("passwd")?
    } else {
        String::new()
    };
    let group_text = read("group")?;
    resolve_in(service, user, group, &passwd, &group_text, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\n\
        app:x:1000:1000:App:/home/app:/bin/false\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nvideo:x:44:app,web\naudio:x:29:web\n\
        wheel:x:10:app\n";

    fn r(user: Option<&str>, group: Option<&str>) -> Result<Option<Creds>, Error> {
        resolve_in("svc", user, group, PASSWD, GROUP, Path::new("/etc"))
    }

    #[test]
    fn user_gets_its_primary_and_member_groups() {
        let c = r(Some("app"), None).unwrap().unwrap();
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.groups, vec![1000, 44, 10]);
        assert_eq!(c.home.as_deref(), Some("/home/app"));
        let c = r(Some("web"), None).unwrap().unwrap();
        assert_eq!(c.groups, vec![33, 44, 29]);
    }

    #[test]
    fn group_overrides_the_primary_gid() {
        let c = r(Some("app"), Some("video")).unwrap().unwrap();
        assert_eq!((c.uid, c.gid), (1000, 44));
        assert_eq!(c.groups, vec![44, 10]);
        let c = r(None, Some("audio")).unwrap().unwrap();
        assert_eq!(c.gid, 29);
        assert_eq!(r(None, Some("500")).unwrap().unwrap().gid, 500);
    }

    #[test]
    fn minus_one_is_no_id() {
        let passwd = "ghost:x:4294967295:0::/:/bin/false\nmix:x:5:4294967295::/:/bin/false\n";
        let group = "neg:x:4294967295:\n";
        let e = resolve_in("svc", Some("ghost"), None, passwd, group, Path::new("/etc"));
        assert!(matches!(e, Err(Error::UnknownUser { .. })), "{e:?}");
        let e = resolve_in("svc", Some("mix"), None, passwd, group, Path::new("/etc"));
        assert!(matches!(e, Err(Error::UnknownUser { .. })), "{e:?}");
        for g in ["neg", "4294967295"] {
            let e = resolve_in("svc", None, Some(g), passwd, group, Path::new("/etc"));
            assert!(matches!(e, Err(Error::UnknownGroup { .. })), "{g}: {e:?}");
        }
    }

    #[test]
    fn nothing_named_keeps_the_init_identity() {
        assert_eq!(r(None, None).unwrap(), None);
    }

    #[test]
    fn missing_names_are_clear_errors() {
        let e = r(Some("nobody"), None).unwrap_err().to_string();
        assert!(
            e.contains("\"nobody\"") && e.contains("/etc/passwd") && e.contains("svc"),
            "{e}"
        );
        let e = r(Some("app"), Some("nogroup")).unwrap_err().to_string();
        assert!(e.contains("\"nogroup\"") && e.contains("/etc/group"), "{e}");
    }

    #[test]
    fn reads_from_an_injected_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), PASSWD).unwrap();
        let c = resolve("svc", Some("web"), None, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(c.groups, vec![33], "no group file: primary only");
        let e = resolve("svc", Some("web"), None, &dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("nope/passwd"), "{e}");
    }
}
