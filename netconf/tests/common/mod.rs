//! Shared fixtures of the namespace tests: namespaces with Drop guards, veth "NICs", a
//! busybox udhcpd, plans and environments. Needs root and ip(8); no traffic leaves the
//! namespaces the tests create.
#![allow(dead_code)] // each test binary uses a subset

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guest_config::{AddressMethod, InterfaceSelector, IpNet, NetworkPlan, NetworkSource};
use netconf::{Env, NetworkState, Rtnl, SystemClock};

pub static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace, deleted (with every interface in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        assert!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "these tests need root: they create network namespaces"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("vminit-test-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "down"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        run(&v);
    }

    pub fn ip_out(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `f` on a thread that has entered this namespace (setns affects one thread).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap();
            // SAFETY: `fd` is an open namespace file; CLONE_NEWNET checks its type; only
            // this thread changes namespace.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// This kernel has no CONFIG_DUMMY: a veth whose peer (`p-NAME`) is up in the same
/// namespace stands in for a NIC with carrier.
pub fn add_nic(ns_name: &str, name: &str, mac: Option<&str>) {
    let peer = format!("p-{name}");
    let mut v = vec!["ip", "-n", ns_name, "link", "add", name];
    if let Some(m) = mac {
        v.extend_from_slice(&["address", m]);
    }
    v.extend_from_slice(&["type", "veth", "peer", "name", &peer]);
    run(&v);
    run(&["ip", "-n", ns_name, "link", "set", &peer, "up"]);
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn tmpfile(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("vminit-netconf-{}-{n}-{tag}", std::process::id()))
}

/// Records the hostname instead of renaming the test host.
pub struct FakeHostname(pub Arc<Mutex<String>>);

impl netconf::Hostname for FakeHostname {
    fn get(&self) -> std::io::Result<String> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn set(&self, name: &str) -> std::io::Result<()> {
        *self.0.lock().unwrap() = name.to_string();
        Ok(())
    }
}

pub fn env(resolv: PathBuf, hostname: Option<Arc<Mutex<String>>>) -> Env {
    Env {
        resolv_conf: resolv,
        hostname: hostname.map(|h| Box::new(FakeHostname(h)) as Box<dyn netconf::Hostname>),
        driver_diagnosis: None,
        // No tree: no link counts as a NIC (the host's own /sys/class/net shows the host's
        // namespace, whose eth0 is not the test's). Tests that need NICs use `FakeSysfs`.
        sys_class_net: tmpfile("no-sysfs"),
        clock: Box::new(SystemClock),
        dhcp_timeout: Duration::from_secs(10),
        arp_timeout: None,
        lease_limits: netconf::dhcp::LeaseLimits::default(),
        retry: netconf::Backoff::new(Duration::from_secs(5), Duration::from_secs(60)),
        on_panic: None,
    }
}

/// A `/sys/class/net` of the test's own: each named interface gets `device/` and a
/// `device/driver` link to `virtio_net`, which is how netconf tells a NIC from a veth.
/// Removed when dropped.
pub struct FakeSysfs {
    pub root: PathBuf,
}

impl FakeSysfs {
    pub fn with_nics(names: &[&str]) -> FakeSysfs {
        let root = tmpfile("sysfs");
        for n in names {
            let dev = root.join(n).join("device");
            std::fs::create_dir_all(&dev).unwrap();
            std::os::unix::fs::symlink(
                "../../../bus/virtio/drivers/virtio_net",
                dev.join("driver"),
            )
            .unwrap();
        }
        FakeSysfs { root }
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Floors low enough for a test to watch a whole lease lifecycle in seconds.
pub fn quick_leases() -> netconf::dhcp::LeaseLimits {
    netconf::dhcp::LeaseLimits {
        min_lease: Duration::from_secs(1),
        min_t1: Duration::from_secs(1),
    }
}

pub fn static_plan(iface: InterfaceSelector) -> NetworkPlan {
    NetworkPlan {
        source: NetworkSource::Drive,
        interface: iface,
        method: AddressMethod::Static {
            addresses: vec![net("192.0.2.10/24"), net("2001:db8::10/64")],
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            gateway6: Some("2001:db8::1".parse().unwrap()),
        },
        dns: vec!["192.0.2.53".parse().unwrap()],
        mtu: Some(1400),
        carrier_timeout: Duration::from_secs(2),
        hostname: Some("vm-test".into()),
        dhcp_client_id: None,
    }
}

/// Non-link-local addresses of `name`, read back over netlink.
pub fn addrs_of(name: &'static str) -> Vec<String> {
    let mut r = Rtnl::open().unwrap();
    let link = r
        .links()
        .unwrap()
        .into_iter()
        .find(|l| l.name == name)
        .unwrap();
    let mut v: Vec<String> = r
        .addresses(&link)
        .unwrap()
        .iter()
        .map(|a| a.net.to_string())
        .collect();
    v.sort();
    v
}

/// A veth pair between two namespaces: `eth0` in the guest, `host0` (10.99.0.1/24) in the
/// host namespace.
pub fn guest_and_host() -> (Netns, Netns) {
    let guest = Netns::new();
    let host = Netns::new();
    guest.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "host0", "netns", &host.name,
    ]);
    host.ip(&["addr", "add", "10.99.0.1/24", "dev", "host0"]);
    host.ip(&["link", "set", "host0", "up"]);
    (guest, host)
}

pub struct Udhcpd {
    child: Child,
    files: Vec<PathBuf>,
}

impl Drop for Udhcpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

pub fn udhcpd(host: &Netns, lease_secs: u32) -> Udhcpd {
    udhcpd_with(host, lease_secs, "leased-vm", "example.internal")
}

/// udhcpd handing out `hostname` (option 12) and `domain` (option 15) as given.
pub fn udhcpd_with(host: &Netns, lease_secs: u32, hostname: &str, domain: &str) -> Udhcpd {
    let conf = tmpfile("udhcpd.conf");
    let leases = tmpfile("udhcpd.leases");
    let pid = tmpfile("udhcpd.pid");
    std::fs::write(&leases, b"").unwrap();
    std::fs::write(
        &conf,
        format!(
            "start 10.99.0.100\nend 10.99.0.110\ninterface host0\nlease_file {}\npidfile {}\n\
             min_lease 1\noption subnet 255.255.255.0\noption router 10.99.0.1\n\
             option dns 10.99.0.53\noption lease {lease_secs}\noption mtu 1450\n\
             option hostname {hostname}\noption domain {domain}\n",
            leases.display(),
            pid.display()
        ),
    )
    .unwrap();
    let child = Command::new("ip")
        .args([
            "netns", "exec", &host.name, "busybox", "udhcpd", "-f", "-a", "100",
        ])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Udhcpd {
        child,
        files: vec![conf, leases, pid],
    }
}

pub fn dhcp_plan() -> NetworkPlan {
    NetworkPlan {
        source: NetworkSource::Cmdline,
        interface: InterfaceSelector::Name("eth0".into()),
        method: AddressMethod::Dhcp,
        dns: vec![],
        mtu: None,
        carrier_timeout: Duration::from_secs(3),
        hostname: None,
        dhcp_client_id: None,
    }
}

pub fn wait_state(
    shared: &Arc<Mutex<NetworkState>>,
    what: impl Fn(&NetworkState) -> bool,
    max: Duration,
) -> NetworkState {
    let t0 = Instant::now();
    loop {
        let st = shared.lock().unwrap().clone();
        if what(&st) || t0.elapsed() > max {
            return st;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes the host side of the link (`peer`, in `ns`) down and up again, and checks that the
/// network thread follows: `down` with "carrier lost on `iface`", then `up` by itself.
/// Returns the state once back up.
pub fn carrier_down_and_back(
    ns: &Netns,
    peer: &str,
    iface: &str,
    shared: &Arc<Mutex<NetworkState>>,
) -> NetworkState {
    use netconf::LinkState;
    ns.ip(&["link", "set", peer, "down"]);
    let down = wait_state(
        shared,
        |s| s.state != LinkState::Up,
        Duration::from_secs(10),
    );
    assert_eq!(down.state, LinkState::Down, "{down:?}");
    let why = down.error.clone().unwrap_or_default();
    assert!(why.contains(&format!("carrier lost on {iface}")), "{why}");
    ns.ip(&["link", "set", peer, "up"]);
    let back = wait_state(
        shared,
        |s| s.state == LinkState::Up,
        Duration::from_secs(10),
    );
    assert_eq!(back.state, LinkState::Up, "did not come back: {back:?}");
    back
}
