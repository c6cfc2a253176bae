//! Off PID 1: is the cgroup vminit was started in ours to divide? A pure decision over facts
//! read once ([`Facts::read`]), so each rule is unit-tested without a delegating manager.
//!
//! `access(W_OK)` on `cgroup.subtree_control` alone answers yes for root on any cgroup, even a
//! systemd service without `Delegate=yes`, whose cgroup systemd goes on managing (and would
//! undo vminit's layout, or have its own undone). So a cgroup counts as delegated when one of
//! these holds (cgroup-v2.rst, "Delegation"; systemd.resource-control(5), `Delegate=`):
//!
//! - **the root of our cgroup namespace** (`/proc/self/cgroup` says `0::/`: a container's
//!   cgroup, which its runtime handed over whole) and `cgroup.subtree_control` is writable;
//! - **marked**: the directory carries `trusted.delegate` (a system manager) or
//!   `user.delegate` (a user manager) equal to `1`, as systemd ≥ 251 marks the cgroups it
//!   delegates;
//! - **owned**: we are not root, and `cgroup.procs` and `cgroup.subtree_control` belong to our
//!   euid: the way a delegation to an unprivileged user is granted (chown of those files).

use std::fmt;
use std::path::Path;

/// What decides delegation, read from the cgroup and from `/proc/self/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Our cgroup as `/proc/self/cgroup` names it (`0::PATH`), if it has a unified line.
    pub own: Option<String>,
    /// `cgroup.subtree_control` is writable by us (`access(W_OK)`).
    pub writable: bool,
    /// The xattr found equal to `1` (`trusted.delegate` or `user.delegate`), if any.
    pub marked: Option<&'static str>,
    /// Our effective uid.
    pub euid: u32,
    /// Owners of `cgroup.procs` and `cgroup.subtree_control` (`None`: not stat-able).
    pub procs_owner: Option<u32>,
    pub subtree_owner: Option<u32>,
}

/// Why the cgroup counts as delegated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delegated {
    /// The root of our cgroup namespace, writable.
    NamespaceRoot,
    /// Marked by its manager with this xattr = `1`.
    Marked(&'static str),
    /// Its `cgroup.procs` and `cgroup.subtree_control` are owned by our (non-root) euid.
    Owned,
}

impl fmt::Display for Delegated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delegated::NamespaceRoot => f.write_str("the root of our cgroup namespace"),
            Delegated::Marked(x) => write!(f, "marked {x} = 1"),
            Delegated::Owned => f.write_str("owned by our uid"),
        }
    }
}

/// The xattrs a manager sets on a cgroup it delegates, in the order checked.
pub const XATTRS: [&str; 2] = ["trusted.delegate", "user.delegate"];

/// The decision: `Some(why)` when the cgroup is ours to divide.
pub fn decide(f: &Facts) -> Option<Delegated> {
    if f.own.as_deref() == Some("/") && f.writable {
        return Some(Delegated::NamespaceRoot);
    }
    if let Some(x) = f.marked {
        return Some(Delegated::Marked(x));
    }
    let ours = |o: Option<u32>| o == Some(f.euid);
    if f.euid != 0 && ours(f.procs_owner) && ours(f.subtree_owner) {
        return Some(Delegated::Owned);
    }
    None
}

impl Facts {
    /// Reads the facts for cgroup directory `dir`; `own` is our cgroup from
    /// `/proc/self/cgroup` ([`super::own_cgroup`]). Nothing here fails: what cannot be read
    /// counts against delegation.
    pub fn read(dir: &Path, own: Option<String>) -> Facts {
        let subtree = dir.join("cgroup.subtree_control");
        let owner = |p: &Path| rustix::fs::stat(p).ok().map(|s| s.st_uid);
        Facts {
            own,
            writable: rustix::fs::access(&subtree, rustix::fs::Access::WRITE_OK).is_ok(),
            marked: XATTRS.into_iter().find(|x| xattr_is_one(dir, x)),
            euid: rustix::process::geteuid().as_raw(),
            procs_owner: owner(&dir.join("cgroup.procs")),
            subtree_owner: owner(&subtree),
        }
    }

    /// Why [`decide`] said no, for the one console line.
    pub fn why_not(&self) -> String {
        let ns = match self.own.as_deref() {
            Some("/") => "the root of our cgroup namespace but not writable".to_string(),
            Some(p) => format!("not the root of our cgroup namespace (we are in {p})"),
            None => "no cgroup v2 line in /proc/self/cgroup".to_string(),
        };
        let owned = if self.euid == 0 {
            "running as root, where file ownership proves nothing".to_string()
        } else {
            format!(
                "cgroup.procs and cgroup.subtree_control not both owned by uid {}",
                self.euid
            )
        };
        format!("{ns}, no trusted.delegate or user.delegate = 1, {owned}")
    }
}

