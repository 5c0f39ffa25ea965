//! Feeding one input to one target, as the daemon would.

use super::*;

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
pub(crate) const MAX_CONFIG_BYTES: usize = 64 << 10;
/// A records query string, at most (longer inputs are cut).
pub(crate) const MAX_QUERY_BYTES: usize = 64 << 10;

pub(crate) fn encoding_of(first: u8) -> Encoding {
    if first == b'{' || first == b'[' {
        Encoding::Json
    } else {
        Encoding::MessagePack
    }
}

/// Cuts frames from `input` offered in the given piece sizes (empty = all at once),
/// as a connection does: the scanner resumes on a growing buffer and is replaced after
/// each frame. Returns the frame lengths and whether it ended in an error.
pub(crate) fn cut(
    input: &[u8],
    limits: &FrameLimits,
    pieces: &[usize],
) -> Result<(Vec<usize>, bool), String> {
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

pub(crate) fn stream(
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

pub(crate) fn scan(input: &[u8], limits: &FrameLimits) {
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
pub(crate) const MAX_PING_BYTES: usize = 64 << 10;

/// What a connection does with its first bytes under `security`: cut one frame of at
/// most [`MAX_PING_BYTES`] and answer it as a PING (an unframeable one as empty).
pub(crate) fn handshake(input: &[u8], limits: &FrameLimits) {
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

pub(crate) fn ping(input: &[u8]) {
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

pub(crate) fn chunk(image: &[u8]) {
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
