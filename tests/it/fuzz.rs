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
// Allocation accounting

/// Counts the heap each thread holds, so one input's peak can be measured while other
/// threads (other tests, the watchdog) allocate freely. Reallocation counts only the
/// size difference, as the allocator grows big blocks in place.
pub struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    static PART_PEAK: Cell<u64> = const { Cell::new(0) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn note(delta: i64) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
}

// SAFETY: every call forwards to `System` unchanged; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the most heap this thread held above the level
/// at the start.
fn measure<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak.saturating_sub(start).max(0) as u64)
}

/// Runs one piece of the daemon's own work (not the checks around it), keeping the
/// largest peak seen in `PART_PEAK`.
fn measured<T>(f: impl FnOnce() -> T) -> T {
    let (out, peak) = measure(f);
    PART_PEAK.with(|p| p.set(p.get().max(peak)));
    out
}

/// The most a single input may make the process allocate: the frame itself, plus
/// the larger of what decoding may build from it (Forward and Message modes convert
/// entries, at most 4x: a 3-byte `[nil, {}]` becomes a 12-byte entry with the arrival
/// EventTime) and an inflated body (the decompressed limit), plus a constant for
/// everything of fixed size (scanner stacks, config structures, buffers).
pub fn alloc_bound(limits: &FrameLimits) -> u64 {
    (limits.max_frame_bytes + (4 * limits.max_frame_bytes).max(limits.max_decompressed_bytes))
        as u64
        + ALLOC_SLACK
}

/// The constant part of [`alloc_bound`].
pub const ALLOC_SLACK: u64 = 4 << 20;

// ---------------------------------------------------------------------------------
// Random numbers: small, seeded, reproducible

/// SplitMix64: enough randomness for mutation, reproducible from a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

// ---------------------------------------------------------------------------------
// Targets and seeds

/// What an input is fed to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A connection's byte stream: framing in random pieces, decoding, the first frame
    /// as a PING.
    #[default]
    Stream,
    /// The skip-scanner and the entry walker over raw bytes.
    Scan,
    /// A CompressedPackedForward frame whose body is the input.
    Gzip,
    /// A PING frame.
    Handshake,
    /// A chunk file image.
    Chunk,
    /// Config text.
    Config,
    /// `/api/records` query parameters (`k=v&k=v`).
    Params,
}

impl Target {
    /// Every target, in the order the report prints them.
    pub const ALL: [Target; 7] = [
        Target::Stream,
        Target::Scan,
        Target::Gzip,
        Target::Handshake,
        Target::Chunk,
        Target::Config,
        Target::Params,
    ];

    /// The name used in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Stream => "stream",
            Target::Scan => "scan",
            Target::Gzip => "gzip",
            Target::Handshake => "handshake",
            Target::Chunk => "chunk",
            Target::Config => "config",
            Target::Params => "params",
        }
    }

    /// The target a saved file's name starts with.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| name.starts_with(t.name()))
    }

    /// How often the target is picked, out of the sum of weights.
    fn weight(self) -> usize {
        match self {
            Target::Stream => 10,
            Target::Scan => 3,
            Target::Gzip => 3,
            Target::Handshake => 2,
            Target::Chunk => 3,
            Target::Config => 1,
            Target::Params => 1,
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir_files(dir: &Path, suffix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(suffix) {
                return None;
            }
            std::fs::read(e.path()).ok().map(|b| (name, b))
        })
        .collect();
    out.sort();
    out
}

/// Starting inputs for each target.
pub struct Seeds {
    by_target: BTreeMap<Target, Vec<Vec<u8>>>,
}

