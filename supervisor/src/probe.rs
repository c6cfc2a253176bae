//! Readiness probes that poll: `http`, `tcp`, `file` and `exec` (contract §3). Network probes
//! run on a short-lived thread each (bounded by [`PROBE_TIMEOUT`]) and report through a
//! channel the supervisor checks on its next poll tick, so the event loop never blocks; an
//! `exec` probe is a child process whose exit comes back through the loop's reaping.
//! `started` and `notify` need no polling and are handled by the supervisor.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_config::Ready;

/// The longest wait between two probe ticks of a not-yet-ready service.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The first wait after a start: an agent that is ready within milliseconds is seen within
/// milliseconds, and one that takes seconds costs a probe every 250 ms.
pub const FIRST_WAIT: Duration = Duration::from_millis(5);

/// The wait after `w`: half as long again, at most [`POLL_INTERVAL`]. Ticks come 5, 12.5, 24,
/// 41, 66, 104, 161, 246, 374… ms after the start, so an agent ready after `t` is seen by
/// about 1.5 `t` (doubling saw it only by 2 `t`: on the Debian rootfs an agent ready 190 ms
/// after its start was seen at 315 ms), for three more probes in the first half second.
pub fn next_wait(w: Duration) -> Duration {
    w.saturating_add(w.checked_div(2).unwrap_or_default())
        .min(POLL_INTERVAL)
}
/// Most of a probe's response read before the socket is closed anyway.
const MAX_PROBE_RESPONSE: usize = 64 * 1024;
/// One probe attempt's limit (connect, then the response).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// An `http` readiness URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `http://HOST[:PORT][/PATH]` (IPv6 as `[::1]`). Only plain HTTP: probes are local.
pub fn parse_http_url(url: &str) -> Option<HttpTarget> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), 80),
        }
    };
    (!host.is_empty()).then(|| HttpTarget {
        host,
        port,
        path: path.to_string(),
    })
}

/// Reads the status code from an HTTP response's first bytes.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..head.len().min(64))?).ok()?;
    let mut parts = text.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.get(..3)?.parse().ok()
}

/// A probe that polls, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollProbe {
    Http(HttpTarget),
    Tcp(String),
    File(PathBuf),
    Exec(Vec<String>),
}

