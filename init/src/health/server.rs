//! The health endpoint's server: one thread, one `mio` poll, non-blocking sockets.
//!
//! Why not `tiny_http` 0.12: it spawns a thread per busy connection with no upper bound, sets
//! no socket timeouts, has no header size limit, and an accept error such as EMFILE ends or
//! panics its accept loop. Here every resource is bounded instead: at most [`MAX_CONNS`] open
//! connections (a new one evicts the oldest stalled one), [`MAX_REQUEST`] bytes of request
//! head, a deadline per connection, no thread per client; a stalled client costs one slot and
//! a few KiB, never a blocked poll. EMFILE/ENFILE on accept frees a slot and pauses accepting briefly instead of
//! spinning or dying.
//!
//! One poll serves every listener (TCP and vsock, [`super::socket`]) with the same slots.
//! A long poll (`/health?wait=N`) holds its slot until the generation exceeds N or
//! [`WAIT_MAX`]; at most [`MAX_WAITERS`] wait at once, so a flood of waiters leaves half the
//! slots to plain polls (a waiter beyond the cap is answered at once, which is what a plain
//! poll would get).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::http::{self, Parsed, Route, MAX_REQUEST};
use super::metrics::{self, ServerCounters};
use super::socket::{ListenSock, Stream};
use super::Shared;
use crate::shutdown::deadline;

pub const MAX_CONNS: usize = 128;
/// Most long polls waiting at once: half the slots, so plain polls always find room.
pub const MAX_WAITERS: usize = MAX_CONNS / 2;
/// Longest a long poll waits before it is answered with the current document.
pub const WAIT_MAX: Duration = Duration::from_secs(30);
/// Time a client has to send its request and read the answer.
const CONN_DEADLINE: Duration = Duration::from_secs(5);
/// Time the main loop has to answer a `/livez` ping.
const LIVEZ_DEADLINE: Duration = Duration::from_secs(2);
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Most connections taken per accept round. Connections that arrive faster than the thread
/// serves them (a fast poller next to a CPU hog) must not keep it in `accept` forever: between
/// rounds it ends its boot yield, expires deadlines and answers `/livez`.
const ACCEPT_BATCH: usize = 32;

pub(super) const WAKER: Token = Token(0);
/// Listener `i` has token `FIRST_LISTENER + i`.
const FIRST_LISTENER: usize = 1;
const MAX_LISTENERS: usize = 16;
const FIRST_CONN: usize = FIRST_LISTENER + MAX_LISTENERS;

enum ConnPhase {
    Reading,
    /// A long poll: answered once the generation exceeds `after`, or at `until`.
    Waiting {
        after: u64,
        until: Instant,
    },
    /// Waiting for the main loop to answer ping number `seq`: for `/livez`, the proof that it
    /// runs; for `/health` and `/metrics`, a document published after the request, so the
    /// figures (resource use) are read when a poll asks, never on a timer.
    Livez {
        seq: u64,
        since: Instant,
        then: AfterPong,
    },
    Writing {
        out: Vec<u8>,
        written: usize,
    },
}

/// What a connection waiting for the main loop's pong answers then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterPong {
    Livez,
    Health,
    Metrics,
}

struct Conn {
    stream: Stream,
    /// Index of the listener it came from, for the per-listener request count.
    listener: usize,
    buf: Vec<u8>,
    phase: ConnPhase,
    deadline: Instant,
}

struct Listening {
    sock: ListenSock,
    /// As the operator wrote it (`vsock:8900`, `0.0.0.0:8900`): the metrics label.
    name: String,
}

pub(super) struct Server {
    poll: Poll,
    listeners: Vec<Listening>,
    shared: Arc<Shared>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slot indices in accept order, to find the oldest one to evict.
    order: VecDeque<usize>,
    accept_paused_until: Option<Instant>,
    counters: ServerCounters,
    /// While set, the thread runs at nice 19 until the boot settles or this deadline.
    yield_deadline: Option<Instant>,
    /// The last accept round stopped at [`ACCEPT_BATCH`]: more may be queued, and the
    /// edge-triggered listener will not say so again.
    accept_more: bool,
}

impl Server {
    pub(super) fn new(
        listeners: Vec<(ListenSock, String)>,
        shared: Arc<Shared>,
    ) -> io::Result<(Server, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut server = Server {
            poll,
            listeners: Vec::new(),
            shared,
            conns: Vec::new(),
            free: Vec::new(),
            order: VecDeque::new(),
            accept_paused_until: None,
            counters: ServerCounters::default(),
            yield_deadline: None,
            accept_more: false,
        };
        for (sock, name) in listeners {
            server.add_listener(sock, name)?;
        }
        Ok((server, waker))
    }

