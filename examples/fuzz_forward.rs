//! A long-running fuzzer for everything that parses untrusted bytes: forward frames
//! (framing, decoding, gzip, PING), the skip-scanner, chunk-file recovery, config text
//! and the records API's parameters.
//!
//! ```text
//! cargo run --release --example fuzz_forward -- --seconds 600
//! cargo run --release --example fuzz_forward -- --iterations 1000000 --seed 42
//! cargo run --release --example fuzz_forward -- --replay tests/data/bad/x.bin
//! cargo run --example fuzz_forward -- --export-seeds target/fuzz-seeds
//! ```
//!
//! The engine (targets, mutations, the rmpv agreement check, the allocation bound) is
//! `tests/it/fuzz/` (module docs in `mod.rs`), shared with the short fixed run in `cargo test`; its module docs
//! define every check. Failing inputs are saved under `--out` (default
//! `target/fuzz-failures/`); the exit status is 1 when any input failed.
//! `--export-seeds DIR` writes each target's starting inputs to `DIR/<target>/`, the
//! seed corpus of the `cargo fuzz` target of the same name (`fuzz/`, RELIABILITY.md).

#[path = "../tests/it/fuzz/mod.rs"]
mod fuzz;

use std::path::PathBuf;
use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: fuzz_forward [--seconds S | --iterations N] [--seed S] [--out DIR] [--hang-after S]\n       fuzz_forward --replay FILE...\n       fuzz_forward --export-seeds DIR"
    );
    std::process::exit(2)
}

fn main() {
    let mut cfg = fuzz::FuzzConfig {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        iterations: None,
        duration: None,
        crash_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures")),
        hang_after: Duration::from_secs(10),
        progress_every: Some(Duration::from_secs(10)),
    };
    let mut replay = Vec::new();
    let mut export = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--seconds" => {
                let s: f64 = value().parse().unwrap_or_else(|_| usage());
                cfg.duration = Some(Duration::from_secs_f64(s));
            }
            "--iterations" => cfg.iterations = Some(value().parse().unwrap_or_else(|_| usage())),
            "--seed" => cfg.seed = value().parse().unwrap_or_else(|_| usage()),
            "--out" => cfg.crash_dir = Some(PathBuf::from(value())),
            "--hang-after" => {
                let s: f64 = value().parse().unwrap_or_else(|_| usage());
                cfg.hang_after = Duration::from_secs_f64(s);
            }
            "--replay" => replay.extend(args.by_ref().map(PathBuf::from)),
            "--export-seeds" => export = Some(PathBuf::from(value())),
            _ => usage(),
        }
    }
    if let Some(dir) = export {
        std::process::exit(match export_seeds(&dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e}");
                1
            }
        });
    }
    if !replay.is_empty() {
        let mut failed = 0;
        for p in &replay {
            let path = p.clone();
            match run_big_stack(move || fuzz::replay(&path).err(), p.clone()) {
                None => println!("ok    {}", p.display()),
                Some(e) => {
                    failed += 1;
                    println!("FAIL  {}: {e}", p.display());
                }
            }
        }
        std::process::exit(i32::from(failed > 0));
    }
    if cfg.duration.is_none() && cfg.iterations.is_none() {
        cfg.duration = Some(Duration::from_secs(60));
    }
    println!(
        "fuzzing with seed {} for {}; allocation bound {} bytes per input",
        cfg.seed,
        match (cfg.duration, cfg.iterations) {
            (Some(d), _) => format!("{d:?}"),
            (None, Some(n)) => format!("{n} inputs"),
            (None, None) => "ever".into(),
        },
        fuzz::alloc_bound(&fuzz::fuzz_limits())
    );
    let run_cfg = cfg.clone();
    let report = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || fuzz::run(&run_cfg))
        .expect("spawn the fuzz thread")
        .join()
        .expect("the fuzz loop itself does not panic");
    println!(
        "{} inputs in {:.1}s ({:.0} inputs/s); frames accepted {}, agreeing with rmpv {}; largest allocation for one input {} KiB; failures {}",
        report.inputs,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.stats.accepted,
        report.stats.agreed,
        report.max_alloc >> 10,
        report.failure_count
    );
    for (t, n) in &report.per_target {
        println!("  {t:<10} {n}");
    }
    for f in &report.failures {
        println!(
            "FAIL {} saved to {:?}: {}",
            f.target.name(),
            f.saved,
            f.what
        );
    }
    std::process::exit(i32::from(report.failure_count > 0));
}

/// Writes every target's seeds as `dir/<target>/seed-NNNN.bin`, printing the counts.
fn export_seeds(dir: &std::path::Path) -> Result<(), String> {
    let seeds = fuzz::Seeds::load();
    for target in fuzz::Target::ALL {
        let sub = dir.join(target.name());
        std::fs::create_dir_all(&sub)
            .map_err(|e| format!("cannot create {}: {e}", sub.display()))?;
        let inputs = seeds.of(target);
        for (i, input) in inputs.iter().enumerate() {
            let path = sub.join(format!("seed-{i:04}.bin"));
            std::fs::write(&path, input)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        println!(
            "{:<10} {} seeds in {}",
            target.name(),
            inputs.len(),
            sub.display()
        );
    }
    Ok(())
}

fn run_big_stack(
    f: impl FnOnce() -> Option<String> + Send + 'static,
    p: PathBuf,
) -> Option<String> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .map_err(|e| e.to_string())
        .and_then(|h| {
            h.join()
                .map_err(|_| format!("{} panicked outside the checks", p.display()))
        })
        .unwrap_or_else(Some)
}