impl PollProbe {
    /// `None` for `started`/`notify`. An unparsable URL is `Err` with the URL.
    pub fn from_config(ready: &Ready) -> Result<Option<PollProbe>, String> {
        Ok(match ready {
            Ready::Started | Ready::Notify => None,
            Ready::Http(url) => Some(PollProbe::Http(
                parse_http_url(url).ok_or_else(|| url.clone())?,
            )),
            Ready::Tcp(addr) => Some(PollProbe::Tcp(addr.clone())),
            Ready::File(p) => Some(PollProbe::File(p.clone())),
            Ready::Exec(argv) => Some(PollProbe::Exec(argv.clone())),
        })
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, PROBE_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn http_get(t: &HttpTarget) -> bool {
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    let Ok(mut s) = connect(&format!("{host}:{}", t.port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vminit\r\nConnection: close\r\n\r\n",
        t.path
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    // The whole response is read (bounded) before the socket is closed: closing with unread
    // data sends a reset, which agents log as an error on every probe.
    let mut head = [0u8; 64];
    let mut got = 0;
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    loop {
        let buf: &mut [u8] = if got < head.len() {
            &mut head[got..]
        } else {
            &mut sink
        };
        match s.read(buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if got < head.len() {
                    // `read` returns at most the room left in `head`: `got` stays <= 64.
                    got = got.saturating_add(n);
                }
                total = total.saturating_add(n);
                if total > MAX_PROBE_RESPONSE {
                    break;
                }
            }
        }
    }
    matches!(parse_status_line(&head[..got]), Some(200..=399))
}

/// A network probe running on its own thread.
pub struct Pending {
    rx: Receiver<bool>,
}

impl Pending {
    /// Starts an `http` or `tcp` attempt; `waker`, if any, is woken once its answer can be
    /// read. `None` if no thread could be started (a failed attempt; the next tick retries).
    pub fn start(probe: &PollProbe, waker: Option<Arc<mio::Waker>>) -> Option<Pending> {
        let (tx, rx) = mpsc::channel();
        let probe = probe.clone();
        let run = move || {
            let ok = match &probe {
                PollProbe::Http(t) => http_get(t),
                PollProbe::Tcp(addr) => connect(addr).is_ok(),
                _ => false,
            };
            let _ = tx.send(ok);
            if let Some(w) = waker {
                // A failed wake only delays the answer to the next tick.
                let _ = w.wake();
            }
        };
        std::thread::Builder::new()
            .name("vminit-probe".into())
            .spawn(run)
            .ok()?;
        Some(Pending { rx })
    }

    /// `Some(result)` once the attempt finished.
    pub fn poll(&self) -> Option<bool> {
        match self.rx.try_recv() {
            Ok(ok) => Some(ok),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(false),
        }
    }
}

/// An `exec` probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecRun {
    pub pid: i32,
    /// When to give up on it (`None`: never, only if the clock cannot represent it).
    pub deadline: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_start_at_milliseconds_and_back_off_to_the_interval() {
        let mut w = FIRST_WAIT;
        let mut seen = vec![w];
        for _ in 0..20 {
            w = next_wait(w);
            seen.push(w);
        }
        assert_eq!(seen[..3], [5000, 7500, 11250].map(Duration::from_micros));
        // Each tick comes at most half the time since the start after an agent got ready.
        let mut at = Duration::ZERO;
        for pair in seen.windows(2).take_while(|p| p[1] < POLL_INTERVAL) {
            at += pair[0];
            assert!(pair[1] <= at / 2 + FIRST_WAIT, "{seen:?}");
        }
        assert_eq!(*seen.last().unwrap(), POLL_INTERVAL);
    }

    /// The probe reads the whole answer before it closes, so the agent sees a clean close
    /// (EOF), not a reset, when it reads after answering.
    #[test]
    fn the_http_probe_closes_cleanly_after_reading_the_whole_answer() {
        use std::net::{Shutdown, TcpListener};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req).unwrap();
            let body = "x".repeat(20_000);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            c.write_all(resp.as_bytes()).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.read(&mut req).map(|n| n == 0)
        });
        let t = parse_http_url(&format!("http://127.0.0.1:{port}/health")).unwrap();
        assert!(http_get(&t));
        let clean = server.join().unwrap();
        assert!(
            matches!(clean, Ok(true)),
            "the agent saw {clean:?}, not EOF"
        );
    }

    #[test]
    fn urls() {
        let t = parse_http_url("http://127.0.0.1:8080/health").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/health")
        );
        let t = parse_http_url("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = parse_http_url("http://[::1]:9/x?y=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9, "/x?y=1")
        );
        assert_eq!(parse_http_url("https://x/"), None);
        assert_eq!(parse_http_url("http://x:port/"), None);
        assert_eq!(parse_http_url("http:///"), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-x"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2"), None);
    }

    #[test]
    fn config_mapping() {
        assert_eq!(PollProbe::from_config(&Ready::Notify), Ok(None));
        assert_eq!(
            PollProbe::from_config(&Ready::Http("ftp://x".into())),
            Err("ftp://x".to_string())
        );
        assert!(matches!(
            PollProbe::from_config(&Ready::Tcp("127.0.0.1:1".into())),
            Ok(Some(PollProbe::Tcp(_)))
        ));
    }

    #[test]
    fn probes_against_a_local_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf).unwrap();
            c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        let url = format!("http://127.0.0.1:{port}/health");
        let p = PollProbe::from_config(&Ready::Http(url)).unwrap().unwrap();
        let pending = Pending::start(&p, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = loop {
            if let Some(r) = pending.poll() {
                break r;
            }
            assert!(Instant::now() < deadline, "probe never finished");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(result);
        server.join().unwrap();
        // Nothing listens there any more.
        let closed = Pending::start(&PollProbe::Tcp(format!("127.0.0.1:{port}")), None).unwrap();
        let result = loop {
            if let Some(r) = closed.poll() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(!result);
    }

    /// A finished attempt wakes the loop's poll, and its answer is there to read then: the
    /// supervisor reads it in that turn, not at the next tick.
    #[test]
    fn a_finished_probe_wakes_the_loop_with_its_answer_ready() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = PollProbe::Tcp(format!("127.0.0.1:{port}"));
        // The loop keeps its waker: a waker dropped with the probe thread would close its
        // eventfd, and the wake with it.
        let pending = Pending::start(&p, Some(Arc::clone(&waker))).unwrap();
        let mut events = mio::Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
            if events.iter().any(|e| e.token() == mio::Token(7)) {
                break;
            }
            assert!(Instant::now() < deadline, "the probe never woke the poll");
        }
        assert_eq!(
            pending.poll(),
            Some(false),
            "the answer is readable once woken"
        );
    }
}
