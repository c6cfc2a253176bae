//! `qemu-harness`: the command-line face of the harness library, for people
//! (the README demo) and for scripts. Each subcommand is a thin wrapper; the
//! work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qemu_harness::bench::{self, vminit_net_append};
use qemu_harness::{
    make_drive, static_binary_for, Arch, DriveFs, Error, Initramfs, Kernel, KernelKind, Machine,
    Modules, Result, Vm, VmBuilder, BOOT_TIMEOUT, DEFAULT_LABEL,
};

const USAGE: &str = "\
usage: qemu-harness <command> [options]

commands:
  fetch-kernel [--arch x86_64|arm64] fetch/cache the test kernel, print its paths
  initramfs --out F [--arch x86_64|arm64] [--init BIN] [--config FILE]
            [--modules virtio|none|a,b,c] [--file SRC:DST]... [--test-agent]
  drive --fs vfat|iso9660|ext4 --out F [--label L] FILE...
  run [--config FILE] [--drive-config FILE [--drive-fs vfat|iso9660|ext4]]
      [--append ARGS] [--machine q35|microvm|virt] [--bzimage] [--init BIN]
      [--modules virtio|none|a,b,c] [--forward GUEST_PORT]... [--memory MB] [--vsock]
                                     boot, print /health when it answers, keep
                                     the VM up until Ctrl-C (then shut it down);
                                     virt boots an arm64 guest (TCG);
                                     --vsock adds a vsock device (vhost-device-vsock)
  health --vsock SOCKET [--port P] [--wait N] [--path /health]
                                     GET over a Firecracker/Cloud Hypervisor-style hybrid
                                     vsock socket (CONNECT P, then HTTP); --wait N is the
                                     long poll (answers once generation > N, or after 30 s)
  bench-vsock [--requests N] [--concurrency C] [--changes K] [--machine q35|microvm]
                                     requests/s and p99 of /health over vsock vs hostfwd
                                     TCP in one VM, and the long poll's change->answer time
  bench-boot [--runs N] [--machine q35|microvm] [--bzimage] [--systemd DIR]
             [--modules virtio|job|a,b,c] [--agent]
                                     launch->trivial-init line (bare, and with vminit's
                                     image payload) vs launch->/health 200 of the busybox
                                     script, vminit and (with DIR from
                                     scripts/systemd-baseline.sh) Debian + systemd;
                                     the boot order rotates every run;
                                     --agent: the script and vminit also start
                                     an agent (busybox httpd) and wait for it
  bench-rootfs [--runs N] [--outage-runs K] [--outage SECS] [--vminit-append WORDS]
               [--console-dir DIR]
                                     the Debian rootfs (scripts/debian-rootfs.sh) with
                                     vminit vs a busybox init script, interleaved:
                                     launch->/health 200, vminit's PID 1->ready, and
                                     link-up->/health 200 after SECS (default 60)
                                     without carrier

common: --kernel F [--modules-dir D]   use this kernel instead of the cached Debian one
env: VMINIT_STATIC_DIR, VMINIT_KERNEL_CACHE, VMINIT_KERNEL_PACKAGE, VMINIT_KERNEL,
     VMINIT_MODULES_DIR, VMINIT_ACCEL=kvm|tcg; for arm64 VMINIT_STATIC_DIR_ARM64,
     VMINIT_KERNEL_CACHE_ARM64";

/// Parsed `--flag value` options and positional arguments.
#[derive(Default)]
struct Args {
    opts: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

const SWITCHES: &[&str] = &["--bzimage", "--test-agent", "--help", "--vsock", "--agent"];

impl Args {
    fn parse(words: &[String]) -> Result<Args> {
        let mut args = Args::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            if SWITCHES.contains(&w.as_str()) {
                args.opts.push((w.clone(), None));
            } else if w.starts_with("--") {
                let value = it
                    .next()
                    .ok_or_else(|| Error::Invalid(format!("{w} needs a value\n\n{USAGE}")))?;
                args.opts.push((w.clone(), Some(value.clone())));
            } else {
                args.positional.push(w.clone());
            }
        }
        Ok(args)
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).pop()
    }
    fn has(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| n == name)
    }
    fn required(&self, name: &str) -> Result<&str> {
        self.one(name)
            .ok_or_else(|| Error::Invalid(format!("missing {name}\n\n{USAGE}")))
    }
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.one(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::Invalid(format!("{name} {v}: not a number"))),
        }
    }
}

