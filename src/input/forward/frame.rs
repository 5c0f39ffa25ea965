//! Forward-protocol frames: incremental framing and validation (reference sections 1-5, 9).
//!
//! OWNER: frame helper. STUB.

use crate::event::{Batch, EventTime};
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
}

impl FrameScanner {
    /// A scanner for a connection of the given encoding.
    pub fn new(encoding: Encoding, limits: FrameLimits) -> Self {
        FrameScanner { encoding, limits }
    }

    /// Looks at the buffered bytes (whose prefix is unchanged since the last call until
    /// a frame is taken) and returns the length of the first complete frame, if any.
    /// After `Some(n)` the caller removes the first `n` bytes and the state resets.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let _ = (buf, self.encoding, self.limits);
        Err(DecodeError::Stub)
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
#[derive(Debug)]
pub struct EventFrame {
    /// The events.
    pub batch: Batch,
    /// The `chunk` option's string bytes: when present, the client waits for
    /// `{"ack": chunk}` (reference section 5).
    pub chunk: Option<Bytes>,
}

/// Why a frame is refused; the connection that sent it is closed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Placeholder.
    #[error("stub")]
    Stub,
}

/// Decodes one complete frame cut out by [`FrameScanner::next_frame`].
pub fn decode_frame(
    frame: Bytes,
    encoding: Encoding,
    arrival: EventTime,
    limits: &FrameLimits,
) -> Result<Frame, DecodeError> {
    let _ = (frame, encoding, arrival, limits);
    Err(DecodeError::Stub)
}

/// Encodes `{"ack": chunk}` in the connection's encoding, in one buffer so it goes out
/// in one write (clients read it with a single small read).
pub fn encode_ack(chunk: &[u8], encoding: Encoding) -> Vec<u8> {
    let _ = (chunk, encoding);
    Vec::new()
}
