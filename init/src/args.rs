//! The command line of `vminit` when it is *not* PID 1. As PID 1 the kernel passes unknown
//! cmdline words as argv (`splash`, `single`), so there argv is ignored with a warning and
//! `/proc/cmdline` is the only source of truth (contract §1).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: vminit                       run (as PID 1: the guest's init; otherwise a supervisor)
       vminit --check-config FILE   validate a config file, print every error, exit 1 if any
       vminit --version
options off PID 1 (a plain supervisor, a child subreaper; no mounts, modules or network):
       --config FILE     image config (default /etc/vminit/vminit.toml)
       --health LISTENER[,LISTENER]  health listeners, ADDR:PORT or vsock:PORT
                         (default 0.0.0.0:8900,vsock:8900)
       --log LEVEL       error|warn|info|debug|trace (default info)
       --run-dir DIR     where the notify socket lives (default /run/vminit)";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Version,
    Help,
    CheckConfig(PathBuf),
    Run(HostOptions),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostOptions {
    pub config: Option<PathBuf>,
    pub health: Option<Vec<guest_config::Listener>>,
    pub log: Option<String>,
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ArgError {
    MissingValue(String),
    BadValue {
        flag: String,
        value: String,
        /// What is wrong with it, if more can be said than "invalid".
        why: String,
    },
    Unknown(String),
    /// Argument number `index` (from 1) is not UTF-8; `lossy` shows it with U+FFFD.
    NotUtf8 {
        index: usize,
        lossy: String,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::BadValue { flag, value, why } => {
                write!(f, "{flag}: invalid value {value:?}: {why}")
            }
            ArgError::Unknown(a) => write!(f, "unknown argument {a:?}"),
            ArgError::NotUtf8 { index, lossy } => {
                write!(f, "argument {index} ({lossy:?}) is not valid UTF-8")
            }
        }
    }
}

/// The arguments as text. Off PID 1 a non-UTF-8 argument is a usage error that names it; as
/// PID 1 argv is never parsed (see the module doc).
pub fn utf8(args: &[OsString]) -> Result<Vec<String>, ArgError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            a.clone().into_string().map_err(|bad| ArgError::NotUtf8 {
                index: i.saturating_add(1),
                lossy: bad.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

pub fn parse(args: &[String]) -> Result<Command, ArgError> {
    let mut opts = HostOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| ArgError::MissingValue(flag.to_string()))
        };
        match a.as_str() {
            "--version" | "-V" => return Ok(Command::Version),
            "--help" | "-h" => return Ok(Command::Help),
            "--check-config" => return Ok(Command::CheckConfig(value(a)?.into())),
            "--config" => opts.config = Some(value(a)?.into()),
            "--health" => {
                let v = value(a)?;
                let listeners =
                    guest_config::parse_listeners(&v).map_err(|e| ArgError::BadValue {
                        flag: a.clone(),
                        value: v.clone(),
                        why: e.to_string(),
                    })?;
                opts.health = Some(listeners);
            }
            "--log" => opts.log = Some(value(a)?),
            "--run-dir" => opts.run_dir = Some(value(a)?.into()),
            other => return Err(ArgError::Unknown(other.to_string())),
        }
    }
    Ok(Command::Run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(&args("--version")), Ok(Command::Version));
        assert_eq!(
            parse(&args("--check-config /x.toml")),
            Ok(Command::CheckConfig("/x.toml".into()))
        );
        let Ok(Command::Run(o)) = parse(&args("--config /c --health 127.0.0.1:9 --log debug"))
        else {
            panic!()
        };
        assert_eq!(o.config, Some("/c".into()));
        assert_eq!(
            o.health,
            Some(vec![guest_config::Listener::Tcp(
                "127.0.0.1:9".parse().unwrap()
            )])
        );
        let e = parse(&args("--health 127.0.0.1:9,vsock:no")).unwrap_err();
        assert!(e.to_string().contains("\"vsock:no\""), "{e}");
        assert_eq!(parse(&[]), Ok(Command::Run(HostOptions::default())));
    }

    #[test]
    fn non_utf8_argument_is_named_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let argv = vec![
            OsString::from("--config"),
            OsString::from_vec(b"/x\xff.toml".to_vec()),
        ];
        let e = utf8(&argv).unwrap_err();
        assert!(matches!(e, ArgError::NotUtf8 { index: 2, .. }), "{e:?}");
        assert!(e.to_string().contains("argument 2"), "{e}");
        assert_eq!(utf8(&argv[..1]).unwrap(), vec!["--config".to_string()]);
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(
            parse(&args("--check-config")),
            Err(ArgError::MissingValue("--check-config".into()))
        );
        assert!(parse(&args("--health nope"))
            .unwrap_err()
            .to_string()
            .contains("nope"));
        assert!(parse(&args("splash"))
            .unwrap_err()
            .to_string()
            .contains("splash"));
    }
}
