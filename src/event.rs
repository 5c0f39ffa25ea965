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

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`): the one calendar conversion tidepool needs,
/// for stdout lines and HTTP `Date` headers, without a date-time dependency.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
