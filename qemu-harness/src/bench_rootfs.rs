//! The real-image benchmark (issue 18): the Debian rootfs of [`crate::rootfs`] booted with its
//! own kernel and initrd, once with vminit at `/sbin/init` and once with a hand-written
//! busybox script doing the same job (`init=/sbin/bb-init`), from the same image. It measures
//! launch → first `/health` 200 for both in interleaved runs, vminit's own PID 1 → ready, and
//! link-up → `/health` 200 after a boot without carrier and a long outage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bench::{boot_order, paired_median, stats};
use crate::error::Result;
use crate::paths::static_binary;
use crate::rootfs::{DebianRootfs, GuestFile};
use crate::running::BOOT_TIMEOUT;
use crate::vm::{KernelKind, Machine, VmBuilder};

/// The cmdline of every boot: the root, and the address for both inits (the script ignores
/// it and sets the same address itself). No device named: the NIC's name is udev's.
const APPEND: &str = "root=/dev/vda rw ip=10.0.2.15::10.0.2.2:255.255.255.0:::off";

/// The agent of both inits: busybox httpd serving a file, on port 8080.
const AGENT_DIR: &str = "/srv/agent";

const VMINIT_CONFIG: &str = r#"
[services.agent]
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/agent"]
after = ["network"]
ready = { http = "http://127.0.0.1:8080/health" }
"#;

/// The same job as a hand-written init script: the NIC driver, the address and route on
/// whatever interface the NIC got, the agent, a 10 ms poll until it answers, then a static
/// `/health` on vminit's port. The initrd already mounted /proc, /sys, /dev and /run. It prints
/// the uptime at its start and once serving: its own part on the guest's clock, as vminit's
/// `boot` section gives it.
const BB_INIT: &str = r#"#!/bin/busybox sh
read up rest < /proc/uptime
echo "bb-init: start $up"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
modprobe virtio_net
nic=
while [ -z "$nic" ]; do
    for n in /sys/class/net/*; do [ -e "$n/device" ] && nic=${n##*/}; done
    [ -n "$nic" ] || sleep 0.01
done
busybox ip link set lo up
busybox ip link set "$nic" up
busybox ip addr add 10.0.2.15/24 dev "$nic"
busybox ip route add default via 10.0.2.2
busybox httpd -p 8080 -h /srv/agent
until busybox wget -q -O /dev/null http://127.0.0.1:8080/health 2>/dev/null; do sleep 0.01; done
mkdir -p /run/www
echo '{"status":"ok"}' > /run/www/health
busybox httpd -p 8900 -h /run/www
read up rest < /proc/uptime
echo "bb-init: serving $up"
while true; do sleep 3600; done
"#;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Interleaved rounds of (vminit, busybox script).
    pub runs: usize,
    /// Boots without carrier for the link-up figure (0: none).
    pub outage_runs: usize,
    /// How long the link stays down after vminit named the missing carrier.
    pub outage: Duration,
    /// More kernel cmdline words for vminit's boots (`vminit.log=debug` to see where its
    /// time goes; a chattier console costs time under TCG, so not for the figures).
    pub vminit_append: String,
    /// Keep each boot's console here (`vminit-N.log`, `script-N.log`).
    pub console_dir: Option<PathBuf>,
}

/// The image both inits boot (attached with `snapshot=on`, so every boot starts pristine).
fn image(rootfs: &DebianRootfs, dir: &Path) -> Result<PathBuf> {
    rootfs.image(
        &dir.join("bench-rootfs.img"),
        &[
            GuestFile::host("/sbin/init", static_binary("vminit")?, 0o755),
            GuestFile::bytes("/sbin/bb-init", BB_INIT, 0o755),
            GuestFile::bytes("/etc/vminit/vminit.toml", VMINIT_CONFIG, 0o644),
            GuestFile::bytes(&format!("{AGENT_DIR}/health"), "ok\n", 0o644),
        ],
    )
}

fn builder(rootfs: &DebianRootfs, img: &Path, extra: &str) -> Result<VmBuilder> {
    Ok(VmBuilder::new()
        .machine(Machine::Q35)
        .kernel(rootfs.kernel()?)
        .kernel_kind(KernelKind::BzImage)
        .memory_mb(512)
        .initrd(rootfs.initrd())
        .drive(img)
        .snapshot_drives(true)
        .nic(true)
        .append(&format!("{APPEND} {extra}")))
}

/// Launch → first `/health` 200, and the init's own part on the guest's clock: for vminit
/// PID 1 → ready from the `boot` section, for the script its start → serving lines.
fn boot(
    rootfs: &DebianRootfs,
    img: &Path,
    extra: &str,
    console: Option<PathBuf>,
) -> Result<(Duration, Option<Duration>)> {
    let mut vm = builder(rootfs, img, extra)?.launch()?;
    let (_, body) = vm.wait_get("/health", |code, _| code == 200, BOOT_TIMEOUT)?;
    let took = vm.launched().elapsed();
    if let Some(dest) = console {
        vm.save_console(&dest)?;
    }
    let boot = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["boot"].clone();
    let own = match (boot["ready_ms"].as_u64(), boot["init_start_ms"].as_u64()) {
        (Some(r), Some(s)) => Some(Duration::from_millis(r.saturating_sub(s))),
        _ => script_span(&vm.console_text()),
    };
    Ok((took, own))
}

