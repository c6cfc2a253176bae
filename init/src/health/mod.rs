//! The health endpoint (contract §4): `/health`, `/livez`, `/metrics` over HTTP/1.1, served from
//! its own thread so that a slow client or a busy boot step never delays a poll. The event loop
//! publishes a [`HealthDoc`]; the server only reads it. `/livez` is answered only after the
//! event loop itself has answered a ping, so it proves the main loop is responsive.
//!
//! Every listener (TCP `ADDR:PORT`, `vsock:PORT`) is served by the same thread and bounds; the
//! vsock one can be added after the thread started ([`add_listener`]), once its driver is
//! loaded. `GET /health?wait=N` waits in the server until the published `generation`
//! exceeds N ([`Shared::publish`] wakes the thread when it does).
//!
//! As PID 1 the server thread runs at the lowest priority (nice 19) while vminit's own boot
//! work runs: a microVM often has one vCPU, the boot is CPU-bound, and a host controller that
//! polls early has a burst of probes queued in its NAT that reach the guest the moment `eth0`
//! gets its address. Answering them `503 starting` at full priority would delay the very step
//! the host waits for; at nice 19 they are answered once the boot has published the network's
//! outcome (or a status other than `starting`, or after [`BOOT_YIELD_MAX`]), and get that
//! answer. Services still starting after that are not the boot's work: a CPU-hungry one would
//! leave a nice-19 thread too little CPU for a fast poller, so the yield ends there.

pub mod doc;
pub mod http;
pub mod metrics;
mod server;
mod socket;

use guest_config::Listener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::report::ModulesDoc;

pub use doc::{CgroupsDoc, HealthDoc, NetworkDoc};
use mio::Waker;
pub use socket::BindError;
use socket::ListenSock;

/// State shared between the event loop and the server thread.
pub struct Shared {
    doc: Mutex<Arc<HealthDoc>>,
    livez_ping: AtomicU64,
    livez_pong: AtomicU64,
    /// Wakes the main loop for a livez ping; set once the loop exists.
    main_waker: OnceLock<Arc<Waker>>,
    /// Wakes the server when a pong arrives.
    server_waker: OnceLock<Arc<Waker>>,
    /// Set once the boot has published the network's outcome or a status other than
    /// `starting`.
    settled: AtomicBool,
    /// Errors found off the event loop (a panic caught in the health thread) for the loop to
    /// add to `errors[]` on its next publish.
    faults: Mutex<Vec<String>>,
    /// Set (and `left_starting_cv` notified) once the status has first left `starting`: the
    /// rest of the drivers wait for it ([`crate::late_modules`]).
    left_starting: Mutex<bool>,
    left_starting_cv: Condvar,
    /// The module report after the rest stage, for the loop to put in `modules` on its next
    /// publish.
    late_modules: Mutex<Option<ModulesDoc>>,
    /// Listeners bound after the server started (the vsock one, once its driver is loaded),
    /// for the server thread to take on its next wake-up.
    new_listeners: Mutex<Vec<(ListenSock, String)>>,
}

/// Longest time the server thread yields the CPU to the boot (see the module doc).
pub const BOOT_YIELD_MAX: Duration = Duration::from_secs(10);
/// The server thread's nice value while it yields.
const BOOT_YIELD_NICE: i32 = 19;

impl Shared {
    pub fn new(doc: HealthDoc) -> Arc<Shared> {
        Arc::new(Shared {
            doc: Mutex::new(Arc::new(doc)),
            livez_ping: AtomicU64::new(0),
            livez_pong: AtomicU64::new(0),
            main_waker: OnceLock::new(),
            server_waker: OnceLock::new(),
            settled: AtomicBool::new(false),
            faults: Mutex::new(Vec::new()),
            left_starting: Mutex::new(false),
            left_starting_cv: Condvar::new(),
            late_modules: Mutex::new(None),
            new_listeners: Mutex::new(Vec::new()),
        })
    }

    /// Called by the event loop on each publish whose status is not `starting`.
    pub fn mark_left_starting(&self) {
        let mut left = self.left_starting.lock().unwrap_or_else(|p| p.into_inner());
        if !*left {
            *left = true;
            self.left_starting_cv.notify_all();
        }
    }

