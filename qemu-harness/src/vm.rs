//! Describing a VM and turning the description into a QEMU command line.
//! The command line is built by a pure function so that tests can check
//! it without launching anything; [`VmBuilder::launch`] adds what only
//! exists at run time (free ports, temp paths, the accelerator).

use std::net::TcpListener;
use std::path::PathBuf;

use crate::accel::{host_tsc_khz, Accel};
use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::running::{self, Vm};

/// The port vminit's health endpoint listens on in the guest.
pub const HEALTH_PORT: u16 = 8900;
/// Fallback for `tsc_early_khz=` when the host rate is unknown.
const DEFAULT_TSC_KHZ: u64 = 2_000_000;

/// QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Machine {
    #[default]
    Q35,
    Microvm,
    /// `qemu-system-aarch64 -M virt`: an arm64 guest with the device tree QEMU generates
    /// (a direct `-kernel` boot has no UEFI, so no ACPI), PL011 serial, PCIe virtio devices
    /// and the PL061 GPIO `gpio-keys` power button.
    Virt,
}

impl Machine {
    /// The guest architecture the machine emulates.
    pub fn arch(self) -> Arch {
        match self {
            Machine::Q35 | Machine::Microvm => Arch::X86_64,
            Machine::Virt => Arch::Aarch64,
        }
    }
}

impl std::str::FromStr for Machine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "q35" => Ok(Machine::Q35),
            "microvm" => Ok(Machine::Microvm),
            "virt" => Ok(Machine::Virt),
            other => Err(Error::Invalid(format!(
                "unknown machine `{other}` (q35, microvm or virt)"
            ))),
        }
    }
}

/// Which image of the kernel QEMU loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelKind {
    /// The uncompressed ELF through its PVH entry: no guest decompression.
    #[default]
    Vmlinux,
    /// The bzImage, as a bootloader would load it.
    BzImage,
}

/// A VM to launch. Fields are public; the methods are chaining shorthands.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    pub machine: Machine,
    pub kernel_kind: KernelKind,
    /// The kernel; [`Kernel::get_for`] the machine's architecture when `None`.
    pub kernel: Option<Kernel>,
    pub memory_mb: u32,
    pub cpus: u32,
    pub initrd: Option<PathBuf>,
    /// Appended to the base cmdline (`console=ttyS0 panic=-1 ...`; `ttyAMA0` on virt).
    pub append: String,
    /// Bytes appended after `append`, as they are: words that are not UTF-8, which a host can
    /// put on a guest's cmdline.
    pub append_raw: Vec<u8>,
    /// Raw images attached as virtio-blk, in order (vda, vdb, ...).
    pub drives: Vec<PathBuf>,
    /// Attach the drives with `snapshot=on`: the guest's writes go to a throwaway overlay and
    /// every boot sees the pristine image.
    pub snapshot_drives: bool,
    /// Limit every drive to this many I/O requests per second (QEMU's block throttling): a
    /// slow disk, so that a test can act while the guest is reading it.
    pub drive_iops: Option<u32>,
    /// A virtio-net NIC on slirp, with guest port 8900 forwarded.
    pub nic: bool,
    /// More guest TCP ports to forward (needs `nic`).
    pub forwards: Vec<u16>,
    /// Record every frame of the NIC, both ways, into this pcap file (QEMU's `filter-dump`;
    /// read it with [`crate::pcap`]).
    pub nic_capture: Option<PathBuf>,
    /// A virtio-vsock device (vhost-user-vsock, served by [`crate::vsock::Daemon`]).
    pub vsock: bool,
    /// `None`: [`Accel::detect`].
    pub accel: Option<Accel>,
    /// Extra QEMU arguments, appended last.
    pub extra_args: Vec<String>,
}

impl Default for VmBuilder {
    fn default() -> Self {
        VmBuilder {
            machine: Machine::Q35,
            kernel_kind: KernelKind::Vmlinux,
            kernel: None,
            memory_mb: 256,
            cpus: 1,
            initrd: None,
            append: String::new(),
            append_raw: Vec::new(),
            drives: Vec::new(),
            snapshot_drives: false,
            drive_iops: None,
            nic: false,
            forwards: Vec::new(),
            nic_capture: None,
            vsock: false,
            accel: None,
            extra_args: Vec::new(),
        }
    }
}

/// What launching decided: the inputs of [`VmBuilder::qemu_args`] that are
/// not in the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    pub kernel_path: PathBuf,
    pub console: PathBuf,
    pub monitor: PathBuf,
    pub accel: Accel,
    pub tsc_khz: u64,
    /// (host port, guest port), the health port first.
    pub forwards: Vec<(u16, u16)>,
    /// [`VmBuilder::append_raw`], added to `-append`'s value at launch.
    pub append_raw: Vec<u8>,
    /// The vsock daemon's vhost-user socket, when [`VmBuilder::vsock`].
    pub vsock_vhost_user: Option<PathBuf>,
}

