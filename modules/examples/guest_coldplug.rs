//! A manual check of the real syscall path inside a guest: runs coldplug
//! with the production [`Loader::system`] and prints the report and whether
//! `eth0` appeared. Not a test; meant for an initramfs whose `/init` mounts
//! `/proc` and `/sys` and then runs this binary (see DESIGN.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use modules::{diagnose_network, Coldplug, Loader};

fn main() {
    let start = Instant::now();
    let mut params = BTreeMap::new();
    // Exercise parameter passing with a harmless, real virtio_net parameter.
    params.insert("virtio_net".to_string(), vec!["napi_tx=1".to_string()]);
    let mut loader = Loader::system(params);
    if let Err(e) = loader.coldplug(&Coldplug::default()) {
        println!("coldplug error: {e}");
    }
    let r = loader.report();
    println!(
        "release {} tree {} missing={}",
        r.release,
        r.modules_dir.display(),
        r.tree_missing
    );
    for l in &r.loaded {
        println!("loaded {} {:.2} ms", l.name, l.ms);
    }
    for f in &r.failed {
        println!("failed {}: {}", f.name, f.reason);
    }
    for b in &r.builtin {
        println!("builtin {b}");
    }
    for d in &r.unmatched {
        println!(
            "unmatched {} {} {} ({})",
            d.bus, d.device, d.modalias, d.class
        );
    }
    println!(
        "passes {} timed_out {} index {:.1} ms scan {:.1} ms total {:.1} ms",
        r.passes, r.timed_out, r.index_ms, r.scan_ms, r.total_ms
    );
    if let Err(e) = loader.load_fs("vfat") {
        println!("load_fs vfat: {e}");
    }
    let eth0 = Path::new("/sys/class/net/eth0").exists();
    println!(
        "eth0 present: {eth0} after {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    if !eth0 {
        println!("diagnosis: {:?}", diagnose_network(loader.report()));
    }
}
