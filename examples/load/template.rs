//! Pre-encoded frames: every message a connection sends is one template encoded before
//! the timed part starts; per message only fixed-width bytes are patched in place (the
//! chunk id's counter digits and each event's `seq` as msgpack `uint64`, `cf` + 8 bytes),
//! so the tool measures the server, not its own encoder. The one exception is
//! `compressed` with `--seq`: the patched events must be gzipped again per message.

use crate::Mode;
use anyhow::{Context, bail};
use std::io::Write;

/// What a record looks like: the seed's Mbed statistics, an array, or an N-byte string.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// CPU load figures (the default).
    Cpu,
    /// Mbed `heap_info`.
    Heap,
    /// Mbed `stack_info`.
    Stack,
    /// Mbed `sys_info`.
    Sys,
    /// A signed-integer array in the style of the seed's `["sint", ...]`.
    Array,
    /// One string field of this many bytes.
    Bytes(usize),
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "cpu" => Shape::Cpu,
            "heap" => Shape::Heap,
            "stack" => Shape::Stack,
            "sys" => Shape::Sys,
            "array" => Shape::Array,
            _ => match s.strip_prefix("bytes:").map(str::parse::<usize>) {
                Some(Ok(n)) if n <= 64 << 20 => Shape::Bytes(n),
                _ => {
                    return Err(format!(
                        "unknown shape {s:?}: use cpu, heap, stack, sys, array or bytes:N (N up to 67108864)"
                    ));
                }
            },
        })
    }
}

impl Shape {
    /// The record's fields for event number `i` (values vary a little with `i`).
    pub fn fields(&self, i: usize) -> Vec<(rmpv::Value, rmpv::Value)> {
        let n = (i % 97) as i64;
        let kv = |k: &str, v: rmpv::Value| (rmpv::Value::from(k), v);
        match self {
            Shape::Cpu => vec![
                kv("cpu", 0.25.into()),
                kv("user", (12 + n % 7).into()),
                kv("system", 3.into()),
                kv("idle", 85.into()),
                kv("host", "dev-01".into()),
            ],
            Shape::Heap => vec![
                kv("current_size", (18_000 + n).into()),
                kv("total_size", 402_368.into()),
                kv("alloc_cnt", (1_200 + n).into()),
                kv("max_size", 21_624.into()),
                kv("reserved_size", 98_304.into()),
                kv("alloc_fail_cnt", 0.into()),
            ],
            Shape::Stack => vec![
                kv("thread_id", (536_871_000 + n).into()),
                kv("max_size", 1_880.into()),
                kv("reserved_size", 4_096.into()),
            ],
            Shape::Sys => vec![
                kv("os_version", 61_700.into()),
                kv("cpu_id", 1_091_551_809.into()),
                kv("compiler_id", 2.into()),
                kv("compiler_version", 60_300.into()),
            ],
            Shape::Array => vec![kv(
                "array",
                rmpv::Value::Array(vec![
                    "sint".into(),
                    0.into(),
                    1.into(),
                    (-1).into(),
                    (-128).into(),
                    (-32768).into(),
                    (-2_147_483_648i64).into(),
                ]),
            )],
            Shape::Bytes(len) => vec![kv("data", "x".repeat(*len).into())],
        }
    }
}

/// The tags to cycle through: `--tags a,b` or `td.bench.t0..t{N-1}`, else `--tag`.
pub fn tag_list(
    tag: &str,
    tags: Option<&str>,
    tag_count: Option<usize>,
) -> anyhow::Result<Vec<String>> {
    if let Some(list) = tags {
        let v: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if v.is_empty() {
            bail!("--tags {list:?} names no tag: give a comma-separated list");
        }
        return Ok(v);
    }
    if let Some(n) = tag_count {
        if n == 0 {
            bail!("--tag-count 0: give at least 1");
        }
        return Ok((0..n).map(|i| format!("td.bench.t{i}")).collect());
    }
    Ok(vec![tag.to_string()])
}

/// What every template of a run shares.
pub struct Spec<'a> {
    /// How events are framed.
    pub mode: Mode,
    /// What each record looks like.
    pub shape: &'a Shape,
    /// Events per message (forced to 1 in `message` mode by the caller).
    pub events: usize,
    /// Whether frames carry a `chunk` option (ask for an ack).
    pub ack: bool,
    /// `Some(run id)` adds `run` and `seq` to every record.
    pub run: Option<&'a str>,
}

/// One pre-encoded message with the places patched per send.
pub struct Template {
    /// The frame (for `compressed` + seq: the frame before its gzip body, see `gz_tail`).
    frame: Vec<u8>,
    /// Offset of the 16 hex digits of the chunk id's message counter.
    chunk_digits: Option<usize>,
    /// Offsets of each event's 8 `seq` bytes (in `frame`, or in `entries` when gzipping).
    seq_at: Vec<usize>,
    /// `compressed` + seq: the raw events, gzipped per message.
    entries: Vec<u8>,
    /// `compressed` + seq: the options map that follows the gzip body.
    gz_tail: Vec<u8>,
    /// Scratch for the assembled frame when gzipping per message.
    out: Vec<u8>,
}

fn event_time() -> [u8; 10] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = [0u8; 10];
    t[0] = 0xd7;
    t[1] = 0x00;
    t[2..6].copy_from_slice(&(now.as_secs() as u32).to_be_bytes());
    t[6..10].copy_from_slice(&now.subsec_nanos().to_be_bytes());
    t
}