impl Seeds {
    /// The vectors (`tests/data/vectors/*.client.bin`), the bad-input corpus
    /// (`tests/data/bad/`), the example configs and a few hand-made inputs.
    pub fn load() -> Seeds {
        let mut by_target: BTreeMap<Target, Vec<Vec<u8>>> = BTreeMap::new();
        let vectors = read_dir_files(&repo().join("tests/data/vectors"), ".client.bin");
        let bad = read_dir_files(&repo().join("tests/data/bad"), ".bin");
        let mut streams: Vec<Vec<u8>> = vectors
            .iter()
            .chain(bad.iter())
            .map(|(_, b)| b.clone())
            .collect();
        streams.push(amplifying_frame(&fuzz_limits()));
        let mut pings = Vec::new();
        let mut bodies = Vec::new();
        for (_, bytes) in &vectors {
            for frame in cut_frames(bytes) {
                if frame.windows(4).any(|w| w == b"PING") {
                    pings.push(frame.clone());
                }
                if let Some(body) = gzip_body(&frame) {
                    bodies.push(body);
                }
            }
        }
        let mut rng = Rng::new(7);
        for _ in 0..8 {
            let n = 1 + rng.below(5);
            let body = packed_body(&mut rng, n);
            bodies.push(gzip(&body));
        }
        // A gzip bomb: 64 MiB of zeros in a few dozen kilobytes.
        bodies.push(gzip(&vec![0u8; 64 << 20]));
        let mut chunks = Vec::new();
        for s in streams.iter().take(40) {
            chunks.push(chunk_image(&mut rng, s));
        }
        let mut configs: Vec<Vec<u8>> = read_dir_files(&repo().join("conf/examples"), ".toml")
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        if let Ok(b) = std::fs::read(repo().join("conf/tidepool.toml")) {
            configs.push(b);
        }
        let params: Vec<Vec<u8>> = [
            "table=heap_info",
            "database=td&table=cpu&limit=10",
            "table=x&created_in_days=1&created_in_sec=30&host=dev-01",
            "table=a&limit=-1",
            "table=a&limit=99999999999999999999999",
            "table=a&created_in_days=9223372036854775807",
            "table=..%2f..&database=../etc",
            "table=t&table=u",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut scan = streams.clone();
        scan.extend(bodies.iter().take(8).cloned());
        by_target.insert(Target::Stream, streams);
        by_target.insert(Target::Scan, scan);
        by_target.insert(Target::Gzip, bodies);
        by_target.insert(Target::Handshake, pings);
        by_target.insert(Target::Chunk, chunks);
        by_target.insert(Target::Config, configs);
        by_target.insert(Target::Params, params);
        Seeds { by_target }
    }

    fn pick(&self, target: Target, rng: &mut Rng) -> Vec<u8> {
        match self.by_target.get(&target) {
            Some(v) if !v.is_empty() => v[rng.below(v.len())].clone(),
            _ => Vec::new(),
        }
    }

    fn any(&self, rng: &mut Rng) -> Vec<u8> {
        let t = Target::ALL[rng.below(Target::ALL.len())];
        self.pick(t, rng)
    }
}

/// The decoder's worst amplification: a frame-limit-sized Forward frame of `[nil, {}]`
/// entries, each converted to `[arrival EventTime, {}]` (3 bytes become 12).
pub fn amplifying_frame(limits: &FrameLimits) -> Vec<u8> {
    let n = (limits.max_frame_bytes.saturating_sub(16) / 3) as u32;
    let mut amp = vec![0x92, 0xa1, b't', 0xdd];
    amp.extend_from_slice(&n.to_be_bytes());
    for _ in 0..n {
        amp.extend_from_slice(&[0x92, 0xc0, 0x80]);
    }
    amp
}

/// Frames of a byte stream as a default-limit scanner cuts them (for seeding).
fn cut_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(&first) = rest.first() {
        let enc = if first == b'{' || first == b'[' {
            Encoding::Json
        } else {
            Encoding::MessagePack
        };
        let mut sc = FrameScanner::new(enc, FrameLimits::default());
        match sc.next_frame(rest) {
            Ok(Some(n)) if n > 0 && n <= rest.len() => {
                out.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            _ => break,
        }
    }
    out
}

/// The body of a frame whose options say `compressed: gzip`.
fn gzip_body(frame: &[u8]) -> Option<Vec<u8>> {
    let v = rmpv::decode::read_value(&mut &frame[..]).ok()?;
    let items = v.as_array()?;
    let opts = items.get(2)?.as_map()?;
    let gz = opts
        .iter()
        .any(|(k, v)| k.as_str() == Some("compressed") && v.as_str() == Some("gzip"));
    if !gz {
        return None;
    }
    match items.get(1)? {
        rmpv::Value::Binary(b) => Some(b.clone()),
        rmpv::Value::String(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// A chunk-file image whose blocks hold pieces of `content`.
fn chunk_image(rng: &mut Rng, content: &[u8]) -> Vec<u8> {
    let key = ["td.a.b", "k", "", "a.very.long.key.with.many.parts"][rng.below(4)];
    let header = ChunkHeader {
        key: key.to_string(),
        id: ChunkId(
            rng.next()
                .to_le_bytes()
                .repeat(2)
                .try_into()
                .unwrap_or([0; 16]),
        ),
        created_ms: rng.next() >> 20,
    };
    let mut out = Vec::new();
    header.encode(&mut out);
    let mut rest = content;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len());
        let (block, tail) = rest.split_at(n);
        out.extend_from_slice(&chunk_file::block_header(block, rng.below(4) as u32));
        out.extend_from_slice(block);
        rest = tail;
    }
    out
}

/// Recomputes every checksum of a (mutated) chunk image, so mutations reach the block
/// contents instead of stopping at the first checksum.
fn fix_chunk_checksums(img: &mut [u8]) {
    const FIXED: usize = 32;
    let Some(kl) = img.get(6..8) else { return };
    let key_len = usize::from(u16::from_le_bytes([kl[0], kl[1]]));
    let body = FIXED + key_len;
    if img.len() < body + 4 {
        return;
    }
    let crc = crc32c::crc32c(&img[..body]);
    img[body..body + 4].copy_from_slice(&crc.to_le_bytes());
    let mut at = body + 4;
    while at + 12 <= img.len() {
        let len = u32::from_le_bytes([img[at], img[at + 1], img[at + 2], img[at + 3]]) as usize;
        let n = u32::from_le_bytes([img[at + 8], img[at + 9], img[at + 10], img[at + 11]]);
        let Some(end) = (at + 12).checked_add(len).filter(|&e| e <= img.len()) else {
            return;
        };
        let hdr = chunk_file::block_header(&img[at + 12..end], n);
        img[at..at + 12].copy_from_slice(&hdr);
        at = end;
    }
}

// ---------------------------------------------------------------------------------
// Generated frames

fn random_value(rng: &mut Rng, depth: usize) -> rmpv::Value {
    use rmpv::Value as V;
    let leaf = depth == 0 || rng.one_in(2);
    if leaf {
        match rng.below(10) {
            0 => V::Nil,
            1 => V::Boolean(rng.one_in(2)),
            2 => V::from(rng.next() as i64 >> rng.below(64)),
            3 => V::from(rng.next() >> rng.below(64)),
            4 => V::F64(f64::from_bits(rng.next())),
            5 => V::F32((rng.next() as f32) / 7.0),
            6 => V::Binary((0..rng.below(40)).map(|_| rng.byte()).collect()),
            7 => V::Ext(
                rng.byte() as i8,
                (0..rng.below(20)).map(|_| rng.byte()).collect(),
            ),
            _ => V::from(["", "a", "héllo ✓", "message", "x".repeat(40).as_str()][rng.below(5)]),
        }
    } else if rng.one_in(2) {
        V::Array(
            (0..rng.below(5))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        )
    } else {
        V::Map(
            (0..rng.below(5))
                .map(|_| (random_value(rng, 0), random_value(rng, depth - 1)))
                .collect(),
        )
    }
}

fn random_record(rng: &mut Rng) -> rmpv::Value {
    if rng.one_in(10) {
        return rmpv::Value::Nil;
    }
    let mut m = vec![("k".into(), random_value(rng, 3))];
    for _ in 0..rng.below(4) {
        m.push((random_value(rng, 0), random_value(rng, 3)));
    }
    rmpv::Value::Map(m)
}

fn random_time(rng: &mut Rng) -> rmpv::Value {
    use rmpv::Value as V;
    match rng.below(8) {
        0 => V::Nil,
        1 => V::from(0),
        2 => V::from(1_700_000_000u64 + rng.below(1000) as u64),
        3 => V::F64(1_700_000_000.5),
        4 => V::F64(0.25),
        5 => {
            let mut b = (rng.next() as u32).to_be_bytes().to_vec();
            b.extend_from_slice(&((rng.next() % 1_000_000_000) as u32).to_be_bytes());
            V::Ext(0, b)
        }
        6 => V::Array(vec![
            random_time_scalar(rng),
            V::Map(vec![("m".into(), V::from(1))]),
        ]),
        _ => V::from(rng.next() as i64),
    }
}

fn random_time_scalar(rng: &mut Rng) -> rmpv::Value {
    if rng.one_in(2) {
        rmpv::Value::from(0)
    } else {
        rmpv::Value::Ext(0, vec![0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 9])
    }
}

fn encode(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

fn packed_body(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..n {
        let rec = match random_record(rng) {
            rmpv::Value::Nil => rmpv::Value::Map(vec![]),
            r => r,
        };
        let t = match random_time(rng) {
            rmpv::Value::Nil => rmpv::Value::from(1),
            t => t,
        };
        body.extend(encode(&rmpv::Value::Array(vec![t, rec])));
    }
    body
}

/// A frame of a random mode, mostly well formed, so the agreement check has work.
pub fn random_frame(rng: &mut Rng) -> Vec<u8> {
    use rmpv::Value as V;
    let tag: V = ["td.db.table", "a", "x.y.z", "t\u{e9}g"][rng.below(4)].into();
    let mut opts = Vec::new();
    if rng.one_in(2) {
        opts.push(("chunk".into(), V::from(format!("c{}", rng.next()))));
    }
    match rng.below(3) {
        0 => {
            let n = rng.below(6);
            let body = packed_body(rng, n);
            let body = if rng.one_in(3) {
                opts.push(("compressed".into(), "gzip".into()));
                gzip(&body)
            } else {
                body
            };
            if rng.one_in(2) {
                opts.push(("size".into(), V::from(n as u64)));
            }
            // The body as bin32 or str32 (Fluentd's out_forward sends non-UTF-8 in str).
            let mut out = vec![0x93];
            out.extend(encode(&tag));
            out.push(if rng.one_in(2) { 0xc6 } else { 0xdb });
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend(body);
            out.extend(encode(&V::Map(opts)));
            out
        }
        1 => {
            let entries: Vec<V> = (0..rng.below(6))
                .map(|_| V::Array(vec![random_time(rng), random_record(rng)]))
                .collect();
            if rng.one_in(2) {
                opts.push(("size".into(), V::from(entries.len() as u64)));
            }
            encode(&V::Array(vec![tag, V::Array(entries), V::Map(opts)]))
        }
        _ => {
            let rec = match random_record(rng) {
                V::Nil => V::Map(vec![]),
                r => r,
            };
            let t = match random_time(rng) {
                V::Array(_) => V::from(3),
                t => t,
            };
            encode(&V::Array(vec![tag, t, rec, V::Map(opts)]))
        }
    }
}

// ---------------------------------------------------------------------------------
// Mutation

/// Offsets of bytes that look like MessagePack headers carrying a length or count.
fn length_fields(buf: &[u8]) -> Vec<usize> {
    buf.iter()
        .enumerate()
        .filter(|(_, b)| matches!(**b, 0x80..=0xbf | 0xc4..=0xc9 | 0xd9..=0xdf))
        .map(|(i, _)| i)
        .collect()
}

/// Applies 1 to 4 random mutations to `input` (bit flips, byte insertion and deletion,
/// splices from another seed, length-field bumps, truncation, duplication).
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &Seeds) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let b = [
                    0x00,
                    0xc0,
                    0xc1,
                    0xff,
                    0x7f,
                    0x80,
                    0x90,
                    0xdd,
                    0xdf,
                    rng.byte(),
                ][rng.below(10)];
                input.insert(i, b);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                input.drain(i..i + n);
            }
            3 => {
                let other = seeds.any(rng);
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a + 1);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            4 | 5 => {
                let fields = length_fields(input);
                if fields.is_empty() {
                    continue;
                }
                let at = fields[rng.below(fields.len())];
                bump_length(rng, input, at);
            }
            6 if len > 0 => input.truncate(rng.below(len)),
            7 if len > 0 => {
                let a = rng.below(len);
                let b = a + 1 + rng.below((len - a).min(64));
                let piece = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, piece);
            }
            _ => {
                let i = rng.below(len + 1);
                let piece: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.byte()).collect();
                input.splice(i..i, piece);
            }
        }
    }
}

