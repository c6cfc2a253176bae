//! Which source configures the network (contract §2): the kernel cmdline `ip=`, the config
//! drive's `[network]`, or neither. Both is a conflict: nothing is applied from either, and
//! the error names both. Owns that decision only.
//!
//! Decisions: an `ip=` that is present counts even when it says `off` (it is still the
//! operator saying how the network is to be, so a drive `[network]` next to it conflicts).
//! The host name comes from the drive's `hostname` or from the `ip=` hostname field;
//! both set and different is a conflict too. With no network source, the drive's
//! `hostname` is still to be applied by the caller ([`DriveConfig::hostname`]).

use std::fmt;

use crate::drive::DriveConfig;
use crate::ip::{self, IpError};
use crate::network::{NetworkPlan, NetworkSource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkError {
    /// `ip=` on the cmdline and `[network]` on the drive.
    Conflict { ip_value: String, drive: String },
    /// `ip=` present but malformed.
    Ip(IpError),
    /// Different host names in `ip=` and on the drive.
    HostnameConflict {
        ip_hostname: String,
        drive_hostname: String,
        drive: String,
    },
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::Conflict { ip_value, drive } => write!(
                f,
                "network: two sources, none applied: kernel cmdline ip={ip_value:?} and \
                 [network] on config drive {drive}; remove one"
            ),
            NetworkError::Ip(e) => e.fmt(f),
            NetworkError::HostnameConflict {
                ip_hostname,
                drive_hostname,
                drive,
            } => write!(
                f,
                "network: two host names, none applied: {ip_hostname:?} in kernel cmdline ip= \
                 and {drive_hostname:?} on config drive {drive}; remove one"
            ),
        }
    }
}

impl std::error::Error for NetworkError {}

impl NetworkError {
    /// Every source involved, for messages.
    pub fn sources(&self) -> &'static [NetworkSource] {
        match self {
            NetworkError::Ip(_) => &[NetworkSource::Cmdline],
            NetworkError::Conflict { .. } | NetworkError::HostnameConflict { .. } => {
                &[NetworkSource::Cmdline, NetworkSource::Drive]
            }
        }
    }

    /// What `network.source` reports for a refused network: `cmdline` in every case, since
    /// `ip=` is present in each (contract §2: "source is cmdline when ip= is on the kernel
    /// cmdline"); a refused `ip=` must not read as "no source".
    pub fn network_source(&self) -> NetworkSource {
        NetworkSource::Cmdline
    }
}

impl From<IpError> for NetworkError {
    fn from(e: IpError) -> Self {
        NetworkError::Ip(e)
    }
}

/// Decides the network plan. `cmdline_ip` is the value of `ip=` if present;
/// `drive` the config drive with a description for messages (`"/dev/vdb (vfat)"`).
pub fn arbitrate(
    cmdline_ip: Option<&str>,
    drive: Option<(&DriveConfig, &str)>,
) -> Result<Option<NetworkPlan>, NetworkError> {
    match (cmdline_ip, drive) {
        (Some(v), Some((d, desc))) if d.network.is_some() => Err(NetworkError::Conflict {
            ip_value: v.to_string(),
            drive: desc.to_string(),
        }),
        (Some(v), drive) => {
            let mut plan = ip::parse(v)?.to_plan();
            if let Some((d, desc)) = drive {
                match (&plan.hostname, &d.hostname) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(NetworkError::HostnameConflict {
                            ip_hostname: a.clone(),
                            drive_hostname: b.clone(),
                            drive: desc.to_string(),
                        })
                    }
                    (None, Some(b)) => plan.hostname = Some(b.clone()),
                    _ => {}
                }
            }
            Ok(Some(plan))
        }
        (None, Some((d, _))) => Ok(d.network_plan()),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::network::AddressMethod;

    fn drive(t: &str) -> DriveConfig {
        DriveConfig::parse(t, Path::new("/mnt/vminit.toml")).unwrap()
    }

    #[test]
    fn no_source() {
        assert_eq!(arbitrate(None, None), Ok(None));
        let d = drive("hostname = \"vm\"\n");
        assert_eq!(arbitrate(None, Some((&d, "/dev/vdb (vfat)"))), Ok(None));
    }

    #[test]
    fn cmdline_only() {
        let p = arbitrate(Some("dhcp"), None).unwrap().unwrap();
        assert_eq!(p.source, NetworkSource::Cmdline);
        assert_eq!(p.method, AddressMethod::Dhcp);
    }

    #[test]
    fn drive_only() {
        let d = drive("hostname = \"vm1\"\n[network]\ndhcp = true\n");
        let p = arbitrate(None, Some((&d, "/dev/vdb (vfat)")))
            .unwrap()
            .unwrap();
        assert_eq!(p.source, NetworkSource::Drive);
        assert_eq!(p.hostname.as_deref(), Some("vm1"));
    }

    #[test]
    fn both_is_a_conflict_naming_both() {
        let d = drive("[network]\naddresses = [\"192.0.2.10/24\"]\n");
        for ip in [
            "10.0.0.2::10.0.0.1:255.255.255.0::eth0:off",
            "off",
            "garbage",
        ] {
            let e = arbitrate(Some(ip), Some((&d, "/dev/vdb (vfat)"))).unwrap_err();
            assert_eq!(
                e,
                NetworkError::Conflict {
                    ip_value: ip.into(),
                    drive: "/dev/vdb (vfat)".into()
                }
            );
            let msg = e.to_string();
            assert!(msg.contains(ip) && msg.contains("/dev/vdb (vfat)"), "{msg}");
            assert_eq!(e.network_source(), NetworkSource::Cmdline);
            assert_eq!(e.sources(), [NetworkSource::Cmdline, NetworkSource::Drive]);
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn malformed_ip_is_the_ip_error() {
        let e = arbitrate(Some("192.168.100.X::undefined:undefined::eth0:off"), None).unwrap_err();
        assert!(matches!(&e, NetworkError::Ip(i) if i.problems.len() == 3));
        assert!(e.to_string().contains("client-ip"));
        assert_eq!(e.network_source(), NetworkSource::Cmdline);
        assert_eq!(e.sources(), [NetworkSource::Cmdline]);
    }

    #[test]
    fn hostnames() {
        let d = drive("hostname = \"from-drive\"\n");
        let p = arbitrate(Some("::::::off"), Some((&d, "d")))
            .unwrap()
            .unwrap();
        assert_eq!(p.hostname.as_deref(), Some("from-drive"));
        let p = arbitrate(Some("::::from-drive::off"), Some((&d, "d")))
            .unwrap()
            .unwrap();
        assert_eq!(p.hostname.as_deref(), Some("from-drive"));
        let e = arbitrate(Some("::::other::off"), Some((&d, "d"))).unwrap_err();
        assert!(matches!(e, NetworkError::HostnameConflict { .. }));
        assert!(e.to_string().contains("other") && e.to_string().contains("from-drive"));
    }
}
