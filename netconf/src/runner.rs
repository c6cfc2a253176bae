//! The network thread: bring-up, then holding the configuration: following the link
//! (carrier lost: `down` with the reason; carrier back: bring-up again, at once), probing a
//! silent gateway again until it answers, and keeping a DHCP lease (renew at T1, rebind at
//! T2, remove the address at expiry and start over after a backoff). A failed bring-up is
//! retried with backoff, cut short when the interface appears or gains carrier. The thread
//! sleeps in poll(2) on its stop pipe and a link-event socket (`watch.rs`), so it reacts to a
//! link change within the poll's wake-up, not at the next timer. Every state change is
//! published into the shared snapshot and announced through the notifier. The decisions are
//! `follow.rs`'s, the steps `apply.rs`'s.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use guest_config::{InterfaceSelector, NetworkPlan};

use crate::apply::{self, bring_up_then_probe, log_refused, Exec};
use crate::dhcp::{self, Lease, LeasePhase};
use crate::error::NetError;
use crate::follow::{link_at_failure, worth_retrying, Act, Backoff, Holding, LinkSeen};
use crate::nic::{self, Choice};
use crate::rtnl::{Link, Rtnl};
use crate::state::{LinkState, NetworkState};
use crate::wait::deadline;
use crate::watch::{Wake, Watch};
use crate::{sys, Env};

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
/// Longest a renew/rebind exchange runs before the thread looks at its stop pipe and the link.
const STOP_CHECK: Duration = Duration::from_secs(10);
/// Even without a link event the link is re-read this often: a safety net should the
/// kernel drop an event.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// Owns the network thread. Dropping it asks the thread to end without waiting; it ends at
/// its next wait (a bring-up step or DHCP exchange in progress finishes first: at most
/// `carrier_timeout`, `dhcp_timeout` or 10 s of renewal). The lease is never released.
pub struct NetworkHandle {
    /// The write end of the stop pipe: closing it wakes the thread's poll.
    stop: Option<OwnedFd>,
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

/// Starts the network thread for `plan`. `shared` receives every new [`NetworkState`],
/// after which `notify` is called (from the network thread).
pub fn spawn(
    plan: NetworkPlan,
    env: Env,
    shared: Arc<Mutex<NetworkState>>,
    notify: Box<dyn Fn() + Send>,
) -> io::Result<NetworkHandle> {
    let (stop_rx, stop_tx) = sys::pipe()?;
    let p = Publisher { shared, notify };
    let thread = std::thread::Builder::new()
        .name("network".to_string())
        .spawn(move || {
            Runner {
                plan: &plan,
                env: &env,
                p: &p,
                watch: Watch::new(stop_rx),
                rtnl: None,
            }
            .run_guarded();
        })?;
    Ok(NetworkHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// How holding a configuration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Stopped,
    /// Carrier came back: bring-up again now.
    CarrierBack,
    /// The lease is gone (NAK or expiry); `renewed` tells whether it was extended at least
    /// once before, i.e. whether the server had been working.
    LeaseLost {
        renewed: bool,
    },
}

/// The DHCP lease being kept, and the state of its renewals.
struct Keeper {
    lease: Lease,
    mac: [u8; 6],
    sock: Option<dhcp::DhcpSocket>,
    renewed: bool,
    sock_retry: Backoff,
    /// After a socket failure, no exchange before this.
    not_before: Option<Instant>,
}

impl Keeper {
    /// The renewal socket, taken out to be used (and put back while it works); opened if
    /// there is none. `None` after a failure to open (logged; the next try is after a
    /// backoff).
    fn take_socket(&mut self, interface: &str, now: Instant) -> Option<dhcp::DhcpSocket> {
        if let Some(s) = self.sock.take() {
            return Some(s);
        }
        match dhcp::DhcpSocket::open(interface) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("{e}");
                self.not_before = Some(deadline(now, self.sock_retry.next_delay()));
                None
            }
        }
    }
}

