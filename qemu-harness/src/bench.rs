//! The boot benchmark: time from QEMU launch to the trivial init's console
//! line (bare, and with vminit's image payload), against time from launch to
//! the first `/health` 200 of vminit and of the baselines, on the same kernel;
//! every run boots every image, in a rotating order, so that machine load and
//! position hit all of them alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boot_split::{format_split, kernel_pid1_ms, Pid1Watch, Split};
use crate::error::Result;
use crate::initramfs::Initramfs;
use crate::kernel::Kernel;
use crate::paths::static_binary;
use crate::running::BOOT_TIMEOUT;
use crate::vm::{KernelKind, Machine, VmBuilder};

/// What trivial-init prints once it runs.
pub const TRIVIAL_LINE: &str = "trivial-init: reached userspace";

/// Static addressing for QEMU's slirp network (guest 10.0.2.15, gateway
/// 10.0.2.2), in the kernel's `ip=` grammar, so that the health endpoint is
/// reachable through `hostfwd`.
pub const SLIRP_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

/// The cmdline words vminit needs to answer on the slirp NIC. No module list: vminit finds
/// the drivers by coldplug, and that cost is part of what is measured.
pub fn vminit_net_append() -> String {
    SLIRP_IP.to_string()
}

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
}

/// Summary of `samples`; `None` when empty. The median of an even count is
/// the mean of the two middle values.
pub fn stats(samples: &[Duration]) -> Option<Stats> {
    let mut v = samples.to_vec();
    v.sort();
    let n = v.len();
    let median = match n {
        0 => return None,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// One benchmark VM: the same machine, kernel and NIC for every image.
fn builder(
    kernel: &Kernel,
    kind: KernelKind,
    machine: Machine,
    initrd: &Path,
    append: &str,
) -> VmBuilder {
    VmBuilder::new()
        .machine(machine)
        .kernel(kernel.clone())
        .kernel_kind(kind)
        .initrd(initrd)
        .nic(true)
        .append(append)
}

fn launch(
    kernel: &Kernel,
    kind: KernelKind,
    machine: Machine,
    initrd: &Path,
    append: &str,
) -> Result<crate::Vm> {
    builder(kernel, kind, machine, initrd, append).launch()
}

/// Launch → the first `/health` 200 seen through `hostfwd`.
fn until_health(vm: &mut crate::Vm) -> Result<Duration> {
    vm.wait_get("/health", |code, _| code == 200, BOOT_TIMEOUT)?;
    Ok(vm.launched().elapsed())
}

/// Boots `initrd` (a trivial-init image) and returns launch → its line, split at PID 1.
pub fn trivial_boot(
    kernel: &Kernel,
    kind: KernelKind,
    machine: Machine,
    initrd: &Path,
) -> Result<(Duration, Option<Split>)> {
    let mut vm = launch(kernel, kind, machine, initrd, "")?;
    let watch = Pid1Watch::start(vm.console_path().to_path_buf());
    let t = vm.wait_console(TRIVIAL_LINE, BOOT_TIMEOUT);
    let pid1 = watch.finish();
    let t = t?;
    vm.wait_exit(Duration::from_secs(30))?;
    Ok((t, Split::new(vm.launched(), pid1, vm.launched() + t)))
}

/// A vminit boot: launch → first `/health` 200, the document's `boot` section (milliseconds
/// since kernel start of each phase), and the split at PID 1.
pub struct VminitBoot {
    pub took: Duration,
    pub boot: serde_json::Value,
    pub split: Option<Split>,
}

/// Boots `initrd` (a vminit image) until its first `/health` 200.
pub fn vminit_boot(
    kernel: &Kernel,
    kind: KernelKind,
    machine: Machine,
    initrd: &Path,
) -> Result<VminitBoot> {
    let mut vm = launch(kernel, kind, machine, initrd, &vminit_net_append())?;
    let watch = Pid1Watch::start(vm.console_path().to_path_buf());
    let took = until_health(&mut vm);
    let pid1 = watch.finish();
    let took = took?;
    let boot = vm
        .get("/health")
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|h| h["boot"].clone())
        .unwrap_or_default();
    let split = Split::new(vm.launched(), pid1, vm.launched() + took).map(|mut s| {
        // The guest's PID 1 on the same clock as its `ready`: the kernel's console stamp.
        s.guest_ms = boot["ready_ms"]
            .as_u64()
            .zip(kernel_pid1_ms(&vm.console_text()))
            .map(|(ready, pid1)| ready as f64 - pid1);
        s
    });
    Ok(VminitBoot { took, boot, split })
}

/// The `/init` of the busybox baseline: the same job as vminit in the benchmark, done the way a
/// hand-written initramfs script does it (modprobe of the NIC driver, `ip` for the address,
/// busybox `httpd` serving a static health file).
pub const BUSYBOX_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
modprobe virtio_pci
modprobe virtio_mmio
modprobe virtio_net
while [ ! -e /sys/class/net/eth0 ]; do sleep 0.01; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /www
echo '{"status":"ok"}' > /www/health
httpd -p 8900 -h /www
echo "busybox-init: serving"
while true; do sleep 3600; done
"#;

/// The static busybox the baselines use: `$BUSYBOX`, or `/bin/busybox` (Debian's
/// busybox-static), when it is a file.
pub fn busybox_path() -> Option<PathBuf> {
    let bb = std::env::var_os("BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/bin/busybox".into());
    bb.is_file().then_some(bb)
}

/// The busybox baseline image, if there is a static busybox ([`busybox_path`]); with `agent`,
/// its script starts the agent of [`crate::bench_agent`] and waits for it.
pub fn busybox_image(
    kernel: &Kernel,
    dir: &Path,
    modules: &[&str],
    agent: bool,
) -> Result<Option<PathBuf>> {
    let Some(modules_dir) = &kernel.modules_dir else {
        return Ok(None);
    };
    let Some(bb) = busybox_path() else {
        return Ok(None);
    };
    let path = dir.join("busybox.cpio");
    let mut img = Initramfs::new();
    img.file_from("/bin/busybox", &bb, 0o755)?;
    if agent {
        img.file("/init", crate::bench_agent::busybox_agent_init(), 0o755);
        crate::bench_agent::add_agent_files(&mut img);
    } else {
        img.file("/init", BUSYBOX_INIT.as_bytes().to_vec(), 0o755);
    }
    img.modules(&kernel.release, modules_dir, modules)?;
    img.write(&path)?;
    Ok(Some(path))
}

/// Boots the busybox baseline and returns launch → first `/health` 200.
pub fn busybox_boot(
    kernel: &Kernel,
    kind: KernelKind,
    machine: Machine,
    initrd: &Path,
) -> Result<Duration> {
    until_health(&mut launch(kernel, kind, machine, initrd, "")?)
}

/// Where the payload-matched trivial image keeps vminit's binary: a file nothing runs.
const INERT_VMINIT: &str = "/usr/lib/vminit-payload";

/// The images the benchmark boots besides busybox's and systemd's.
pub struct Images {
    /// The trivial init alone (0.4 MB): the kernel's own cost.
    pub trivial: PathBuf,
    /// The trivial init with vminit's payload beside it (the same modules, and vminit's
    /// binary as an inert file): the kernel's cost for an image of vminit's size, which it
    /// unpacks before PID 1. `None` when vminit is not built.
    pub trivial_payload: Option<PathBuf>,
    /// vminit with `modules` (and their dependencies), as the busybox image carries them.
    pub vminit: Option<PathBuf>,
}

/// With `agent` (a static busybox), vminit's image carries the agent of
/// [`crate::bench_agent`] and its config, and the payload-matched image the same busybox.
pub fn images(
    kernel: &Kernel,
    dir: &Path,
    modules: &[&str],
    agent: Option<&Path>,
) -> Result<Images> {
    let trivial_bin = static_binary("trivial-init")?;
    let trivial = dir.join("trivial.cpio");
    Initramfs::new().init(&trivial_bin)?.write(&trivial)?;
    let Ok(vminit_bin) = static_binary("vminit") else {
        return Ok(Images {
            trivial,
            trivial_payload: None,
            vminit: None,
        });
    };
    let with_modules = |img: &mut Initramfs| -> Result<()> {
        if let Some(modules_dir) = &kernel.modules_dir {
            img.modules(&kernel.release, modules_dir, modules)?;
        }
        Ok(())
    };
    let vminit = dir.join("vminit.cpio");
    let mut img = Initramfs::new();
    img.init(&vminit_bin)?;
    with_modules(&mut img)?;
    if let Some(bb) = agent {
        crate::bench_agent::add_vminit_agent(&mut img, bb)?;
    }
    img.write(&vminit)?;
    let trivial_payload = dir.join("trivial-payload.cpio");
    let mut img = Initramfs::new();
    img.init(&trivial_bin)?
        .file_from(INERT_VMINIT, &vminit_bin, 0o644)?;
    with_modules(&mut img)?;
    if let Some(bb) = agent {
        img.file_from("/bin/busybox", bb, 0o755)?;
    }
    img.write(&trivial_payload)?;
    Ok(Images {
        trivial,
        trivial_payload: Some(trivial_payload),
        vminit: Some(vminit),
    })
}

/// The Debian + systemd-networkd baseline: a root filesystem image and Debian's initramfs
/// for the benchmark's kernel, as `scripts/systemd-baseline.sh` builds them.
#[derive(Debug, Clone)]
pub struct SystemdBaseline {
    pub rootfs: PathBuf,
    pub initrd: PathBuf,
}

impl SystemdBaseline {
    /// `dir/rootfs.img` and `dir/initrd.img`; an error naming the missing file otherwise.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let b = SystemdBaseline {
            rootfs: dir.join("rootfs.img"),
            initrd: dir.join("initrd.img"),
        };
        for f in [&b.rootfs, &b.initrd] {
            if !f.is_file() {
                return Err(crate::Error::Invalid(format!(
                    "systemd baseline: {} does not exist (build it with scripts/systemd-baseline.sh)",
                    f.display()
                )));
            }
        }
        Ok(b)
    }
}

