//! Times what coldplug costs at boot on the real Debian module tree:
//! parsing modules.alias, building the prefix index, loading every index
//! file, and matching modaliases (this machine's, plus one concrete string
//! derived from each of the ~26k alias patterns as a stress test).
//!
//! `cargo run --release -p modules --example alias_bench [MODULES_DIR] [SYS]`
//! MODULES_DIR defaults to `$VMINIT_MODULES_DIR`, else
//! `$VMINIT_KERNEL_CACHE` (or `.cache/kernel`) `/current/lib/modules/<release>`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use modules::parse::parse_alias;
use modules::{scan_devices, AliasIndex, ModuleIndex};

fn modules_dir() -> Option<PathBuf> {
    if let Some(arg) = std::env::args().nth(1) {
        return Some(PathBuf::from(arg));
    }
    if let Some(dir) = std::env::var_os("VMINIT_MODULES_DIR") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("VMINIT_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/kernel"));
    let lib = cache.join("current/lib/modules");
    Some(std::fs::read_dir(lib).ok()?.next()?.ok()?.path())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = modules_dir() else {
        eprintln!(
            "no module tree: pass MODULES_DIR or run `cargo run -p qemu-harness -- fetch-kernel`"
        );
        std::process::exit(2);
    };
    let sys = std::env::args().nth(2).unwrap_or_else(|| "/sys".into());
    println!("module tree: {}", dir.display());

    let t = Instant::now();
    let text = std::fs::read_to_string(dir.join("modules.alias"))?;
    let read_ms = ms(t);
    let t = Instant::now();
    let lines = parse_alias(&text)?;
    let parse_ms = ms(t);
    let t = Instant::now();
    let aliases = AliasIndex::new(lines.clone());
    let build_ms = ms(t);
    println!(
        "modules.alias: {} aliases, read {read_ms:.2} ms, parse {parse_ms:.2} ms, index {build_ms:.2} ms",
        aliases.len()
    );

    let t = Instant::now();
    let text_index = ModuleIndex::load_text(&dir)?;
    let (m, a, b) = text_index.counts().unwrap_or_default();
    println!("ModuleIndex::load_text (dep+alias+builtin+softdep+modinfo): {:.2} ms ({m} modules, {a} aliases, {b} builtins)", ms(t));
    let t = Instant::now();
    let index = ModuleIndex::load(&dir)?;
    println!(
        "ModuleIndex::load ({} tries, nothing read past the headers): {:.2} ms",
        index.format(),
        ms(t)
    );

    match scan_devices(Path::new(&sys)) {
        Ok(devices) => {
            let t = Instant::now();
            let mut matched = 0;
            for d in &devices {
                if !index.lookup_alias(&d.modalias).is_empty() {
                    matched += 1;
                }
            }
            println!(
                "{sys}: {} devices with a modalias, {matched} matched, all matched in {:.3} ms",
                devices.len(),
                ms(t)
            );
        }
        Err(e) => println!("{sys}: cannot scan ({e})"),
    }

    let queries: Vec<String> = lines
        .iter()
        .map(|l| modules::glob::sample_match(&l.pattern))
        .collect();
    let t = Instant::now();
    let mut hits = 0usize;
    for q in &queries {
        hits += aliases.lookup(q).len();
    }
    let total = ms(t);
    println!(
        "stress: {} modaliases (one per alias pattern) matched in {total:.1} ms ({:.2} us each, {hits} matches)",
        queries.len(),
        total * 1000.0 / queries.len() as f64
    );

    let t = Instant::now();
    let mut bin_hits = 0usize;
    for q in &queries {
        bin_hits += index.lookup_alias(q).len();
    }
    let total = ms(t);
    println!(
        "stress, {} tries: the same modaliases in {total:.1} ms ({:.2} us each, {bin_hits} matches with built-ins)",
        index.format(),
        total * 1000.0 / queries.len() as f64
    );

    // The same 500 queries by linear scan, for comparison with the index.
    let sample: Vec<&String> = queries.iter().step_by(queries.len() / 500 + 1).collect();
    let t = Instant::now();
    let mut linear_hits = 0usize;
    for q in &sample {
        linear_hits += lines
            .iter()
            .filter(|l| modules::glob::matches(&l.pattern.replace('-', "_"), &q.replace('-', "_")))
            .count();
    }
    let linear = ms(t);
    let t = Instant::now();
    let mut indexed_hits = 0usize;
    for q in &sample {
        indexed_hits += aliases.lookup(q).len();
    }
    println!(
        "{} queries: linear scan {linear:.1} ms ({linear_hits} pattern hits), index {:.2} ms ({indexed_hits} module hits)",
        sample.len(),
        ms(t)
    );
    Ok(())
}