/// Changes the length or count of the header at `at`: small steps, zero, the maximum,
/// or a switch to a wider header form declaring a huge size.
fn bump_length(rng: &mut Rng, buf: &mut [u8], at: usize) {
    let marker = buf[at];
    let width = match marker {
        0xc4 | 0xd9 | 0xc7 => 1,
        0xc5 | 0xda | 0xdc | 0xde | 0xc8 => 2,
        0xc6 | 0xdb | 0xdd | 0xdf | 0xc9 => 4,
        _ => 0,
    };
    if width == 0 {
        // A fix-form header: change the count in its low bits.
        let mask = if marker >= 0xa0 { 0x1f } else { 0x0f };
        let n = (marker & mask).wrapping_add([1, 0xff, 3, 7][rng.below(4)]) & mask;
        buf[at] = (marker & !mask) | n;
        return;
    }
    let Some(field) = buf.get_mut(at + 1..at + 1 + width) else {
        return;
    };
    let mut v: u64 = field.iter().fold(0, |a, &b| (a << 8) | u64::from(b));
    let max = if width == 4 {
        u64::from(u32::MAX)
    } else {
        (1 << (8 * width)) - 1
    };
    v = match rng.below(6) {
        0 => v.wrapping_add(1),
        1 => v.wrapping_sub(1),
        2 => 0,
        3 => max,
        4 => max / 2 + 1,
        _ => v.wrapping_mul(2).wrapping_add(1),
    } & max;
    for (i, b) in field.iter_mut().enumerate() {
        *b = (v >> (8 * (width - 1 - i))) as u8;
    }
}