/// Boots the systemd baseline and returns launch → first `/health` 200. The root image is
/// attached with `snapshot=on`: every run boots the same pristine image, as an ephemeral VM
/// does, and nothing is written back.
pub fn systemd_boot(
    kernel: &Kernel,
    kind: KernelKind,
    machine: Machine,
    b: &SystemdBaseline,
) -> Result<Duration> {
    let mut vm = builder(kernel, kind, machine, &b.initrd, "root=/dev/vda rw")
        .drive(&b.rootfs)
        .snapshot_drives(true)
        .launch()?;
    until_health(&mut vm)
}

/// One image of the benchmark with what it boots from; the list of the present ones, in
/// this order, is the first run's order.
#[derive(Debug, Clone, Copy)]
enum Image<'a> {
    Trivial(&'a Path),
    TrivialPayload(&'a Path),
    Busybox(&'a Path),
    Systemd(&'a SystemdBaseline),
    Vminit(&'a Path),
}

/// The order of run `run`: `images` rotated by one place per run, so that over a multiple of
/// `images.len()` runs each image boots in each position, and after each other image, equally
/// often. On this machine every other QEMU launch is slower (12 trivial boots in a row: the
/// 1st, 3rd, ... median 1700 ms, the others 1419 ms), so with four images in a fixed order the
/// first and third of every run were always the slow ones: the trivial init booted first came
/// out 80-100 ms slower than the same init with vminit's payload booted second, in all 31
/// runs of three sets. Rotated, the two are within 1-2%.
pub fn boot_order<T: Clone>(images: &[T], run: usize) -> Vec<T> {
    let mut v = images.to_vec();
    if !v.is_empty() {
        let n = run % v.len();
        v.rotate_left(n);
    }
    v
}

/// Every sample of one kernel kind.
#[derive(Debug, Default)]
struct Samples {
    trivial: Vec<Duration>,
    trivial_payload: Vec<Duration>,
    busybox: Vec<Duration>,
    systemd: Vec<Duration>,
    vminit: Vec<Duration>,
    phases: Vec<serde_json::Value>,
    trivial_split: Vec<Split>,
    vminit_split: Vec<Split>,
}

/// The modules the benchmark's job loads (`BUSYBOX_INIT`'s modprobes): `--modules job`.
pub const JOB_MODULES: &[&str] = &["virtio_pci", "virtio_mmio", "virtio_net"];

/// Boots every image `runs` times per kernel kind, in turn, and returns the report. The
/// vminit and busybox images carry `modules` (default: [`crate::initramfs::Modules::Virtio`], the drivers a
/// config drive needs as well). With `agent`, the busybox script and vminit both start and
/// wait for an agent ([`crate::bench_agent`]).
pub fn run(
    kernel: &Kernel,
    kinds: &[KernelKind],
    machine: Machine,
    runs: usize,
    systemd: Option<&SystemdBaseline>,
    modules: &[&str],
    agent: bool,
) -> Result<String> {
    let dir = tempfile::tempdir().map_err(crate::Error::io("create temp dir", "/tmp"))?;
    let agent_bin = match agent {
        true => Some(busybox_path().ok_or_else(|| {
            crate::Error::Invalid(
                "--agent: no static busybox at /bin/busybox or $BUSYBOX (busybox-static)".into(),
            )
        })?),
        false => None,
    };
    let Images {
        trivial,
        trivial_payload,
        vminit,
    } = images(kernel, dir.path(), modules, agent_bin.as_deref())?;
    let busybox = busybox_image(kernel, dir.path(), modules, agent)?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    let mut report = format!(
        "boot benchmark: kernel {}, machine {machine:?}, {runs} runs each, accel {}\n\
         images: trivial {:.1} MB, trivial with vminit's payload {}, busybox {}, vminit {} \
         (modules: {})\n",
        kernel.release,
        crate::Accel::detect(&kernel.vmlinux).name(),
        size(&trivial),
        trivial_payload
            .as_deref()
            .map_or("-".into(), |p| format!("{:.1} MB", size(p))),
        busybox
            .as_deref()
            .map_or("-".into(), |p| format!("{:.1} MB", size(p))),
        vminit
            .as_deref()
            .map_or("-".into(), |p| format!("{:.1} MB", size(p))),
        modules.join(" ")
    );
    if agent {
        report.push_str(
            "agent: busybox httpd on port 8080 in the busybox and vminit images, waited for \
             before /health answers\n",
        );
    }
    if vminit.is_none() {
        report.push_str("(vminit not built: trivial-init only)\n");
    }
    for &kind in kinds {
        let mut s = Samples::default();
        // Systemd's ~30 s dwarf the kernel's decompression: booted with the vmlinux only.
        let systemd = systemd.filter(|_| kind == KernelKind::Vmlinux);
        let booted: Vec<Image> = [
            Some(Image::Trivial(&trivial)),
            trivial_payload.as_deref().map(Image::TrivialPayload),
            busybox.as_deref().map(Image::Busybox),
            systemd.map(Image::Systemd),
            vminit.as_deref().map(Image::Vminit),
        ]
        .into_iter()
        .flatten()
        .collect();
        for i in 0..runs {
            let mut parts = Vec::new();
            for image in boot_order(&booted, i) {
                let part = match image {
                    Image::Trivial(img) => {
                        let (t, split) = trivial_boot(kernel, kind, machine, img)?;
                        s.trivial.push(t);
                        s.trivial_split.extend(split);
                        format!("trivial {}", ms(t))
                    }
                    Image::TrivialPayload(img) => {
                        let (t, _) = trivial_boot(kernel, kind, machine, img)?;
                        s.trivial_payload.push(t);
                        format!("trivial+payload {}", ms(t))
                    }
                    Image::Busybox(img) => {
                        let t = busybox_boot(kernel, kind, machine, img)?;
                        s.busybox.push(t);
                        format!("busybox {}", ms(t))
                    }
                    Image::Systemd(b) => {
                        let t = systemd_boot(kernel, kind, machine, b)?;
                        s.systemd.push(t);
                        format!("systemd {}", ms(t))
                    }
                    Image::Vminit(img) => {
                        let VminitBoot {
                            took: t,
                            boot,
                            split,
                        } = vminit_boot(kernel, kind, machine, img)?;
                        s.vminit.push(t);
                        s.vminit_split.extend(split);
                        let mut part = format!("vminit {}", ms(t));
                        // The guest's own view: PID 1 → ready, to tell a slow guest from a
                        // slow poll.
                        if let (Some(start), Some(ready)) =
                            (boot["init_start_ms"].as_u64(), boot["ready_ms"].as_u64())
                        {
                            part.push_str(&format!(
                                " (PID 1 -> ready {} ms)",
                                ready.saturating_sub(start)
                            ));
                        }
                        s.phases.push(boot);
                        part
                    }
                };
                parts.push(part);
            }
            let line = format!("  {kind:?} run {}/{runs}: {}", i + 1, parts.join(", "));
            eprintln!("{line}");
        }
        report.push_str(&format_row(kind, &s.trivial, &s.vminit));
        report.push_str(&format_payload_row(kind, &s.trivial_payload, &s.vminit));
        for (name, sample) in [("busybox-script", &s.busybox), ("systemd", &s.systemd)] {
            report.push_str(&format_baseline(kind, name, sample, &s.vminit));
        }
        report.push_str(&format_phases(kind, &s.phases));
        report.push_str(&format_split(kind, &s.trivial_split, &s.vminit_split));
    }
    Ok(report)
}

/// A baseline's line and vminit's ratio to it (empty without samples of both).
pub fn format_baseline(
    kind: KernelKind,
    name: &str,
    baseline: &[Duration],
    vminit: &[Duration],
) -> String {
    let (Some(base), Some(_)) = (stats(baseline), stats(vminit)) else {
        return String::new();
    };
    stats_line(kind, &format!("launch -> {name} /health 200"), base)
        + &ratio_line(kind, name, vminit, baseline)
}

fn stats_line(kind: KernelKind, name: &str, s: Stats) -> String {
    format!(
        "  {kind:?} {name:<32} median {:>8}  min {:>8}  max {:>8}\n",
        ms(s.median),
        ms(s.min),
        ms(s.max)
    )
}

/// vminit against a baseline: the ratio of the medians, of the minimums, and the median of the
/// per-run ratios (each run boots both images back to back, so that one cancels the machine's
/// slow swings; it needs runs paired one to one).
fn ratio_line(kind: KernelKind, name: &str, vminit: &[Duration], base: &[Duration]) -> String {
    let (Some(v), Some(b)) = (stats(vminit), stats(base)) else {
        return String::new();
    };
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let mut line = format!(
        "  {kind:?} ratio vminit/{name} (medians): {:.2} (minimums: {:.2}",
        ratio(v.median, b.median),
        ratio(v.min, b.min)
    );
    if let Some(paired) = paired_median(vminit, base) {
        line.push_str(&format!("; median of per-run ratios: {paired:.2}"));
        if let Some((lo, hi)) = paired_median_ci(vminit, base) {
            line.push_str(&format!(", 95% CI {lo:.2}-{hi:.2}"));
        }
    }
    line.push_str(")\n");
    line
}

/// Median of `a[i] / b[i]`, when both have the same, non-zero number of runs.
pub fn paired_median(a: &[Duration], b: &[Duration]) -> Option<f64> {
    Some(median(per_run_ratios(a, b)?))
}

fn per_run_ratios(a: &[Duration], b: &[Duration]) -> Option<Vec<f64>> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64().max(1e-9))
            .collect(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A 95% confidence interval of [`paired_median`]: the 2.5th and 97.5th percentiles of the
/// medians of 2,000 resamples of the runs (percentile bootstrap). The resampling uses a fixed
/// seed, so a report is reproducible from its samples. `None` below 5 runs, where it says
/// nothing.
pub fn paired_median_ci(a: &[Duration], b: &[Duration]) -> Option<(f64, f64)> {
    const RESAMPLES: usize = 2000;
    let r = per_run_ratios(a, b)?;
    if r.len() < 5 {
        return None;
    }
    // xorshift64*: enough for resampling indices, and no dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let n = r.len();
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sample = (0..n).map(|_| r[(next() % n as u64) as usize]).collect();
            median(sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((RESAMPLES - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// Medians of vminit's own timeline (ms since kernel start, from `/health`'s `boot`): where
/// the time after the kernel goes.
pub fn format_phases(kind: KernelKind, boots: &[serde_json::Value]) -> String {
    let median = |key: &str| {
        let mut v: Vec<u64> = boots.iter().filter_map(|b| b[key].as_u64()).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let (Some(start), Some(modules), Some(network), Some(ready)) = (
        median("init_start_ms"),
        median("modules_ms"),
        median("network_ms"),
        median("ready_ms"),
    ) else {
        return String::new();
    };
    format!(
        "  {kind:?} vminit timeline (median ms since kernel start): PID 1 at {start}, modules done {modules} (+{}), network up {network} (+{}), ready {ready} (+{})\n",
        modules.saturating_sub(start),
        network.saturating_sub(modules),
        ready.saturating_sub(network)
    )
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// One kernel kind's lines of the report.
pub fn format_row(kind: KernelKind, trivial: &[Duration], vminit: &[Duration]) -> String {
    let mut out = String::new();
    let a = stats(trivial);
    let b = stats(vminit);
    if let Some(a) = a {
        out.push_str(&stats_line(kind, "launch -> trivial-init line", a));
    }
    if let Some(b) = b {
        out.push_str(&stats_line(kind, "launch -> vminit /health 200", b));
    }
    out.push_str(&ratio_line(kind, "trivial", vminit, trivial));
    out
}

/// The payload-matched trivial image's line and vminit's ratio to it (empty without both).
pub fn format_payload_row(
    kind: KernelKind,
    trivial_payload: &[Duration],
    vminit: &[Duration],
) -> String {
    let (Some(base), Some(_)) = (stats(trivial_payload), stats(vminit)) else {
        return String::new();
    };
    stats_line(kind, "launch -> trivial-init line, vminit's payload", base)
        + &ratio_line(kind, "trivial+payload", vminit, trivial_payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn stats_odd_even_and_empty() {
        let s = stats(&ms(&[300, 100, 200])).unwrap();
        assert_eq!(
            (s.median, s.min, s.max),
            (ms(&[200])[0], ms(&[100])[0], ms(&[300])[0])
        );
        assert_eq!(
            stats(&ms(&[100, 400])).unwrap().median,
            Duration::from_millis(250)
        );
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn baseline_line_has_both_ratios_or_nothing() {
        let line = format_baseline(
            KernelKind::Vmlinux,
            "systemd",
            &ms(&[20000, 30000, 40000]),
            &ms(&[2000, 3000, 4000]),
        );
        assert!(
            line.contains(
                "ratio vminit/systemd (medians): 0.10 (minimums: 0.10; median of per-run ratios: 0.10)"
            ),
            "{line}"
        );
        assert_eq!(
            format_baseline(KernelKind::Vmlinux, "systemd", &[], &ms(&[1])),
            ""
        );
    }

    #[test]
    fn report_has_ratio_only_with_both() {
        let row = format_row(KernelKind::Vmlinux, &ms(&[1000, 1000]), &ms(&[1500, 1500]));
        assert!(
            row.contains("ratio vminit/trivial (medians): 1.50"),
            "{row}"
        );
        let row = format_row(KernelKind::Vmlinux, &ms(&[1000]), &[]);
        assert!(!row.contains("ratio"));
    }

    #[test]
    fn boot_order_rotates_every_image_through_every_position() {
        let images = ["trivial", "busybox", "vminit"];
        assert_eq!(boot_order(&images, 0), ["trivial", "busybox", "vminit"]);
        assert_eq!(boot_order(&images, 1), ["busybox", "vminit", "trivial"]);
        assert_eq!(boot_order(&images, 2), ["vminit", "trivial", "busybox"]);
        assert_eq!(boot_order(&images, 3), boot_order(&images, 0));
        for image in images {
            let positions: Vec<usize> = (0..3)
                .map(|run| {
                    boot_order(&images, run)
                        .iter()
                        .position(|&i| i == image)
                        .unwrap()
                })
                .collect();
            let mut sorted = positions.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2], "{image:?} positions {positions:?}");
        }
        assert!(boot_order::<&str>(&[], 4).is_empty());
    }

    #[test]
    fn payload_row_names_its_baseline() {
        let row = format_payload_row(KernelKind::Vmlinux, &ms(&[1100, 1100]), &ms(&[1210, 1210]));
        assert!(row.contains("trivial-init line, vminit's payload"), "{row}");
        assert!(
            row.contains("ratio vminit/trivial+payload (medians): 1.10"),
            "{row}"
        );
        assert_eq!(
            format_payload_row(KernelKind::Vmlinux, &[], &ms(&[1000])),
            ""
        );
    }

    #[test]
    fn per_run_ratios_pair_runs() {
        // Run 2 was slow for both images: the per-run ratio sees through it.
        let base = ms(&[1000, 3000, 1000]);
        let v = ms(&[1100, 3300, 1100]);
        let r = paired_median(&v, &base).unwrap();
        assert!((r - 1.1).abs() < 1e-9, "{r}");
        assert_eq!(paired_median(&v, &base[..2]), None);
        assert_eq!(paired_median(&[], &[]), None);
    }

    #[test]
    fn confidence_interval_brackets_the_median_and_narrows_with_agreement() {
        let base = ms(&[1000; 9]);
        // Every run agrees: the interval is that one value.
        let same = ms(&[1100; 9]);
        let (lo, hi) = paired_median_ci(&same, &base).unwrap();
        assert!(
            (lo - 1.1).abs() < 1e-9 && (hi - 1.1).abs() < 1e-9,
            "{lo} {hi}"
        );
        // Spread runs: the interval holds the median and lies within the sample's range.
        let spread = ms(&[900, 1000, 1050, 1100, 1120, 1150, 1200, 1300, 1500]);
        let m = paired_median(&spread, &base).unwrap();
        let (lo, hi) = paired_median_ci(&spread, &base).unwrap();
        assert!(lo <= m && m <= hi, "{lo} {m} {hi}");
        assert!(lo >= 0.9 && hi <= 1.5 && lo < hi, "{lo} {hi}");
        // Fixed seed: the same samples give the same interval.
        assert_eq!(paired_median_ci(&spread, &base), Some((lo, hi)));
        // Too few runs to say anything.
        assert_eq!(paired_median_ci(&spread[..4], &base[..4]), None);
    }
}