    fn add_listener(&mut self, mut sock: ListenSock, name: String) -> io::Result<()> {
        // The listeners' tokens are FIRST_LISTENER..FIRST_CONN.
        let Some(token) = (FIRST_LISTENER..FIRST_CONN)
            .nth(self.listeners.len())
            .map(Token)
        else {
            return Err(io::Error::other(format!(
                "more than {MAX_LISTENERS} health listeners"
            )));
        };
        self.poll
            .registry()
            .register(&mut sock, token, Interest::READABLE)?;
        self.counters.requests.push((name.clone(), 0));
        self.listeners.push(Listening { sock, name });
        // Edge-triggered: connections queued before registration raise no event.
        self.accept_more = true;
        Ok(())
    }

    /// Takes the listeners bound since the server started.
    fn take_new_listeners(&mut self) {
        for (sock, name) in self.shared.take_new_listeners() {
            if let Err(e) = self.add_listener(sock, name.clone()) {
                log::warn!("health: cannot serve on {name}: {e}");
            }
        }
    }

    /// Makes [`Self::run`] start at nice 19 and return to normal priority when the boot
    /// settles or at `deadline`, whichever comes first.
    pub(super) fn yield_until(&mut self, deadline: Instant) {
        self.yield_deadline = Some(deadline);
    }

    /// Ends the yield once the boot has settled or the deadline has passed.
    fn end_yield(&mut self, now: Instant) {
        let Some(deadline) = self.yield_deadline else {
            return;
        };
        if self.shared.is_settled() || now >= deadline {
            self.yield_deadline = None;
            if let Err(e) = crate::sys::set_thread_nice(0) {
                log::warn!("health server: cannot return to normal priority (setpriority 0): {e}");
            }
        }
    }

    /// Closes every connection: after a panic their state is not to be trusted.
    pub(super) fn drop_connections(&mut self) {
        for slot in std::mem::take(&mut self.conns).into_iter().flatten() {
            let _ = self.poll.registry().deregister(&mut { slot.stream });
        }
        self.free.clear();
        self.order.clear();
        self.counters.open_connections = 0;
    }

    /// Runs forever; returns only if polling itself fails.
    pub(super) fn run(&mut self) -> io::Error {
        let mut events = Events::with_capacity(256);
        if self.yield_deadline.is_some() {
            if let Err(e) = crate::sys::set_thread_nice(super::BOOT_YIELD_NICE) {
                log::debug!("health server: cannot yield to the boot (setpriority 19): {e}");
                self.yield_deadline = None;
            }
        }
        loop {
            self.end_yield(Instant::now());
            let timeout = if self.accept_more {
                Some(Duration::ZERO)
            } else {
                self.next_timeout(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return e;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => self.take_new_listeners(),
                    Token(t) => match t.checked_sub(FIRST_CONN) {
                        Some(idx) => self.on_conn_event(idx),
                        None => self.accept_all(),
                    },
                }
            }
            let now = Instant::now();
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                // Edge-triggered: pending connections raise no new event, so look now.
                self.accept_all();
            } else if self.accept_more {
                self.accept_all();
            }
            self.answer_livez(now);
            self.answer_waiters(now);
            self.expire(now);
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let conn_deadlines = self.conns.iter().flatten().map(|c| match c.phase {
            ConnPhase::Livez { since, .. } => deadline(since, LIVEZ_DEADLINE).min(c.deadline),
            ConnPhase::Waiting { until, .. } => until.min(c.deadline),
            _ => c.deadline,
        });
        conn_deadlines
            .chain(self.accept_paused_until)
            .chain(self.yield_deadline)
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Accepts up to [`ACCEPT_BATCH`] queued connections from each listener; sets
    /// `accept_more` if one stopped there.
    fn accept_all(&mut self) {
        self.accept_more = false;
        for li in 0..self.listeners.len() {
            self.accept_from(li);
        }
    }

    fn accept_from(&mut self, li: usize) {
        for _ in 0..ACCEPT_BATCH {
            if self.accept_paused_until.is_some() {
                return;
            }
            let Some(l) = self.listeners.get(li) else {
                return;
            };
            match l.sock.accept() {
                Ok(stream) => self.add_conn(stream, li),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS and friends: free the oldest slot so the next poll
                    // can be served, and pause instead of spinning on a listener that stays
                    // readable.
                    log::warn!(
                        "health: accept on {} failed: {e}; pausing accept for {ACCEPT_PAUSE:?}",
                        l.name
                    );
                    self.evict_oldest();
                    self.accept_paused_until = Some(deadline(Instant::now(), ACCEPT_PAUSE));
                }
            }
        }
        self.accept_more = true;
    }

