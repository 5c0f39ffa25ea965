//! Walks validated entry bytes without building values.
//!
//! An entry is a 2-element array `[time, record]` of any header width (reference,
//! section 2); `time` is an integer, a float, an EventTime (ext type 0, 8 bytes:
//! section 3) or Fluent Bit 5's `[time, {metadata}]`.

use super::ScanError;
use super::head::{Cursor, Head, truncated};
use super::scan::{Scanner, check_value};
use crate::event::EventTime;

/// One `[time, record]` entry, borrowed from the entry bytes.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The event time (integer seconds, float, or EventTime).
    pub time: EventTime,
    /// Fluent Bit 5 metadata map bytes from `[[time, {metadata}], record]`, if present.
    pub metadata: Option<&'a [u8]>,
    /// The record's MessagePack bytes, untouched.
    pub record: &'a [u8],
    /// The whole entry's bytes.
    pub raw: &'a [u8],
}

/// Iterates the entries of a buffer the frame scanner already validated.
///
/// Allocation-free: records are skipped with a single counter, not a stack. Bytes that
/// were not validated still cannot cause a panic; the first bad entry yields an error
/// and ends the iteration.
pub fn entries(buf: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, super::ScanError>> {
    Entries {
        buf,
        pos: 0,
        failed: false,
    }
}

struct Entries<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, ScanError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match read_entry(self.buf, self.pos, None) {
            Ok((e, end)) => {
                self.pos = end;
                Some(Ok(e))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A time read from the wire, with whether Fluentd would call it zero (`time.to_i == 0`),
/// which Message and Forward modes replace by the arrival time.
#[derive(Clone, Copy, Debug)]
pub struct TimeRead {
    /// The decoded time.
    pub time: EventTime,
    /// True when the whole-seconds part is 0.
    pub zero: bool,
}

const NANOS: u32 = 1_000_000_000;

/// Reads one time value (integer, float or EventTime; not nil, not the metadata form).
pub fn read_time(cur: &mut Cursor<'_>) -> Result<TimeRead, ScanError> {
    let at = cur.pos;
    let bad = |what| ScanError::Entry { offset: at, what };
    let head = cur.head()?;
    let time = match head {
        Head::UInt(n) => EventTime {
            secs: i64::try_from(n).map_err(|_| bad("time does not fit a signed 64-bit integer"))?,
            nanos: 0,
        },
        Head::Int(i) => EventTime { secs: i, nanos: 0 },
        Head::Float(f) => {
            if !f.is_finite() || f.abs() >= 9.0e15 {
                return Err(bad("time is a float that is not finite or out of range"));
            }
            let zero = f.trunc() == 0.0;
            let floor = f.floor();
            let mut secs = floor as i64;
            let mut nanos = ((f - floor) * 1e9).round() as u32;
            if nanos >= NANOS {
                secs += 1;
                nanos = 0;
            }
            return Ok(TimeRead {
                time: EventTime { secs, nanos },
                zero,
            });
        }
        Head::Ext { ty: 0, len: 8 } => {
            let b: [u8; 8] = cur.body(8)?.try_into().map_err(|_| truncated(at))?;
            let nanos = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            if nanos >= NANOS {
                return Err(bad("EventTime nanoseconds are 1000000000 or more"));
            }
            EventTime {
                secs: i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                nanos,
            }
        }
        Head::Ext { ty: 0, .. } => {
            return Err(bad(
                "time is an EventTime (ext 0) whose length is not 8 bytes (4 seconds + 4 nanoseconds)",
            ));
        }
        Head::Ext { ty: -1, .. } => {
            return Err(bad(
                "time is a msgpack Timestamp (ext -1), expected integer, float or EventTime (ext 0)",
            ));
        }
        other => return Err(bad(time_type_error(&other))),
    };
    Ok(TimeRead {
        time,
        zero: time.secs == 0,
    })
}

/// The message for a time of the wrong type, naming the type found.
pub fn time_type_error(head: &Head) -> &'static str {
    match head {
        Head::Nil => "time is nil, expected integer, float or EventTime",
        Head::Bool(_) => "time is a boolean, expected integer, float or EventTime",
        Head::Str(_) => "time is a string, expected integer, float or EventTime",
        Head::Bin(_) => "time is a binary, expected integer, float or EventTime",
        Head::Ext { .. } => {
            "time is an extension of unknown type, expected integer, float or EventTime (ext 0)"
        }
        Head::Array(_) => "time is an array other than [time, {metadata}]",
        Head::Map(_) => "time is a map, expected integer, float or EventTime",
        Head::UInt(_) | Head::Int(_) | Head::Float(_) => "time is out of range",
    }
}

/// Reads the `[time, {metadata}]` form after its 2-element array header; returns the
/// time and the metadata map's byte range.
pub fn read_meta_time(
    cur: &mut Cursor<'_>,
    check: Option<&mut Scanner>,
) -> Result<(TimeRead, (usize, usize)), ScanError> {
    let time = read_time(cur)?;
    let at = cur.pos;
    let mut peek = *cur;
    match peek.head()? {
        Head::Map(_) => {}
        _ => {
            return Err(ScanError::Entry {
                offset: at,
                what: "time is [time, metadata] but metadata is not a map",
            });
        }
    }
    value(cur, check)?;
    Ok((time, (at, cur.pos)))
}

/// Moves past one value, validating it with `check` when given.
#[inline]
pub fn value(cur: &mut Cursor<'_>, check: Option<&mut Scanner>) -> Result<usize, ScanError> {
    let start = cur.pos;
    match check {
        Some(s) => cur.pos = check_value(s, cur.buf, cur.pos)?,
        None => {
            cur.skip()?;
        }
    }
    Ok(start)
}

/// Reads the entry at `pos` of a complete buffer; with `check`, the record (and any
/// metadata) is validated for form and depth, else only skipped.
pub fn read_entry<'a>(
    buf: &'a [u8],
    pos: usize,
    mut check: Option<&mut Scanner>,
) -> Result<(Entry<'a>, usize), ScanError> {
    let (time, meta, mut cur) = read_head_and_time(buf, pos, check.as_deref_mut())?;
    let rec = value(&mut cur, check)?;
    let end = cur.pos;
    let entry = Entry {
        time,
        metadata: meta.and_then(|(a, b)| buf.get(a..b)),
        record: buf.get(rec..end).unwrap_or_default(),
        raw: buf.get(pos..end).unwrap_or_default(),
    };
    Ok((entry, end))
}

/// The time of the validated entry at `pos` and where its record starts, without
/// reading the record: for consumers that walk the record anyway (the JSON
/// transcoder), so each record is read once on the flush path.
pub fn entry_head(buf: &[u8], pos: usize) -> Result<(EventTime, usize), ScanError> {
    let (time, _, cur) = read_head_and_time(buf, pos, None)?;
    Ok((time, cur.pos))
}

/// An entry read up to its record: the time, the metadata's byte range (Fluent Bit 5's
/// `[time, {metadata}]`), and a cursor at the record.
type EntryHead<'a> = (EventTime, Option<(usize, usize)>, Cursor<'a>);

