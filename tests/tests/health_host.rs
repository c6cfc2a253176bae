//! The health endpoint of the real `vminit` binary, run on the host as a plain supervisor:
//! contract §4's routes and statuses, and boundedness under hostile clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use vminit_tests::{read_all, HostVminit};

const EMPTY: &str = "# no services\n";

#[test]
fn routes_statuses_and_json_shape() {
    let v = HostVminit::start(EMPTY);
    let (code, body) = v.get("/health");
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    // No services and no network source: nothing to wait for.
    assert_eq!(j["status"], "ok", "{j:#}");
    assert_eq!(code, 200);
    assert_eq!(j["network"]["source"], "none");
    assert!(j["network"]["error"].is_null());
    assert!(j["services"].as_object().unwrap().is_empty());
    assert!(j["boot"]["init_start_ms"].as_u64().is_some());
    assert!(j["errors"].as_array().unwrap().is_empty());

    assert_eq!(v.get("/livez").0, 200);
    let (code, metrics) = v.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("vminit_status{status=\"ok\"} 1"),
        "{metrics}"
    );
    assert_eq!(v.get("/").0, 404);
    assert_eq!(v.get("/nope").0, 404);

    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let mut s = TcpStream::connect(v.addr).unwrap();
        write!(
            s,
            "{method} /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let resp = String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(10))).to_string();
        assert!(resp.starts_with("HTTP/1.1 405"), "{method}: {resp}");
    }
}

#[test]
fn malformed_and_huge_requests_get_errors_not_a_crash() {
    let v = HostVminit::start(EMPTY);
    let mut s = TcpStream::connect(v.addr).unwrap();
    s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .unwrap();
    let resp = read_all(&mut s, Duration::from_secs(10));
    assert!(
        resp.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    let mut s = TcpStream::connect(v.addr).unwrap();
    let mut huge = b"GET /health HTTP/1.1\r\nX-Junk: ".to_vec();
    huge.resize(64 * 1024, b'a');
    // The server may close before reading everything; a write error is fine.
    let _ = s.write_all(&huge);
    let resp = read_all(&mut s, Duration::from_secs(10));
    assert!(
        resp.is_empty() || resp.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(v.get("/health").0, 200);
}

/// Stalled clients (connected, a partial request, then silence) must not delay a poll: each
/// costs one bounded slot, and past the slot limit the oldest is evicted.
#[test]
fn stalled_clients_do_not_block_polls_and_memory_stays_bounded() {
    let v = HostVminit::start(EMPTY);
    let rss_before = v.rss_kib();
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(v.addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").unwrap();
        s.write_all(&[b'a'; 4000]).unwrap();
        stalled.push(s);
    }
    // The poll gets its answer while 300 clients stall (the server's per-connection deadline
    // is 5 s; this read timeout is shorter, so a server blocked by them would fail here).
    let (code, body) = qemu_harness::http::get(v.addr, "/health", Duration::from_secs(4))
        .unwrap_or_else(|e| panic!("poll blocked by stalled clients: {e}\n{}", v.console()));
    assert_eq!(code, 200, "{body}");
    let rss_after = v.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB with 300 stalled clients"
    );
    let (_, metrics) = v.get("/metrics");
    assert!(
        metrics.contains("vminit_health_connections_evicted_total"),
        "{metrics}"
    );
    drop(stalled);
}

/// A flood of slow clients that reconnect as soon as they are evicted (more of them than
/// there are slots) must not cost well-behaved pollers their answers: eviction picks a
/// stalled connection, and reads a candidate once more before dropping it, so a poll whose
/// request has arrived is answered.
#[test]
fn reconnecting_slow_clients_do_not_cost_polls() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let v = HostVminit::start(EMPTY);
    let addr = v.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let stall = |addr| -> Option<TcpStream> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conns: Vec<Option<TcpStream>> = (0..200).map(|_| stall(addr)).collect();
            let mut reconnects = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for slot in conns.iter_mut() {
                    // EOF, an answer, or an error: the server is done with this one.
                    let closed = match slot {
                        Some(s) => match s.read(&mut [0u8; 64]) {
                            Ok(_) => true,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        },
                        None => true,
                    };
                    if closed {
                        *slot = stall(addr);
                        reconnects += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            reconnects
        })
    };
    let pollers: Vec<_> = (0..32)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_secs(3) {
                    match qemu_harness::http::get(addr, "/health", Duration::from_secs(4)) {
                        Ok((200, _)) => ok += 1,
                        Ok((code, _)) => failed.push(format!("status {code}")),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let results: Vec<(u32, Vec<String>)> = pollers.into_iter().map(|p| p.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let reconnects = flood.join().unwrap();
    let ok: u32 = results.iter().map(|r| r.0).sum();
    let failed: Vec<&String> = results.iter().flat_map(|r| r.1.iter()).collect();
    eprintln!(
        "{ok} polls answered, {} failed, {reconnects} flood reconnects",
        failed.len()
    );
    assert!(
        reconnects > 0,
        "the flood never got evicted: the test exercised nothing"
    );
    let total = ok as usize + failed.len();
    // Measured here: blind eviction lost 34–43 of ~70k polls, this server none. The bound
    // leaves room for a loaded machine without letting the old behaviour pass.
    assert!(
        failed.len() * 5000 <= total,
        "{} of {total} polls failed under a reconnecting flood ({reconnects} reconnects); first: {:?}",
        failed.len(),
        failed.first()
    );
}

#[test]
fn many_sequential_polls_are_all_answered() {
    let v = HostVminit::start(EMPTY);
    for i in 0..500 {
        let (code, _) = qemu_harness::http::get(v.addr, "/health", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("poll {i}: {e}"));
        assert_eq!(code, 200);
    }
}

#[test]
fn sigterm_stops_host_mode_cleanly() {
    let mut v = HostVminit::start(EMPTY);
    let code = v.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    assert_eq!(code, Some(0), "console:\n{}", v.console());
    assert!(v.console().contains("SIGTERM"), "{}", v.console());
}

/// The generation of the current document.
fn generation(v: &HostVminit) -> u64 {
    v.health()["generation"]
        .as_u64()
        .expect("generation is a number")
}

/// Long polls waiting in the server now, from `/metrics`.
fn waiting(v: &HostVminit) -> u64 {
    let (_, m) = v.get("/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix("vminit_health_waiting_connections "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no waiting gauge in\n{m}"))
}

const SLEEPER: &str = r#"
[services.sleeper]
command = ["sleep", "1000"]
restart = "never"
"#;

/// `GET /health?wait=N` answers on the next change, not after its 30 s: a service killed
/// from outside wakes it with the new state.
#[test]
fn a_long_poll_answers_when_a_service_changes_state() {
    let v = HostVminit::start(SLEEPER);
    let h = v.wait_health(Duration::from_secs(30), |h| {
        h["services"]["sleeper"]["pid"].as_u64().is_some()
    });
    let pid = h["services"]["sleeper"]["pid"].as_i64().unwrap();
    let g = generation(&v);
    let addr = v.addr;
    let waiter = std::thread::spawn(move || {
        let path = format!("/health?wait={g}");
        let r = qemu_harness::http::get(addr, &path, Duration::from_secs(60));
        (r, std::time::Instant::now())
    });
    v.wait_until(Duration::from_secs(30), |v| waiting(v) == 1);
    // SAFETY: kill(2) on the service's pid, a child of our own vminit child.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
    let killed = std::time::Instant::now();
    let (r, answered) = waiter.join().unwrap();
    let (_, body) = r.unwrap_or_else(|e| panic!("long poll: {e}\n{}", v.console()));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["generation"].as_u64().unwrap() > g, "{doc:#}");
    assert_ne!(doc["services"]["sleeper"]["state"], "running", "{doc:#}");
    // Generous, and still well short of the 30 s a long poll waits when nothing changes.
    let took = answered.saturating_duration_since(killed);
    assert!(
        took < Duration::from_secs(20),
        "answered {took:?} after the kill"
    );
}

