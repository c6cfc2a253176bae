//! Starting QEMU so that it cannot outlive the harness.
//!
//! [`crate::Vm`]'s `Drop` kills QEMU on every normal and panicking path;
//! this covers the rest (the test process killed, a `Vm` kept in a
//! `static` that is never dropped): QEMU gets `PR_SET_PDEATHSIG = SIGKILL`.
//! That signal fires when the *thread* that forked exits, and test threads
//! end early, so every fork happens on one thread that lives as long as the
//! process. QEMU also gets its own process group, so a terminal's Ctrl-C
//! reaches the harness, which then shuts the guest down cleanly.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        // If the thread cannot start, `rx` is dropped and every spawn reports it.
        let _ = std::thread::Builder::new()
            .name("qemu-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    })
}

/// Spawns `cmd` on the long-lived spawner thread with a parent-death signal.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id();
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid) without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = channel();
    let sent = match spawner().lock() {
        Ok(tx) => tx.send((cmd, reply_tx)).is_ok(),
        Err(_) => false,
    };
    if !sent {
        return Err(io::Error::other("the qemu-spawner thread is gone"));
    }
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the qemu-spawner thread did not answer"))?
}
