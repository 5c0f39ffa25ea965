//! The fuzz engine shared by `examples/fuzz_forward.rs` (long runs) and `cargo test`
//! (a short fixed run): mutates the captured real-client vectors, the bad-input corpus
//! and generated frames, and feeds them to every parser that sees untrusted bytes.
//!
//! Targets: the frame scanner and decoder as a connection drives them (`stream`), the
//! skip-scanner and entry walker on raw bytes (`scan`), the gzip path (`gzip`), PING
//! parsing (`handshake`), chunk-file recovery (`chunk`), `Config::parse` (`config`) and
//! the records API's `parse_params` (`params`).
//!
//! Each input is checked for:
//! - **no panic**: every target runs under `catch_unwind`;
//! - **no hang**: a watchdog thread saves the input and aborts the process when one
//!   input runs longer than [`FuzzConfig::hang_after`];
//! - **bounded allocation**: a counting global allocator tracks the calling thread's
//!   live heap; the peak above the level before the input must stay within
//!   [`alloc_bound`] (frame limit + decompressed limit + a constant);
//! - **agreement with rmpv** ([`reference_decode`]): for a MessagePack frame the decoder
//!   accepts, `rmpv` must decode the whole frame as one value, and the frame must have
//!   the same tag, the same event count, the same `chunk` option, and the same entry
//!   bytes: for PackedForward the (inflated) body byte for byte; for Forward and
//!   Message modes the concatenation, per entry whose record is not nil, of `0x92`,
//!   the entry's raw time bytes (or, when the time is nil or its whole seconds are 0,
//!   the arrival time as an EventTime, still wrapped with the metadata map in the
//!   `[time, {metadata}]` form), then the record's raw bytes;
//! - **resumable framing**: the frame lengths cut from the input fed in random pieces
//!   equal those cut from the whole input, and both end in an error or neither does.
//!
//! A failing input is written to [`FuzzConfig::crash_dir`] as `<target>-<hash>.bin`
//! with a `.txt` note; [`replay`] runs one file again.

#![allow(dead_code)]

mod alloc;
mod mutate;
mod reference;
mod seeds;
mod targets;
#[cfg(test)]
mod tests;

pub use alloc::*;
pub use mutate::*;
pub use reference::*;
pub use seeds::*;
pub use targets::*;

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidepool::buffer::chunk_file::{self, ChunkHeader};
use tidepool::config::{Config, SecurityConfig, UserConfig};
use tidepool::event::EventTime;
use tidepool::input::forward::frame::{Encoding, Frame, FrameLimits, FrameScanner, decode_frame};
use tidepool::input::forward::handshake::{Helo, answer_ping};
use tidepool::msgpack::{self, Limits, Scanner};
use tidepool::output::ChunkId;

// ---------------------------------------------------------------------------------
// The loop

/// How long and how to run.
#[derive(Clone, Debug)]
pub struct FuzzConfig {
    /// Seed for the whole run (same seed, same inputs).
    pub seed: u64,
    /// Stop after this many inputs.
    pub iterations: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Where failing inputs are saved; None = not saved.
    pub crash_dir: Option<PathBuf>,
    /// One input running longer than this counts as a hang: saved, then abort.
    pub hang_after: Duration,
    /// Print progress every this many seconds (None = quiet).
    pub progress_every: Option<Duration>,
}

/// One failing input.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The target it was fed to.
    pub target: Target,
    /// What went wrong.
    pub what: String,
    /// Where the input was saved.
    pub saved: Option<PathBuf>,
    /// The input.
    pub input: Vec<u8>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Inputs run.
    pub inputs: u64,
    /// Inputs per target.
    pub per_target: BTreeMap<&'static str, u64>,
    /// Decoder counters.
    pub stats: Stats,
    /// Largest per-input allocation seen, in bytes.
    pub max_alloc: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Failing inputs (first 50).
    pub failures: Vec<Failure>,
    /// Failing inputs in all.
    pub failure_count: u64,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub(crate) fn install_panic_hook() {
    pub(crate) static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_FUZZ.with(Cell::get) {
                let bt = std::backtrace::Backtrace::force_capture();
                LAST_PANIC.with(|p| *p.borrow_mut() = format!("{info}\n{bt}"));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one input under every check; `Err` says what failed.
pub fn check_one(
    target: Target,
    input: &[u8],
    limits: &FrameLimits,
    rng: &mut Rng,
    stats: &mut Stats,
) -> (Result<(), String>, u64) {
    install_panic_hook();
    IN_FUZZ.with(|f| f.set(true));
    PART_PEAK.with(|p| p.set(0));
    let mut run = || {
        catch_unwind(AssertUnwindSafe(|| {
            run_target(target, input, limits, rng, stats)
        }))
    };
    // Frame targets measure their decoding pieces themselves (see `stream`); the
    // others are the daemon's work from start to end.
    let (outcome, whole) = match target {
        Target::Stream | Target::Gzip => (run(), 0),
        _ => measure(run),
    };
    let peak = whole.max(PART_PEAK.with(Cell::get));
    IN_FUZZ.with(|f| f.set(false));
    let result = match outcome {
        Ok(Ok(())) if peak > alloc_bound(limits) => Err(format!(
            "allocated {peak} bytes for one input, over the bound of {}",
            alloc_bound(limits)
        )),
        Ok(r) => r,
        Err(_) => Err(format!(
            "panic: {}",
            LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()))
        )),
    };
    (result, peak)
}

