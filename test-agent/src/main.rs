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
//! test-agent notify-flood [--foreign 1]      READY=1, then STATUS=flood N datagrams without
//!                                            end (and from a process in another session,
//!                                            a foreign sender, with --foreign 1)
//! test-agent term-last-line                  on SIGTERM prints GOT-TERM and exits 0
//! test-agent proc-status                     prints its /proc/self/status and cwd, exits 0
//!                                            (SigIgn shows SIGPIPE: Rust's runtime sets it)
//! test-agent limits                          prints its /proc/self/limits, sleeps forever
//! test-agent cat --paths A,B                 prints "cat A: <first line of A>" (or the
//!                                            error) for each, then "cat end", sleeps forever
//! test-agent fork-bomb [--stop-port P]       every process forks without end; a refused
//!                                            fork is said once (per process) and retried.
//!                                            With P, the first process only forks the
//!                                            bomb and listens on P: any request there is
//!                                            answered, then it exits 1 (a crash: the
//!                                            supervisor kills the rest of the cgroup)
//! test-agent setsid-child --port P --after MS
//!                                            a child leaves the session (setsid), listens
//!                                            on P ("bound port P") or says "port P busy";
//!                                            the parent exits 3 after MS
//! test-agent spawn-bench --n N               (as a vminit service, cgroup v2) times N
//!                                            fork+exec+wait of `test-agent exit` as is and
//!                                            N joining a leaf cgroup first; prints both
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!("usage: test-agent http|crash|exit|ignore-term|notify|orphans|alloc|print|touch|spin|notify-flood|term-last-line|proc-status|limits|cat|fork-bomb|setsid-child [--opt value]...");
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
        "spin" => {
            println!("spinning");
            let _ = std::io::stdout().flush();
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "notify-flood" => notify_flood(o.num("foreign", 0) == 1),
        "term-last-line" => term_last_line(),
        "limits" => {
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
            println!("{limits}limits end");
            let _ = std::io::stdout().flush();
            forever()
        }
        "cat" => {
            for path in o.str("paths").unwrap_or("").split(',') {
                match std::fs::read_to_string(path) {
                    Ok(t) => println!("cat {path}: {}", t.lines().next().unwrap_or("")),
                    Err(e) => println!("cat {path}: error {e}"),
                }
            }
            println!("cat end");
            let _ = std::io::stdout().flush();
            forever()
        }
        "fork-bomb" => match o.num("stop-port", 0) {
            0 => fork_bomb(),
            port => stoppable_fork_bomb(port as u16),
        },
        "spawn-bench" => spawn_bench(o.num("n", 200)),
        "setsid-child" => setsid_child(o.num("port", 0) as u16, o.ms("after")),
        "proc-status" => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("error {e}"));
            println!("{status}cwd {cwd}");
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

static TERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Traps SIGTERM; on it prints a last line and exits at once (the shutdown-loses-the-last-
/// line case). `armed` says the handler is in place.
fn term_last_line() -> ExitCode {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    println!("armed");
    let _ = std::io::stdout().flush();
    while !TERM.load(std::sync::atomic::Ordering::SeqCst) {
        sleep(Duration::from_millis(5));
    }
    println!("GOT-TERM");
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

/// Floods `$NOTIFY_SOCKET`: blocking sends, so the pace is the reader's.
fn notify_flood(foreign: bool) -> ExitCode {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        eprintln!("no NOTIFY_SOCKET");
        return ExitCode::from(1);
    };
    // SAFETY: fork(2) before any thread is started; the child only sends datagrams.
    let foreign_child = foreign && unsafe { libc::fork() } == 0;
    if foreign_child {
        // SAFETY: setsid(2) takes no arguments: a new session makes this pid foreign to
        // the service. PR_SET_PDEATHSIG takes a signal number: the stop of the service (its
        // process group, which this child left) must still end it.
        unsafe {
            libc::setsid();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
    }
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("socket: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = sock.send_to(b"READY=1", &path);
    println!("flooding {}", path.to_string_lossy());
    let _ = std::io::stdout().flush();
    let mut n: u64 = 0;
    loop {
        n = n.wrapping_add(1);
        if sock
            .send_to(format!("STATUS=flood {n}").as_bytes(), &path)
            .is_err()
        {
            if foreign_child {
                // The socket is gone: the service was stopped.
                return ExitCode::SUCCESS;
            }
            sleep(Duration::from_millis(1));
        }
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

/// Forks without end in every process; with a `pids.max` the kernel refuses forks (EAGAIN)
/// and everything stays at the limit, retrying.
fn fork_bomb() -> ExitCode {
    println!("fork bomb");
    let _ = std::io::stdout().flush();
    let mut said = false;
    loop {
        // SAFETY: fork(2) in a single-threaded process; both sides run this same loop, which
        // only forks, sleeps and writes to stdout.
        match unsafe { libc::fork() } {
            -1 => {
                if !said {
                    said = true;
                    println!("fork refused: {}", std::io::Error::last_os_error());
                    let _ = std::io::stdout().flush();
                }
                sleep(Duration::from_millis(20));
            }
            0 => said = false,
            _ => {}
        }
    }
}

/// [`fork_bomb`] in a child, while this process waits for a request on `port` and then exits
/// 1: a bomb the host can stop at a time it picks (the benchmark's phases).
fn stoppable_fork_bomb(port: u16) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {port}: {e}");
            return ExitCode::from(1);
        }
    };
    // SAFETY: fork(2) in a single-threaded process; the child closes the listener and runs
    // the bomb loop, which only forks, sleeps and writes to stdout.
    match unsafe { libc::fork() } {
        -1 => ExitCode::from(1),
        0 => {
            drop(listener);
            fork_bomb()
        }
        _ => {
            if let Some(c) = listener.incoming().flatten().next() {
                answer(c, "/stop", true);
            }
            println!("fork bomb stopped");
            let _ = std::io::stdout().flush();
            ExitCode::from(1)
        }
    }
}

/// The marginal cost of a cgroup at spawn, as the supervisor pays it: the child writes "0"
/// to a pre-opened `cgroup.procs` between fork and exec. Both runs spawn the same program;
/// the first leaves the children in the agent's own cgroup (no join), the second moves each
/// into a sibling leaf with the memory, pids and cpu controllers on.
fn spawn_bench(n: u64) -> ExitCode {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let run = || -> std::io::Result<(Duration, Duration)> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let own = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| std::io::Error::other("no cgroup v2"))?;
        let base = std::path::Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
        // Out of `base` first, so that it may enable controllers for its children.
        let me = base.join("bench-self");
        let leaf = base.join("bench-leaf");
        for d in [&me, &leaf] {
            let _ = std::fs::create_dir(d);
        }
        std::fs::write(me.join("cgroup.procs"), std::process::id().to_string())?;
        for c in ["+cpu", "+memory", "+pids"] {
            std::fs::write(base.join("cgroup.subtree_control"), c)?;
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(leaf.join("cgroup.procs"))?;
        let fd = procs.as_raw_fd();
        let time = |join: bool| -> std::io::Result<Duration> {
            let start = Instant::now();
            for _ in 0..n {
                let mut cmd = std::process::Command::new("/bin/test-agent");
                cmd.args(["exit", "--after", "0"]);
                if join {
                    // SAFETY: write(2) of a static buffer to an fd that outlives the spawn;
                    // async-signal-safe, nothing allocated between fork and exec.
                    unsafe {
                        cmd.pre_exec(move || {
                            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                }
                cmd.status()?;
            }
            Ok(start.elapsed())
        };
        // One warm-up round each, then alternate, so that neither side gets a cold cache.
        time(false)?;
        time(true)?;
        let (mut plain, mut joined) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..3 {
            plain += time(false)?;
            joined += time(true)?;
        }
        Ok((plain, joined))
    };
    match run() {
        Ok((plain, joined)) => {
            let per = |d: Duration| d.as_secs_f64() * 1e6 / (3 * n) as f64;
            println!(
                "spawn-bench n={} plain {:.0} us joined {:.0} us ratio {:.2}",
                3 * n,
                per(plain),
                per(joined),
                joined.as_secs_f64() / plain.as_secs_f64()
            );
        }
        Err(e) => println!("spawn-bench failed: {e}"),
    }
    let _ = std::io::stdout().flush();
    forever()
}

/// A child in its own session holding `port`: what escapes a process-group kill.
fn setsid_child(port: u16, after: Duration) -> ExitCode {
    // SAFETY: fork(2) before any thread is started; the child only calls setsid, binds and
    // sleeps.
    match unsafe { libc::fork() } {
        -1 => ExitCode::from(1),
        0 => {
            // SAFETY: setsid(2) has no memory arguments.
            unsafe { libc::setsid() };
            match TcpListener::bind(("0.0.0.0", port)) {
                Ok(l) => {
                    println!("bound port {port} in pid {}", std::process::id());
                    let _ = std::io::stdout().flush();
                    std::hint::black_box(&l);
                    forever()
                }
                Err(e) => {
                    println!("port {port} busy: {e}");
                    let _ = std::io::stdout().flush();
                    // SAFETY: ends the forked child without running the parent's exit path.
                    unsafe { libc::_exit(1) }
                }
            }
        }
        _ => {
            sleep(after);
            ExitCode::from(3)
        }
    }
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