struct Runner<'a> {
    plan: &'a NetworkPlan,
    env: &'a Env,
    p: &'a Publisher,
    watch: Watch,
    /// For reading the followed link; opened on first use, dropped after a failure.
    rtnl: Option<Rtnl>,
}

impl Runner<'_> {
    /// [`Runner::run`], started again after a panic (a bug in vminit): the state says so in
    /// `error`, the thread waits (1 s doubling to 30 s, or until asked to stop) and brings
    /// the network up again, so a bug costs the guest a retry, not its network.
    fn run_guarded(&mut self) {
        let mut panics = 0u32;
        loop {
            let run = std::panic::AssertUnwindSafe(|| self.run());
            if std::panic::catch_unwind(run).is_ok() {
                return;
            }
            panics = panics.saturating_add(1);
            let secs = 1u64 << panics.clamp(1, 6).saturating_sub(1);
            let wait = Duration::from_secs(secs).min(PANIC_WAIT_MAX);
            let mut st = self
                .p
                .shared
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            let next = format!("starting it again in {}s", wait.as_secs());
            st.state = LinkState::Error;
            st.error = Some(format!(
                "BUG: the network thread panicked (see the console); {next}"
            ));
            self.p.publish(&st);
            if let Some(tell) = &self.env.on_panic {
                tell(&next);
            }
            self.rtnl = None;
            if self.watch.stopped(wait, self.env.clock.as_ref()) {
                return;
            }
        }
    }

    fn run(&mut self) {
        let (plan, env, p) = (self.plan, self.env, self.p);
        let mut st = NetworkState {
            source: plan.source,
            ..NetworkState::default()
        };
        let mut retry = env.retry;
        let mut lost = Backoff::new(LOST_FIRST, LOST_MAX);
        let mut last_error = String::new();
        loop {
            // A retry after a failure keeps showing the failure until it has an outcome, so
            // the health status does not flap between `error` and `down` every attempt.
            if st.state != LinkState::Error {
                st.state = LinkState::Down;
                p.publish(&st);
            }
            let mut on_configured = |s: &NetworkState| {
                log_changes(s);
                p.publish(s);
            };
            let bound = match bring_up_then_probe(plan, env, &mut st, &mut on_configured) {
                Ok(bound) => bound,
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        log::error!("{text}");
                        last_error = text.clone();
                    }
                    st.state = LinkState::Error;
                    st.error = Some(text);
                    p.publish(&st);
                    if self.wait_retry(retry.next_delay(), link_at_failure(&e)) {
                        return;
                    }
                    continue;
                }
            };
            retry.reset();
            last_error.clear();
            // Again, for the probe's warning, if any (unchanged states are not re-sent).
            p.publish(&st);
            let Some(link) = bound.link else {
                // `ip=off`: nothing to follow; idle until stopped.
                while self.watch.wait(SAFETY_NET) != Wake::Stop {}
                return;
            };
            match self.hold(&mut st, &link, bound.lease, bound.gateway_silent) {
                Held::Stopped => return,
                Held::CarrierBack => {}
                Held::LeaseLost { renewed } => {
                    if renewed {
                        lost.reset();
                    }
                    let pause = lost.next_delay();
                    log::info!("network: starting DHCP over in {} s", pause.as_secs());
                    if self.watch.stopped(pause, &*env.clock) {
                        return;
                    }
                }
            }
        }
    }

    /// Waits out a failed bring-up's backoff, ending it early when the planned interface
    /// appears or gains carrier, compared with `failed_at` (what the failure said of the
    /// link) and then with each reading. True means stop.
    fn wait_retry(&mut self, delay: Duration, failed_at: Option<LinkSeen>) -> bool {
        let clock = &*self.env.clock;
        let end = deadline(clock.now(), delay);
        // Carrier that came between the failure and this first reading has sent no event
        // this thread will see: compare with the failure itself.
        let first = self.link_seen(None);
        if let (Some(b), Some(s)) = (failed_at, first) {
            if worth_retrying(b, s) {
                return false;
            }
        }
        let mut before = first.or(failed_at);
        loop {
            let now = clock.now();
            if now >= end {
                return false;
            }
            match self.watch.wait(end.saturating_duration_since(now)) {
                Wake::Stop => return true,
                Wake::Timeout => {}
                Wake::Link => {
                    let seen = self.link_seen(None);
                    if let (Some(b), Some(s)) = (before, seen) {
                        if worth_retrying(b, s) {
                            log::info!(
                                "network: {} {}: bringing it up now",
                                self.plan.interface,
                                if s == LinkSeen::Carrier {
                                    "has carrier"
                                } else {
                                    "appeared"
                                }
                            );
                            return false;
                        }
                    }
                    before = seen.or(before);
                }
            }
        }
    }

    /// The planned interface as the kernel has it now; `None` if it cannot be read. `held`:
    /// the link a bring-up found, followed by name once found when the plan names none (a
    /// second NIC hot-plugged later must not make the one in use look gone).
    fn link_seen(&mut self, held: Option<&Link>) -> Option<LinkSeen> {
        let sel = match (&self.plan.interface, held) {
            (InterfaceSelector::OnlyEthernet, Some(l)) => InterfaceSelector::Name(l.name.clone()),
            (sel, _) => sel.clone(),
        };
        let rtnl = match self.rtnl.as_mut() {
            Some(r) => r,
            None => self.rtnl.insert(apply::open_rtnl().ok()?),
        };
        match rtnl.links() {
            Ok(links) => {
                // Several candidates count as absent: a retry waits for one to go.
                let found = match nic::choose(&sel, &nic::read(&self.env.sys_class_net, links)) {
                    Choice::Found(l) => Some(l.carrier),
                    Choice::Absent | Choice::Several(_) => None,
                };
                Some(LinkSeen::of(found))
            }
            Err(_) => {
                self.rtnl = None; // reopened next time
                None
            }
        }
    }

    /// Holds the configuration bring-up made: follows the link, probes a silent gateway
    /// again, keeps the lease if there is one.
    fn hold(
        &mut self,
        st: &mut NetworkState,
        link: &Link,
        lease: Option<Lease>,
        gateway_silent: bool,
    ) -> Held {
        let clock = &*self.env.clock;
        let mut h = Holding::new(gateway_silent, clock.now());
        let mut keeper = match lease {
            None => None,
            Some(lease) => {
                let Some(mac) = link.mac else {
                    return Held::LeaseLost { renewed: false };
                };
                Some(Keeper {
                    lease,
                    mac,
                    sock: None,
                    renewed: false,
                    sock_retry: Backoff::new(SOCKET_FIRST, SOCKET_MAX),
                    not_before: None,
                })
            }
        };
        loop {
            let now = clock.now();
            let mut wake_by = deadline(now, h.sleep(now, SAFETY_NET));
            if let Some(k) = keeper.as_mut() {
                match self.keep(k, st, link, h.has_carrier(), now) {
                    Ok(until) => wake_by = wake_by.min(until),
                    Err(end) => return end,
                }
            }
            match self
                .watch
                .wait(wake_by.saturating_duration_since(clock.now()))
            {
                Wake::Stop => return Held::Stopped,
                Wake::Link | Wake::Timeout => {}
            }
            if let Some(seen) = self.link_seen(Some(link)) {
                match h.link(seen) {
                    Act::CarrierLost => {
                        let e = NetError::LinkLost {
                            interface: link.name.clone(),
                            gone: seen == LinkSeen::Absent,
                        };
                        log::warn!("{e}");
                        st.state = LinkState::Down;
                        st.error = Some(e.to_string());
                        self.p.publish(st);
                    }
                    Act::CarrierBack => {
                        log::info!("network: carrier back on {}", link.name);
                        return Held::CarrierBack;
                    }
                    Act::Nothing | Act::Probe => {}
                }
            }
            if h.timer(clock.now()) == Act::Probe {
                let lease = keeper.as_ref().map(|k| &k.lease);
                let silent = self.reprobe(st, link, lease);
                h.probed(silent, clock.now());
            }
        }
    }

    /// Probes the gateway again; publishes the change if its answer changed. True if silent.
    fn reprobe(&mut self, st: &mut NetworkState, link: &Link, lease: Option<&Lease>) -> bool {
        let warning = match Exec::new(self.plan, self.env, Some(link.clone())) {
            Ok(mut ex) => ex.reprobe(lease),
            Err(e) => Some(e),
        };
        match warning {
            None => {
                if st.error.take().is_some() {
                    log::info!("network: the gateway answers ARP on {} now", link.name);
                    self.p.publish(st);
                }
                false
            }
            Some(w) => {
                let text = w.to_string();
                if st.error.as_deref() != Some(text.as_str()) {
                    log::warn!("{text}");
                    st.error = Some(text);
                    self.p.publish(st);
                }
                true
            }
        }
    }

    /// One turn of the lease's lifecycle: `Ok(instant)` when the lease next needs the thread
    /// (now, after an exchange, so that the link and the stop pipe are looked at between
    /// exchanges), `Err` when holding must end. Renewals wait while there is no carrier (they
    /// cannot succeed); expiry does not.
    fn keep(
        &mut self,
        k: &mut Keeper,
        st: &mut NetworkState,
        link: &Link,
        carrier: bool,
        now: Instant,
    ) -> Result<Instant, Held> {
        let (rebinding, until) = match k.lease.phase(now) {
            LeasePhase::Bound { until } => return Ok(until),
            LeasePhase::Renewing { until } => (false, until),
            LeasePhase::Rebinding { until } => (true, until),
            LeasePhase::Expired => {
                let e = NetError::DhcpLeaseExpired {
                    interface: link.name.clone(),
                    address: k.lease.net().to_string(),
                };
                lose_lease(
                    self.plan,
                    self.env,
                    self.p,
                    st,
                    link,
                    &k.lease,
                    e.to_string(),
                );
                return Err(Held::LeaseLost { renewed: k.renewed });
            }
        };
        if !carrier {
            return Ok(until);
        }
        if let Some(t) = k.not_before.filter(|t| now < *t) {
            return Ok(t.min(until));
        }
        let Some(sock) = k.take_socket(&link.name, now) else {
            return Ok(now);
        };
        let chunk_end = until.min(deadline(now, STOP_CHECK));
        let clock = &*self.env.clock;
        let outcome = apply::with_client_opts(self.plan, self.env, |opts| {
            dhcp::extend(&sock, &k.mac, &k.lease, rebinding, opts, clock, chunk_end)
        });
        if outcome.is_ok() {
            k.sock = Some(sock); // kept for the next exchange; a failed one is reopened
        }
        match outcome {
            Ok(Some(Ok(new))) => {
                k.renewed = true;
                k.sock_retry.reset();
                let old = std::mem::replace(&mut k.lease, new);
                adopt_renewal(self.plan, self.env, self.p, st, link, &old, &k.lease);
            }
            Ok(Some(Err(nak))) => {
                let text = format!(
                    "network: DHCP lease {} on {} refused: {nak}",
                    k.lease.net(),
                    link.name
                );
                lose_lease(self.plan, self.env, self.p, st, link, &k.lease, text);
                return Err(Held::LeaseLost { renewed: k.renewed });
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("{e}");
                k.not_before = Some(deadline(clock.now(), k.sock_retry.next_delay()));
            }
        }
        if self.watch.stop_requested() {
            return Err(Held::Stopped);
        }
        Ok(clock.now())
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
