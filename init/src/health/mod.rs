//! The health endpoint (contract §4): `/health`, `/livez`, `/metrics` over HTTP/1.1, served from
//! its own thread so that a slow client or a busy boot step never delays a poll. The event loop
//! publishes a [`HealthDoc`]; the server only reads it. `/livez` is answered only after the
//! event loop itself has answered a ping, so it proves the main loop is responsive.

pub mod doc;
pub mod http;
mod server;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub use doc::{HealthDoc, NetworkDoc};
use mio::Waker;

/// State shared between the event loop and the server thread.
pub struct Shared {
    doc: Mutex<Arc<HealthDoc>>,
    livez_ping: AtomicU64,
    livez_pong: AtomicU64,
    /// Wakes the main loop for a livez ping; set once the loop exists.
    main_waker: OnceLock<Arc<Waker>>,
    /// Wakes the server when a pong arrives.
    server_waker: OnceLock<Arc<Waker>>,
}

impl Shared {
    pub fn new(doc: HealthDoc) -> Arc<Shared> {
        Arc::new(Shared {
            doc: Mutex::new(Arc::new(doc)),
            livez_ping: AtomicU64::new(0),
            livez_pong: AtomicU64::new(0),
            main_waker: OnceLock::new(),
            server_waker: OnceLock::new(),
        })
    }

    pub fn doc(&self) -> Arc<HealthDoc> {
        Arc::clone(&self.doc.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn publish(&self, doc: HealthDoc) {
        *self.doc.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(doc);
    }

    /// Called by the event loop once its poll exists.
    pub fn set_main_waker(&self, waker: Arc<Waker>) {
        let _ = self.main_waker.set(waker);
    }

    fn ping_main_loop(&self) -> u64 {
        let seq = self.livez_ping.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(w) = self.main_waker.get() {
            let _ = w.wake();
        }
        seq
    }

    /// Called by the event loop on every wake-up: answers all pings so far.
    pub fn pong(&self) {
        let ping = self.livez_ping.load(Ordering::Acquire);
        if self.livez_pong.swap(ping, Ordering::AcqRel) != ping {
            if let Some(w) = self.server_waker.get() {
                let _ = w.wake();
            }
        }
    }
}

/// Binds `addr` and starts the server thread. Returns the bound address (port 0 → real port).
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<SocketAddr> {
    let (server, waker) = server::Server::bind(addr, Arc::clone(&shared))?;
    let _ = shared.server_waker.set(waker);
    let local = server.local_addr()?;
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            let e = server.run();
            log::error!("health server stopped: {e}");
        })?;
    Ok(local)
}