/// Appends `[time, record]` (or `time, record` for message mode when `wrap` is false),
/// recording where the seq bytes go.
fn write_event(
    out: &mut Vec<u8>,
    spec: &Spec<'_>,
    i: usize,
    wrap: bool,
    seq_at: &mut Vec<usize>,
) -> anyhow::Result<()> {
    if wrap {
        out.push(0x92);
    }
    out.extend_from_slice(&event_time());
    let fields = spec.shape.fields(i);
    let extra = if spec.run.is_some() { 2 } else { 0 };
    rmp::encode::write_map_len(out, (fields.len() + extra) as u32)?;
    for (k, v) in &fields {
        rmpv::encode::write_value(out, k)?;
        rmpv::encode::write_value(out, v)?;
    }
    if let Some(run) = spec.run {
        rmp::encode::write_str(out, "run")?;
        rmp::encode::write_str(out, run)?;
        rmp::encode::write_str(out, "seq")?;
        out.push(0xcf);
        seq_at.push(out.len());
        out.extend_from_slice(&[0; 8]);
    }
    Ok(())
}

fn write_options(out: &mut Vec<u8>, spec: &Spec<'_>, conn: usize) -> anyhow::Result<Option<usize>> {
    let n = 1 + usize::from(spec.ack) + usize::from(spec.mode == Mode::Compressed);
    rmp::encode::write_map_len(out, n as u32)?;
    rmp::encode::write_str(out, "size")?;
    rmp::encode::write_uint(out, spec.events as u64)?;
    let mut digits = None;
    if spec.ack {
        rmp::encode::write_str(out, "chunk")?;
        let chunk = format!("{conn:08x}{:016x}", 0u64);
        rmp::encode::write_str(out, &chunk)?;
        digits = Some(out.len() - 16);
    }
    if spec.mode == Mode::Compressed {
        rmp::encode::write_str(out, "compressed")?;
        rmp::encode::write_str(out, "gzip")?;
    }
    Ok(digits)
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).context("gzip")?;
    enc.finish().context("gzip")
}

impl Template {
    /// Encodes connection `conn`'s message for `tag`.
    pub fn new(spec: &Spec<'_>, tag: &str, conn: usize) -> anyhow::Result<Template> {
        let mut frame = Vec::new();
        let mut seq_at = Vec::new();
        let mut entries = Vec::new();
        let mut gz_tail = Vec::new();
        match spec.mode {
            Mode::Message => {
                frame.push(0x94);
                rmp::encode::write_str(&mut frame, tag)?;
                write_event(&mut frame, spec, conn, false, &mut seq_at)?;
            }
            Mode::Forward => {
                frame.push(0x93);
                rmp::encode::write_str(&mut frame, tag)?;
                rmp::encode::write_array_len(&mut frame, spec.events as u32)?;
                for i in 0..spec.events {
                    write_event(&mut frame, spec, i, true, &mut seq_at)?;
                }
            }
            Mode::Packed | Mode::Compressed => {
                for i in 0..spec.events {
                    write_event(&mut entries, spec, i, true, &mut seq_at)?;
                }
                frame.push(0x93);
                rmp::encode::write_str(&mut frame, tag)?;
                if spec.mode == Mode::Compressed && spec.run.is_some() {
                    // Body and options are assembled per message in `render`.
                    let digits = write_options(&mut gz_tail, spec, conn)?;
                    return Ok(Template {
                        frame,
                        chunk_digits: digits,
                        seq_at,
                        entries,
                        gz_tail,
                        out: Vec::new(),
                    });
                }
                let body = if spec.mode == Mode::Compressed {
                    gzip(&std::mem::take(&mut entries))?
                } else {
                    std::mem::take(&mut entries)
                };
                rmp::encode::write_bin_len(&mut frame, body.len() as u32)?;
                let base = frame.len();
                for s in &mut seq_at {
                    *s += base;
                }
                frame.extend_from_slice(&body);
            }
        }
        let chunk_digits = write_options(&mut frame, spec, conn)?;
        Ok(Template {
            frame,
            chunk_digits,
            seq_at,
            entries,
            gz_tail,
            out: Vec::new(),
        })
    }

    /// Patches in message counter `msg` and first sequence number `seq` and returns the
    /// bytes to send.
    pub fn render(&mut self, msg: u64, seq: u64) -> anyhow::Result<&[u8]> {
        let gzipping = !self.gz_tail.is_empty();
        if let Some(at) = self.chunk_digits {
            let hex = format!("{msg:016x}");
            let target = if gzipping {
                &mut self.gz_tail
            } else {
                &mut self.frame
            };
            target[at..at + 16].copy_from_slice(hex.as_bytes());
        }
        let target = if gzipping {
            &mut self.entries
        } else {
            &mut self.frame
        };
        for (i, &at) in self.seq_at.iter().enumerate() {
            target[at..at + 8].copy_from_slice(&(seq + i as u64).to_be_bytes());
        }
        if !gzipping {
            return Ok(&self.frame);
        }
        let gz = gzip(&self.entries)?;
        self.out.clear();
        self.out.extend_from_slice(&self.frame);
        rmp::encode::write_bin_len(&mut self.out, gz.len() as u32)?;
        self.out.extend_from_slice(&gz);
        self.out.extend_from_slice(&self.gz_tail);
        Ok(&self.out)
    }
}
