//! The ACPI power button (and any other input device that reports KEY_POWER: a virt machine's
//! `gpio-keys`): how QEMU's `system_powerdown`, Cloud Hypervisor's power-button and libvirt's
//! default shutdown ask a guest to stop. A press is a shutdown request, exactly like SIGTERM.
//!
//! Devices are found by their capabilities in sysfs (`/sys/class/input/eventN/device/
//! capabilities/key`, a bitmap), opened non-blocking through the evdev node `/dev/input/eventN`
//! and polled by the event loop. Owns finding, opening and decoding; the loop decides.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `KEY_POWER` in `<linux/input-event-codes.h>`.
const KEY_POWER: u32 = 116;
const EV_KEY: u16 = 1;
/// `struct input_event` on 64-bit Linux: a 16-byte timeval, then type (u16), code (u16),
/// value (i32).
const EVENT_SIZE: usize = 24;

/// Whether a `capabilities/key` bitmap sets `key`. The kernel prints the bitmap as hex words
/// of `unsigned long`, most significant first, separated by spaces, leading zero words left
/// out (`"10000000000000 0"` is KEY_POWER alone on 64-bit).
pub fn has_key(bitmap: &str, key: u32, word_bits: u32) -> bool {
    let (Some(index), Some(bit)) = (key.checked_div(word_bits), key.checked_rem(word_bits)) else {
        return false;
    };
    // Most significant word first: `index` counts from the last one.
    bitmap
        .split_whitespace()
        .rev()
        .nth(index as usize)
        .and_then(|w| u64::from_str_radix(w, 16).ok())
        .is_some_and(|w| w.checked_shr(bit).is_some_and(|w| w & 1 == 1))
}

/// Key presses of KEY_POWER in a buffer of whole `input_event`s.
pub fn power_presses(buf: &[u8]) -> usize {
    buf.chunks_exact(EVENT_SIZE)
        .filter(|e| {
            let field = |at: usize| {
                e.get(at..)
                    .and_then(|b| b.first_chunk())
                    .map(|b| u16::from_ne_bytes(*b))
            };
            let value = e
                .get(20..24)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            field(16) == Some(EV_KEY) && field(18) == Some(KEY_POWER as u16) && value == Some(1)
        })
        .count()
}

/// The evdev nodes (`/dev/input/eventN`) of the input devices under `sys_input` (normally
/// `/sys/class/input`) that report KEY_POWER.
pub fn find(sys_input: &Path, dev_input: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(sys_input) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with("event").then_some(())?;
            let caps = std::fs::read_to_string(e.path().join("device/capabilities/key")).ok()?;
            has_key(&caps, KEY_POWER, usize::BITS).then(|| dev_input.join(name))
        })
        .collect();
    found.sort();
    found
}

/// Whether an input device under `sys_input` reports KEY_POWER but has no evdev node yet:
/// `evdev` is an input handler, not a driver matched by a bus modalias, so coldplug does not
/// load it, and the boot asks for it by name.
pub fn needs_evdev(sys_input: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(sys_input) else {
        return false;
    };
    dir.flatten().any(|e| {
        let p = e.path();
        let is_device = e.file_name().to_string_lossy().starts_with("input");
        let power = std::fs::read_to_string(p.join("capabilities/key"))
            .is_ok_and(|caps| has_key(&caps, KEY_POWER, usize::BITS));
        let has_node = std::fs::read_dir(&p).is_ok_and(|d| {
            d.flatten()
                .any(|c| c.file_name().to_string_lossy().starts_with("event"))
        });
        is_device && power && !has_node
    })
}

/// What a read of a button found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Nothing,
    Pressed,
    /// The device went away (unplugged, driver unbound): close it.
    Gone,
}

/// One opened button.
pub struct Button {
    pub path: PathBuf,
    pub file: File,
}

