//! Which link a plan's [`InterfaceSelector`] means (contract §2): by name, by MAC, or "the
//! VM's one Ethernet interface, whatever its name". The last is decided over what the kernel
//! says of each link: its type (`ARPHRD_ETHER`, over rtnetlink) and whether a device backs it
//! (`/sys/class/net/<if>/device`, which a virtio or PCI NIC has and a bridge, veth, dummy or
//! tun does not). The sysfs reads are [`read`]'s; [`choose`] and [`nics`] are pure.
//!
//! The sysfs root is a parameter ([`crate::Env::sys_class_net`]): a thread in another network
//! namespace still sees the sysfs of the namespace that mounted it, so the namespace tests
//! point it at a tree of their own in which their veths are "NICs".

use std::fmt;
use std::path::Path;

use guest_config::InterfaceSelector;

use crate::rtnl::Link;

/// A link as rtnetlink and sysfs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub link: Link,
    /// `Some` when `/sys/class/net/<if>/device` exists: a device backs the link. Read only
    /// for Ethernet links (the others are never a candidate).
    pub device: Option<Device>,
}

/// The device behind a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The name of `device/driver`'s target (`virtio_net`, `e1000`); `None` while no driver
    /// is bound or the link cannot be read.
    pub driver: Option<String>,
}

/// An Ethernet interface backed by a device, as error messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub driver: Option<String>,
}

impl fmt::Display for Nic {
    /// `ens3 (driver virtio_net, MAC 52:54:00:12:34:56)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (driver {}, MAC ",
            self.name,
            self.driver.as_deref().unwrap_or("unknown")
        )?;
        match self.mac {
            Some(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x})",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            None => f.write_str("none)"),
        }
    }
}

/// What a selector resolves to among the links present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Found(Link),
    /// Nothing matches (yet): the caller waits, bounded.
    Absent,
    /// [`InterfaceSelector::OnlyEthernet`] with two or more candidates: an error at once, as
    /// no wait makes one of them the right one.
    Several(Vec<Nic>),
}

/// Reads, for each Ethernet link, whether a device backs it and its driver, under `root`
/// (`/sys/class/net` in the guest). A read that fails counts as "no device": a link sysfs
/// cannot show is not one this crate can call the VM's NIC.
pub fn read(root: &Path, links: Vec<Link>) -> Vec<LinkInfo> {
    links
        .into_iter()
        .map(|link| {
            // The kernel refuses interface names with '/' and the names "." and "..", so
            // the join stays inside `root`.
            let dir = root.join(&link.name);
            let device = (link.ethernet && std::fs::symlink_metadata(dir.join("device")).is_ok())
                .then(|| Device {
                    driver: std::fs::read_link(dir.join("device").join("driver"))
                        .ok()
                        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())),
                });
            LinkInfo { link, device }
        })
        .collect()
}

/// The Ethernet links backed by a device: the candidates for
/// [`InterfaceSelector::OnlyEthernet`], and the ones a "no interface" error points at.
pub fn nics(links: &[LinkInfo]) -> Vec<Nic> {
    links
        .iter()
        .filter(|l| l.link.ethernet)
        .filter_map(|l| {
            l.device.as_ref().map(|d| Nic {
                name: l.link.name.clone(),
                mac: l.link.mac,
                driver: d.driver.clone(),
            })
        })
        .collect()
}

