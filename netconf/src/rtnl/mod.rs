//! The rtnetlink boundary: the socket plumbing (`socket.rs`) and typed operations (`ops.rs`).
//! Everything that talks to the kernel's routing netlink family is in here.

mod ops;
mod socket;

pub use ops::{Addr, DefaultRoute, Link};
pub use socket::{LinkMonitor, Rtnl};