// ---------------------------------------------------------------------------------
// Reference decoding with rmpv

/// What a frame means, by the straightforward reading.
#[derive(Debug, PartialEq, Eq)]
pub enum RefFrame {
    /// A top-level nil.
    Heartbeat,
    /// Events.
    Events {
        /// The tag's bytes.
        tag: Vec<u8>,
        /// Events kept (nil records dropped in Forward mode).
        count: u32,
        /// The packed entries.
        entries: Vec<u8>,
        /// The `chunk` option's bytes.
        chunk: Option<Vec<u8>>,
    },
}

/// rmpv's depth budget: two units per container level and three for a string, so the
/// scanner's deepest accepted frame fits with room to spare.
const REF_DEPTH: usize = 512;

fn raw_value<'a>(rd: &mut &'a [u8]) -> Result<(rmpv::Value, &'a [u8]), String> {
    let start: &'a [u8] = rd;
    let v = rmpv::decode::read_value_with_max_depth(rd, REF_DEPTH).map_err(|e| e.to_string())?;
    let used = start.len() - rd.len();
    Ok((v, &start[..used]))
}

fn bytes_of(v: &rmpv::Value) -> Option<Vec<u8>> {
    match v {
        rmpv::Value::String(s) => Some(s.as_bytes().to_vec()),
        rmpv::Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

/// Whether Fluentd would replace this time by the arrival time (`time.to_i == 0`).
fn zero_time(v: &rmpv::Value) -> bool {
    match v {
        rmpv::Value::Nil => true,
        rmpv::Value::Integer(i) => i.as_i64() == Some(0),
        rmpv::Value::F32(f) => f.trunc() == 0.0,
        rmpv::Value::F64(f) => f.trunc() == 0.0,
        rmpv::Value::Ext(0, d) => d.get(..4) == Some(&[0, 0, 0, 0][..]),
        _ => false,
    }
}

fn array_len(rd: &mut &[u8]) -> Result<u32, String> {
    rmp::decode::read_array_len(rd).map_err(|e| e.to_string())
}

/// One `time, record` pair read after its array header, appended in packed form.
/// Returns whether an entry was written (false for a nil record).
fn ref_pair(rd: &mut &[u8], arrival: EventTime, out: &mut Vec<u8>) -> Result<bool, String> {
    let mut peek = *rd;
    let (tv, _) = raw_value(&mut peek)?;
    let mut time = Vec::new();
    if let rmpv::Value::Array(_) = &tv {
        array_len(rd)?;
        let (t, traw) = raw_value(rd)?;
        let (_, mraw) = raw_value(rd)?;
        if zero_time(&t) {
            time.push(0x92);
            arrival.encode(&mut time);
            time.extend_from_slice(mraw);
        } else {
            time.push(0x92);
            time.extend_from_slice(traw);
            time.extend_from_slice(mraw);
        }
    } else {
        let (t, traw) = raw_value(rd)?;
        if zero_time(&t) {
            arrival.encode(&mut time);
        } else {
            time.extend_from_slice(traw);
        }
    }
    let (rec, rraw) = raw_value(rd)?;
    if rec.is_nil() {
        return Ok(false);
    }
    out.push(0x92);
    out.extend_from_slice(&time);
    out.extend_from_slice(rraw);
    Ok(true)
}

fn options(v: Option<&rmpv::Value>) -> (Option<Vec<u8>>, bool) {
    let mut chunk = None;
    let mut gz = false;
    if let Some(rmpv::Value::Map(m)) = v {
        for (k, v) in m {
            match k.as_str() {
                Some("chunk") => chunk = bytes_of(v),
                Some("compressed") => gz = v.as_str() == Some("gzip"),
                _ => {}
            }
        }
    }
    (chunk, gz)
}

/// Decodes a MessagePack frame the plain way: rmpv reads it whole (an error when it
/// cannot, or when bytes follow the value), then the mode is read from the values.
/// The meaning of modes and times follows the reference; it does not re-check the
/// rules the decoder enforces (those decide acceptance, not content).
pub fn reference_decode(
    frame: &[u8],
    arrival: EventTime,
    max_inflated: usize,
) -> Result<RefFrame, String> {
    let mut whole = frame;
    let (v, _) = raw_value(&mut whole)?;
    if !whole.is_empty() {
        return Err(format!("{} bytes after the value", whole.len()));
    }
    let items = match v {
        rmpv::Value::Nil => return Ok(RefFrame::Heartbeat),
        rmpv::Value::Array(items) => items,
        other => return Err(format!("not an array: {other}")),
    };
    let mut rd = frame;
    array_len(&mut rd)?;
    let (tagv, _) = raw_value(&mut rd)?;
    let tag = bytes_of(&tagv).ok_or("tag is not str or bin")?;
    let second = items.get(1).ok_or("no second element")?;
    let mut entries = Vec::new();
    let mut count = 0u32;
    let chunk;
    match second {
        rmpv::Value::String(_) | rmpv::Value::Binary(_) => {
            let body = bytes_of(second).unwrap_or_default();
            let (c, gz) = options(items.get(2));
            chunk = c;
            let body = if gz {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&body[..])
                    .take(max_inflated as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| e.to_string())?;
                out
            } else {
                body
            };
            let mut rest = &body[..];
            while !rest.is_empty() {
                raw_value(&mut rest)?;
                count += 1;
            }
            entries = body;
        }
        rmpv::Value::Array(list) => {
            let (c, _) = options(items.get(2));
            chunk = c;
            array_len(&mut rd)?;
            for _ in 0..list.len() {
                array_len(&mut rd)?;
                if ref_pair(&mut rd, arrival, &mut entries)? {
                    count += 1;
                }
            }
        }
        _ => {
            let (c, _) = options(items.get(3));
            chunk = c;
            if ref_pair(&mut rd, arrival, &mut entries)? {
                count += 1;
            }
        }
    }
    Ok(RefFrame::Events {
        tag,
        count,
        entries,
        chunk,
    })
}

// ---------------------------------------------------------------------------------
// Running targets

/// Limits the fuzzer gives the decoder: small, so bombs stay cheap and the allocation
/// bound is tight.
pub fn fuzz_limits() -> FrameLimits {
    FrameLimits {
        max_frame_bytes: 1 << 20,
        max_decompressed_bytes: 4 << 20,
        max_depth: 64,
    }
}

/// Counters a run keeps.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Frames the decoder accepted.
    pub accepted: u64,
    /// Accepted MessagePack frames compared with rmpv and found equal.
    pub agreed: u64,
}