/// `getxattr(2)`: whether `name` on `dir` is exactly `1` (systemd writes `"1"`; a trailing
/// newline is tolerated). Absent (`ENODATA`), unsupported, longer or unreadable: no.
fn xattr_is_one(dir: &Path, name: &str) -> bool {
    let mut buf = [0u8; 8];
    rustix::fs::getxattr(dir, name, &mut buf[..])
        .is_ok_and(|n| matches!(buf.get(..n), Some(b"1" | b"1\n")))
}

#[cfg(test)]
mod tests {
    use rustix::io::Errno;

    use super::*;

    fn facts(own: &str) -> Facts {
        Facts {
            own: Some(own.to_string()),
            writable: true,
            marked: None,
            euid: 0,
            procs_owner: Some(0),
            subtree_owner: Some(0),
        }
    }

    #[test]
    fn root_on_a_writable_cgroup_nobody_delegated_is_not_enough() {
        // A systemd service without Delegate=yes: root, the files writable and owned by root.
        let f = facts("/system.slice/agent.service");
        assert_eq!(decide(&f), None);
        let why = f.why_not();
        assert!(
            why.contains("/system.slice/agent.service") && why.contains("running as root"),
            "{why}"
        );
    }

    #[test]
    fn the_root_of_our_cgroup_namespace_counts_when_writable() {
        assert_eq!(decide(&facts("/")), Some(Delegated::NamespaceRoot));
        let ro = Facts {
            writable: false,
            ..facts("/")
        };
        assert_eq!(decide(&ro), None);
        assert!(ro.why_not().contains("not writable"), "{}", ro.why_not());
    }

    #[test]
    fn a_delegate_xattr_counts_for_root_and_for_users() {
        for x in XATTRS {
            let f = Facts {
                marked: Some(x),
                ..facts("/system.slice/vminit.service")
            };
            assert_eq!(decide(&f), Some(Delegated::Marked(x)));
            let user = Facts { euid: 1000, ..f };
            assert_eq!(decide(&user), Some(Delegated::Marked(x)));
        }
    }

    #[test]
    fn ownership_counts_only_off_root_and_only_for_both_files() {
        let own = "/user.slice/user-1000.slice/vminit.scope";
        let user = Facts {
            euid: 1000,
            procs_owner: Some(1000),
            subtree_owner: Some(1000),
            ..facts(own)
        };
        assert_eq!(decide(&user), Some(Delegated::Owned));
        let half = Facts {
            subtree_owner: Some(0),
            ..user.clone()
        };
        assert_eq!(decide(&half), None);
        assert!(half.why_not().contains("uid 1000"), "{}", half.why_not());
        let unknown = Facts {
            procs_owner: None,
            ..user
        };
        assert_eq!(decide(&unknown), None);
    }

    #[test]
    fn no_unified_line_is_said() {
        let f = Facts {
            own: None,
            ..facts("/")
        };
        assert_eq!(decide(&f), None);
        assert!(f.why_not().contains("/proc/self/cgroup"), "{}", f.why_not());
    }

    /// The facts as read from a real directory: owners by stat, the mark by getxattr(2).
    #[test]
    fn facts_are_read_from_the_directory_and_its_xattrs() {
        let t = tempfile::tempdir().unwrap();
        for f in ["cgroup.procs", "cgroup.subtree_control"] {
            std::fs::write(t.path().join(f), "").unwrap();
        }
        let euid = rustix::process::geteuid().as_raw();
        let f = Facts::read(t.path(), Some("/a".into()));
        assert_eq!(f.own.as_deref(), Some("/a"));
        assert!(f.writable);
        assert_eq!((f.procs_owner, f.subtree_owner), (Some(euid), Some(euid)));
        assert_eq!(f.marked, None);
        let set = |v: &[u8]| {
            rustix::fs::setxattr(
                t.path(),
                "user.delegate",
                v,
                rustix::fs::XattrFlags::empty(),
            )
        };
        match set(b"0") {
            Ok(()) => {}
            Err(Errno::NOTSUP) => {
                eprintln!("skipped: the tempdir's file system has no user xattrs");
                return;
            }
            Err(e) => panic!("setxattr user.delegate: {e}"),
        }
        assert_eq!(Facts::read(t.path(), None).marked, None, "0 is not 1");
        set(b"1").unwrap();
        assert_eq!(Facts::read(t.path(), None).marked, Some("user.delegate"));
        // Missing files: no owners, not writable.
        let empty = tempfile::tempdir().unwrap();
        let f = Facts::read(empty.path(), None);
        assert!(!f.writable && f.procs_owner.is_none() && f.subtree_owner.is_none());
    }
}