/// The script's start → serving, from its two uptime lines.
fn script_span(console: &str) -> Option<Duration> {
    let at = |tag: &str| -> Option<f64> {
        let line = console.lines().find(|l| l.starts_with(tag))?;
        line[tag.len()..].trim().parse().ok()
    };
    let (start, serving) = (at("bb-init: start ")?, at("bb-init: serving ")?);
    Some(Duration::from_secs_f64((serving - start).max(0.0)))
}

/// Boots vminit with the link down, waits for its diagnosis, keeps the link down for
/// `outage`, plugs it in and returns plug-in → first `/health` 200 with the network up.
fn outage_boot(rootfs: &DebianRootfs, img: &Path, outage: Duration) -> Result<Duration> {
    let mut vm = builder(rootfs, img, "")?.extra_arg("-S").launch()?;
    vm.monitor("set_link n0 off")?;
    vm.monitor("cont")?;
    vm.wait_console("has no carrier", BOOT_TIMEOUT)?;
    std::thread::sleep(outage);
    vm.monitor("set_link n0 on")?;
    let plugged = Instant::now();
    vm.wait_get(
        "/health",
        |code, body| {
            code == 200
                && serde_json::from_str::<serde_json::Value>(body)
                    .is_ok_and(|h| h["network"]["state"] == "up")
        },
        BOOT_TIMEOUT,
    )?;
    Ok(plugged.elapsed())
}

/// vminit/script: the ratio of the medians and the median of the per-run ratios.
fn ratio(what: &str, vminit: &[Duration], script: &[Duration]) -> String {
    let (Some(v), Some(b)) = (stats(vminit), stats(script)) else {
        return String::new();
    };
    let mut line = format!(
        "  ratio vminit/busybox-script, {what}: {:.2} (medians",
        v.median.as_secs_f64() / b.median.as_secs_f64().max(1e-9)
    );
    if let Some(p) = paired_median(vminit, script) {
        line.push_str(&format!("; median of per-run ratios {p:.2}"));
    }
    line + ")\n"
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Runs the benchmark and returns its report (per-run lines go to stderr as they come).
pub fn run(opts: &Options) -> Result<String> {
    let rootfs = DebianRootfs::cached()?;
    let dir = tempfile::tempdir().map_err(crate::Error::io("create temp dir", "/tmp"))?;
    let img = image(&rootfs, dir.path())?;
    let kernel = rootfs.kernel()?;
    let mut report = format!(
        "rootfs benchmark: Debian bookworm rootfs, kernel {} (bzImage) with its initramfs-tools \
         initrd, q35, accel {}, {} runs\n",
        kernel.release,
        crate::Accel::detect(&kernel.vmlinux).name(),
        opts.runs
    );
    let (mut vminit, mut script) = (Vec::new(), Vec::new());
    let (mut vminit_own, mut script_own) = (Vec::new(), Vec::new());
    let part = |own: Option<Duration>| own.map_or("-".into(), ms);
    for i in 0..opts.runs {
        let mut parts = Vec::new();
        for is_vminit in boot_order(&[true, false], i) {
            let console = |name: &str| {
                let dir = opts.console_dir.as_ref()?;
                Some(dir.join(format!("{name}-{}.log", i + 1)))
            };
            if is_vminit {
                let (t, own) = boot(&rootfs, &img, &opts.vminit_append, console("vminit"))?;
                vminit.push(t);
                vminit_own.extend(own);
                parts.push(format!("vminit {} (PID 1 -> ready {})", ms(t), part(own)));
            } else {
                let (t, own) = boot(&rootfs, &img, "init=/sbin/bb-init", console("script"))?;
                script.push(t);
                script_own.extend(own);
                parts.push(format!(
                    "busybox-script {} (start -> serving {})",
                    ms(t),
                    part(own)
                ));
            }
        }
        eprintln!("  run {}/{}: {}", i + 1, opts.runs, parts.join(", "));
    }
    let line = |name: &str, sample: &[Duration]| {
        stats(sample).map_or(String::new(), |s| {
            format!(
                "  {name:<58} median {:>8}  min {:>8}  max {:>8}\n",
                ms(s.median),
                ms(s.min),
                ms(s.max)
            )
        })
    };
    report.push_str(&line("launch -> vminit /health 200", &vminit));
    report.push_str(&line("launch -> busybox-script /health 200", &script));
    report.push_str(&ratio("launch -> /health 200", &vminit, &script));
    report.push_str(&line("vminit PID 1 -> ready (guest clock)", &vminit_own));
    report.push_str(&line(
        "busybox-script start -> serving (guest clock)",
        &script_own,
    ));
    report.push_str(&ratio("the init's own part", &vminit_own, &script_own));
    let mut link = Vec::new();
    for i in 0..opts.outage_runs {
        let t = outage_boot(&rootfs, &img, opts.outage)?;
        eprintln!(
            "  outage {}/{}: link up -> /health 200 {}",
            i + 1,
            opts.outage_runs,
            ms(t)
        );
        link.push(t);
    }
    if let Some(l) = stats(&link) {
        report.push_str(&format!(
            "  link up after {} s without carrier -> /health 200 (network up): median {}  \
             min {}  max {} ({} boots)\n",
            opts.outage.as_secs(),
            ms(l.median),
            ms(l.min),
            ms(l.max),
            link.len()
        ));
    }
    Ok(report)
}