/// Reads an entry's array header and its time (plain or `[time, {metadata}]`).
fn read_head_and_time<'a>(
    buf: &'a [u8],
    pos: usize,
    check: Option<&mut Scanner>,
) -> Result<EntryHead<'a>, ScanError> {
    // Fast path for what Fluent Bit and Fluentd send: fixarray(2), EventTime fixext8.
    if let Some(&[0x92, 0xd7, 0x00, s0, s1, s2, s3, n0, n1, n2, n3]) =
        pos.checked_add(11).and_then(|end| buf.get(pos..end))
    {
        let nanos = u32::from_be_bytes([n0, n1, n2, n3]);
        if nanos < NANOS {
            let time = EventTime {
                secs: i64::from(u32::from_be_bytes([s0, s1, s2, s3])),
                nanos,
            };
            return Ok((time, None, Cursor { buf, pos: pos + 11 }));
        }
    }
    let mut cur = Cursor { buf, pos };
    match cur.head()? {
        Head::Array(2) => {}
        Head::Array(_) => {
            return Err(ScanError::Entry {
                offset: pos,
                what: "entry is an array whose length is not 2, expected [time, record]",
            });
        }
        other => {
            return Err(ScanError::Entry {
                offset: pos,
                what: entry_type_error(&other),
            });
        }
    }
    let mut peek = cur;
    let (time, metadata) = match peek.head()? {
        Head::Array(2) => {
            cur = peek;
            let (t, range) = read_meta_time(&mut cur, check)?;
            (t.time, Some(range))
        }
        _ => (read_time(&mut cur)?.time, None),
    };
    Ok((time, metadata, cur))
}

/// The message for an entry that is not an array, naming the type found.
pub fn entry_type_error(head: &Head) -> &'static str {
    match head {
        Head::Nil => "entry is nil, expected a [time, record] array",
        Head::Bool(_) => "entry is a boolean, expected a [time, record] array",
        Head::UInt(_) | Head::Int(_) => "entry is an integer, expected a [time, record] array",
        Head::Float(_) => "entry is a float, expected a [time, record] array",
        Head::Str(_) => "entry is a string, expected a [time, record] array",
        Head::Bin(_) => "entry is a binary, expected a [time, record] array",
        Head::Ext { .. } => "entry is an extension, expected a [time, record] array",
        Head::Map(_) => "entry is a map, expected a [time, record] array",
        Head::Array(_) => "entry is an array whose length is not 2, expected [time, record]",
    }
}