    fn add_conn(&mut self, mut stream: Stream, listener: usize) {
        self.make_room();
        let idx = self.free.pop().unwrap_or(self.conns.len());
        if idx == self.conns.len() {
            self.conns.push(None);
        }
        // At most FIRST_CONN + MAX_CONNS.
        let token = Token(FIRST_CONN.saturating_add(idx));
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("health: cannot register a connection: {e}");
            self.free.push(idx);
            return;
        }
        let now = Instant::now();
        self.conns[idx] = Some(Conn {
            stream,
            listener,
            buf: Vec::new(),
            phase: ConnPhase::Reading,
            deadline: deadline(now, CONN_DEADLINE),
        });
        self.order.push_back(idx);
        self.counters.open_connections = self.order.len();
        // Data may already be waiting; edge-triggered registration will still report it, but
        // reading now saves a round trip through poll.
        self.on_conn_event(idx);
    }

    /// Frees a slot when all [`MAX_CONNS`] are taken. The victim is the oldest connection
    /// still on an unfinished request head, after one last read: a client whose request has
    /// arrived but whose event is not handled yet is answered, not dropped. Evicting the
    /// oldest blindly dropped 3% of `wrk`'s requests under a flood of reconnecting slow
    /// clients (`scripts/bench-health.sh`), this 0.015%. Connections being answered are
    /// kept; if every slot is being answered, the oldest goes anyway, so the bound holds.
    fn make_room(&mut self) {
        let oldest_first: Vec<usize> = self.order.iter().copied().collect();
        for idx in oldest_first {
            if self.order.len() < MAX_CONNS {
                return;
            }
            if !self.is_reading(idx) {
                continue;
            }
            self.on_conn_event(idx);
            if self.is_reading(idx) {
                self.evict(idx);
            }
        }
        if self.order.len() >= MAX_CONNS {
            self.evict_oldest();
        }
    }

    fn evict(&mut self, idx: usize) {
        self.counters.evicted = self.counters.evicted.saturating_add(1);
        self.close(idx);
    }

    fn is_reading(&self, idx: usize) -> bool {
        matches!(
            self.conns.get(idx).and_then(Option::as_ref),
            Some(Conn {
                phase: ConnPhase::Reading,
                ..
            })
        )
    }

    fn evict_oldest(&mut self) {
        if let Some(&idx) = self.order.front() {
            self.evict(idx);
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.order.retain(|&i| i != idx);
            self.free.push(idx);
            self.counters.open_connections = self.order.len();
        }
    }

    fn on_conn_event(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        match conn.phase {
            ConnPhase::Reading => {}
            // A waiting client that hangs up frees its slot now, not after [`WAIT_MAX`].
            ConnPhase::Waiting { .. } => {
                if let ReadOutcome::Closed = read_some(conn) {
                    self.close(idx);
                }
                return;
            }
            _ => return self.flush(idx),
        }
        if let ReadOutcome::Closed = read_some(conn) {
            return self.close(idx);
        }
        let listener = conn.listener;
        let phase = match http::parse(&conn.buf) {
            Parsed::Partial => return,
            Parsed::Bad(status) => writing(http::error_response(status)),
            Parsed::Request { method, path } => {
                if let Some((_, n)) = self.counters.requests.get_mut(listener) {
                    *n = n.saturating_add(1);
                }
                self.answer(http::route(&method, &path))
            }
        };
        if let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) {
            if let ConnPhase::Waiting { until, .. } = phase {
                conn.deadline = deadline(until, CONN_DEADLINE);
            }
            conn.phase = phase;
        }
        self.flush(idx);
    }

    fn waiting(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| matches!(c.phase, ConnPhase::Waiting { .. }))
            .count()
    }

    fn health_response(&self) -> Vec<u8> {
        let doc = self.shared.doc();
        match serde_json::to_vec(&*doc) {
            Ok(mut body) => {
                body.push(b'\n');
                http::response(doc.http_status(), "application/json", &body)
            }
            Err(_) => http::error_response(503),
        }
    }

    fn answer(&self, route: Route) -> ConnPhase {
        match route {
            Route::Health { wait: Some(after) }
                if self.shared.doc().generation <= after && self.waiting() < MAX_WAITERS =>
            {
                ConnPhase::Waiting {
                    after,
                    until: deadline(Instant::now(), WAIT_MAX),
                }
            }
            Route::Health { .. } => self.after_pong(AfterPong::Health),
            Route::Metrics => self.after_pong(AfterPong::Metrics),
            Route::Livez => self.after_pong(AfterPong::Livez),
            Route::BadQuery => writing(http::error_response(400)),
            Route::NotFound => writing(http::error_response(404)),
            Route::MethodNotAllowed => writing(http::error_response(405)),
        }
    }

    fn metrics_response(&self) -> Vec<u8> {
        let c = ServerCounters {
            waiting: self.waiting(),
            ..self.counters.clone()
        };
        let doc = self.shared.doc();
        let text = metrics::render(&doc, &c, crate::logger::dropped());
        http::response(200, "text/plain; version=0.0.4", text.as_bytes())
    }

    /// Pings the main loop and waits for its pong before answering `then`. Before the loop
    /// runs (the boot) there is nobody to ping: `/health` and `/metrics` are answered at once.
    fn after_pong(&self, then: AfterPong) -> ConnPhase {
        if then != AfterPong::Livez && !self.shared.loop_running() {
            return writing(self.answer_after_pong(then, true));
        }
        ConnPhase::Livez {
            seq: self.shared.ping_main_loop(),
            since: Instant::now(),
            then,
        }
    }

    /// The answer once the loop has ponged (`alive`) or has not within [`LIVEZ_DEADLINE`]:
    /// `/health` and `/metrics` then serve the last document anyway.
    fn answer_after_pong(&self, then: AfterPong, alive: bool) -> Vec<u8> {
        match (then, alive) {
            (AfterPong::Livez, true) => http::response(200, "text/plain", b"ok\n"),
            (AfterPong::Livez, false) => {
                http::response(503, "text/plain", b"main loop not responding\n")
            }
            (AfterPong::Health, _) => self.health_response(),
            (AfterPong::Metrics, _) => self.metrics_response(),
        }
    }

    /// Answers the long polls whose generation has come, or whose wait is over.
    fn answer_waiters(&mut self, now: Instant) {
        let generation = self.shared.doc().generation;
        let due: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                matches!(
                    self.conns[i].as_ref().map(|c| &c.phase),
                    Some(ConnPhase::Waiting { after, until }) if generation > *after || now >= *until
                )
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let out = self.health_response();
        for idx in due {
            if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                c.phase = writing(out.clone());
                c.deadline = deadline(now, CONN_DEADLINE);
            }
            self.flush(idx);
        }
    }

    fn answer_livez(&mut self, now: Instant) {
        let pong = self.shared.livez_pong.load(Ordering::Acquire);
        let due: Vec<(usize, AfterPong, bool)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(idx, c)| match c.as_ref()?.phase {
                ConnPhase::Livez { seq, since, then }
                    if pong >= seq || now.saturating_duration_since(since) >= LIVEZ_DEADLINE =>
                {
                    Some((idx, then, pong >= seq))
                }
                _ => None,
            })
            .collect();
        for (idx, then, alive) in due {
            let out = self.answer_after_pong(then, alive);
            if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                c.phase = writing(out);
            }
            self.flush(idx);
        }
    }

    fn flush(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let ConnPhase::Writing { out, written } = &mut conn.phase else {
            return;
        };
        while *written < out.len() {
            match conn.stream.write(&out[*written..]) {
                Ok(0) => return self.close(idx),
                Ok(n) => *written = written.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(idx),
            }
        }
        conn.stream.shutdown_write();
        self.close(idx);
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&i| self.conns[i].as_ref().is_some_and(|c| now >= c.deadline))
            .collect();
        for idx in expired {
            self.close(idx);
        }
    }
}

fn writing(out: Vec<u8>) -> ConnPhase {
    ConnPhase::Writing { out, written: 0 }
}

enum ReadOutcome {
    Open,
    Closed,
}

/// Reads what is available, never more than [`MAX_REQUEST`] bytes in total.
fn read_some(conn: &mut Conn) -> ReadOutcome {
    let mut chunk = [0u8; 2048];
    loop {
        let room = MAX_REQUEST.saturating_sub(conn.buf.len()).min(chunk.len());
        if room == 0 {
            return ReadOutcome::Open;
        }
        match conn.stream.read(&mut chunk[..room]) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ReadOutcome::Closed,
        }
    }
}
