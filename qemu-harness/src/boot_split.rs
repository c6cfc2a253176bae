//! Where a benchmark boot's launch → done goes on the host's clock: launch → the kernel's
//! `Run /init` line on the console (the kernel's work, the same for every image), then PID 1 →
//! done (the init's cost as the host sees it). For vminit, PID 1 → ready on the guest's own
//! clock too: the difference is what the detection path adds (slirp holding each probe until
//! the guest has its address, then the guest taking the burst).
//!
//! Owns the console watcher and the report lines; the boots are `bench.rs`'s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::vm::KernelKind;

/// What the kernel prints as it executes the init.
pub const PID1_LINE: &str = "Run /init as init process";

/// Watches a console file from a thread for [`PID1_LINE`], so that the boot's own wait (a
/// console line, or `/health` probes) goes on undisturbed.
pub struct Pid1Watch {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Option<Instant>>,
}

impl Pid1Watch {
    pub fn start(console: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if std::fs::read(&console).is_ok_and(|text| {
                    text.windows(PID1_LINE.len())
                        .any(|w| w == PID1_LINE.as_bytes())
                }) {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            None
        });
        Pid1Watch { stop, handle }
    }

    /// When the line was seen (`None`: not before this call).
    pub fn finish(self) -> Option<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
}

/// The kernel's timestamp of [`PID1_LINE`] in a console text, in ms since kernel start.
pub fn kernel_pid1_ms(console: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains(PID1_LINE))?;
    let stamp = line.trim_start().strip_prefix('[')?.split(']').next()?;
    stamp.trim().parse::<f64>().ok().map(|s| s * 1000.0)
}

/// One boot, split at PID 1 as the host saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub launch_to_pid1: Duration,
    pub pid1_to_done: Duration,
    /// vminit only: PID 1 → ready on the guest's clock, in ms.
    pub guest_ms: Option<f64>,
}

impl Split {
    /// From the launch instant, when PID 1 was seen, and when the boot was done.
    pub fn new(launched: Instant, pid1: Option<Instant>, done: Instant) -> Option<Split> {
        let pid1 = pid1?;
        Some(Split {
            launch_to_pid1: pid1.checked_duration_since(launched)?,
            pid1_to_done: done.checked_duration_since(pid1)?,
            guest_ms: None,
        })
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The report lines: medians of each part for both images, and for vminit what the host's
/// PID 1 → done adds to the guest's PID 1 → ready. Empty without samples.
pub fn format_split(kind: KernelKind, trivial: &[Split], vminit: &[Split]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out = String::new();
    for (name, s) in [("trivial", trivial), ("vminit", vminit)] {
        let (Some(pid1), Some(done)) = (
            median(s.iter().map(|x| ms(x.launch_to_pid1)).collect()),
            median(s.iter().map(|x| ms(x.pid1_to_done)).collect()),
        ) else {
            continue;
        };
        out.push_str(&format!(
            "  {kind:?} host clock, {name}: launch -> PID 1 median {pid1:.0} ms, PID 1 -> done median {done:.0} ms ({} boots)\n",
            s.len()
        ));
    }
    let gaps: Vec<f64> = vminit
        .iter()
        .filter_map(|x| Some(ms(x.pid1_to_done) - x.guest_ms?))
        .collect();
    let guest = median(vminit.iter().filter_map(|x| x.guest_ms).collect());
    if let (Some(guest), Some(gap)) = (guest, median(gaps.clone())) {
        let lo = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.push_str(&format!(
            "  {kind:?} vminit PID 1 -> ready on the guest's clock median {guest:.0} ms; the host sees {gap:.0} ms more (detection path; range {lo:.0}-{hi:.0})\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid1_stamp_from_the_console() {
        let console =
            "[    0.000000] Linux version 6.1\n[    1.240249] Run /init as init process\n";
        let ms = kernel_pid1_ms(console).unwrap();
        assert!((ms - 1240.249).abs() < 1e-6, "{ms}");
        assert_eq!(kernel_pid1_ms("[ 1.0] nothing\n"), None);
        assert_eq!(kernel_pid1_ms("Run /init as init process\n"), None);
    }

    #[test]
    fn split_report() {
        let d = Duration::from_millis;
        let split = |pid1, done, guest| Split {
            launch_to_pid1: d(pid1),
            pid1_to_done: d(done),
            guest_ms: guest,
        };
        let trivial = [
            split(1700, 30, None),
            split(1800, 28, None),
            split(1600, 26, None),
        ];
        let vminit = [
            split(1750, 340, Some(280.0)),
            split(1650, 300, Some(250.0)),
            split(1850, 360, Some(270.0)),
        ];
        let r = format_split(KernelKind::Vmlinux, &trivial, &vminit);
        assert!(
            r.contains(
                "trivial: launch -> PID 1 median 1700 ms, PID 1 -> done median 28 ms (3 boots)"
            ),
            "{r}"
        );
        assert!(
            r.contains("vminit: launch -> PID 1 median 1750 ms, PID 1 -> done median 340 ms"),
            "{r}"
        );
        assert!(
            r.contains("median 270 ms; the host sees 60 ms more (detection path; range 50-90)"),
            "{r}"
        );
        assert_eq!(format_split(KernelKind::Vmlinux, &[], &[]), "");
        let launched = Instant::now();
        assert_eq!(Split::new(launched, None, launched), None);
    }
}
