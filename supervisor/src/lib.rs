//! Service supervision for vminit (contract §3–§4): starts the configured services in `after`
//! order, proves their readiness, restarts crashes within a budget, forwards their output to
//! the console and stops them in reverse order at shutdown.
//!
//! It does not parse configuration (`guest-config` does), does not reap children or handle
//! signals (the init's event loop does and hands it each exit), and does not serve health
//! (the init serialises [`ServiceStatus`] and [`overall_status`]).
//!
//! Layout: [`machine`] is the pure per-service state machine; `supervisor`/`run` drive it with
//! processes, pipes and sockets; [`status`] is what the host sees. The only `unsafe` is in
//! `sys.rs` (what a service's child does between fork and exec); the rest of the crate denies
//! it and calls the kernel through rustix's, nix's and std's safe wrappers. The host tests
//! drive the supervisor with their own small loop (`tests/support/host_loop.rs`).
//!
//! Tests: `cargo build -p test-agent && cargo test -p supervisor` (same target dir; the host
//! tests in `tests/host.rs` run the agent from `<target>/debug/test-agent` or `$TEST_AGENT`).

// This code runs in PID 1, where an overflow panic is a kernel panic: all arithmetic on
// times, counts and lengths is checked or saturating, or argued fine where it is plain.
// Tests may compute freely.
#![cfg_attr(not(test), warn(clippy::arithmetic_side_effects))]
#![deny(unsafe_code)]

pub mod cgroup;
pub mod error;
pub mod machine;
pub mod notify;
pub mod output;
pub mod probe;
mod run;
pub mod spawn;
pub mod status;
mod supervisor;
mod sys;
pub mod users;

pub use error::Error;
pub use status::{ExitStatus, LastExit, ServiceState, ServiceStatus, ServicesHealth};
pub use supervisor::{Options, Supervisor};
