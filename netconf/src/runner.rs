//! The network thread: bring-up, then the DHCP lease lifecycle, then idling until stopped;
//! a failed bring-up is retried with backoff (a TAP attached late, a DHCP server that comes
//! up after the guest). Every state change is published into the shared snapshot and
//! announced through the notifier. Owns the thread and its timing; the steps are `apply.rs`'s.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use guest_config::NetworkPlan;

use crate::apply::{bring_up_then_probe, log_refused, Exec};
use crate::dhcp::{self, Lease, LeasePhase};
use crate::error::NetError;
use crate::rtnl::Link;
use crate::state::{LinkState, NetworkState};
use crate::Env;

/// A failed bring-up is retried after 5 s, doubling to 60 s.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest wait before the thread runs again after a panic.
const PANIC_WAIT_MAX: Duration = Duration::from_secs(30);
/// After a lost lease (NAK, or expiry without an ACK) the next DISCOVER waits 1 s, doubling
/// to 60 s while leases keep being lost without one renewal in between: a server that hands
/// out leases it then refuses must not get a DHCP storm from every guest.
const LOST_FIRST: Duration = Duration::from_secs(1);
const LOST_MAX: Duration = Duration::from_secs(60);
/// A renewal exchange that fails on the socket is retried after 1 s, doubling to 30 s.
const SOCKET_FIRST: Duration = Duration::from_secs(1);
const SOCKET_MAX: Duration = Duration::from_secs(30);
/// Longest a renew/rebind exchange runs before the thread checks for a stop request.
const STOP_CHECK: Duration = Duration::from_secs(10);

