//! Frame encoders for the four event modes (reference sections 2-4), shaped like the
//! frames real clients send so tests exercise the same paths they do.

use crate::event::EventTime;
use anyhow::{Context, bail};
use base64::Engine;
use std::io::Write;

/// Which forward-protocol mode a frame uses (reference section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `[tag, time, record, options?]`: exactly one event.
    Message,
    /// `[tag, [[time, record], ...], options?]`.
    Forward,
    /// `[tag, bin(entries), options?]`: entries concatenated as bytes.
    PackedForward,
    /// `[tag, bin(gzip(entries)), {"compressed": "gzip", ...}]`.
    CompressedPackedForward,
}

/// A record to send: a value to encode, or one already-encoded MessagePack value (for
/// load tools that encode once, and tests that need odd encodings).
#[derive(Clone, Debug)]
pub enum Record {
    /// Encoded with rmpv.
    Value(rmpv::Value),
    /// Copied into the frame as is; must be exactly one MessagePack value.
    Raw(Vec<u8>),
}

/// One event to send.
#[derive(Clone, Debug)]
pub struct Event {
    /// Written as an EventTime (fixext8).
    pub time: EventTime,
    /// The record.
    pub record: Record,
}

impl Event {
    /// An event stamped now.
    pub fn now(record: rmpv::Value) -> Self {
        Event {
            time: EventTime::now(),
            record: Record::Value(record),
        }
    }
}

/// An encoded frame and the chunk id its ack must echo, if one was asked for.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The whole frame, ready to write in one call.
    pub bytes: Vec<u8>,
    /// The `chunk` option: the server answers `{"ack": chunk}` once it stored the frame.
    pub chunk: Option<String>,
}

/// A fresh chunk id: Base64 of 16 random bytes, like Fluentd's (without its newline).
pub fn new_chunk_id() -> String {
    let id: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(id)
}

/// Encodes `events` as one frame of `mode` under `tag`. With `ack`, the options carry a
/// fresh `chunk` and `size`; packed modes always carry `size` (and `compressed`), as
/// Fluentd's out_forward does. Message mode takes exactly one event.
pub fn encode_frame(mode: Mode, tag: &str, events: &[Event], ack: bool) -> anyhow::Result<Frame> {
    let chunk = ack.then(new_chunk_id);
    let mut out = Vec::new();
    let mut options: Vec<(&str, rmpv::Value)> = Vec::new();
    if let Some(chunk) = &chunk {
        options.push(("chunk", rmpv::Value::from(chunk.as_str())));
    }
    if ack || matches!(mode, Mode::PackedForward | Mode::CompressedPackedForward) {
        options.push(("size", rmpv::Value::from(events.len() as u64)));
    }
    if mode == Mode::CompressedPackedForward {
        options.push(("compressed", rmpv::Value::from("gzip")));
    }
    let len = if options.is_empty() { 2 } else { 3 };
    match mode {
        Mode::Message => {
            let [event] = events else {
                bail!(
                    "Message mode carries exactly one event, got {}: use Forward mode for batches",
                    events.len()
                );
            };
            write_array_len(&mut out, len + 1);
            crate::msgpack::write::str(&mut out, tag);
            event.time.encode(&mut out);
            write_record(&mut out, &event.record)?;
        }
        Mode::Forward => {
            write_array_len(&mut out, len);
            crate::msgpack::write::str(&mut out, tag);
            write_array_len(&mut out, events.len());
            for event in events {
                write_entry(&mut out, event)?;
            }
        }
        Mode::PackedForward | Mode::CompressedPackedForward => {
            let mut entries = Vec::new();
            for event in events {
                write_entry(&mut entries, event)?;
            }
            if mode == Mode::CompressedPackedForward {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(&entries).context("gzip of entries")?;
                entries = gz.finish().context("gzip of entries")?;
            }
            write_array_len(&mut out, len);
            crate::msgpack::write::str(&mut out, tag);
            write_bin(&mut out, &entries);
        }
    }
    if !options.is_empty() {
        let map = rmpv::Value::Map(
            options
                .into_iter()
                .map(|(k, v)| (rmpv::Value::from(k), v))
                .collect(),
        );
        rmpv::encode::write_value(&mut out, &map).context("encoding options")?;
    }
    Ok(Frame { bytes: out, chunk })
}

/// `[time, record]`.
fn write_entry(out: &mut Vec<u8>, event: &Event) -> anyhow::Result<()> {
    out.push(0x92);
    event.time.encode(out);
    write_record(out, &event.record)
}

fn write_record(out: &mut Vec<u8>, record: &Record) -> anyhow::Result<()> {
    match record {
        Record::Value(v) => rmpv::encode::write_value(out, v).context("encoding record"),
        Record::Raw(bytes) => {
            out.extend_from_slice(bytes);
            Ok(())
        }
    }
}

/// A MessagePack array header in its shortest form.
pub(crate) fn write_array_len(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xdc);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// A MessagePack bin in its shortest form.
fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len();
    if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xc5);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}
