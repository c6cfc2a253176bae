//! Where the health endpoint listens (contract §2): `LISTENER[,LISTENER]`, a listener being
//! `ADDR:PORT` (TCP) or `vsock:PORT` (AF_VSOCK, any CID). One grammar for the cmdline's
//! `vminit.health=`, the image config's `[health] listen` and `--health` off PID 1, so an
//! operator learns it once; an error names the listener that is wrong, not only the list.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// The port both default listeners use.
pub const DEFAULT_PORT: u16 = 8900;

/// One health listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Listener {
    Tcp(SocketAddr),
    /// AF_VSOCK on `VMADDR_CID_ANY:port`: reachable from the host with no network at all.
    Vsock(u32),
}

/// The contract's default: `0.0.0.0:8900,vsock:8900`.
pub fn default_listeners() -> Vec<Listener> {
    vec![
        Listener::Tcp(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            DEFAULT_PORT,
        ))),
        Listener::Vsock(u32::from(DEFAULT_PORT)),
    ]
}

impl Listener {
    pub fn is_vsock(&self) -> bool {
        matches!(self, Listener::Vsock(_))
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(a) => write!(f, "{a}"),
            Listener::Vsock(p) => write!(f, "vsock:{p}"),
        }
    }
}

/// A listener that cannot be used, named as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerError {
    /// The one listener that is wrong (the whole value when it is empty).
    pub listener: String,
    pub reason: &'static str,
}

/// The expected form, for messages.
pub const LISTENER_FORM: &str =
    "ADDR:PORT or vsock:PORT, comma-separated (e.g. 0.0.0.0:8900,vsock:8900)";

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "health listener {:?}: {} (expected {LISTENER_FORM})",
            self.listener, self.reason
        )
    }
}

impl std::error::Error for ListenerError {}

impl FromStr for Listener {
    type Err = ListenerError;
    fn from_str(s: &str) -> Result<Listener, ListenerError> {
        let err = |reason| ListenerError {
            listener: s.to_string(),
            reason,
        };
        if let Some(port) = s.strip_prefix("vsock:") {
            // VMADDR_PORT_ANY (u32::MAX) asks the kernel to pick one: no host could find it.
            return match port.parse::<u32>() {
                Ok(p) if p != u32::MAX => Ok(Listener::Vsock(p)),
                _ => Err(err("the vsock port is not a number from 0 to 4294967294")),
            };
        }
        s.parse::<SocketAddr>()
            .map(Listener::Tcp)
            .map_err(|_| err("not ADDR:PORT (e.g. 0.0.0.0:8900 or [::]:8900) nor vsock:PORT"))
    }
}

/// Parses `LISTENER[,LISTENER]`: at least one, no duplicates.
pub fn parse_listeners(s: &str) -> Result<Vec<Listener>, ListenerError> {
    let mut out: Vec<Listener> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let l: Listener = part.parse()?;
        if out.contains(&l) {
            return Err(ListenerError {
                listener: part.to_string(),
                reason: "given twice",
            });
        }
        out.push(l);
    }
    Ok(out)
}

/// `[health] listen` takes the same string as the cmdline, or an array of listeners.
pub(crate) fn de_listeners<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Listener>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let joined = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s,
        OneOrMany::Many(v) if v.is_empty() => String::new(),
        OneOrMany::Many(v) => v.join(","),
    };
    parse_listeners(&joined)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_tcp_and_vsock_on_8900() {
        let d: Vec<String> = default_listeners().iter().map(|l| l.to_string()).collect();
        assert_eq!(d, ["0.0.0.0:8900", "vsock:8900"]);
        assert_eq!(
            parse_listeners("0.0.0.0:8900,vsock:8900"),
            Ok(default_listeners())
        );
    }

    #[test]
    fn each_form_parses_and_prints_back() {
        for s in ["127.0.0.1:9000", "[::]:8900", "vsock:0", "vsock:4294967294"] {
            let l: Listener = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
        }
        assert_eq!(
            parse_listeners(" vsock:1 , 10.0.0.1:80 "),
            Ok(vec![
                Listener::Vsock(1),
                Listener::Tcp("10.0.0.1:80".parse().unwrap())
            ])
        );
    }

    #[test]
    fn an_error_names_the_bad_listener() {
        for (value, bad) in [
            ("0.0.0.0:8900,vsock:x", "vsock:x"),
            ("vsock:8900,8900", "8900"),
            ("vsock:4294967295", "vsock:4294967295"),
            ("vsock:-1,1.2.3.4:5", "vsock:-1"),
            ("1.2.3.4:5,", ""),
            ("", ""),
            ("vsock:1,vsock:1", "vsock:1"),
        ] {
            let e = parse_listeners(value).unwrap_err();
            assert_eq!(e.listener, bad, "{value}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }
}