/// Owns the network thread. Dropping it asks the thread to end without waiting; it ends at
/// its next wait (a bring-up step or DHCP exchange in progress finishes first: at most
/// `carrier_timeout`, `dhcp_timeout` or 10 s of renewal). The lease is never released.
pub struct NetworkHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NetworkHandle {
    /// Asks the thread to end and waits for it (see above for how long that can take).
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NetworkHandle {
    fn drop(&mut self) {
        self.stop.take();
    }
}

struct Publisher {
    shared: Arc<Mutex<NetworkState>>,
    notify: Box<dyn Fn() + Send>,
}

impl Publisher {
    fn publish(&self, st: &NetworkState) {
        // A poisoned lock only means a reader panicked mid-read; the data is still whole.
        let mut g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if *g != *st {
            *g = st.clone();
            drop(g);
            (self.notify)();
        }
    }
}

/// [`run`], started again after a panic (a bug in vminit): the state says so in `error`,
/// the thread waits (1 s doubling to 30 s, or until asked to stop) and brings the network up
/// again, so a bug costs the guest a retry, not its network.
fn run_guarded(plan: &NetworkPlan, env: &Env, publisher: &Publisher, stop: &mpsc::Receiver<()>) {
    let mut panics = 0u32;
    loop {
        let run = std::panic::AssertUnwindSafe(|| run(plan, env, publisher, stop));
        if std::panic::catch_unwind(run).is_ok() {
            return;
        }
        panics = panics.saturating_add(1);
        let wait =
            Duration::from_secs(1u64 << panics.clamp(1, 6).saturating_sub(1)).min(PANIC_WAIT_MAX);
        let mut st = publisher
            .shared
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        st.state = LinkState::Error;
        st.error = Some(format!(
            "BUG: the network thread panicked (see the console); starting it again in {}s",
            wait.as_secs()
        ));
        publisher.publish(&st);
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Starts the network thread for `plan`. `shared` receives every new [`NetworkState`],
/// after which `notify` is called (from the network thread).
pub fn spawn(
    plan: NetworkPlan,
    env: Env,
    shared: Arc<Mutex<NetworkState>>,
    notify: Box<dyn Fn() + Send>,
) -> io::Result<NetworkHandle> {
    let (tx, rx) = mpsc::channel();
    let publisher = Publisher { shared, notify };
    let thread = std::thread::Builder::new()
        .name("network".to_string())
        .spawn(move || run_guarded(&plan, &env, &publisher, &rx))?;
    Ok(NetworkHandle {
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// Bounded exponential backoff: `first`, then doubling up to `max`. Pure (the caller sleeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the one after is twice as long, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = d.saturating_mul(2).min(self.max);
        d
    }

    /// Back to `first`, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// How [`keep_lease`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseEnd {
    /// A stop request arrived.
    Stopped,
    /// The lease is gone (NAK or expiry); `renewed` tells whether it was extended at least
    /// once before, i.e. whether the server had been working.
    Lost { renewed: bool },
}

/// Sleeps `d` unless a stop arrives; true means stop.
fn stopped(rx: &mpsc::Receiver<()>, d: Duration) -> bool {
    !matches!(rx.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

fn run(plan: &NetworkPlan, env: &Env, p: &Publisher, rx: &mpsc::Receiver<()>) {
    let mut st = NetworkState {
        source: plan.source,
        ..NetworkState::default()
    };
    let mut retry = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut lost = Backoff::new(LOST_FIRST, LOST_MAX);
    let mut last_error = String::new();
    loop {
        // A retry after a failure keeps showing the failure until it has an outcome, so the
        // health status does not flap between `error` and `down` every attempt.
        if st.state != LinkState::Error {
            st.state = LinkState::Down;
            p.publish(&st);
        }
        let mut on_configured = |s: &NetworkState| {
            log_changes(s);
            p.publish(s);
        };
        match bring_up_then_probe(plan, env, &mut st, &mut on_configured) {
            Ok(bound) => {
                retry.reset();
                last_error.clear();
                // Again, for the probe's warning, if any (unchanged states are not re-sent).
                p.publish(&st);
                let (Some(link), Some(lease)) = (bound.link, bound.lease) else {
                    let _ = rx.recv(); // configured for good: idle until stopped
                    return;
                };
                match keep_lease(plan, env, p, rx, &mut st, link, lease) {
                    LeaseEnd::Stopped => return,
                    LeaseEnd::Lost { renewed } => {
                        if renewed {
                            lost.reset();
                        }
                        let pause = lost.next_delay();
                        log::info!("network: starting DHCP over in {} s", pause.as_secs_f32());
                        if stopped(rx, pause) {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                let text = e.to_string();
                if text != last_error {
                    log::error!("{text}");
                    last_error = text.clone();
                }
                st.state = LinkState::Error;
                st.error = Some(text);
                p.publish(&st);
                if stopped(rx, retry.next_delay()) {
                    return;
                }
            }
        }
    }
}

fn log_changes(st: &NetworkState) {
    if st.changes.is_empty() {
        log::info!(
            "network: {} already configured: {}",
            st.interface.as_deref().unwrap_or("-"),
            st.addresses.join(", ")
        );
    } else {
        log::info!(
            "network: {}: {}",
            st.interface.as_deref().unwrap_or("-"),
            st.changes.join(", ")
        );
    }
}

/// Renews and rebinds until the lease is lost or a stop arrives.
fn keep_lease(
    plan: &NetworkPlan,
    env: &Env,
    p: &Publisher,
    rx: &mpsc::Receiver<()>,
    st: &mut NetworkState,
    link: Link,
    mut lease: Lease,
) -> LeaseEnd {
    let Some(mac) = link.mac else {
        return LeaseEnd::Lost { renewed: false };
    };
    let mut sock = None;
    let mut renewed = false;
    let mut sock_retry = Backoff::new(SOCKET_FIRST, SOCKET_MAX);
    loop {
        let now = env.clock.now();
        let (rebinding, until) = match lease.phase(now) {
            LeasePhase::Bound { until } => {
                if stopped(rx, until.saturating_duration_since(now)) {
                    return LeaseEnd::Stopped;
                }
                continue;
            }
            LeasePhase::Renewing { until } => (false, until),
            LeasePhase::Rebinding { until } => (true, until),
            LeasePhase::Expired => {
                let e = NetError::DhcpLeaseExpired {
                    interface: link.name.clone(),
                    address: lease.net().to_string(),
                };
                lose_lease(plan, env, p, st, &link, &lease, e.to_string());
                return LeaseEnd::Lost { renewed };
            }
        };
        if sock.is_none() {
            match dhcp::DhcpSocket::open(&link.name) {
                Ok(s) => sock = Some(s),
                Err(e) => {
                    log::warn!("{e}");
                    if stopped(rx, sock_retry.next_delay()) {
                        return LeaseEnd::Stopped;
                    }
                    continue;
                }
            }
        }
        let Some(s) = sock.as_ref() else { continue };
        let chunk_end = until.min(crate::wait::deadline(now, STOP_CHECK));
        let opts = dhcp::ClientOpts {
            hostname: plan.hostname.as_deref(),
            limits: env.lease_limits,
        };
        match dhcp::extend(s, &mac, &lease, rebinding, opts, &*env.clock, chunk_end) {
            Ok(Some(Ok(new))) => {
                renewed = true;
                sock_retry.reset();
                let old = std::mem::replace(&mut lease, new);
                adopt_renewal(plan, env, p, st, &link, &old, &lease);
            }
            Ok(Some(Err(nak))) => {
                let text = format!(
                    "network: DHCP lease {} on {} refused: {nak}",
                    lease.net(),
                    link.name
                );
                lose_lease(plan, env, p, st, &link, &lease, text);
                return LeaseEnd::Lost { renewed };
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("{e}");
                sock = None;
                if stopped(rx, sock_retry.next_delay()) {
                    return LeaseEnd::Stopped;
                }
            }
        }
        if stop_requested(rx) {
            return LeaseEnd::Stopped;
        }
    }
}

/// Whether a stop is pending (or the handle is gone), without waiting.
fn stop_requested(rx: &mpsc::Receiver<()>) -> bool {
    matches!(
        rx.try_recv(),
        Ok(()) | Err(mpsc::TryRecvError::Disconnected)
    )
}

/// Logs a renewal (and any newly refused value) and applies the renewed lease.
fn adopt_renewal(
    plan: &NetworkPlan,
    env: &Env,
    p: &Publisher,
    st: &mut NetworkState,
    link: &Link,
    old: &Lease,
    lease: &Lease,
) {
    log::info!(
        "network: DHCP lease {} renewed on {}",
        lease.net(),
        link.name
    );
    log_refused(lease, &link.name, &old.refused);
    if old.net() != lease.net() {
        log::warn!(
            "network: DHCP server moved us from {} to {}",
            old.net(),
            lease.net()
        );
    }
    reconfigure(plan, env, p, st, link, lease);
}

fn reconfigure(
    plan: &NetworkPlan,
    env: &Env,
    p: &Publisher,
    st: &mut NetworkState,
    link: &Link,
    lease: &Lease,
) {
    st.changes.clear();
    let r = Exec::new(plan, env, Some(link.clone())).and_then(|mut ex| {
        ex.configure(Some(lease), false, st)?;
        Ok(ex)
    });
    match r {
        Ok(mut ex) => {
            if !st.changes.is_empty() {
                log_changes(st);
            }
            p.publish(st);
            ex.announce_added();
        }
        Err(e) => {
            log::error!("{e}");
            st.state = LinkState::Error;
            st.error = Some(e.to_string());
            p.publish(st);
        }
    }
}

fn lose_lease(
    plan: &NetworkPlan,
    env: &Env,
    p: &Publisher,
    st: &mut NetworkState,
    link: &Link,
    lease: &Lease,
    why: String,
) {
    log::error!("{why}");
    st.changes.clear();
    if let Err(e) = Exec::new(plan, env, Some(link.clone()))
        .and_then(|mut ex| ex.remove_address(lease.net(), st))
    {
        log::error!("{e}");
    }
    st.state = LinkState::Down;
    st.error = Some(why);
    p.publish(st);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(LOST_FIRST, LOST_MAX);
        let seq: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), s(1));
        let mut r = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let seq: Vec<u64> = (0..6).map(|_| r.next_delay().as_secs()).collect();
        assert_eq!(seq, vec![5, 10, 20, 40, 60, 60]);
        // Never overflows, whatever it is given.
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        let mut inverted = Backoff::new(s(10), s(3));
        assert_eq!(inverted.next_delay(), s(3));
    }
}