/// The link `sel` means among `links`.
pub fn choose(sel: &InterfaceSelector, links: &[LinkInfo]) -> Choice {
    let found = |l: Option<&LinkInfo>| l.map_or(Choice::Absent, |l| Choice::Found(l.link.clone()));
    match sel {
        InterfaceSelector::Name(n) => found(links.iter().find(|l| l.link.name == *n)),
        InterfaceSelector::Mac(m) => found(links.iter().find(|l| l.link.mac == Some(*m))),
        InterfaceSelector::OnlyEthernet => {
            let mut candidates = links
                .iter()
                .filter(|l| l.link.ethernet && l.device.is_some());
            match (candidates.next(), candidates.next()) {
                (None, _) => Choice::Absent,
                (Some(l), None) => Choice::Found(l.link.clone()),
                (Some(_), Some(_)) => {
                    let mut all = nics(links);
                    all.sort_by(|a, b| a.name.cmp(&b.name));
                    Choice::Several(all)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, mac: u8, ethernet: bool) -> Link {
        Link {
            index: u32::from(mac),
            name: name.into(),
            mac: ethernet.then_some([0x52, 0x54, 0, 0, 0, mac]),
            up: false,
            carrier: false,
            operstate: "down".into(),
            mtu: 1500,
            ethernet,
        }
    }

    fn nic(name: &str, mac: u8) -> LinkInfo {
        LinkInfo {
            link: link(name, mac, true),
            device: Some(Device {
                driver: Some("virtio_net".into()),
            }),
        }
    }

    fn virtual_(name: &str, mac: u8) -> LinkInfo {
        LinkInfo {
            link: link(name, mac, true),
            device: None,
        }
    }

    fn lo() -> LinkInfo {
        LinkInfo {
            link: link("lo", 1, false),
            device: None,
        }
    }

    #[test]
    fn by_name_or_mac_whatever_the_link_is() {
        let links = [lo(), nic("eth0", 2), virtual_("br0", 3)];
        let sel = |n: &str| InterfaceSelector::Name(n.into());
        assert_eq!(
            choose(&sel("eth0"), &links),
            Choice::Found(links[1].link.clone())
        );
        // Named, a virtual link is the operator's choice.
        assert_eq!(
            choose(&sel("br0"), &links),
            Choice::Found(links[2].link.clone())
        );
        assert_eq!(choose(&sel("eth1"), &links), Choice::Absent);
        let mac = InterfaceSelector::Mac([0x52, 0x54, 0, 0, 0, 3]);
        assert_eq!(choose(&mac, &links), Choice::Found(links[2].link.clone()));
        let mac = InterfaceSelector::Mac([0x52, 0x54, 0, 0, 0, 9]);
        assert_eq!(choose(&mac, &links), Choice::Absent);
    }

    #[test]
    fn the_one_ethernet_nic_whatever_its_name() {
        let links = [
            lo(),
            virtual_("br0", 3),
            nic("enp0s2", 2),
            virtual_("veth0", 4),
        ];
        assert_eq!(
            choose(&InterfaceSelector::OnlyEthernet, &links),
            Choice::Found(links[2].link.clone())
        );
    }

    #[test]
    fn no_nic_is_absent_and_virtual_links_do_not_count() {
        let links = [lo(), virtual_("br0", 3), virtual_("eth0", 4)];
        assert_eq!(
            choose(&InterfaceSelector::OnlyEthernet, &links),
            Choice::Absent
        );
        // A device behind a non-Ethernet link (say a wireless or CAN one reported with
        // another ARPHRD) is not a candidate either.
        let mut odd = nic("can0", 5);
        odd.link.ethernet = false;
        assert_eq!(
            choose(&InterfaceSelector::OnlyEthernet, &[lo(), odd]),
            Choice::Absent
        );
    }

    #[test]
    fn two_nics_are_an_error_naming_both() {
        let links = [lo(), nic("eth1", 3), virtual_("br0", 4), nic("eth0", 2)];
        let Choice::Several(n) = choose(&InterfaceSelector::OnlyEthernet, &links) else {
            panic!("two NICs must not be chosen from")
        };
        let names: Vec<&str> = n.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(
            n[0].to_string(),
            "eth0 (driver virtio_net, MAC 52:54:00:00:00:02)"
        );
    }

    #[test]
    fn sysfs_tree_says_which_links_are_nics() {
        let root = std::env::temp_dir().join(format!("vminit-nic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("ens3/device")).unwrap();
        std::os::unix::fs::symlink(
            "../../../bus/virtio/drivers/virtio_net",
            root.join("ens3/device/driver"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("ens4/device")).unwrap(); // no driver bound
        std::fs::create_dir_all(root.join("br0")).unwrap();
        let got = read(
            &root,
            vec![
                link("lo", 1, false),
                link("ens3", 2, true),
                link("ens4", 3, true),
                link("br0", 4, true),
                link("gone", 5, true),
            ],
        );
        let _ = std::fs::remove_dir_all(&root);
        let devices: Vec<_> = got.iter().map(|l| l.device.clone()).collect();
        assert_eq!(
            devices,
            [
                None,
                Some(Device {
                    driver: Some("virtio_net".into())
                }),
                Some(Device { driver: None }),
                None,
                None
            ]
        );
        assert_eq!(nics(&got).len(), 2);
    }
}