/// Feeds one input to one target. Returns an error describing a disagreement; panics
/// are the caller's to catch.
pub fn run_target(
    target: Target,
    input: &[u8],
    limits: &FrameLimits,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), String> {
    match target {
        Target::Stream => stream(input, limits, rng, stats),
        Target::Scan => {
            scan(input, limits);
            Ok(())
        }
        Target::Gzip => {
            let mut f = vec![0x93, 0xa1, b't', 0xc6];
            f.extend_from_slice(&(input.len() as u32).to_be_bytes());
            f.extend_from_slice(input);
            f.extend_from_slice(&[0x81, 0xaa]);
            f.extend_from_slice(b"compressed");
            f.extend_from_slice(&[0xa4]);
            f.extend_from_slice(b"gzip");
            stream(&f, limits, rng, stats)
        }
        Target::Handshake => {
            handshake(input, limits);
            Ok(())
        }
        Target::Chunk => {
            chunk(input);
            let mut fixed = input.to_vec();
            fix_chunk_checksums(&mut fixed);
            chunk(&fixed);
            Ok(())
        }
        Target::Config => {
            // Config files are the operator's, not the network's: the allocation bound
            // holds for files up to a realistic size (TOML parsing takes ~30x the text).
            let text = String::from_utf8_lossy(input.get(..MAX_CONFIG_BYTES).unwrap_or(input));
            let _ = Config::parse(&text, "fuzz.toml");
            Ok(())
        }
        Target::Params => {
            // A query string arrives in an HTTP request line of bounded size.
            let text = String::from_utf8_lossy(input.get(..MAX_QUERY_BYTES).unwrap_or(input));
            let params: Vec<(String, String)> = text
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect();
            let now = i64::from_le_bytes(
                input
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 8]),
            );
            let _ = tidepool::store::records::parse_params(&params, now);
            let _ = tidepool::store::records::parse_params(&params, 1_700_000_000);
            Ok(())
        }
    }
}