impl VmBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }
    pub fn kernel_kind(mut self, kind: KernelKind) -> Self {
        self.kernel_kind = kind;
        self
    }
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.initrd = Some(path.into());
        self
    }
    /// Appends words to the kernel cmdline (space-separated from earlier ones).
    pub fn append(mut self, words: &str) -> Self {
        if !self.append.is_empty() && !words.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(words);
        self
    }
    /// Appends raw cmdline bytes (see [`VmBuilder::append_raw`]).
    pub fn append_bytes(mut self, bytes: &[u8]) -> Self {
        if !self.append_raw.is_empty() {
            self.append_raw.push(b' ');
        }
        self.append_raw.extend_from_slice(bytes);
        self
    }

    pub fn drive(mut self, path: impl Into<PathBuf>) -> Self {
        self.drives.push(path.into());
        self
    }
    pub fn snapshot_drives(mut self, on: bool) -> Self {
        self.snapshot_drives = on;
        self
    }
    pub fn drive_iops(mut self, iops: u32) -> Self {
        self.drive_iops = Some(iops);
        self
    }
    pub fn nic(mut self, on: bool) -> Self {
        self.nic = on;
        self
    }
    /// Forwards another guest TCP port (implies `nic`).
    pub fn forward(mut self, guest_port: u16) -> Self {
        self.nic = true;
        self.forwards.push(guest_port);
        self
    }
    /// Captures the NIC's frames into `pcap` (implies `nic`).
    pub fn capture_nic(mut self, pcap: impl Into<PathBuf>) -> Self {
        self.nic = true;
        self.nic_capture = Some(pcap.into());
        self
    }
    /// Adds a virtio-vsock device reached through a hybrid socket ([`crate::vsock`]).
    pub fn vsock(mut self, on: bool) -> Self {
        self.vsock = on;
        self
    }
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = Some(accel);
        self
    }
    pub fn extra_arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// The kernel cmdline: base words for the machine, then `append`.
    pub fn cmdline(&self, tsc_khz: u64) -> String {
        let console = match self.machine {
            Machine::Q35 | Machine::Microvm => "console=ttyS0",
            Machine::Virt => "console=ttyAMA0",
        };
        let mut words = vec![console.to_string(), "panic=-1".to_string()];
        if self.machine == Machine::Microvm {
            // No HPET or PM timer to calibrate the TSC against: without the
            // rate given, TCG boots often hang in calibration. With no
            // keyboard controller, a reboot must triple-fault to end QEMU.
            words.push(format!("tsc_early_khz={tsc_khz}"));
            words.push("reboot=t".into());
        }
        if !self.append.is_empty() {
            words.push(self.append.clone());
        }
        words.join(" ")
    }

    /// The full QEMU argument list (without the program name).
    pub fn qemu_args(&self, plan: &LaunchPlan) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let mut machine = match self.machine {
            Machine::Q35 => "q35".to_string(),
            Machine::Microvm => "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on".into(),
            Machine::Virt => "virt".into(),
        };
        if plan.vsock_vhost_user.is_some() {
            // The vhost-user daemon reads the virtqueues in guest memory: it must be a shared
            // memfd, or the device appears but every connection times out.
            machine.push_str(",memory-backend=mem");
        }
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        push(&["-M", &machine, "-accel", plan.accel.name()]);
        if plan.accel == Accel::Kvm {
            push(&["-cpu", "host"]);
        } else if self.machine == Machine::Virt {
            // virt's default CPU is a 32-bit cortex-a15. `max` with QEMU's own pointer
            // authentication algorithm instead of the architected QARMA: the kernel signs
            // return addresses in every function, and emulating QARMA makes TCG several
            // times slower.
            push(&["-cpu", "max,pauth-impdef=on"]);
        }
        push(&[
            "-m",
            &self.memory_mb.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        push(&["-kernel", &plan.kernel_path.to_string_lossy()]);
        if let Some(initrd) = &self.initrd {
            push(&["-initrd", &initrd.to_string_lossy()]);
        }
        push(&["-append", &self.cmdline(plan.tsc_khz)]);
        let console = format!("file,id=con0,path={}", plan.console.display());
        push(&["-chardev", &console, "-serial", "chardev:con0"]);
        let monitor = format!("unix:{},server=on,wait=off", plan.monitor.display());
        push(&["-monitor", &monitor]);
        if let Some(vhu) = &plan.vsock_vhost_user {
            let mem = format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                self.memory_mb
            );
            let chardev = format!("socket,id=vsk,path={}", vhu.display());
            let dev = match self.machine {
                Machine::Q35 | Machine::Virt => "vhost-user-vsock-pci,chardev=vsk",
                Machine::Microvm => "vhost-user-vsock-device,chardev=vsk",
            };
            push(&["-object", &mem, "-chardev", &chardev, "-device", dev]);
        }
        if self.machine == Machine::Microvm {
            // microvm has no keyboard controller; without one `sendkey
            // ctrl-alt-delete` reaches nobody. QEMU announces this one in
            // the ACPI tables (PNP0303) and the kernel's atkbd binds to it.
            push(&["-device", "i8042"]);
        }
        let suffix = match self.machine {
            Machine::Q35 | Machine::Virt => "pci",
            Machine::Microvm => "device",
        };
        for (i, drive) in self.drives.iter().enumerate() {
            let mut spec = format!("file={},if=none,id=d{i},format=raw", drive.display());
            if self.snapshot_drives {
                spec.push_str(",snapshot=on");
            }
            if let Some(iops) = self.drive_iops {
                spec.push_str(&format!(",throttling.iops-total={iops}"));
            }
            let dev = format!("virtio-blk-{suffix},drive=d{i}");
            push(&["-drive", &spec, "-device", &dev]);
        }
        if self.nic {
            let mut netdev = "user,id=n0,restrict=on".to_string();
            for (host, guest) in &plan.forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            let dev = format!("virtio-net-{suffix},netdev=n0");
            push(&["-netdev", &netdev, "-device", &dev]);
            if let Some(pcap) = &self.nic_capture {
                let dump = format!("filter-dump,id=n0dump,netdev=n0,file={}", pcap.display());
                push(&["-object", &dump]);
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Launches QEMU. The returned [`Vm`] kills it when dropped.
    pub fn launch(&self) -> Result<Vm> {
        let arch = self.machine.arch();
        let kernel = match &self.kernel {
            Some(k) => k.clone(),
            None => Kernel::get_for(arch)?,
        };
        let kernel_path = match self.kernel_kind {
            KernelKind::Vmlinux => kernel.vmlinux.clone(),
            KernelKind::BzImage => kernel.vmlinuz.clone(),
        };
        let workdir = tempfile::Builder::new()
            .prefix("qemu-harness-")
            .tempdir()
            .map_err(Error::io("create temp dir", "/tmp"))?;
        let mut forwards = Vec::new();
        if self.nic {
            for guest in std::iter::once(HEALTH_PORT).chain(self.forwards.iter().copied()) {
                forwards.push((free_port()?, guest));
            }
        }
        // The daemon first: its socket must exist before QEMU connects to it.
        let daemon = if self.vsock {
            Some(crate::vsock::Daemon::start(workdir.path())?)
        } else {
            None
        };
        let plan = LaunchPlan {
            vsock_vhost_user: daemon.as_ref().map(|d| d.vhost_user.clone()),
            kernel_path,
            console: workdir.path().join("console.log"),
            monitor: workdir.path().join("monitor.sock"),
            accel: match self.accel {
                Some(accel) => accel,
                None => Accel::detect_for(arch, &kernel.vmlinux),
            },
            tsc_khz: host_tsc_khz().unwrap_or(DEFAULT_TSC_KHZ),
            forwards,
            append_raw: self.append_raw.clone(),
        };
        let args = self.qemu_args(&plan);
        running::start(arch.qemu(), args, plan, workdir, daemon)
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; QEMU binds it next).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind", "127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("getsockname", "127.0.0.1:0"))?;
    Ok(addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LaunchPlan {
        LaunchPlan {
            kernel_path: "/k/vmlinux".into(),
            console: "/w/console.log".into(),
            monitor: "/w/monitor.sock".into(),
            accel: Accel::Tcg,
            tsc_khz: 2_599_998,
            forwards: vec![(40000, 8900), (40001, 22)],
            append_raw: Vec::new(),
            vsock_vhost_user: None,
        }
    }

    fn find<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn q35_uses_pci_devices_and_no_tsc_hint() {
        let b = VmBuilder::new()
            .nic(true)
            .drive("/d.img")
            .append("vminit.log=debug");
        let args = b.qemu_args(&plan());
        assert_eq!(find(&args, "-M"), ["q35"]);
        assert_eq!(
            find(&args, "-append"),
            ["console=ttyS0 panic=-1 vminit.log=debug"]
        );
        let devices = find(&args, "-device");
        assert_eq!(
            devices,
            ["virtio-blk-pci,drive=d0", "virtio-net-pci,netdev=n0"]
        );
        assert_eq!(
            find(&args, "-netdev"),
            ["user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40000-:8900,hostfwd=tcp:127.0.0.1:40001-:22"]
        );
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert!(!args.iter().any(|a| a == "-cpu"));
    }

    #[test]
    fn microvm_uses_mmio_devices_and_tsc_hint() {
        let b = VmBuilder::new()
            .machine(Machine::Microvm)
            .nic(true)
            .drive("/d.img");
        let args = b.qemu_args(&plan());
        assert_eq!(
            find(&args, "-M"),
            ["microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on"]
        );
        let append = find(&args, "-append")[0];
        assert!(append.contains("tsc_early_khz=2599998"), "{append}");
        assert_eq!(
            find(&args, "-device"),
            [
                "i8042",
                "virtio-blk-device,drive=d0",
                "virtio-net-device,netdev=n0"
            ]
        );
    }

    #[test]
    fn virt_uses_pci_devices_the_pl011_console_and_a_64_bit_cpu() {
        let b = VmBuilder::new()
            .machine(Machine::Virt)
            .nic(true)
            .drive("/d.img");
        let args = b.qemu_args(&plan());
        assert_eq!(find(&args, "-M"), ["virt"]);
        assert_eq!(find(&args, "-cpu"), ["max,pauth-impdef=on"]);
        assert_eq!(find(&args, "-append"), ["console=ttyAMA0 panic=-1"]);
        assert_eq!(
            find(&args, "-device"),
            ["virtio-blk-pci,drive=d0", "virtio-net-pci,netdev=n0"]
        );
        assert_eq!(Machine::Virt.arch(), Arch::Aarch64);
        assert_eq!("virt".parse::<Machine>().unwrap(), Machine::Virt);
    }

    #[test]
    fn vsock_is_vhost_user_over_shared_memory() {
        let p = LaunchPlan {
            vsock_vhost_user: Some("/w/vsock.vhu".into()),
            ..plan()
        };
        let args = VmBuilder::new().vsock(true).qemu_args(&p);
        assert_eq!(find(&args, "-M"), ["q35,memory-backend=mem"]);
        assert_eq!(
            find(&args, "-object"),
            ["memory-backend-memfd,id=mem,size=256M,share=on"]
        );
        assert_eq!(
            find(&args, "-chardev")[1],
            "socket,id=vsk,path=/w/vsock.vhu"
        );
        assert_eq!(find(&args, "-device"), ["vhost-user-vsock-pci,chardev=vsk"]);
        let micro = VmBuilder::new()
            .machine(Machine::Microvm)
            .vsock(true)
            .qemu_args(&p);
        assert!(find(&micro, "-M")[0].ends_with(",memory-backend=mem"));
        assert!(find(&micro, "-device").contains(&"vhost-user-vsock-device,chardev=vsk"));
    }

    #[test]
    fn no_nic_means_no_netdev() {
        let args = VmBuilder::new().qemu_args(&plan());
        assert!(find(&args, "-netdev").is_empty());
        assert_eq!(find(&args, "-kernel"), ["/k/vmlinux"]);
    }

    #[test]
    fn nic_capture_is_a_dump_filter_on_the_nic() {
        let args = VmBuilder::new()
            .capture_nic("/t/nic.pcap")
            .qemu_args(&plan());
        assert_eq!(find(&args, "-netdev").len(), 1, "capture implies the NIC");
        assert_eq!(
            find(&args, "-object"),
            ["filter-dump,id=n0dump,netdev=n0,file=/t/nic.pcap"]
        );
        assert!(find(&VmBuilder::new().nic(true).qemu_args(&plan()), "-object").is_empty());
    }

    #[test]
    fn snapshot_drives_are_attached_with_snapshot_on() {
        let plain = VmBuilder::new().drive("/d.img").qemu_args(&plan());
        assert_eq!(
            find(&plain, "-drive"),
            ["file=/d.img,if=none,id=d0,format=raw"]
        );
        let snap = VmBuilder::new()
            .drive("/d.img")
            .snapshot_drives(true)
            .qemu_args(&plan());
        assert_eq!(
            find(&snap, "-drive"),
            ["file=/d.img,if=none,id=d0,format=raw,snapshot=on"]
        );
        let slow = VmBuilder::new()
            .drive("/d.img")
            .drive_iops(2)
            .qemu_args(&plan());
        assert_eq!(
            find(&slow, "-drive"),
            ["file=/d.img,if=none,id=d0,format=raw,throttling.iops-total=2"]
        );
    }
}
