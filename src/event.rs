//! The unit that travels from an input to the outputs: a tag and MessagePack entry bytes.

use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

/// Fluentd's EventTime (forward protocol reference, section 3): seconds and nanoseconds.
///
/// Seconds are signed because Fluentd accepts 1969 dates as plain negative integers;
/// on the wire an EventTime carries them as an unsigned 32-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds within the second, below 1_000_000_000.
    pub nanos: u32,
}

impl EventTime {
    /// The current wall-clock time; used for the arrival time that replaces a zero or
    /// nil time in Message and Forward mode, as Fluentd's in_forward does.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        EventTime {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// Appends the EventTime as `fixext8` with ext type 0, the form every known client
    /// sends, so re-encoded entries look exactly like the ones that came off the wire.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xd7, 0x00]);
        out.extend_from_slice(&(self.secs as u32).to_be_bytes());
        out.extend_from_slice(&self.nanos.to_be_bytes());
    }
}

/// What a batch carries, from Fluent Bit's `fluent_signal` option (reference, section 4).
///
/// Only logs are `[time, record]` entries; metrics and traces are opaque cmetrics or
/// ctraces objects that must never be stored as log events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Signal {
    /// Ordinary log events (signal 0, or no option).
    #[default]
    Logs,
    /// Any other signal number: metrics (1), traces (2), blobs (3), profiles (4), ...
    Other(u8),
}

/// A batch of events with one tag, as bytes.
///
/// `entries` is the concatenation of `count` MessagePack values, each a 2-element array
/// `[time, record]` already checked by the frame scanner, so consumers can walk it with
/// [`crate::msgpack::entries`] without re-validating. `time` is an integer, a float, an
/// EventTime (ext 0, 8 bytes) or, from Fluent Bit 5, `[time, {metadata}]`.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The event tag, non-empty UTF-8.
    pub tag: String,
    /// Concatenated MessagePack `[time, record]` entries.
    pub entries: Bytes,
    /// How many entries `entries` holds.
    pub count: u32,
    /// Logs, or another Fluent Bit signal whose payload is not entries.
    pub signal: Signal,
}
