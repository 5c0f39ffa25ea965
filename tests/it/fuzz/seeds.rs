//! Randomness, targets, seed inputs and generated frames.

use super::*;

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
    pub(crate) fn byte(&mut self) -> u8 {
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
    pub(crate) fn weight(self) -> usize {
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

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read_dir_files(dir: &Path, suffix: &str) -> Vec<(String, Vec<u8>)> {
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

    /// The starting inputs of `target` (empty when it has none): what the loop
    /// mutates, and what `fuzz_forward --export-seeds` writes out as the seed corpus
    /// of the `cargo fuzz` target of the same name.
    pub fn of(&self, target: Target) -> &[Vec<u8>] {
        self.by_target
            .get(&target)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub(crate) fn pick(&self, target: Target, rng: &mut Rng) -> Vec<u8> {
        match self.by_target.get(&target) {
            Some(v) if !v.is_empty() => v[rng.below(v.len())].clone(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn any(&self, rng: &mut Rng) -> Vec<u8> {
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
pub(crate) fn cut_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
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
pub(crate) fn gzip_body(frame: &[u8]) -> Option<Vec<u8>> {
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

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// A chunk-file image whose blocks hold pieces of `content`.
pub(crate) fn chunk_image(rng: &mut Rng, content: &[u8]) -> Vec<u8> {
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
pub(crate) fn fix_chunk_checksums(img: &mut [u8]) {
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

pub(crate) fn random_value(rng: &mut Rng, depth: usize) -> rmpv::Value {
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

pub(crate) fn random_record(rng: &mut Rng) -> rmpv::Value {
    if rng.one_in(10) {
        return rmpv::Value::Nil;
    }
    let mut m = vec![("k".into(), random_value(rng, 3))];
    for _ in 0..rng.below(4) {
        m.push((random_value(rng, 0), random_value(rng, 3)));
    }
    rmpv::Value::Map(m)
}

pub(crate) fn random_time(rng: &mut Rng) -> rmpv::Value {
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

pub(crate) fn random_time_scalar(rng: &mut Rng) -> rmpv::Value {
    if rng.one_in(2) {
        rmpv::Value::from(0)
    } else {
        rmpv::Value::Ext(0, vec![0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 9])
    }
}

pub(crate) fn encode(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

pub(crate) fn packed_body(rng: &mut Rng, n: usize) -> Vec<u8> {
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