impl Button {
    pub fn open(path: &Path) -> io::Result<Button> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Button {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Reads what is queued. Reads at most a bounded number of events per wake, so a device
    /// that floods cannot hold the loop.
    pub fn read(&mut self) -> Found {
        let mut buf = [0u8; EVENT_SIZE * 64];
        let mut presses = 0usize;
        for _ in 0..4 {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    presses =
                        presses.saturating_add(power_presses(buf.get(..n).unwrap_or_default()))
                }
                // evdev says ENODEV once the device is gone; its fd would stay readable.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Found::Gone,
                Err(_) => break,
            }
        }
        if presses > 0 {
            Found::Pressed
        } else {
            Found::Nothing
        }
    }
}

/// The power buttons found so far, opened from the boot on (so that a press during the boot
/// is heard), and the kernel's device events that say when to look again: a button that
/// appears later (a driver bound late, a hot-plugged device) is opened when its `add` event
/// arrives. Without a device-event socket the event loop looks again on a timer.
pub struct Buttons {
    /// Indexed by the event loop's token offset; a closed button leaves its slot empty so that
    /// the other tokens keep their meaning.
    opened: Vec<Option<Button>>,
    events: Option<modules::DeviceEvents>,
    sys_input: PathBuf,
    dev_input: PathBuf,
}

impl Default for Buttons {
    fn default() -> Self {
        Buttons::new(None, Path::new("/sys/class/input"), Path::new("/dev/input"))
    }
}

impl Buttons {
    pub fn new(
        events: Option<modules::DeviceEvents>,
        sys_input: &Path,
        dev_input: &Path,
    ) -> Buttons {
        Buttons {
            opened: Vec::new(),
            events,
            sys_input: sys_input.to_path_buf(),
            dev_input: dev_input.to_path_buf(),
        }
    }

    /// Starts following device events (before the first [`Self::scan`], so that nothing added
    /// in between is missed), then opens the buttons there are.
    pub fn watch() -> Buttons {
        let events = match modules::DeviceEvents::open() {
            Ok(e) => Some(e),
            Err(e) => {
                log::debug!("power button: no device events ({e}); looking again on a timer");
                None
            }
        };
        let mut b = Buttons::new(
            events,
            Path::new("/sys/class/input"),
            Path::new("/dev/input"),
        );
        b.scan();
        b
    }

    /// Opens the buttons not open yet; returns their slots.
    pub fn scan(&mut self) -> Vec<usize> {
        let mut new = Vec::new();
        for path in find(&self.sys_input, &self.dev_input) {
            if self.opened.iter().flatten().any(|b| b.path == path) {
                continue;
            }
            match Button::open(&path) {
                Ok(b) => {
                    log::info!("power button: listening on {}", path.display());
                    new.push(self.opened.len());
                    self.opened.push(Some(b));
                }
                Err(e) => log::warn!("power button {}: cannot open: {e}", path.display()),
            }
        }
        new
    }

    /// Reads button `slot`: the button's path if it held a press. A button whose device went
    /// away is closed.
    pub fn read(&mut self, slot: usize) -> Option<PathBuf> {
        let entry = self.opened.get_mut(slot)?;
        let b = entry.as_mut()?;
        match b.read() {
            Found::Pressed => Some(b.path.clone()),
            Found::Nothing => None,
            Found::Gone => {
                log::info!("power button {}: device gone", b.path.display());
                *entry = None;
                None
            }
        }
    }

    /// Reads every button (the boot polls them between its steps): the first that held a
    /// press.
    pub fn any_pressed(&mut self) -> Option<PathBuf> {
        let mut pressed = None;
        for slot in 0..self.opened.len() {
            if let Some(p) = self.read(slot) {
                pressed.get_or_insert(p);
            }
        }
        pressed
    }

    /// Whether the device events since the last call may have brought a new input device (an
    /// input device added, or events lost): then [`Self::scan`] again.
    pub fn devices_changed(&self) -> bool {
        let Some(events) = &self.events else {
            return false;
        };
        match events.read() {
            Some(evs) => evs.iter().any(|e| {
                e.action == modules::UeventAction::Add && e.subsystem.as_deref() == Some("input")
            }),
            None => true,
        }
    }

