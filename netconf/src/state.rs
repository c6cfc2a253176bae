//! The snapshot of the network the init publishes in its health JSON (`network` section,
//! contract §4) and the boot timestamps that go with it. Owns no I/O beyond reading
//! CLOCK_BOOTTIME (through `sys.rs`).

use guest_config::NetworkSource;

/// `network.state` of the health JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkState {
    /// Addresses (and routes) are in place.
    Up,
    /// Bring-up is in progress, a DHCP lease was lost and is being re-acquired, or carrier
    /// was lost after bring-up (`error` says which).
    #[default]
    Down,
    /// The source asked for no address (`ip=off`), or there is no source.
    Unconfigured,
    /// Bring-up failed; `error` says why.
    Error,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Unconfigured => "unconfigured",
            LinkState::Error => "error",
        }
    }
}

/// Milliseconds since kernel start (CLOCK_BOOTTIME) at which each phase finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    pub started_ms: Option<u64>,
    pub link_found_ms: Option<u64>,
    pub carrier_ms: Option<u64>,
    /// Addresses, routes, DNS and hostname applied: `boot.network_ms` of the health JSON.
    pub configured_ms: Option<u64>,
}

/// What the init shows in `network` of the health JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkState {
    pub source: NetworkSource,
    pub interface: Option<String>,
    pub state: LinkState,
    /// Global (non link-local) addresses on the interface, e.g. "10.0.2.15/24".
    pub addresses: Vec<String>,
    /// The console line of the failure, or of a warning while `state` is `up`.
    pub error: Option<String>,
    /// What the last apply changed, one entry per kernel change ("added 10.0.2.15/24",
    /// "removed stray 192.0.2.99/24"); empty when everything was already in place.
    pub changes: Vec<String>,
    pub timings: Timings,
}

/// Milliseconds on CLOCK_BOOTTIME, the clock of the health JSON's `boot.*_ms`.
pub fn boottime_ms() -> Option<u64> {
    u64::try_from(crate::sys::boottime().as_millis()).ok()
}