/// Config text fed to `Config::parse`, at most (longer inputs are cut).
const MAX_CONFIG_BYTES: usize = 64 << 10;
/// A records query string, at most (longer inputs are cut).
const MAX_QUERY_BYTES: usize = 64 << 10;

fn encoding_of(first: u8) -> Encoding {
    if first == b'{' || first == b'[' {
        Encoding::Json
    } else {
        Encoding::MessagePack
    }
}

/// Cuts frames from `input` offered in the given piece sizes (empty = all at once),
/// as a connection does: the scanner resumes on a growing buffer and is replaced after
/// each frame. Returns the frame lengths and whether it ended in an error.
fn cut(input: &[u8], limits: &FrameLimits, pieces: &[usize]) -> Result<(Vec<usize>, bool), String> {
    let mut lens = Vec::new();
    let mut start = 0;
    let mut avail = 0;
    let mut piece = pieces.iter().cycle();
    let mut grow = |avail: usize| {
        let step = piece.next().copied().unwrap_or(input.len()).max(1);
        avail.saturating_add(step).min(input.len())
    };
    let mut scanner: Option<FrameScanner> = None;
    while start < input.len() {
        if avail <= start {
            avail = grow(start);
        }
        let window = &input[start..avail];
        let sc = scanner.get_or_insert_with(|| FrameScanner::new(encoding_of(window[0]), *limits));
        match sc.next_frame(window) {
            Ok(Some(n)) => {
                if n == 0 || n > window.len() {
                    return Err(format!(
                        "the scanner cut a frame of {n} bytes from {}",
                        window.len()
                    ));
                }
                lens.push(n);
                start += n;
                scanner = None;
            }
            Ok(None) if avail == input.len() => return Ok((lens, false)),
            Ok(None) => avail = grow(avail),
            Err(_) => return Ok((lens, true)),
        }
    }
    Ok((lens, false))
}

