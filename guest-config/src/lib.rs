//! vminit's configuration: every grammar and schema the init reads, as pure functions.
//!
//! Owns: the kernel cmdline tokenizer and the `vminit.*` keys ([`cmdline`]), the kernel's
//! `ip=` grammar ([`ip`]), the TOML schemas of the image config ([`image`]), of the config
//! drive ([`drive`]) and of services ([`service`]), durations, the network plan
//! ([`network`]) and the arbitration between network sources ([`mod@arbitrate`]), the merge of
//! image and drive services ([`merge`]), validation with located errors ([`mod@validate`],
//! [`error`]), `--check-config` ([`check`]) and the settings precedence ([`settings`]).
//! It performs no syscalls beyond reading files and block devices it is handed
//! ([`mod@drive::find`] probes superblocks, never mounts); applying configuration is the other
//! crates' job.

// PID 1 code, where an overflow panic is a kernel panic: arithmetic is checked or saturating,
// and a provably bounded index allowed narrowly with a `// why:` (docs/DESIGN.md).
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]
#![forbid(unsafe_code)]

pub mod arbitrate;
pub mod check;
pub mod cmdline;
pub mod doc;
pub mod drive;
pub mod duration;
pub mod error;
pub mod hostfile;
pub mod image;
pub mod ip;
pub mod limits;
pub mod listener;
pub mod merge;
pub mod names;
pub mod network;
mod recover;
pub mod service;
pub mod settings;
pub mod validate;

pub use arbitrate::{arbitrate, NetworkError};
pub use check::{check_config_file, ConfigKind, Summary};
pub use cmdline::{Cmdline, VminitArgs};
pub use drive::DriveConfig;
pub use duration::{parse_duration, Dur, DurationError};
pub use error::{ConfigError, Pos, Problem};
pub use image::{ColdplugMode, ImageConfig, ModulesConfig};
pub use ip::{IpConfig, IpError};
pub use limits::{Bytes, Count, CpuMax, CpuWeight, Nofile};
pub use listener::{default_listeners, parse_listeners, Listener, ListenerError};
pub use merge::{merge_services, resolve_services, Resolved};
pub use network::{
    AddressMethod, DhcpClientId, InterfaceSelector, IpNet, NetworkPlan, NetworkSource,
};
pub use service::{Backoff, Ready, Restart, RestartLimit, ServiceConfig, StopSignal};
pub use settings::{LogLevel, Settings, ShutdownMode};
pub use validate::validate;
