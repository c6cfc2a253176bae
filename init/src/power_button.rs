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
    let words: Vec<&str> = bitmap.split_whitespace().collect();
    let (index, bit) = (key / word_bits, key % word_bits);
    let Some(pos) = words.len().checked_sub(1 + index as usize) else {
        return false;
    };
    words
        .get(pos)
        .and_then(|w| u64::from_str_radix(w, 16).ok())
        .is_some_and(|w| w >> bit & 1 == 1)
}

/// Key presses of KEY_POWER in a buffer of whole `input_event`s.
pub fn power_presses(buf: &[u8]) -> usize {
    buf.chunks_exact(EVENT_SIZE)
        .filter(|e| {
            let field = |at: usize| e.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
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

    /// Reads what is queued; true if it held a press. Reads at most a bounded number of
    /// events per wake, so a device that floods cannot hold the loop.
    pub fn pressed(&mut self) -> bool {
        let mut buf = [0u8; EVENT_SIZE * 64];
        let mut presses = 0;
        for _ in 0..4 {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => presses += power_presses(buf.get(..n).unwrap_or_default()),
                Err(_) => break,
            }
        }
        presses > 0
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
