//! The QEMU human monitor on a unix socket: send one command, read until
//! the next `(qemu) ` prompt. Used for `sendkey ctrl-alt-delete` and
//! `system_powerdown`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const PROMPT: &str = "(qemu) ";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `command` on the monitor at `socket`; returns its output.
pub fn command(socket: &Path, command: &str) -> io::Result<String> {
    let mut stream = connect(socket)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    read_to_prompt(&mut stream)?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let out = read_to_prompt(&mut stream)?;
    // The monitor echoes the command line first.
    let out = out.split_once('\n').map_or("", |(_, rest)| rest);
    Ok(out.trim_end_matches(PROMPT).trim().to_string())
}

/// Connects, retrying briefly: right after launch QEMU may not have
/// created the socket yet.
fn connect(socket: &Path) -> io::Result<UnixStream> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_to_prompt(stream: &mut UnixStream) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "monitor closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(PROMPT.as_bytes()) {
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}