    pub fn events(&self) -> Option<&modules::DeviceEvents> {
        self.events.as_ref()
    }

    pub fn button(&self, slot: usize) -> Option<&Button> {
        self.opened.get(slot)?.as_ref()
    }

    pub fn slots(&self) -> usize {
        self.opened.len()
    }

    pub fn is_empty(&self) -> bool {
        self.opened.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn the_acpi_power_buttons_bitmap_has_key_power() {
        assert!(has_key("10000000000000 0", KEY_POWER, 64));
        // A keyboard: many bits, KEY_POWER among them.
        assert!(has_key(
            "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe",
            KEY_POWER,
            64
        ));
        assert!(!has_key("0", KEY_POWER, 64));
        assert!(!has_key("4 0", KEY_POWER, 64));
        assert!(!has_key("", KEY_POWER, 64));
        assert!(!has_key("zz 0", KEY_POWER, 64));
        // 32-bit words: KEY_POWER is bit 20 of the fourth word.
        assert!(has_key("100000 0 0 0", KEY_POWER, 32));
        assert!(!has_key("1", KEY_POWER, 0));
    }

    #[test]
    fn presses_are_counted_releases_and_other_keys_are_not() {
        let mut buf = event(EV_KEY, KEY_POWER as u16, 1);
        buf.extend(event(0, 0, 0)); // EV_SYN
        buf.extend(event(EV_KEY, KEY_POWER as u16, 0)); // release
        buf.extend(event(EV_KEY, 30, 1)); // KEY_A
        assert_eq!(power_presses(&buf), 1);
        assert_eq!(power_presses(&buf[..10]), 0);
    }

    #[test]
    fn devices_are_found_by_capability() {
        let sys = tempfile::tempdir().unwrap();
        for (name, caps) in [
            ("event0", "10000000000000 0"),
            ("event1", "4 0"),
            ("mouse0", ""),
        ] {
            let d = sys.path().join(name).join("device/capabilities");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("key"), format!("{caps}\n")).unwrap();
        }
        let found = find(sys.path(), Path::new("/dev/input"));
        assert_eq!(found, vec![PathBuf::from("/dev/input/event0")]);
    }

    #[test]
    fn buttons_are_opened_once_read_for_presses_and_found_again_later() {
        let sys = tempfile::tempdir().unwrap();
        let dev = tempfile::tempdir().unwrap();
        let add = |name: &str, caps: &str| {
            let d = sys.path().join(name).join("device/capabilities");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("key"), format!("{caps}\n")).unwrap();
            std::fs::write(dev.path().join(name), b"").unwrap();
        };
        add("event0", "10000000000000 0");
        add("event1", "4 0");
        let mut b = Buttons::new(None, sys.path(), dev.path());
        assert_eq!(b.scan(), vec![0]);
        assert_eq!(b.scan(), Vec::<usize>::new(), "opened twice");
        assert_eq!(b.any_pressed(), None);
        // A button that appears later is found by the next scan, in a slot of its own.
        add("event2", "10000000000000 0");
        assert_eq!(b.scan(), vec![1]);
        let press = event(EV_KEY, KEY_POWER as u16, 1);
        std::fs::write(dev.path().join("event2"), &press).unwrap();
        assert_eq!(b.read(0), None);
        assert_eq!(b.read(1), Some(dev.path().join("event2")));
        assert_eq!(b.read(7), None);
        assert!(!b.devices_changed(), "no event socket: nothing to say");
    }

    #[test]
    fn evdev_is_needed_for_a_power_button_without_a_node() {
        let sys = tempfile::tempdir().unwrap();
        let button = sys.path().join("input0");
        std::fs::create_dir_all(button.join("capabilities")).unwrap();
        std::fs::write(button.join("capabilities/key"), "10000000000000 0\n").unwrap();
        assert!(needs_evdev(sys.path()));
        std::fs::create_dir(button.join("event0")).unwrap();
        assert!(!needs_evdev(sys.path()));
        assert!(!needs_evdev(&sys.path().join("missing")));
    }
}