/// 100 long polls hold at most half the slots; a plain poll next to them is answered.
#[test]
fn a_hundred_waiters_do_not_lock_out_a_plain_poll() {
    let v = HostVminit::start(EMPTY);
    let g = generation(&v);
    let mut waiters = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(v.addr).unwrap();
        write!(s, "GET /health?wait={g} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        waiters.push(s);
    }
    v.wait_until(Duration::from_secs(30), |v| waiting(v) >= 32);
    // Issue 15's target for this poll is 1 s: a figure, not the bound. Observed on the shared
    // 2-core host (2026-12-03, six runs): 0.16-0.9 ms. The bound asserted is 5 s, which a poll
    // locked out by the waiters (answered only when a waiter's 30 s ran out, or never) misses
    // by far, and a loaded host's stall does not reach.
    let start = Instant::now();
    let (code, body) = v.get("/health");
    let took = start.elapsed();
    assert_eq!(code, 200, "{body}");
    println!("a plain poll next to 100 waiters: {took:?}");
    assert!(
        took <= Duration::from_secs(5),
        "a plain poll next to 100 waiters took {took:?} (bound 5 s; the 1 s target is a \
         benchmark figure)"
    );
    assert!(waiting(&v) <= 64, "more waiters than half the slots");
    drop(waiters);
}

/// With nothing changing, a long poll is answered after its 30 s with the current document.
#[test]
fn a_long_poll_with_nothing_changing_answers_after_its_wait() {
    let v = HostVminit::start(EMPTY);
    let g = generation(&v);
    let path = format!("/health?wait={g}");
    let start = Instant::now();
    let (code, body) = qemu_harness::http::get(v.addr, &path, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("long poll: {e}\n{}", v.console()));
    let took = start.elapsed();
    assert_eq!(code, 200, "{body}");
    // It waited (the lower bound cannot flake from slowness: it only fails on an early
    // answer), and not for ever: 30 s in the server, with room for a slow host.
    assert!(
        took >= Duration::from_secs(25) && took < Duration::from_secs(60),
        "a long poll with nothing changing answered after {took:?}, not after its 30 s wait"
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["generation"].as_u64(), Some(g), "{doc:#}");
    // A bad generation is refused, not taken as a plain poll.
    assert_eq!(v.get("/health?wait=soon").0, 400);
}