fn stream(
    input: &[u8],
    limits: &FrameLimits,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), String> {
    let pieces: Vec<usize> = (0..64).map(|_| 1 + rng.below(64)).collect();
    let whole = measured(|| cut(input, limits, &[]))?;
    let parts = cut(input, limits, &pieces)?;
    if whole != parts {
        return Err(format!(
            "framing depends on read sizes: whole input gives {whole:?}, pieces give {parts:?}"
        ));
    }
    let arrival = EventTime {
        secs: 1_800_000_000,
        nanos: 42,
    };
    let mut at = 0;
    for (i, n) in whole.0.iter().enumerate() {
        let bytes = &input[at..at + n];
        at += n;
        if i == 0 {
            measured(|| handshake(bytes, limits));
        }
        let enc = encoding_of(bytes[0]);
        // Measured: the frame as the connection holds it, and its decoding; the rmpv
        // reading and the comparison below are the test's own work.
        let decoded =
            measured(|| decode_frame(Bytes::copy_from_slice(bytes), enc, arrival, limits));
        let Ok(frame) = decoded else { continue };
        stats.accepted += 1;
        if enc == Encoding::Json {
            continue;
        }
        let reference = reference_decode(bytes, arrival, limits.max_decompressed_bytes)
            .map_err(|e| format!("the decoder accepted frame #{i} but rmpv cannot read it: {e}"))?;
        let ours = match frame {
            Frame::Heartbeat => RefFrame::Heartbeat,
            Frame::Events(ev) => {
                // The batch's entries must also walk cleanly, as the outputs walk them.
                if ev.batch.signal == tidepool::event::Signal::Logs {
                    let walked = msgpack::entries(&ev.batch.entries).count();
                    let bad = msgpack::entries(&ev.batch.entries).any(|e| e.is_err());
                    if bad || walked != ev.batch.count as usize {
                        return Err(format!(
                            "frame #{i}: the entry walker reads {walked} entries (error: {bad}) of {} accepted",
                            ev.batch.count
                        ));
                    }
                }
                RefFrame::Events {
                    tag: ev.batch.tag.into_bytes(),
                    count: ev.batch.count,
                    entries: ev.batch.entries.to_vec(),
                    chunk: ev.chunk.map(|c| c.to_vec()),
                }
            }
        };
        if ours != reference {
            return Err(format!(
                "frame #{i} decodes differently:\n decoder: {ours:?}\n rmpv:    {reference:?}"
            ));
        }
        stats.agreed += 1;
    }
    Ok(())
}

fn scan(input: &[u8], limits: &FrameLimits) {
    let l = Limits {
        max_bytes: limits.max_frame_bytes,
        max_depth: limits.max_depth,
    };
    let _ = msgpack::scan_value(input, &l);
    let mut sc = Scanner::new(l);
    for end in [input.len() / 3, input.len() / 2, input.len()] {
        if sc.resume(&input[..end]).is_err() {
            break;
        }
    }
    for e in msgpack::entries(input) {
        if e.is_err() {
            break;
        }
    }
}

/// The largest PING a connection reads (`MAX_PING_BYTES` in `input::forward::conn`).
const MAX_PING_BYTES: usize = 64 << 10;

/// What a connection does with its first bytes under `security`: cut one frame of at
/// most [`MAX_PING_BYTES`] and answer it as a PING (an unframeable one as empty).
fn handshake(input: &[u8], limits: &FrameLimits) {
    let ping_limits = FrameLimits {
        max_frame_bytes: MAX_PING_BYTES,
        ..*limits
    };
    let mut sc = FrameScanner::new(Encoding::MessagePack, ping_limits);
    match sc.next_frame(input) {
        Ok(Some(n)) => ping(input.get(..n).unwrap_or_default()),
        Ok(None) => {}
        Err(_) => ping(&[]),
    }
}

fn ping(input: &[u8]) {
    let security = SecurityConfig {
        self_hostname: "fuzz.server".into(),
        shared_key: "tidepool-vector-shared-key".into(),
        user_auth: true,
        users: vec![UserConfig {
            username: "alice".into(),
            password: "s3cret-pass".into(),
        }],
        allow_anonymous_source: true,
        clients: Vec::new(),
    };
    let helo = Helo {
        nonce: [7; 16],
        auth: [9; 16],
        keepalive: true,
    };
    let out = answer_ping(input, &helo, &security, [127, 0, 0, 1].into());
    assert!(out.result.is_err(), "a PING without the nonce verified");
}