fn kernel(args: &Args, arch: Arch) -> Result<Kernel> {
    match args.one("--kernel") {
        Some(k) => Kernel::from_paths(k.as_ref(), args.one("--modules-dir").map(AsRef::as_ref)),
        None => Kernel::get_for(arch),
    }
}

/// `--arch`, else the architecture of `--machine` (x86_64 by default).
fn arch(args: &Args) -> Result<Arch> {
    match (args.one("--arch"), args.one("--machine")) {
        (Some(arch), _) => arch.parse(),
        (None, Some(machine)) => Ok(machine.parse::<Machine>()?.arch()),
        (None, None) => Ok(Arch::X86_64),
    }
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        op: "read",
        path: path.into(),
        source,
    })
}

/// The initramfs the `initramfs` and `run` commands build.
fn build_image(args: &Args, kernel: &Kernel, arch: Arch) -> Result<Initramfs> {
    let mut img = Initramfs::for_arch(arch);
    match args.one("--init") {
        Some(init) => img.init(init.as_ref())?,
        None => img.init(&static_binary_for("vminit", arch)?)?,
    };
    if let Some(config) = args.one("--config") {
        img.file(qemu_harness::CONFIG_PATH, read(config)?, 0o644);
    }
    if args.has("--test-agent") {
        img.bin("test-agent")?;
    }
    let modules = Modules::parse(args.one("--modules").unwrap_or("virtio"));
    if modules != Modules::None {
        let dir = kernel.modules_dir.as_ref().ok_or_else(|| {
            Error::Invalid(
                "--modules needs a module tree: pass --modules-dir or --modules none".into(),
            )
        })?;
        img.modules(&kernel.release, dir, &modules.names_for(arch))?;
    }
    // Last, so that a file can replace what `--modules` wrote (an index, say).
    for spec in args.all("--file") {
        let (src, dst) = spec
            .split_once(':')
            .ok_or_else(|| Error::Invalid(format!("--file {spec}: expected SRC:DST")))?;
        img.file_from(dst, src.as_ref(), 0o755)?;
    }
    Ok(img)
}

fn fetch_kernel(args: &Args) -> Result<()> {
    let k = kernel(args, arch(args)?)?;
    println!("release     {}", k.release);
    println!("vmlinuz     {}", k.vmlinuz.display());
    println!("vmlinux     {}", k.vmlinux.display());
    match &k.modules_dir {
        Some(d) => println!("modules_dir {}", d.display()),
        None => println!("modules_dir (none)"),
    }
    Ok(())
}

fn initramfs(args: &Args) -> Result<()> {
    let out = args.required("--out")?;
    let arch = arch(args)?;
    let k = kernel(args, arch)?;
    build_image(args, &k, arch)?.write(out.as_ref())?;
    println!("{out}");
    Ok(())
}

