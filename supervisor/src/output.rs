//! Service output to the console: bytes from each pipe are assembled into lines, each line
//! prefixed `[name] `, and queued whole into one bounded buffer drained into a non-blocking
//! sink. Lines are never interleaved mid-line; when the console is too slow the buffer fills
//! and whole lines are dropped and counted (`[name] … N bytes dropped`). What a service
//! writes is input: control characters and invalid UTF-8 are escaped before they reach the
//! console, and a line is at most [`MAX_LINE`] bytes of it. No syscalls here beyond the
//! injected sink's `write`.

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
    /// Feeds bytes; calls `emit(line, cut)` for each complete line (without its newline).
    /// A line longer than [`MAX_LINE`] is emitted in pieces with `cut` set on all but the
    /// last; a cut never splits a UTF-8 character (up to 3 bytes move to the next piece).
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while !data.is_empty() {
            // `partial` is cut as soon as it reaches MAX_LINE, so there is always room.
            let room = MAX_LINE.saturating_sub(self.partial.len());
            let (window, rest) = data.split_at(data.len().min(room));
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                self.partial
                    .extend_from_slice(window.get(..nl).unwrap_or_default());
                emit(&self.partial, false);
                self.partial.clear();
                data = data.get(nl.saturating_add(1)..).unwrap_or_default();
            } else {
                self.partial.extend_from_slice(window);
                data = rest;
                if self.partial.len() >= MAX_LINE {
                    let keep = incomplete_utf8_tail(&self.partial);
                    let at = self.partial.len().saturating_sub(keep);
                    let tail = self.partial.split_off(at);
                    emit(&self.partial, true);
                    self.partial = tail;
                }
            }
        }
    }

    /// End of stream: a last line without newline is still a line.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            emit(&self.partial, false);
            self.partial.clear();
        }
    }
}

