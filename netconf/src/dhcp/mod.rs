//! DHCPv4 client (RFC 2131): messages (`msg.rs`), lease and timers (`lease.rs`), socket and
//! exchanges (`client.rs`), the checks on the reply's strings (`names.rs`). The lease lifecycle loop that uses these lives in `runner.rs`.
//! Never sends DHCPRELEASE: the client only ever lets a lease it holds expire or renews it.

mod client;
mod lease;
mod msg;
pub mod names;

pub use client::{acquire, extend, retransmit_delay, ClientOpts, DhcpSocket};
pub use lease::{mask_to_prefix, timers, Lease, LeaseLimits, LeasePhase};
