//! The init's own settings that the cmdline and the image config both may give (log level,
//! shutdown mode, health listeners), and which one wins. Owns the value types and the
//! resolution; reading the sources is [`crate::cmdline`] and [`crate::image`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::cmdline::VminitArgs;
use crate::image::ImageConfig;
use crate::listener::{default_listeners, Listener};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const NAMES: &'static str = "error, warn, info, debug or trace";

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl FromStr for LogLevel {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a shutdown ends with. Firecracker has no ACPI power-off and wants `reboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownMode {
    #[default]
    Poweroff,
    Reboot,
}

impl ShutdownMode {
    pub const NAMES: &'static str = "poweroff or reboot";

    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Poweroff => "poweroff",
            ShutdownMode::Reboot => "reboot",
        }
    }
}

impl FromStr for ShutdownMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "poweroff" => Ok(ShutdownMode::Poweroff),
            "reboot" => Ok(ShutdownMode::Reboot),
            _ => Err(()),
        }
    }
}

impl fmt::Display for ShutdownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn de_named<'de, D: Deserializer<'de>, T: FromStr>(
    d: D,
    what: &str,
    names: &str,
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("unknown {what} {s:?} (one of {names})")))
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_named(d, "log level", LogLevel::NAMES)
    }
}

impl<'de> Deserialize<'de> for ShutdownMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_named(d, "shutdown mode", ShutdownMode::NAMES)
    }
}

/// The settings in force. Precedence: the kernel cmdline (`vminit.*`, per boot) over the
/// image config (per image) over the contract's defaults, so a host can raise the log level
/// or move the health port of one VM without rebuilding its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub log: LogLevel,
    pub shutdown: ShutdownMode,
    /// Where the health endpoint listens, in order ([`crate::listener`]).
    pub health: Vec<Listener>,
}

impl Settings {
    pub fn resolve(args: &VminitArgs, image: Option<&ImageConfig>) -> Settings {
        Settings {
            log: args.log.or(image.and_then(|i| i.log)).unwrap_or_default(),
            shutdown: args
                .shutdown
                .or(image.and_then(|i| i.shutdown))
                .unwrap_or_default(),
            health: args
                .health
                .clone()
                .or_else(|| image.and_then(|i| i.health.listen.clone()))
                .unwrap_or_else(default_listeners),
        }
    }
}