fn drive(args: &Args) -> Result<()> {
    let fs: DriveFs = args.required("--fs")?.parse()?;
    let out = args.required("--out")?;
    let label = args.one("--label").unwrap_or(DEFAULT_LABEL);
    let mut files = Vec::new();
    for src in &args.positional {
        let name = PathBuf::from(src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Invalid(format!("{src}: not a file name")))?;
        files.push((name, read(src)?));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    make_drive(fs, label, &refs, out.as_ref())?;
    println!("{out}");
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    let machine: Machine = args.one("--machine").unwrap_or("q35").parse()?;
    let k = kernel(args, machine.arch())?;
    let work = tempfile::tempdir().map_err(|source| Error::Io {
        op: "create temp dir",
        path: "/tmp".into(),
        source,
    })?;
    let initrd = work.path().join("initramfs.cpio");
    build_image(args, &k, machine.arch())?.write(&initrd)?;
    let kind = if args.has("--bzimage") {
        KernelKind::BzImage
    } else {
        KernelKind::Vmlinux
    };
    let mut builder = VmBuilder::new()
        .machine(machine)
        .kernel(k)
        .kernel_kind(kind)
        .initrd(&initrd)
        .memory_mb(args.number("--memory", 256)?)
        .vsock(args.has("--vsock"))
        .nic(true);
    let append = args.one("--append").unwrap_or("");
    let mut drive_has_network = false;
    if let Some(cfg) = args.one("--drive-config") {
        let bytes = read(cfg)?;
        drive_has_network = String::from_utf8_lossy(&bytes).contains("[network]");
        let fs: DriveFs = args.one("--drive-fs").unwrap_or("vfat").parse()?;
        let img = work.path().join("config-drive.img");
        make_drive(fs, DEFAULT_LABEL, &[("vminit.toml", &bytes)], &img)?;
        builder = builder.drive(img);
    }
    // The network needs one source (contract §2): give slirp's addresses on
    // the cmdline unless the user chose a source already.
    if !append.split_whitespace().any(|w| w.starts_with("ip=")) && !drive_has_network {
        builder = builder.append(&vminit_net_append());
    }
    builder = builder.append(append);
    for port in args.all("--forward") {
        let port = port
            .parse()
            .map_err(|_| Error::Invalid(format!("--forward {port}: not a port")))?;
        builder = builder.forward(port);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|source| Error::Io {
            op: "install signal handler",
            path: "SIGINT".into(),
            source,
        })?;
    }
    let mut vm = builder.launch()?;
    eprintln!(
        "qemu pid {}, console {}",
        vm.pid(),
        vm.console_path().display()
    );
    // Wait in slices so that Ctrl-C during a slow boot still shuts down.
    let started = Instant::now();
    let health = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        // Wait for a settled status (not `starting`); past the boot deadline, show what is.
        let settled = |h: &serde_json::Value| h["status"] != "starting";
        let pred: &dyn Fn(&serde_json::Value) -> bool = if started.elapsed() < BOOT_TIMEOUT {
            &settled
        } else {
            &|_| true
        };
        match vm.wait_health(pred, Duration::from_secs(1)) {
            Ok(json) => break Some(json),
            Err(Error::Timeout { .. })
                if started.elapsed() < BOOT_TIMEOUT + Duration::from_secs(5) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(health) = health {
        println!(
            "{}",
            serde_json::to_string_pretty(&health).unwrap_or_default()
        );
        println!("{}", summary_table(&health));
        if vm.vsock_socket().is_some() {
            match vm.wait_vsock_health(|_| true, Duration::from_secs(30)) {
                Ok(h) => println!(
                    "over vsock: status {} (generation {})",
                    h["status"], h["generation"]
                ),
                Err(e) => eprintln!("over vsock: {e}"),
            }
        }
        print_endpoints(&vm, args);
    }
    while !stop.load(Ordering::Relaxed) {
        if let Some(status) = vm.try_exit() {
            eprintln!(
                "QEMU exited by itself ({status}); console tail:\n{}",
                vm.console_tail(20)
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    shut_down(&mut vm, machine);
    Ok(())
}

/// `health --vsock SOCKET`: one GET through a hybrid vsock socket; the body on stdout.
fn health(args: &Args) -> Result<()> {
    // `--vsock` is also `run`'s switch, so the parser leaves its value as a positional word.
    let uds = match (args.has("--vsock"), args.positional.first()) {
        (true, Some(path)) => PathBuf::from(path),
        _ => return Err(Error::Invalid(format!("missing --vsock SOCKET\n\n{USAGE}"))),
    };
    let port: u32 = args.number("--port", u32::from(qemu_harness::HEALTH_PORT))?;
    let path = match args.one("--wait") {
        Some(n) => {
            let n: u64 = n
                .parse()
                .map_err(|_| Error::Invalid(format!("--wait {n}: not a generation number")))?;
            format!("/health?wait={n}")
        }
        None => args.one("--path").unwrap_or("/health").to_string(),
    };
    // A long poll may take its full 30 s.
    let (code, body) = qemu_harness::vsock::get(&uds, port, &path, Duration::from_secs(40))?;
    eprintln!("HTTP {code}");
    print!("{body}");
    Ok(())
}

fn bench_vsock(args: &Args) -> Result<()> {
    let opts = qemu_harness::bench_vsock::Options {
        machine: args.one("--machine").unwrap_or("q35").parse()?,
        requests: args.number("--requests", 2000)?,
        concurrency: args.number("--concurrency", 16)?,
        changes: args.number("--changes", 10)?,
    };
    let report = qemu_harness::bench_vsock::run(&kernel(args, qemu_harness::Arch::X86_64)?, &opts)?;
    println!("{report}");
    Ok(())
}

fn bench_rootfs(args: &Args) -> Result<()> {
    let opts = qemu_harness::bench_rootfs::Options {
        runs: args.number("--runs", 5usize)?.max(1),
        outage_runs: args.number("--outage-runs", 1usize)?,
        outage: std::time::Duration::from_secs(args.number("--outage", 60u64)?),
        vminit_append: args.one("--vminit-append").unwrap_or_default().to_string(),
        console_dir: args.one("--console-dir").map(std::path::PathBuf::from),
    };
    print!("{}", qemu_harness::bench_rootfs::run(&opts)?);
    Ok(())
}

/// The health document as a person reads it: status, network, services, boot timeline.
fn summary_table(h: &serde_json::Value) -> String {
    use std::fmt::Write;
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(x) => x.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "\nstatus   {}", s(&h["status"]));
    let n = &h["network"];
    let _ = writeln!(
        out,
        "network  {} via {} on {} {}{}",
        s(&n["state"]),
        s(&n["source"]),
        s(&n["interface"]),
        n["addresses"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        n["error"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "\n{:<16} {:<9} {:>6} {:>9} {:>9}  last exit",
        "service", "state", "pid", "restarts", "failures"
    );
    if let Some(services) = h["services"].as_object() {
        for (name, v) in services {
            let _ = writeln!(
                out,
                "{name:<16} {:<9} {:>6} {:>9} {:>9}  {}",
                s(&v["state"]),
                s(&v["pid"]),
                s(&v["restarts"]),
                s(&v["failures"]),
                s(&v["last_exit"])
            );
        }
    }
    let b = &h["boot"];
    let ms = |k: &str| b[k].as_u64();
    let _ = writeln!(out, "\nboot timeline (ms since kernel start)");
    let mut prev = None;
    for (label, key) in [
        ("PID 1 started", "init_start_ms"),
        ("modules loaded", "modules_ms"),
        ("network up", "network_ms"),
        ("ready", "ready_ms"),
    ] {
        match ms(key) {
            Some(t) => {
                let delta = prev
                    .map(|p: u64| format!("(+{})", t.saturating_sub(p)))
                    .unwrap_or_default();
                let _ = writeln!(out, "  {label:<16} {t:>7} {delta}");
                prev = Some(t);
            }
            None => {
                let _ = writeln!(out, "  {label:<16} {:>7}", "-");
            }
        }
    }
    if let Some(errors) = h["errors"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "\nerrors");
        for e in errors {
            let _ = writeln!(out, "  {}", s(e));
        }
    }
    out
}

fn print_endpoints(vm: &Vm, args: &Args) {
    if let Some(port) = vm.health_port() {
        eprintln!("health: curl http://127.0.0.1:{port}/health");
    }
    if let Some(uds) = vm.vsock_socket() {
        eprintln!(
            "health over vsock: qemu-harness health --vsock {}  (or: docs/OPERATIONS.md)",
            uds.display()
        );
    }
    for port in args.all("--forward") {
        if let Some(host) = port.parse().ok().and_then(|p| vm.host_port(p)) {
            eprintln!("guest port {port} -> 127.0.0.1:{host}");
        }
    }
    eprintln!("VM is up; Ctrl-C shuts it down");
}

/// ctrl-alt-delete (vminit's graceful shutdown, contract §5), then the ACPI
/// power button, then SIGKILL. virt has no keyboard: its power button is the graceful path.
fn shut_down(vm: &mut Vm, machine: Machine) {
    if machine == Machine::Virt {
        eprintln!("shutting down: system_powerdown");
        let clean = vm.system_powerdown().is_ok() && vm.wait_exit(BOOT_TIMEOUT).is_ok();
        if !clean {
            eprintln!("still running; killing QEMU");
        }
        let status = vm.kill();
        eprintln!("QEMU ended: {status:?}");
        return;
    }
    eprintln!("shutting down: ctrl-alt-delete");
    let clean = vm.send_ctrl_alt_del().is_ok() && vm.wait_exit(Duration::from_secs(30)).is_ok();
    if !clean {
        eprintln!("no shutdown after ctrl-alt-delete; trying system_powerdown");
        let _ = vm.system_powerdown();
        if vm.wait_exit(Duration::from_secs(10)).is_err() {
            eprintln!("still running; killing QEMU");
        }
    }
    let status = vm.kill();
    eprintln!("QEMU ended: {status:?}");
}

fn bench_boot(args: &Args) -> Result<()> {
    let machine: Machine = args.one("--machine").unwrap_or("q35").parse()?;
    if machine.arch() != Arch::X86_64 {
        // Its baselines (busybox, systemd) are x86 images.
        return Err(Error::Invalid(
            "bench-boot: q35 or microvm only; for virt, see BENCHMARKS.md".into(),
        ));
    }
    let k = kernel(args, machine.arch())?;
    let mut kinds = vec![KernelKind::Vmlinux];
    if args.has("--bzimage") {
        kinds.push(KernelKind::BzImage);
    }
    let runs = args.number("--runs", 5usize)?.max(1);
    let systemd = match args.one("--systemd") {
        Some(dir) => Some(bench::SystemdBaseline::in_dir(std::path::Path::new(dir))?),
        None => None,
    };
    // `job`: only what the benchmark's job loads; else a `--modules` list as for `run`.
    let modules = match args.one("--modules").unwrap_or("virtio") {
        "job" => Modules::Names(bench::JOB_MODULES.iter().map(|m| m.to_string()).collect()),
        other => Modules::parse(other),
    };
    print!(
        "{}",
        bench::run(
            &k,
            &kinds,
            machine,
            runs,
            systemd.as_ref(),
            &modules.names(),
            args.has("--agent")
        )?
    );
    Ok(())
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = words.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|args| {
        if args.has("--help") {
            println!("{USAGE}");
            return Ok(());
        }
        match command.as_str() {
            "fetch-kernel" => fetch_kernel(&args),
            "initramfs" => initramfs(&args),
            "drive" => drive(&args),
            "run" => run(&args),
            "bench-boot" => bench_boot(&args),
            "health" => health(&args),
            "bench-vsock" => bench_vsock(&args),
            "bench-rootfs" => bench_rootfs(&args),
            "help" | "--help" | "-h" => {
                println!("{USAGE}");
                Ok(())
            }
            other => Err(Error::Invalid(format!(
                "unknown command `{other}`\n\n{USAGE}"
            ))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qemu-harness: {e}");
            ExitCode::FAILURE
        }
    }
}
