//! The `log` facade's backend: one line per record on the console, prefixed with the time since
//! kernel start and the level, like the kernel's own lines, so that the serial log reads as one
//! timeline. Owns formatting and the console writes; the level comes from `vminit.log=` (or
//! `--log` off PID 1).
//!
//! A stalled or slow console must never stall PID 1: lines are written to a non-blocking file
//! description of the console of their own; what the console does not take at once waits in a
//! bounded backlog, and a line that finds the backlog full is dropped and counted
//! ([`dropped`], in `/metrics`). Control characters in a message (a DHCP server's host name, a
//! path from a drive) are escaped, so nothing a host hands the guest can move the cursor or
//! split a line on the operator's console.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::sys;

/// Bytes of log lines kept while the console does not take them.
const BACKLOG_MAX: usize = 64 * 1024;

/// Where the lines go: the console's own non-blocking description once attached, stderr
/// (blocking) before that.
struct Sink {
    console: Option<File>,
    backlog: Vec<u8>,
}

impl Sink {
    /// Writes what the backlog holds, then `line`; what the console refuses joins the
    /// backlog, or is dropped (and counted) when the backlog is full. Never blocks when a
    /// non-blocking console is attached.
    fn write_line(&mut self, line: &[u8]) {
        let Some(out) = self.console.as_mut() else {
            // Nothing useful can be done if the console itself fails.
            let _ = io::stderr().write_all(line);
            return;
        };
        drain(out, &mut self.backlog);
        if self.backlog.is_empty() {
            let written = write_some(out, line);
            let rest = line.get(written..).unwrap_or_default();
            if !rest.is_empty() {
                self.backlog.extend_from_slice(rest);
            }
        } else if self.backlog.len().saturating_add(line.len()) <= BACKLOG_MAX {
            self.backlog.extend_from_slice(line);
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes as much of `buf` as the console takes now; returns how much.
fn write_some(out: &mut File, buf: &[u8]) -> usize {
    let mut done = 0;
    while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
        match out.write(rest) {
            Ok(0) => break,
            Ok(n) => done = done.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    done
}

fn drain(out: &mut File, backlog: &mut Vec<u8>) {
    if !backlog.is_empty() {
        let n = write_some(out, backlog);
        backlog.drain(..n);
    }
}

struct ConsoleLogger {
    // One lock so concurrent threads (health server, netconf) never interleave mid-line.
    sink: Mutex<Sink>,
}

static LOGGER: ConsoleLogger = ConsoleLogger {
    sink: Mutex::new(Sink {
        console: None,
        backlog: Vec::new(),
    }),
};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// `[    1.234] vminit LEVEL message\n`, with control characters in the message escaped.
fn format_line(ms: u64, level: Level, message: &str) -> String {
    let level = match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    };
    let mut line = format!("[{:>5}.{:03}] vminit {level} ", ms / 1000, ms % 1000);
    for c in message.chars() {
        if c.is_control() && c != '\t' {
            line.push_str(&c.escape_default().to_string());
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    line
}

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(
            sys::boottime_ms(),
            record.level(),
            &record.args().to_string(),
        );
        // A poisoned lock only means another thread panicked mid-write; keep logging.
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        sink.write_line(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the console logger. Safe to call more than once; later calls only change the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// From now on lines go to `console`, which must be open with `O_NONBLOCK` (see
/// [`crate::sys::open_console`]).
pub fn attach_console(console: File) {
    let mut sink = LOGGER.sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.console = Some(console);
}

/// Lines dropped because the console did not take them (a stalled serial line).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes the backlog out, waiting at most `limit`: the last lines before a power-off.
pub fn flush(limit: Duration) {
    let end = crate::shutdown::deadline(Instant::now(), limit);
    loop {
        let mut sink = LOGGER.sink.lock().unwrap_or_else(|p| p.into_inner());
        let Sink { console, backlog } = &mut *sink;
        match console {
            Some(out) => drain(out, backlog),
            None => return,
        }
        if backlog.is_empty() || Instant::now() >= end {
            return;
        }
        drop(sink);
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::OwnedFd;

    #[test]
    fn control_characters_are_escaped_and_lines_stay_lines() {
        let l = format_line(1234, Level::Info, "host \u{1b}[2Jname\nnext\ttab");
        assert_eq!(
            l,
            "[    1.234] vminit INFO  host \\u{1b}[2Jname\\nnext\ttab\n"
        );
    }

    #[test]
    fn a_stalled_console_never_blocks_and_drops_are_counted() {
        let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )
        .unwrap();
        let mut sink = Sink {
            console: Some(File::from(w)),
            backlog: Vec::new(),
        };
        let before = DROPPED.load(Ordering::Relaxed);
        let line = [b'x'; 1000];
        // Nobody reads: a pipe holds 64 KiB, the backlog another 64 KiB, the rest is dropped.
        let start = Instant::now();
        for _ in 0..1000 {
            sink.write_line(&line);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "blocked");
        assert!(sink.backlog.len() <= BACKLOG_MAX);
        assert!(DROPPED.load(Ordering::Relaxed) - before >= 800);
        // Once the reader drains the pipe, the backlog goes out first, whole.
        let mut reader = File::from(r);
        let mut buf = vec![0u8; 1 << 20];
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0);
        sink.write_line(b"last\n");
        assert!(sink.backlog.len() < BACKLOG_MAX);
    }
}
