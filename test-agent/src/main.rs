//! `test-agent`: a stand-in for guest agents in the tests and the demo (static, std + libc +
//! sd-notify). The behaviour is picked by `argv[1]`:
//!
//! ```text
//! test-agent http --port P [--bind ADDR] [--health-path /health] [--ready-after MS]
//!                                            (GET /exit answers, then exits 0: a state
//!                                            change the host can cause at a known time)
//! test-agent crash --after MS --code C
//! test-agent exit --after MS                 exit 0 (the idle-exit pattern)
//! test-agent ignore-term                     ignores SIGTERM, sleeps forever
//! test-agent notify --after MS               sends READY=1 (sd_notify), sleeps forever
//! test-agent orphans --count N [--sleep MS]  double-forks N sleepers, prints their pids, exits
//! test-agent alloc --mb N                    touches N MiB, sleeps forever
//! test-agent print --lines N                 N stdout lines, a stderr line, a long line,
//!                                            a last line without newline, exits 0
//! test-agent touch --path F --after MS       creates F, sleeps forever
//! test-agent spin                            burns CPU forever (a hog)
//! test-agent trap-term [--message M]         waits for SIGTERM, prints M (GOT-TERM), exits 0
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!("usage: test-agent http|crash|exit|ignore-term|notify|orphans|alloc|print|touch|spin|trap-term [--opt value]...");
    ExitCode::from(2)
}

/// `--name value` pairs after the mode.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Option<Opts> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--")?;
            out.push((key.to_string(), it.next()?.clone()));
        }
        Some(Opts(out))
    }
    fn str(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn num(&self, key: &str, default: u64) -> u64 {
        self.str(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    fn ms(&self, key: &str) -> Duration {
        Duration::from_millis(self.num(key, 0))
    }
}

fn forever() -> ! {
    loop {
        sleep(Duration::from_secs(3600));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(mode) = args.get(1) else {
        return usage();
    };
    let Some(o) = Opts::parse(&args[2..]) else {
        return usage();
    };
    match mode.as_str() {
        "http" => http(&o),
        "crash" => {
            sleep(o.ms("after"));
            println!("crashing with code {}", o.num("code", 1));
            ExitCode::from(o.num("code", 1) as u8)
        }
        "exit" => {
            sleep(o.ms("after"));
            println!("idle: exiting");
            ExitCode::SUCCESS
        }
        "ignore-term" => {
            // SAFETY: SIG_IGN is a valid disposition for SIGTERM; no handler code runs.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            println!("ignoring SIGTERM");
            forever()
        }
        "notify" => {
            sleep(o.ms("after"));
            let state = [
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("serving"),
            ];
            if let Err(e) = sd_notify::notify(false, &state) {
                eprintln!("notify failed: {e}");
                return ExitCode::from(1);
            }
            println!("notified READY=1");
            forever()
        }
        "orphans" => orphans(
            o.num("count", 1),
            o.ms("sleep").max(Duration::from_millis(1)),
        ),
        "alloc" => {
            let mb = o.num("mb", 1) as usize;
            let mut v = vec![0u8; mb << 20];
            // Touch every page so the memory is really resident.
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            println!("allocated {mb} MiB");
            let _ = std::io::stdout().flush();
            std::hint::black_box(&v);
            forever()
        }
        "print" => {
            let mut out = std::io::stdout().lock();
            for i in 0..o.num("lines", 3) {
                let _ = writeln!(out, "line {i}");
            }
            let _ = writeln!(out, "long {}", "x".repeat(10_000));
            let _ = out.flush();
            eprintln!("to stderr");
            let _ = write!(out, "no newline at exit");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        "touch" => {
            sleep(o.ms("after"));
            let Some(path) = o.str("path") else {
                return usage();
            };
            if let Err(e) = std::fs::write(path, b"ready\n") {
                eprintln!("cannot create {path}: {e}");
                return ExitCode::from(1);
            }
            println!("created {path}");
            forever()
        }
        "trap-term" => {
            println!("waiting for SIGTERM");
            let _ = std::io::stdout().flush();
            wait_for_term();
            println!("{}", o.str("message").unwrap_or("GOT-TERM"));
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        "spin" => {
            println!("spinning");
            let _ = std::io::stdout().flush();
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        _ => usage(),
    }
}

/// Blocks SIGTERM and waits for it with sigwait(3): the last words are printed from normal
/// code, not a signal handler.
fn wait_for_term() {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before use; sigprocmask
    // and sigwait only read it and write the signal number into the local `sig`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
    }
}

fn http(o: &Opts) -> ExitCode {
    let bind = o.str("bind").unwrap_or("0.0.0.0");
    let port = o.num("port", 8080);
    let path = o.str("health-path").unwrap_or("/health").to_string();
    let ready_at = Instant::now() + o.ms("ready-after");
    let listener = match TcpListener::bind(format!("{bind}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {bind}:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {bind}:{port}");
    for conn in listener.incoming().flatten() {
        if answer(conn, &path, Instant::now() >= ready_at) {
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::from(1)
}

/// Answers one request; true when it was `GET /exit`.
fn answer(mut c: TcpStream, health: &str, ready: bool) -> bool {
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 2048];
    let mut got = 0;
    while got < buf.len() && !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let req = String::from_utf8_lossy(&buf[..got]);
    let target = req.split(' ').nth(1).unwrap_or("");
    let exit = target == "/exit";
    let (code, text) = match (target == health, ready) {
        _ if exit => (200, "OK"),
        (true, true) => (200, "OK"),
        (true, false) => (503, "Service Unavailable"),
        _ => (404, "Not Found"),
    };
    let body = format!("{text}\n");
    let _ = write!(
        c,
        "HTTP/1.1 {code} {text}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exit
}

fn orphans(count: u64, nap: Duration) -> ExitCode {
    for _ in 0..count {
        // SAFETY: fork(2) in a single-threaded process; the child only sleeps and exits
        // through libc::_exit, never returning into main.
        match unsafe { libc::fork() } {
            -1 => return ExitCode::from(1),
            0 => {
                // SAFETY: as above, in the intermediate child.
                let pid = unsafe { libc::fork() };
                if pid > 0 {
                    println!("orphan {pid}");
                    let _ = std::io::stdout().flush();
                } else if pid == 0 {
                    sleep(nap);
                }
                // SAFETY: _exit ends this forked process without running the parent's
                // atexit handlers or flushing its inherited buffers twice.
                unsafe { libc::_exit(0) }
            }
            child => {
                let mut status = 0;
                // SAFETY: waits for our own intermediate child; status is a valid out pointer.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
    }
    ExitCode::SUCCESS
}
