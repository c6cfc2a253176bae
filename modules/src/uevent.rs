//! Kernel uevents as coldplug reads them: which device was added, bound, unbound or removed,
//! and on which subsystem. After a module load, these say what changed in sysfs without
//! walking it again.
//!
//! Pure parsing of the kernel's `NETLINK_KOBJECT_UEVENT` datagrams; the socket is `sys.rs`'s,
//! and what coldplug does with an event is `coldplug.rs`'s.

/// What happened to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UeventAction {
    Add,
    Remove,
    /// A driver was bound to it (Linux 4.14+).
    Bind,
    Unbind,
    /// `change`, `move`, `online`, `offline`: nothing coldplug acts on.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: UeventAction,
    /// The device's path under the sysfs root: `/devices/platform/LNRO0005:00/virtio0`.
    pub devpath: String,
    /// `virtio`, `pci`, `net`, `block`, ... (absent for a few kobjects such as modules).
    pub subsystem: Option<String>,
}

impl Uevent {
    /// Parses one kernel message, `ACTION@DEVPATH` then `KEY=VALUE` fields, each ending in a
    /// NUL. `None` for anything else: udev's own messages (they start with `libudev`), or a
    /// message without an action and a path.
    pub fn parse(msg: &[u8]) -> Option<Uevent> {
        let text = std::str::from_utf8(msg).ok()?;
        let mut fields = text.split('\0');
        let (head_action, head_path) = fields.next()?.split_once('@')?;
        let mut action = head_action;
        let mut devpath = head_path;
        let mut subsystem = None;
        for field in fields {
            match field.split_once('=') {
                Some(("ACTION", v)) => action = v,
                Some(("DEVPATH", v)) => devpath = v,
                Some(("SUBSYSTEM", v)) => subsystem = Some(v.to_string()),
                _ => {}
            }
        }
        if !devpath.starts_with('/') {
            return None;
        }
        let action = match action {
            "add" => UeventAction::Add,
            "remove" => UeventAction::Remove,
            "bind" => UeventAction::Bind,
            "unbind" => UeventAction::Unbind,
            _ => UeventAction::Other,
        };
        Some(Uevent {
            action,
            devpath: devpath.to_string(),
            subsystem,
        })
    }

    /// The device's name: the last component of its path (`virtio0`), which is also its
    /// entry under `/sys/bus/<subsystem>/devices/`.
    pub fn name(&self) -> &str {
        self.devpath.rsplit('/').next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_messages() {
        let add = b"add@/devices/platform/LNRO0005:00/virtio0\0ACTION=add\0\
            DEVPATH=/devices/platform/LNRO0005:00/virtio0\0SUBSYSTEM=virtio\0\
            MODALIAS=virtio:d00000001v554D4551\0SEQNUM=1234\0";
        let e = Uevent::parse(add).unwrap();
        assert_eq!(e.action, UeventAction::Add);
        assert_eq!(e.devpath, "/devices/platform/LNRO0005:00/virtio0");
        assert_eq!(e.subsystem.as_deref(), Some("virtio"));
        assert_eq!(e.name(), "virtio0");

        let bind = b"bind@/devices/pci0000:00/0000:00:03.0\0ACTION=bind\0\
            DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0DRIVER=virtio-pci\0";
        let e = Uevent::parse(bind).unwrap();
        assert_eq!(e.action, UeventAction::Bind);
        assert_eq!(e.name(), "0000:00:03.0");

        // A module's own kobject has no subsystem field.
        let module = b"add@/module/virtio_net\0ACTION=add\0DEVPATH=/module/virtio_net\0";
        let e = Uevent::parse(module).unwrap();
        assert_eq!(e.subsystem, None);
        assert_eq!(
            Uevent::parse(b"change@/devices/x\0").unwrap().action,
            UeventAction::Other
        );
        assert_eq!(
            Uevent::parse(b"remove@/devices/x").unwrap().action,
            UeventAction::Remove
        );
    }

    #[test]
    fn other_datagrams_are_refused() {
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(Uevent::parse(b"add"), None);
        assert_eq!(Uevent::parse(b"add@relative/path\0"), None);
        assert_eq!(Uevent::parse(&[0xff, b'@', b'/']), None);
    }
}
