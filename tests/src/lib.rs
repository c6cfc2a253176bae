//! Shared pieces of the integration tests: running the real `vminit` binary on the host as a
//! plain supervisor (not PID 1), with a guard that kills it on every path.
//!
//! The QEMU tests use `qemu-harness` directly; the host tests use [`HostVminit`].

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound then released; the tests use it at once).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `vminit` running on the host in supervisor mode; killed and reaped on drop.
pub struct HostVminit {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl HostVminit {
    /// Starts `vminit --config <config> --health 127.0.0.1:<free> --run-dir <tmp>/run` and waits
    /// until `/livez` answers 200 (deadline 30 s).
    pub fn start(config: &str) -> HostVminit {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &str, env: &[(&str, &str)]) -> HostVminit {
        let bin = qemu_harness::static_binary("vminit").expect("static vminit built");
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("vminit.toml");
        std::fs::write(&cfg, config).expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = dir.path().join("console.log");
        // Append mode: vminit's logger (fd 2) and its service-output sink share this file.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("dup log");
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&cfg)
            .arg("--health")
            .arg(addr.to_string())
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn vminit");
        let v = HostVminit {
            child,
            addr,
            dir,
            log,
        };
        v.wait_until(Duration::from_secs(30), |s| {
            matches!(
                qemu_harness::http::get(s.addr, "/livez", Duration::from_secs(2)),
                Ok((200, _))
            )
        });
        v
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        qemu_harness::http::get(self.addr, path, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nconsole:\n{}", self.console()))
    }

    pub fn health(&self) -> serde_json::Value {
        let (_, body) = self.get("/health");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON {e}: {body}"))
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Polls `cond` every 50 ms until it holds; panics with the console at the deadline.
    pub fn wait_until(&self, deadline: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "condition not met within {deadline:?}\nconsole:\n{}",
            self.console()
        );
    }

    /// Polls `/health` until `pred` holds on the JSON.
    pub fn wait_health(
        &self,
        deadline: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + deadline;
        let mut last = serde_json::Value::Null;
        while Instant::now() < end {
            if let Ok((_, body)) =
                qemu_harness::http::get(self.addr, "/health", Duration::from_secs(2))
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                    if pred(&v) {
                        return v;
                    }
                    last = v;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "health predicate not met within {deadline:?}; last: {last:#}\nconsole:\n{}",
            self.console()
        );
    }

    /// RSS of the vminit process in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Sends `sig` and waits (bounded) for the process to exit; returns its exit code.
    pub fn signal_and_wait(&mut self, sig: i32, deadline: Duration) -> Option<i32> {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid, which is not yet reaped (we hold the Child).
        unsafe { libc::kill(pid, sig) };
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for HostVminit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads what a stream sends until EOF or `timeout`.
pub fn read_all(stream: &mut std::net::TcpStream, timeout: Duration) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(timeout));
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// The static address QEMU's user network expects, as a kernel `ip=` value.
pub const SLIRP_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

/// What goes into a test guest's initramfs.
pub struct Guest {
    /// Image config (`/etc/vminit/vminit.toml`), if any.
    pub config: Option<String>,
    /// Kernel modules copied in (with depmod indexes); `None`: no `/lib/modules` at all.
    pub modules: Option<Vec<&'static str>>,
    /// Extra files: (guest path, bytes, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Symbolic links: (guest path, target).
    pub symlinks: Vec<(String, String)>,
    /// Named pipes (FIFOs), by guest path.
    pub fifos: Vec<String>,
}

impl Default for Guest {
    fn default() -> Self {
        Guest {
            config: None,
            modules: Some(qemu_harness::VIRTIO_MODULES.to_vec()),
            files: Vec::new(),
            symlinks: Vec::new(),
            fifos: Vec::new(),
        }
    }
}

impl Guest {
    pub fn with_config(config: &str) -> Guest {
        Guest {
            config: Some(config.to_string()),
            ..Guest::default()
        }
    }

    /// Writes the initramfs (vminit as `/init`, `/bin/test-agent`) into `dir`.
    pub fn build(&self, dir: &Path, kernel: &qemu_harness::Kernel) -> PathBuf {
        self.build_for(dir, kernel, qemu_harness::Arch::X86_64)
    }