    /// Waits until the status has first left `starting`, at most `max`; true if it has.
    pub fn wait_left_starting(&self, max: Duration) -> bool {
        let left = self.left_starting.lock().unwrap_or_else(|p| p.into_inner());
        let (left, _) = self
            .left_starting_cv
            .wait_timeout_while(left, max, |left| !*left)
            .unwrap_or_else(|p| p.into_inner());
        *left
    }

    /// Hands the module report of a stage run off the event loop to the loop, and wakes it
    /// to publish it.
    pub fn hand_in_modules(&self, doc: ModulesDoc) {
        *self.late_modules.lock().unwrap_or_else(|p| p.into_inner()) = Some(doc);
        if let Some(w) = self.main_waker.get() {
            let _ = w.wake();
        }
    }

    /// The module report handed in since the last call.
    pub fn take_modules(&self) -> Option<ModulesDoc> {
        self.late_modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Records an error found off the event loop and wakes the loop to publish it.
    pub fn report_fault(&self, msg: String) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
        if let Some(w) = self.main_waker.get() {
            let _ = w.wake();
        }
    }

    /// The errors reported since the last call.
    pub fn take_faults(&self) -> Vec<String> {
        std::mem::take(&mut *self.faults.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Called by the event loop once the network has an outcome or the status has left
    /// `starting`: a server thread that yields to the boot returns to normal priority.
    pub fn mark_settled(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            if let Some(w) = self.server_waker.get() {
                let _ = w.wake();
            }
        }
    }

    fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    pub fn doc(&self) -> Arc<HealthDoc> {
        Arc::clone(&self.doc.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the document; a new generation wakes the server for its long polls.
    pub fn publish(&self, doc: HealthDoc) {
        let generation = doc.generation;
        let old = std::mem::replace(
            &mut *self.doc.lock().unwrap_or_else(|p| p.into_inner()),
            Arc::new(doc),
        );
        if generation != old.generation {
            if let Some(w) = self.server_waker.get() {
                let _ = w.wake();
            }
        }
    }

    fn take_new_listeners(&self) -> Vec<(ListenSock, String)> {
        std::mem::take(&mut *self.new_listeners.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Called by the event loop once its poll exists.
    pub fn set_main_waker(&self, waker: Arc<Waker>) {
        let _ = self.main_waker.set(waker);
    }

    /// The event loop exists (its waker is set): pings get pongs.
    fn loop_running(&self) -> bool {
        self.main_waker.get().is_some()
    }

    fn ping_main_loop(&self) -> u64 {
        let seq = self
            .livez_ping
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        if let Some(w) = self.main_waker.get() {
            let _ = w.wake();
        }
        seq
    }

    /// The pings so far, read by the event loop before it publishes: more than it has ponged
    /// means a request waits for this publication, which then reads the services' live
    /// figures; [`Self::pong`] answers exactly these.
    pub fn pings(&self) -> (u64, bool) {
        let ping = self.livez_ping.load(Ordering::Acquire);
        (ping, ping != self.livez_pong.load(Ordering::Acquire))
    }

    /// Called by the event loop after every publication: answers the pings up to `ping`
    /// (read before it published, by [`Self::pings`]), so a request always reads a
    /// document published after it asked.
    pub fn pong(&self, ping: u64) {
        if self.livez_pong.swap(ping, Ordering::AcqRel) != ping {
            if let Some(w) = self.server_waker.get() {
                let _ = w.wake();
            }
        }
    }
}

/// How the server thread shares the CPU with the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Normal priority throughout (off PID 1: the boot is not ours).
    Normal,
    /// Nice 19 until [`Shared::mark_settled`] or [`BOOT_YIELD_MAX`] (see the module doc).
    YieldToBoot,
}

/// Binds `listeners` and starts the server thread on those that could be bound. Returns, per
/// listener, the bound name (`127.0.0.1:41234` when port 0 was asked for) or why not. With
/// no listener bound, the thread is still started: [`add_listener`] may bring one later.
pub fn spawn(
    listeners: &[Listener],
    shared: Arc<Shared>,
    priority: Priority,
) -> Vec<Result<String, BindError>> {
    let yield_until = match priority {
        Priority::Normal => None,
        Priority::YieldToBoot => std::time::Instant::now().checked_add(BOOT_YIELD_MAX),
    };
    spawn_server(listeners, shared, yield_until)
}

/// Binds one more listener and hands it to the running server.
pub fn add_listener(listener: Listener, shared: &Shared) -> Result<String, BindError> {
    let sock = ListenSock::bind(listener)?;
    let name = sock.describe(listener);
    shared
        .new_listeners
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((sock, name.clone()));
    match shared.server_waker.get() {
        Some(w) => w
            .wake()
            .map_err(|source| BindError::Failed { listener, source })?,
        None => {
            let source = std::io::Error::other("the health server is not running");
            return Err(BindError::Failed { listener, source });
        }
    }
    Ok(name)
}

/// [`spawn`] with the end of the yield given (tests shorten it).
fn spawn_server(
    listeners: &[Listener],
    shared: Arc<Shared>,
    yield_until: Option<std::time::Instant>,
) -> Vec<Result<String, BindError>> {
    let mut bound = Vec::new();
    let results: Vec<Result<String, BindError>> = listeners
        .iter()
        .map(|&l| {
            let sock = ListenSock::bind(l)?;
            let name = sock.describe(l);
            bound.push((sock, name.clone()));
            Ok(name)
        })
        .collect();
    let fail_all = |e: std::io::Error| -> Vec<Result<String, BindError>> {
        listeners
            .iter()
            .map(|&listener| {
                let source = std::io::Error::new(e.kind(), e.to_string());
                Err(BindError::Failed { listener, source })
            })
            .collect()
    };
    let (mut server, waker) = match server::Server::new(bound, Arc::clone(&shared)) {
        Ok(s) => s,
        Err(e) => return fail_all(e),
    };
    if let Some(deadline) = yield_until {
        server.yield_until(deadline);
    }
    let _ = shared.server_waker.set(waker);
    let thread = std::thread::Builder::new()
        .name("health".into())
        .spawn(move || serve_guarded(&mut server, &shared));
    match thread {
        Ok(_) => results,
        Err(e) => fail_all(e),
    }
}

/// Runs the server; a panic (a bug) drops the open connections and serves again, on the same
/// listener, after [`crate::guard::restart_delay`].
fn serve_guarded(server: &mut server::Server, shared: &Shared) {
    let mut panics = 0u32;
    loop {
        match crate::guard::catch("the health server", || server.run()) {
            Ok(e) => {
                log::error!("health server stopped: poll failed: {e}");
                return;
            }
            Err(msg) => {
                panics = panics.saturating_add(1);
                shared.report_fault(msg);
                server.drop_connections();
                std::thread::sleep(crate::guard::restart_delay(panics));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Instant;

    /// Thread ids of this process's threads named `health`.
    fn health_threads() -> BTreeSet<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "health")
            })
            .map(|t| t.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// The nice value of thread `tid` (field 19 of its `stat`).
    fn nice_of(tid: &str) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// Waits (up to a generous deadline) until the thread's nice value is `want`.
    fn wait_nice(tid: &str, want: i32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while nice_of(tid) != want {
            assert!(
                Instant::now() < deadline,
                "thread {tid} never reached nice {want}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Held by each test that starts a server thread: they find theirs by name.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Starts a server thread and returns its thread id.
    fn start(shared: &Arc<Shared>, yield_until: Option<Instant>) -> String {
        let before = health_threads();
        let l = [Listener::Tcp("127.0.0.1:0".parse().unwrap())];
        let r = spawn_server(&l, Arc::clone(shared), yield_until);
        assert!(r[0].is_ok(), "{:?}", r[0]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(tid) = health_threads().difference(&before).next() {
                return tid.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the server thread never appeared"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Raising the nice value back needs CAP_SYS_NICE, which PID 1 has: as another user
    /// these tests would fail for the wrong reason, so they say so instead of passing.
    fn require_root() {
        assert!(
            is_root(),
            "this test needs root (CAP_SYS_NICE to leave nice 19); run it as root or skip it"
        );
    }

    #[test]
    fn server_yields_to_the_boot_until_it_settles() {
        require_root();
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let shared = Shared::new(HealthDoc::starting(0, true));
        let tid = start(&shared, Some(Instant::now() + BOOT_YIELD_MAX * 100));
        wait_nice(&tid, BOOT_YIELD_NICE);
        shared.mark_settled();
        wait_nice(&tid, 0);
    }

    #[test]
    fn the_yield_ends_at_its_deadline_if_the_boot_never_settles() {
        require_root();
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let shared = Shared::new(HealthDoc::starting(0, true));
        let tid = start(&shared, Some(Instant::now() + Duration::from_secs(3)));
        wait_nice(&tid, BOOT_YIELD_NICE);
        wait_nice(&tid, 0);
        assert!(!shared.is_settled());
    }
}
