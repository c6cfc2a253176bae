//! The `log` facade's backend: one line per record on stderr (the console as PID 1), prefixed
//! with the time since kernel start and the level, like the kernel's own lines, so that the
//! serial log reads as one timeline. Owns formatting only; the level comes from
//! `vminit.log=` (or `--log` off PID 1).

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::sys;

struct ConsoleLogger {
    // One lock so concurrent threads (health server, netconf) never interleave mid-line.
    out: Mutex<()>,
}

static LOGGER: ConsoleLogger = ConsoleLogger {
    out: Mutex::new(()),
};

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ms = sys::boottime_ms();
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let line = format!(
            "[{:>5}.{:03}] vminit {level} {}\n",
            ms / 1000,
            ms % 1000,
            record.args()
        );
        // A poisoned lock only means another thread panicked mid-write; keep logging.
        let _guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // Nothing useful can be done if the console itself fails.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the console logger. Safe to call once; later calls only change the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parses `error|warn|info|debug|trace`.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}