    /// [`Guest::build`] with the static binaries of `arch` (the modules are `kernel`'s).
    pub fn build_for(
        &self,
        dir: &Path,
        kernel: &qemu_harness::Kernel,
        arch: qemu_harness::Arch,
    ) -> PathBuf {
        let mut img = qemu_harness::Initramfs::vminit_for(arch).expect("vminit initramfs");
        img.bin("test-agent").expect("test-agent");
        if let Some(c) = &self.config {
            img.config(c);
        }
        if let Some(m) = &self.modules {
            let dir = kernel
                .modules_dir
                .as_ref()
                .expect("cached kernel has modules");
            img.modules(&kernel.release, dir, m).expect("module subset");
        }
        for (path, bytes, mode) in &self.files {
            img.file(path, bytes.clone(), *mode);
        }
        for (path, target) in &self.symlinks {
            img.symlink(path, target);
        }
        for path in &self.fifos {
            img.fifo(path, 0o644);
        }
        let out = dir.join("initrd.cpio");
        img.write(&out).expect("write initramfs");
        out
    }
}

/// Boots `guest` on `machine` with extra cmdline words and drives; the VM is killed on drop.
/// The kernel and the static binaries are those of the machine's architecture.
pub fn boot(
    guest: &Guest,
    machine: qemu_harness::Machine,
    append: &str,
    drives: &[PathBuf],
) -> (qemu_harness::Vm, tempfile::TempDir) {
    boot_with(guest, machine, append, drives, |b, _| b)
}

/// [`boot`], with `more` adding to the QEMU builder before launch (it gets the boot's
/// temporary directory, for files such as a NIC capture).
pub fn boot_with(
    guest: &Guest,
    machine: qemu_harness::Machine,
    append: &str,
    drives: &[PathBuf],
    more: impl FnOnce(qemu_harness::VmBuilder, &Path) -> qemu_harness::VmBuilder,
) -> (qemu_harness::Vm, tempfile::TempDir) {
    let arch = machine.arch();
    let kernel = qemu_harness::Kernel::get_for(arch).expect("test kernel (run scripts/setup.sh)");
    let dir = tempfile::tempdir().expect("tempdir");
    let initrd = guest.build_for(dir.path(), &kernel, arch);
    let mut b = qemu_harness::VmBuilder::new()
        .machine(machine)
        .kernel(kernel)
        .initrd(&initrd)
        .append(append)
        .nic(true);
    for d in drives {
        b = b.drive(d);
    }
    let b = more(b, dir.path());
    (b.launch().expect("launch QEMU"), dir)
}

/// A deadline for a boot plus the given extra, generous for a loaded 2-core TCG machine.
pub fn boot_deadline() -> Duration {
    qemu_harness::BOOT_TIMEOUT
}

/// Presses ctrl-alt-delete and waits for the guest to power QEMU off by itself; asserts a
/// clean exit and no kernel panic, and returns the whole console.
pub fn power_off_cleanly(vm: &mut qemu_harness::Vm) -> String {
    vm.send_ctrl_alt_del()
        .expect("monitor: sendkey ctrl-alt-delete");
    exits_cleanly(vm)
}

/// Waits for the guest to power QEMU off by itself after a shutdown request; asserts a clean
/// exit and no kernel panic, and returns the whole console.
pub fn exits_cleanly(vm: &mut qemu_harness::Vm) -> String {
    let status = vm
        .wait_exit(boot_deadline())
        .unwrap_or_else(|e| panic!("QEMU did not power off by itself: {e}"));
    let console = vm.console_text();
    assert!(status.success(), "QEMU exit {status:?}\n{console}");
    assert!(!console.contains("Kernel panic"), "{console}");
    console
}

/// The network came from the config drive on `/dev/vda` (the example `DRIVE` address,
/// 10.0.2.15/24), it is up, and the `agent` service is ready.
pub fn assert_drive_network_up(h: &serde_json::Value, console: &str) {
    assert_eq!(h["network"]["source"], "drive", "{h:#}");
    assert_eq!(h["network"]["state"], "up", "{h:#}");
    assert_eq!(h["network"]["addresses"][0], "10.0.2.15/24", "{h:#}");
    assert_eq!(h["services"]["agent"]["state"], "ready", "{h:#}");
    assert!(console.contains("config drive: /dev/vda"), "{console}");
}
