//! The supervisor's errors. Configuration problems are returned by [`crate::Supervisor::new`];
//! runtime problems (a command that cannot start) become a service's `last_exit` instead.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// `after` names a service that does not exist.
    UnknownDependency {
        service: String,
        after: String,
    },
    /// A service has an empty `command`.
    EmptyCommand {
        service: String,
    },
    UnknownUser {
        service: String,
        user: String,
        file: PathBuf,
    },
    UnknownGroup {
        service: String,
        group: String,
        file: PathBuf,
    },
    ReadUserDb {
        path: PathBuf,
        source: io::Error,
    },
    /// A syscall while starting a service.
    Io {
        service: String,
        what: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownDependency { service, after } => write!(
                f,
                "service {service}: after = [\"{after}\"] names no service (nor \"network\")"
            ),
            Error::EmptyCommand { service } => write!(f, "service {service}: command is empty"),
            Error::UnknownUser {
                service,
                user,
                file,
            } => write!(
                f,
                "service {service}: user {user:?} not found in {}",
                file.display()
            ),
            Error::UnknownGroup {
                service,
                group,
                file,
            } => write!(
                f,
                "service {service}: group {group:?} not found in {}",
                file.display()
            ),
            Error::ReadUserDb { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Error::Io {
                service,
                what,
                source,
            } => {
                write!(f, "service {service}: {what} failed: {source}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ReadUserDb { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
