//! Why a frame is refused, in words a log reader can act on.

use crate::msgpack::ScanError;

/// Why a frame is refused; the connection that sent it is closed.
///
/// Each variant names the element that is wrong (tag, entry N, option key) and, for
/// byte-level problems, the offset within the frame (or within the entries body).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not well-formed MessagePack, a declared length is beyond
    /// `max_frame_bytes`, or nesting is too deep.
    #[error("{0}")]
    Malformed(#[from] ScanError),
    /// A JSON-encoded connection sent something serde_json cannot parse.
    #[error("frame is not valid JSON: {0}")]
    Json(String),
    /// A JSON frame grew past the limit without ending.
    #[error("JSON frame reached {size} bytes without ending, limit is max_frame_bytes = {limit}")]
    JsonTooLarge {
        /// Bytes scanned so far.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A JSON frame nests deeper than the limit.
    #[error("JSON frame nests deeper than {limit} levels at byte {offset}")]
    JsonTooDeep {
        /// Byte offset of the bracket that went too deep.
        offset: usize,
        /// The depth limit.
        limit: usize,
    },
    /// A JSON connection sent a byte that cannot start a frame (only `{` or `[`).
    #[error("JSON frame starts with byte {byte:#04x} at offset {offset}, expected '[' or '{{'")]
    JsonStart {
        /// Offset of the byte.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// Bytes follow the frame's single value; [`super::FrameScanner`] never cuts such a
    /// frame, so the caller passed something else to [`super::decode_frame`].
    #[error("{extra} bytes follow the frame's value at byte {offset}")]
    Trailing {
        /// Where the value ended.
        offset: usize,
        /// How many bytes follow.
        extra: usize,
    },
    /// The top level is not an array (reference section 2).
    #[error(
        "frame is {found}, expected an array [tag, time, record] or [tag, entries] (reference section 2)"
    )]
    NotArray {
        /// The type found.
        found: &'static str,
    },
    /// The frame array has too few or too many elements for its mode.
    #[error("frame array has {len} elements, {mode} takes {expected}")]
    Arity {
        /// Elements in the frame array.
        len: u32,
        /// The mode chosen from element 1.
        mode: &'static str,
        /// The accepted lengths.
        expected: &'static str,
    },
    /// The tag is not a non-empty UTF-8 string (str, or bin holding UTF-8).
    #[error("tag is {found}, expected a non-empty UTF-8 string")]
    Tag {
        /// What was found instead.
        found: &'static str,
    },
    /// One entry is wrong; `index` counts from 0 in the frame (Message mode: 0).
    #[error("entry {index}: {source}")]
    Entry {
        /// Which entry.
        index: u32,
        /// What is wrong and where.
        source: ScanError,
    },
    /// One entry of a JSON frame is wrong (JSON has no byte offsets worth reporting).
    #[error("entry {index}: {what}")]
    JsonEntry {
        /// Which entry.
        index: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// A Message-mode record is nil: Fluentd drops such a frame silently and never
    /// acks it, which would leave an acking client waiting, so it is refused.
    #[error("Message-mode record is nil, expected a record")]
    NilRecord,
    /// The options element is not a map (reference section 4).
    #[error("options are {found}, expected a map (reference section 4)")]
    OptionsNotMap {
        /// The type found.
        found: &'static str,
    },
    /// A known option has the wrong type.
    #[error("option {key:?} is {found}, expected {expected}")]
    OptionType {
        /// The option key.
        key: &'static str,
        /// The type found.
        found: &'static str,
        /// The type required.
        expected: &'static str,
    },
    /// The `size` option disagrees with the entries actually present.
    #[error("option \"size\" is {declared} but the frame holds {actual} entries")]
    SizeMismatch {
        /// The size the client declared.
        declared: u64,
        /// Entries found.
        actual: u64,
    },
    /// `compressed` names something other than "gzip" or "text".
    #[error("option \"compressed\" is {value:?}, supported values are \"gzip\" and \"text\"")]
    Compression {
        /// The value sent (lossy UTF-8).
        value: String,
    },
    /// `fluent_signal` is out of range.
    #[error("option \"fluent_signal\" is {value}, expected 0 to 255")]
    Signal {
        /// The value sent.
        value: u64,
    },
    /// A signal payload (not entries) holds a malformed object.
    #[error("signal payload object {index}: {source}")]
    Payload {
        /// Which object.
        index: u32,
        /// What is wrong.
        source: ScanError,
    },
    /// The gzip body does not inflate: bad header, truncated member, trailing garbage.
    #[error("gzip body is invalid after {inflated} inflated bytes: {reason}")]
    Gzip {
        /// Bytes produced before the failure.
        inflated: usize,
        /// The inflater's message.
        reason: String,
    },
    /// The gzip body inflates past the limit (a gzip bomb, or a limit set too low).
    #[error("gzip body inflates to more than max_decompressed_bytes = {limit} bytes")]
    Inflated {
        /// The configured limit.
        limit: usize,
    },
    /// A JSON frame put a string in element 1; packed bytes cannot travel in JSON.
    #[error("JSON frame has a string as element 1; PackedForward is MessagePack only")]
    JsonPacked,
}

impl DecodeError {
    /// The byte offset within the frame (or the inflated body) where the problem was
    /// found, when one is meaningful; for the connection's one-line close reason.
    pub fn offset(&self) -> Option<usize> {
        match self {
            DecodeError::Malformed(e)
            | DecodeError::Entry { source: e, .. }
            | DecodeError::Payload { source: e, .. } => Some(e.offset()),
            DecodeError::Trailing { offset, .. }
            | DecodeError::JsonStart { offset, .. }
            | DecodeError::JsonTooDeep { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// Wraps a problem inside entry `index`.
    pub(super) fn entry(index: u32) -> impl Fn(ScanError) -> DecodeError {
        move |source| DecodeError::Entry { index, source }
    }
}
