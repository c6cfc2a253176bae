//! vminit's configuration: every grammar and schema the init reads, as pure functions.
//!
//! Owns: the kernel cmdline tokenizer and the `vminit.*` keys ([`cmdline`]), the kernel's
//! `ip=` grammar ([`ip`]), the TOML schemas of the image config ([`image`]), of the config
//! drive ([`drive`]) and of services ([`service`]), durations, the network plan
//! ([`network`]) and the arbitration between network sources. It performs no syscalls
//! beyond reading files it is handed; applying configuration is the other crates' job.

pub mod duration;
pub mod network;
pub mod service;

pub use duration::{parse_duration, Dur, DurationError};
pub use network::{AddressMethod, InterfaceSelector, IpNet, NetworkPlan, NetworkSource};
pub use service::{Backoff, Ready, Restart, RestartLimit, ServiceConfig, StopSignal};