fn chunk(image: &[u8]) {
    if let Ok(parsed) = chunk_file::parse(image) {
        for r in &parsed.entries {
            if let Some(block) = image.get(r.clone()) {
                for e in msgpack::entries(block) {
                    if e.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

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

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
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
struct Watchdog {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread with a big stack: rmpv's reference decode recurses.
    fn big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("fuzz thread")
    }

    #[test]
    fn a_fixed_fuzz_run_finds_no_panic_disagreement_or_overallocation() {
        let report = big_stack(|| {
            run(&FuzzConfig {
                seed: 0x7157_c0de,
                iterations: Some(15_000),
                duration: None,
                crash_dir: Some(repo().join("target/fuzz-failures")),
                hang_after: Duration::from_secs(120),
                progress_every: None,
            })
        });
        let details: Vec<String> = report
            .failures
            .iter()
            .map(|f| format!("{} ({:?}): {}", f.target.name(), f.saved, f.what))
            .collect();
        assert!(report.failures.is_empty(), "{}", details.join("\n\n"));
        assert_eq!(report.inputs, 15_000);
        // The run exercised the decoder's happy path too, with rmpv agreeing.
        assert!(report.stats.agreed >= 100, "only {:?} agreed", report.stats);
        assert!(
            report.per_target.len() == Target::ALL.len(),
            "{:?}",
            report.per_target
        );
    }

    #[test]
    fn generated_frames_are_accepted_and_agree_with_rmpv() {
        big_stack(|| {
            let limits = fuzz_limits();
            let mut rng = Rng::new(99);
            let mut stats = Stats::default();
            for _ in 0..300 {
                let f = random_frame(&mut rng);
                let (r, _) = check_one(Target::Stream, &f, &limits, &mut rng, &mut stats);
                assert!(r.is_ok(), "{r:?}");
            }
            assert!(stats.agreed >= 150, "{stats:?}");
        });
    }

    #[test]
    fn the_reference_decoder_applies_the_arrival_time_rule() {
        let arrival = EventTime { secs: 5, nanos: 6 };
        // ["t", 0, {"a": 1}]: time 0 is replaced by arrival.
        let frame = [0x93, 0xa1, b't', 0x00, 0x81, 0xa1, b'a', 0x01];
        let mut want = vec![0x92];
        arrival.encode(&mut want);
        want.extend_from_slice(&[0x81, 0xa1, b'a', 0x01]);
        assert_eq!(
            reference_decode(&frame, arrival, 1 << 20),
            Ok(RefFrame::Events {
                tag: b"t".to_vec(),
                count: 1,
                entries: want,
                chunk: None
            })
        );
    }

    #[test]
    fn the_worst_amplification_stays_within_the_allocation_bound() {
        big_stack(|| {
            let limits = fuzz_limits();
            let frame = amplifying_frame(&limits);
            let mut stats = Stats::default();
            let (r, peak) = check_one(
                Target::Stream,
                &frame,
                &limits,
                &mut Rng::new(3),
                &mut stats,
            );
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(stats.agreed, 1, "accepted and equal to the rmpv reading");
            // The converted entries are about 4 frames big, and were counted.
            assert!(peak >= 4 * frame.len() as u64, "{peak}");
            assert!(peak <= alloc_bound(&limits), "{peak}");
        });
    }

    #[test]
    fn a_gzip_bomb_costs_at_most_the_decompressed_limit() {
        let limits = fuzz_limits();
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut frame = vec![0x93, 0xa1, b't', 0xc6];
        frame.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
        frame.extend_from_slice(&bomb);
        frame.extend_from_slice(&[0x81, 0xaa]);
        frame.extend_from_slice(b"compressed");
        frame.push(0xa4);
        frame.extend_from_slice(b"gzip");
        let (r, peak) = measure(|| {
            decode_frame(
                Bytes::copy_from_slice(&frame),
                Encoding::MessagePack,
                EventTime::now(),
                &limits,
            )
        });
        assert!(r.is_err(), "the bomb is refused");
        // The inflater's own state (window, buffers) is the only extra.
        let bound = (frame.len() + limits.max_decompressed_bytes + (256 << 10)) as u64;
        assert!(peak <= bound, "{peak} > {bound}");
    }

    #[test]
    fn the_allocation_counter_sees_a_big_allocation() {
        let (_, peak) = measure(|| vec![1u8; 3 << 20]);
        assert!(peak >= 3 << 20, "{peak}");
    }
}