/// Saves a failing input as `<dir>/<target>-<hash>.bin` with a `.txt` note.
pub fn save(dir: &Path, target: Target, input: &[u8], what: &str) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{}-{:016x}.bin", target.name(), h.finish()));
    std::fs::write(&path, input).ok()?;
    let _ = std::fs::write(path.with_extension("txt"), what);
    Some(path)
}

/// Runs one saved input again (its target from its file name; `stream` otherwise).
pub fn replay(path: &Path) -> Result<(), String> {
    let input = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = Target::from_name(&name).unwrap_or(Target::Stream);
    let mut rng = Rng::new(1);
    let mut stats = Stats::default();
    check_one(target, &input, &fuzz_limits(), &mut rng, &mut stats).0
}

/// Watches the loop: when one input runs past `hang_after`, saves it and aborts.
pub(crate) struct Watchdog {
    started_ms: Arc<AtomicU64>,
    current: Arc<Mutex<(Target, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
}

impl Watchdog {
    fn start(cfg: &FuzzConfig) -> Watchdog {
        let w = Watchdog {
            started_ms: Arc::new(AtomicU64::new(u64::MAX)),
            current: Arc::new(Mutex::new((Target::Stream, Vec::new()))),
            stop: Arc::new(AtomicBool::new(false)),
            epoch: Instant::now(),
        };
        let (started, current, stop, epoch) = (
            w.started_ms.clone(),
            w.current.clone(),
            w.stop.clone(),
            w.epoch,
        );
        let (hang, dir) = (cfg.hang_after, cfg.crash_dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let s = started.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_millis() as u64;
                if s != u64::MAX && now.saturating_sub(s) > hang.as_millis() as u64 {
                    let (target, input) = current.lock().map(|c| c.clone()).unwrap_or_default();
                    let saved = dir.as_deref().and_then(|d| save(d, target, &input, "hang"));
                    eprintln!(
                        "FUZZ HANG: one {} input ran over {hang:?}; saved to {saved:?}",
                        target.name()
                    );
                    std::process::abort();
                }
            }
        });
        w
    }

    fn begin(&self, target: Target, input: &[u8]) {
        if let Ok(mut c) = self.current.lock() {
            c.0 = target;
            c.1.clear();
            c.1.extend_from_slice(input);
        }
        self.started_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn end(&self) {
        self.started_ms.store(u64::MAX, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The fuzz loop: pick a target by weight, a seed (or a generated frame), mutate,
/// check; until the count or the time is reached.
pub fn run(cfg: &FuzzConfig) -> Report {
    let seeds = Seeds::load();
    let limits = fuzz_limits();
    let mut rng = Rng::new(cfg.seed);
    let mut report = Report::default();
    let watchdog = Watchdog::start(cfg);
    let start = Instant::now();
    let mut last_print = Instant::now();
    let total_weight: usize = Target::ALL.iter().map(|t| t.weight()).sum();
    loop {
        if cfg.iterations.is_some_and(|n| report.inputs >= n)
            || cfg.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        let mut pick = rng.below(total_weight);
        let mut target = Target::Stream;
        for t in Target::ALL {
            if pick < t.weight() {
                target = t;
                break;
            }
            pick -= t.weight();
        }
        let mut input = if target == Target::Stream && rng.one_in(3) {
            let mut f = random_frame(&mut rng);
            if rng.one_in(3) {
                f.extend(random_frame(&mut rng));
            }
            f
        } else {
            seeds.pick(target, &mut rng)
        };
        // Keep some inputs unmutated (generated frames must be accepted and agree).
        if !rng.one_in(5) {
            mutate(&mut rng, &mut input, &seeds);
        }
        watchdog.begin(target, &input);
        let (result, peak) = check_one(target, &input, &limits, &mut rng, &mut report.stats);
        watchdog.end();
        report.inputs += 1;
        *report.per_target.entry(target.name()).or_insert(0) += 1;
        report.max_alloc = report.max_alloc.max(peak);
        if let Err(what) = result {
            report.failure_count += 1;
            let saved = cfg
                .crash_dir
                .as_deref()
                .and_then(|d| save(d, target, &input, &what));
            if cfg.progress_every.is_some() {
                eprintln!("FAILURE in {} (saved to {saved:?}): {what}", target.name());
            }
            if report.failures.len() < 50 {
                report.failures.push(Failure {
                    target,
                    what,
                    saved,
                    input,
                });
            }
        }
        if let Some(every) = cfg.progress_every
            && last_print.elapsed() >= every
        {
            last_print = Instant::now();
            let el = start.elapsed().as_secs_f64();
            eprintln!(
                "{:>7.0}s {:>10} inputs {:>8.0}/s  accepted {} agreed {}  max alloc {} KiB  failures {}",
                el,
                report.inputs,
                report.inputs as f64 / el.max(1e-9),
                report.stats.accepted,
                report.stats.agreed,
                report.max_alloc >> 10,
                report.failure_count
            );
        }
    }
    report.elapsed = start.elapsed();
    report
}
