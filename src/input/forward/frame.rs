//! Forward-protocol frames: incremental framing and validation (reference sections 1-5, 9).
//!
//! Pure functions over bytes, no IO: [`FrameScanner`] cuts a connection's byte stream
//! into frames without rescanning, [`decode_frame`] checks one frame and turns it into
//! a [`Batch`] of packed `[time, record]` entries, and [`encode_ack`] builds the reply.

mod error;
mod gzip;
mod json;
mod json_value;
mod msgpack;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use error::DecodeError;

use crate::event::{Batch, EventTime};
use crate::msgpack::{Limits, Scan, Scanner};
use bytes::Bytes;

/// Limits a connection enforces on each frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Largest frame, in bytes, checked as soon as a header declares a length.
    pub max_frame_bytes: usize,
    /// Largest total size of a CompressedPackedForward body once inflated.
    pub max_decompressed_bytes: usize,
    /// Deepest nesting accepted in a record.
    pub max_depth: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_bytes: 32 << 20,
            max_decompressed_bytes: 64 << 20,
            max_depth: 64,
        }
    }
}

/// Nesting a frame adds around a record: the frame array, the Forward entries array,
/// the entry array and Fluent Bit 5's `[time, metadata]`; so a record may use the
/// whole of [`FrameLimits::max_depth`] in every mode.
const FRAME_DEPTH: usize = 4;

/// How a connection speaks: decided by its first byte (reference section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// MessagePack, the normal case.
    MessagePack,
    /// JSON, when the first byte is `{` or `[`.
    Json,
}

/// Resumable framing state for one connection; keeps its progress between reads so a
/// frame arriving in many pieces is never re-scanned from its start.
#[derive(Debug)]
pub struct FrameScanner {
    encoding: Encoding,
    limits: FrameLimits,
    /// MessagePack progress: position and open containers of the current frame.
    msgpack: Scanner,
    /// JSON progress: position, bracket depth and string state.
    json: json::JsonScan,
}

impl FrameScanner {
    /// A scanner for a connection of the given encoding.
    pub fn new(encoding: Encoding, limits: FrameLimits) -> Self {
        FrameScanner {
            encoding,
            limits,
            msgpack: Scanner::new(Limits {
                max_bytes: limits.max_frame_bytes,
                max_depth: limits.max_depth.saturating_add(FRAME_DEPTH),
            }),
            json: json::JsonScan::default(),
        }
    }

    /// Looks at the buffered bytes (whose prefix is unchanged since the last call until
    /// a frame is taken) and returns the length of the first complete frame, if any.
    /// After `Some(n)` the caller removes the first `n` bytes and the state resets.
    ///
    /// Each call costs only the bytes added since the previous one; once a header has
    /// declared a long body, calls return at once until that many bytes are buffered.
    /// A declared length or a frame beyond `max_frame_bytes` is an error at once; after
    /// any error the connection is to be closed and the scanner dropped.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        match self.encoding {
            Encoding::MessagePack => match self.msgpack.resume(buf)? {
                Scan::Complete(n) => Ok(Some(n)),
                Scan::Incomplete { .. } => Ok(None),
            },
            Encoding::Json => self.json.resume(buf, &self.limits),
        }
    }

    /// True when `buf` holds no part of a frame (empty, or only the whitespace JSON
    /// allows between values), so an EOF here is a clean close rather than a
    /// truncated frame.
    pub fn at_boundary(&self, buf: &[u8]) -> bool {
        match self.encoding {
            Encoding::MessagePack => buf.is_empty(),
            Encoding::Json => buf.iter().all(u8::is_ascii_whitespace),
        }
    }
}

/// A decoded frame.
#[derive(Debug)]
pub enum Frame {
    /// A top-level nil: Fluentd's reserved TCP heartbeat; ignored.
    Heartbeat,
    /// Events to route.
    Events(EventFrame),
}

/// The events of one frame and what the client asked for in reply.
///
/// `batch.count` may be 0 (an empty Forward array or packed body); a client that sent
/// a `chunk` still waits for its ack.
#[derive(Debug)]
pub struct EventFrame {
    /// The events.
    pub batch: Batch,
    /// The `chunk` option's string bytes: when present, the client waits for
    /// `{"ack": chunk}` (reference section 5).
    pub chunk: Option<Bytes>,
    /// Forward-mode entries dropped because their record was nil, as in_forward does
    /// (reference section 8); worth a counter, not an error.
    pub skipped: u32,
}

/// Decodes one complete frame cut out by [`FrameScanner::next_frame`].
///
/// The mode follows the array length and element 1's type (reference section 2):
/// str/bin → PackedForward (its body passed on as a zero-copy slice once every entry is
/// checked), array → Forward, anything else → Message. Forward and Message entries are
/// converted once into the packed form, replacing time 0 or nil by `arrival`.
pub fn decode_frame(
    frame: Bytes,
    encoding: Encoding,
    arrival: EventTime,
    limits: &FrameLimits,
) -> Result<Frame, DecodeError> {
    match encoding {
        Encoding::MessagePack => msgpack::decode(frame, arrival, limits),
        Encoding::Json => json::decode(&frame, arrival, limits),
    }
}

/// Encodes `{"ack": chunk}` in the connection's encoding, in one buffer so it goes out
/// in one write (clients read it with a single small read).
///
/// MessagePack uses the shortest str header, as Fluentd does, so replies match its
/// byte for byte; JSON has no spaces, as in_forward writes it.
pub fn encode_ack(chunk: &[u8], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::MessagePack => {
            let mut out = Vec::with_capacity(chunk.len() + 10);
            out.extend_from_slice(&[0x81, 0xa3, b'a', b'c', b'k']);
            let n = chunk.len();
            if n < 32 {
                out.push(0xa0 | n as u8);
            } else if n < 0x100 {
                out.extend_from_slice(&[0xd9, n as u8]);
            } else if n < 0x1_0000 {
                out.push(0xda);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            out.extend_from_slice(chunk);
            out
        }
        Encoding::Json => {
            let text = String::from_utf8_lossy(chunk);
            let quoted = serde_json::to_string(&text).unwrap_or_default();
            format!("{{\"ack\":{quoted}}}").into_bytes()
        }
    }
}
