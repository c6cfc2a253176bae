//! Service output to the console: bytes from each pipe are assembled into lines, each line
//! prefixed `[name] `, and queued whole into one bounded buffer drained into a non-blocking
//! sink. Lines are never interleaved mid-line; when the console is too slow the buffer fills
//! and whole lines are dropped and counted (`[name] … N bytes dropped`). No syscalls here
//! beyond the injected sink's `write`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Longer lines are cut into pieces of this size.
pub const MAX_LINE: usize = 4096;
/// Bytes the console queue holds before dropping.
pub const QUEUE_CAP: usize = 256 * 1024;

/// Opens a console for [`Console`] as its own non-blocking open file description
/// (`O_NONBLOCK` there does not affect other writers of the same device): `/dev/console` as
/// PID 1, `/proc/self/fd/2` off PID 1.
pub fn open_console(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}

/// Assembles one pipe's bytes into lines.
#[derive(Debug, Default)]
pub struct LineAssembler {
    partial: Vec<u8>,
}

impl LineAssembler {
    /// Feeds bytes; calls `emit` for each complete line (without its newline).
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while !data.is_empty() {
            // `partial` is emitted as soon as it reaches MAX_LINE, so there is always room.
            let room = MAX_LINE.saturating_sub(self.partial.len());
            let window = &data[..data.len().min(room)];
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                self.partial.extend_from_slice(&window[..nl]);
                emit(&self.partial);
                self.partial.clear();
                data = data.get(nl.saturating_add(1)..).unwrap_or_default();
            } else {
                self.partial.extend_from_slice(window);
                data = &data[window.len()..];
                if self.partial.len() >= MAX_LINE {
                    emit(&self.partial);
                    self.partial.clear();
                }
            }
        }
    }

    /// End of stream: a last line without newline is still a line.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// `[name] line\n`'s length (saturating: a bound check, never a panic).
fn framed_len(name: &str, line: usize) -> usize {
    name.len().saturating_add(3).saturating_add(line)
}

/// The console: a bounded queue in front of a sink that may return `WouldBlock`.
pub struct Console {
    sink: Box<dyn Write + Send>,
    queue: VecDeque<u8>,
    cap: usize,
    /// Bytes dropped per service since the last notice.
    dropped: BTreeMap<String, u64>,
}

impl Console {
    pub fn new(sink: Box<dyn Write + Send>) -> Console {
        Console::with_capacity(sink, QUEUE_CAP)
    }

    pub fn with_capacity(sink: Box<dyn Write + Send>, cap: usize) -> Console {
        Console {
            sink,
            queue: VecDeque::new(),
            cap,
            dropped: BTreeMap::new(),
        }
    }

    /// Queues `[name] line\n`, or counts it dropped if the queue is full.
    pub fn line(&mut self, name: &str, line: &[u8]) {
        self.flush_notices();
        let len = framed_len(name, line.len());
        if self.queue.len().saturating_add(len) > self.cap {
            let n = self.dropped.entry(name.to_string()).or_default();
            *n = n.saturating_add(line.len() as u64).saturating_add(1);
            return;
        }
        self.push(name, line);
    }

    fn push(&mut self, name: &str, line: &[u8]) {
        self.queue.push_back(b'[');
        self.queue.extend(name.as_bytes());
        self.queue.extend(b"] ");
        self.queue.extend(line);
        self.queue.push_back(b'\n');
    }

    fn flush_notices(&mut self) {
        while let Some((name, n)) = self.dropped.first_key_value() {
            let msg = format!("\u{2026} {n} bytes dropped (console too slow)");
            if self.queue.len().saturating_add(framed_len(name, msg.len())) > self.cap {
                return;
            }
            let name = name.clone();
            self.push(&name, msg.as_bytes());
            self.dropped.remove(&name);
        }
    }

    /// Writes as much as the sink takes without blocking. Returns true when output is left.
    pub fn flush(&mut self) -> bool {
        while !self.queue.is_empty() {
            let (a, _) = self.queue.as_slices();
            match self.sink.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // A broken console must not grow memory: forget the output.
                    self.queue.clear();
                    break;
                }
            }
        }
        if self.queue.is_empty() {
            self.flush_notices();
            if !self.queue.is_empty() {
                return self.flush();
            }
        }
        let _ = self.sink.flush();
        !self.queue.is_empty() || !self.dropped.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut a = LineAssembler::default();
        let mut out = Vec::new();
        for c in chunks {
            a.feed(c, &mut |l| out.push(l.to_vec()));
        }
        a.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_are_assembled_across_reads() {
        let out = lines(&[b"hel", b"lo\nwor", b"ld\n\nlast"]);
        assert_eq!(
            out,
            vec![
                b"hello".to_vec(),
                b"world".to_vec(),
                vec![],
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let out = lines(&[&long, b"\nz\n"]);
        let lens: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![MAX_LINE, MAX_LINE, 10, 1]);
    }

    /// A sink that takes at most `budget` bytes, then says WouldBlock.
    #[derive(Clone)]
    struct Slow {
        out: Arc<Mutex<Vec<u8>>>,
        budget: Arc<Mutex<usize>>,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut b = self.budget.lock().unwrap();
            if *b == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(*b);
            *b -= n;
            self.out.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_slow_console_drops_whole_lines_and_says_how_much() {
        let slow = Slow {
            out: Arc::default(),
            budget: Arc::new(Mutex::new(0)),
        };
        let mut c = Console::with_capacity(Box::new(slow.clone()), 60);
        c.line("a", b"0123456789");
        c.line("b", b"short");
        c.line("a", b"this one does not fit at all, not at all");
        assert!(c.flush(), "output pending");
        *slow.budget.lock().unwrap() = 1000;
        assert!(!c.flush());
        let text = String::from_utf8(slow.out.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "[a] 0123456789\n[b] short\n[a] \u{2026} 41 bytes dropped (console too slow)\n"
        );
    }

    #[test]
    fn partial_writes_never_split_lines_between_services() {
        let slow = Slow {
            out: Arc::default(),
            budget: Arc::new(Mutex::new(3)),
        };
        let mut c = Console::new(Box::new(slow.clone()));
        c.line("x", b"one");
        c.flush();
        c.line("y", b"two");
        *slow.budget.lock().unwrap() = 100;
        c.flush();
        let text = String::from_utf8(slow.out.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "[x] one\n[y] two\n");
    }
}
