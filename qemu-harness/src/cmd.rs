//! Running the external tools the harness drives (apt-get, depmod, xz,
//! mkfs.*, genisoimage): one place that turns "not installed" and "failed"
//! into errors naming the command line and its stderr.

use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Runs `cmd` to completion with captured output; fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let command = describe(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output)
}

/// The command line as a shell-like string, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}