/// How many bytes at the end of `b` are the start of a UTF-8 character that is not complete
/// (0 to 3). Anything else (ASCII, a complete character, invalid bytes) is 0.
fn incomplete_utf8_tail(b: &[u8]) -> usize {
    for (k, &byte) in b.iter().rev().take(3).enumerate() {
        let have = k.saturating_add(1);
        let needs = match byte {
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if needs > have { have } else { 0 };
    }
    0
}

/// Appended to a piece of a line cut at [`MAX_LINE`]: the line goes on in the next piece.
pub const CUT_MARK: &str = "\u{2026}";

/// Appends `line` to `out` as text that cannot drive the terminal: valid UTF-8 is kept as
/// is, except control characters (C0 but tab, DEL, C1), which are written `\xNN` (ESC is
/// `\x1b`, so no escape sequence reaches the console) or `\u{NN}` for C1; each byte that is
/// not UTF-8 is `\xNN`. At most 4 bytes out per byte in.
pub fn escape_into(line: &[u8], out: &mut Vec<u8>) {
    for chunk in line.utf8_chunks() {
        let text = chunk.valid();
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c == '\t' || !c.is_control() {
                continue;
            }
            out.extend_from_slice(text.get(start..i).unwrap_or_default().as_bytes());
            // Writing into a Vec cannot fail.
            let _ = if u32::from(c) < 0x80 {
                write!(out, "\\x{:02x}", u32::from(c))
            } else {
                write!(out, "\\u{{{:x}}}", u32::from(c))
            };
            start = i.saturating_add(c.len_utf8());
        }
        out.extend_from_slice(text.get(start..).unwrap_or_default().as_bytes());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
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
    /// The line being escaped.
    scratch: Vec<u8>,
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
            scratch: Vec::new(),
        }
    }

    /// Queues `[name] line\n` with the line escaped ([`escape_into`]) and, if `cut`, the
    /// [`CUT_MARK`]; or counts it dropped if the queue is full.
    pub fn line(&mut self, name: &str, line: &[u8], cut: bool) {
        self.flush_notices();
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        escape_into(line, &mut text);
        if cut {
            text.extend_from_slice(CUT_MARK.as_bytes());
        }
        let len = framed_len(name, text.len());
        if self.queue.len().saturating_add(len) > self.cap {
            let n = self.dropped.entry(name.to_string()).or_default();
            *n = n.saturating_add(line.len() as u64).saturating_add(1);
        } else {
            self.push(name, &text);
        }
        // Kept for the next line: at most 4 * MAX_LINE bytes, allocated once.
        self.scratch = text;
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

    /// Nothing queued or waiting to be reported.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.dropped.is_empty()
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
            a.feed(c, &mut |l, _| out.push(l.to_vec()));
        }
        a.finish(&mut |l, _| out.push(l.to_vec()));
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
        c.line("a", b"0123456789", false);
        c.line("b", b"short", false);
        c.line("a", b"this one does not fit at all, not at all", false);
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
        c.line("x", b"one", false);
        c.flush();
        c.line("y", b"two", false);
        *slow.budget.lock().unwrap() = 100;
        c.flush();
        let text = String::from_utf8(slow.out.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "[x] one\n[y] two\n");
    }

    fn escaped(line: &[u8]) -> String {
        let mut out = Vec::new();
        escape_into(line, &mut out);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn text_is_kept_and_controls_are_escaped() {
        assert_eq!(
            escaped("plain\ttabs, ünïcödé ✓ 😀".as_bytes()),
            "plain\ttabs, ünïcödé ✓ 😀"
        );
        assert_eq!(
            escaped(b"\x1b[2J\x1b]0;owned\x07red"),
            "\\x1b[2J\\x1b]0;owned\\x07red"
        );
        assert_eq!(
            escaped(b"cr\rnul\0bs\x08del\x7f"),
            "cr\\x0dnul\\x00bs\\x08del\\x7f"
        );
        // C1 CSI (U+009B) is a control sequence introducer for some terminals.
        assert_eq!(escaped("a\u{9b}31mb".as_bytes()), "a\\u{9b}31mb");
        assert_eq!(
            escaped(b"bad \xff\xfe utf8 \xc3"),
            "bad \\xff\\xfe utf8 \\xc3"
        );
        assert_eq!(escaped(b""), "");
    }

    #[test]
    fn cut_pieces_are_marked_and_keep_characters_whole() {
        // "é" is 2 bytes: placed so that MAX_LINE falls in its middle.
        let mut line = vec![b'a'; MAX_LINE - 1];
        line.extend_from_slice("é".as_bytes());
        line.extend_from_slice(b"end\n");
        let mut a = LineAssembler::default();
        let mut out = Vec::new();
        a.feed(&line, &mut |l, cut| out.push((l.to_vec(), cut)));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0.len(), out[0].1), (MAX_LINE - 1, true));
        assert_eq!((out[1].0.as_slice(), out[1].1), ("éend".as_bytes(), false));
        let slow = Slow {
            out: Arc::default(),
            budget: Arc::new(Mutex::new(1 << 20)),
        };
        let mut c = Console::new(Box::new(slow.clone()));
        for (l, cut) in &out {
            c.line("s", l, *cut);
        }
        c.flush();
        let text = String::from_utf8(slow.out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with(&format!("aaa{CUT_MARK}")),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], "[s] éend");
    }

    #[test]
    fn escaped_lines_are_bounded() {
        // Worst case: every byte escaped (4 bytes out per byte in).
        let mut a = LineAssembler::default();
        let slow = Slow {
            out: Arc::default(),
            budget: Arc::new(Mutex::new(1 << 22)),
        };
        let mut c = Console::new(Box::new(slow.clone()));
        a.feed(&vec![0x1bu8; MAX_LINE * 3], &mut |l, cut| {
            c.line("e", l, cut)
        });
        a.finish(&mut |l, cut| c.line("e", l, cut));
        c.flush();
        let text = String::from_utf8(slow.out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 3);
        for l in text.lines() {
            assert!(
                l.len() <= "[e] ".len() + 4 * MAX_LINE + CUT_MARK.len(),
                "{}",
                l.len()
            );
        }
    }
}
