//! Configuration errors with their location: file, line, column and the dotted key
//! (`services.web.ready`). Owns the error type shared by the image config, the config drive,
//! validation and merge; it does not decide what the init does with an error.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::duration::Dur;
use crate::hostfile::{read_host_file, read_image_file, MAX_HOST_FILE};

/// Where in a file an error is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// Turns a byte offset into `text` into a 1-based line and column (columns in characters,
    /// as an editor counts them). An offset past the end points after the last character.
    pub fn at(text: &str, offset: usize) -> Pos {
        let end = (0..=offset.min(text.len()))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let before = &text[..end];
        let line_text = before.rsplit('\n').next().unwrap_or_default();
        Pos {
            line: before.matches('\n').count().saturating_add(1),
            col: line_text.chars().count().saturating_add(1),
        }
    }
}

/// One problem in a configuration file. `key` is the dotted key path it concerns (empty when
/// the problem is the file itself), `pos` where it is when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub key: String,
    pub problem: Problem,
}

/// What is wrong. Each variant carries the offending value so the message stands alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file was not read: what it is or which syscall failed
    /// ([`crate::hostfile::HostFileError::reason`]).
    Read(String),
    /// Not valid TOML (message from the parser).
    Syntax(String),
    /// Valid TOML that does not fit the schema: unknown key, wrong type, bad enum value.
    Schema(String),
    /// `[network]` in the image config (contract §2).
    NetworkInImage,
    EmptyCommand,
    /// An argv word that cannot be passed to execve (empty program, NUL byte).
    BadArgument {
        index: usize,
        value: String,
    },
    EmptyValue,
    NotAbsolute(String),
    BadName {
        value: String,
        reason: &'static str,
    },
    UnknownAfter {
        target: String,
        known: Vec<String>,
    },
    AfterSelf,
    /// The services named form a cycle through `after`, first name repeated at the end.
    Cycle(Vec<String>),
    BadReadyUrl {
        url: String,
        reason: &'static str,
    },
    BadReadyTcp(String),
    ZeroBurst,
    ZeroDuration,
    BackoffInverted {
        initial: Dur,
        max: Dur,
    },
    BadExitCode(i32),
    /// A drive `[services.NAME]` that redefines a service of the image config.
    RedefinesImageService,
    /// A drive `[services.NAME.env]` override for a service the image does not have.
    OverrideOfUnknownService {
        known: Vec<String>,
    },
    /// A drive `[services.NAME]` with keys other than `env` but no `command`.
    PartialService {
        keys: Vec<String>,
    },
    /// Drive `[network]` values that contradict each other or are out of range.
    Network(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Read(e) => f.write_str(e),
            Problem::Syntax(m) => write!(f, "not valid TOML: {m}"),
            Problem::Schema(m) => f.write_str(m),
            Problem::NetworkInImage => f.write_str(
                "[network] is not allowed in the image config: the network comes from the \
                 kernel cmdline ip= or from the config drive (label VMINIT), never the image",
            ),
            Problem::EmptyCommand => f.write_str("command is empty: give the argv, e.g. [\"/usr/bin/agent\"]"),
            Problem::BadArgument { index, value } => {
                write!(f, "argument {index} {value:?} cannot be executed (empty program or NUL byte)")
            }
            Problem::EmptyValue => f.write_str("must not be empty"),
            Problem::NotAbsolute(p) => write!(f, "{p:?} must be an absolute path"),
            Problem::BadName { value, reason } => write!(f, "{value:?} is not a valid name: {reason}"),
            Problem::UnknownAfter { target, known } => write!(
                f,
                "unknown service {target:?} (services: {}; or \"network\")",
                list(known)
            ),
            Problem::AfterSelf => f.write_str("a service cannot come after itself"),
            Problem::Cycle(names) => write!(f, "after cycle: {}", names.join(" -> ")),
            Problem::BadReadyUrl { url, reason } => write!(f, "ready url {url:?}: {reason}"),
            Problem::BadReadyTcp(a) => write!(
                f,
                "ready tcp {a:?} is not IP:PORT (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"; no host names)"
            ),
            Problem::ZeroBurst => f.write_str("burst = 0 would fail the service on its first crash; use at least 1"),
            Problem::ZeroDuration => f.write_str("must be longer than 0s"),
            Problem::BackoffInverted { initial, max } => {
                write!(f, "backoff initial {initial} is longer than max {max}")
            }
            Problem::BadExitCode(c) => write!(f, "exit code {c} is outside 0..=255"),
            Problem::RedefinesImageService => f.write_str(
                "the config drive redefines this image service (its command); the drive may only \
                 set [services.NAME.env] for image services, or add services with new names",
            ),
            Problem::OverrideOfUnknownService { known } => write!(
                f,
                "env override for a service the image does not have (image services: {})",
                list(known)
            ),
            Problem::PartialService { keys } => write!(
                f,
                "has {} but no command: a drive service either only sets env (override of an \
                 image service) or is a full new service with a command",
                keys.join(", ")
            ),
            Problem::Network(m) => f.write_str(m),
        }
    }
}
/// Reads a config file through [`crate::hostfile`] (a regular file of at most
/// [`MAX_HOST_FILE`], never blocking); `follow_symlinks` only for the image's own default
/// path. A refusal is one [`ConfigError`] naming the file and what it is.
pub fn read_file(path: &Path, follow_symlinks: bool) -> Result<String, Vec<ConfigError>> {
    let read = if follow_symlinks {
        read_image_file(path, MAX_HOST_FILE)
    } else {
        read_host_file(path, MAX_HOST_FILE)
    };
    read.map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            pos: None,
            key: String::new(),
            problem: Problem::Read(e.reason()),
        }]
    })
}
