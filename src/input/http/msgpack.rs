//! MessagePack bodies (`application/msgpack`, or a `msgpack=` form field) to entries.
//!
//! Like Fluentd's msgpack parser the body is a stream of values, each a map (one
//! record), an array of maps (a batch; nil elements are skipped) or nil. Every value
//! is checked by the skip-scanner within the body's length and `max_depth` before
//! anything is copied, so no declared length is ever trusted; records are copied as
//! bytes, only the top-level `time` key is looked at.

use super::{BodyError, Entries, TimeRule, time_from_f64};
use crate::event::EventTime;
use crate::msgpack::head::{Cursor, Head, read_head};
use crate::msgpack::scan::check_value;
use crate::msgpack::{Limits, ScanError, Scanner};

/// Appends the records of `body` to `out`; on error `out` is left as it was.
pub fn decode(
    body: &[u8],
    rule: TimeRule,
    max_depth: usize,
    out: &mut Entries,
) -> Result<(), BodyError> {
    let (len, count) = (out.bytes.len(), out.count);
    decode_inner(body, rule, max_depth, out).map_err(|e| {
        out.bytes.truncate(len);
        out.count = count;
        BodyError(format!("invalid MessagePack body: {e}"))
    })
}

fn decode_inner(
    body: &[u8],
    rule: TimeRule,
    max_depth: usize,
    out: &mut Entries,
) -> Result<(), String> {
    if body.is_empty() {
        return Err("the body is empty".into());
    }
    // A batch's array adds one level above its records.
    let mut scanner = Scanner::new(Limits {
        max_bytes: body.len(),
        max_depth: max_depth.saturating_add(1),
    });
    let mut pos = 0;
    while pos < body.len() {
        let end = check_value(&mut scanner, body, pos).map_err(|e| e.to_string())?;
        let value = body.get(pos..end).unwrap_or_default();
        let mut cur = Cursor::new(value);
        match cur.head().map_err(|e| e.to_string())? {
            Head::Nil => {}
            Head::Map(n) => {
                record(value, cur, n, rule, out).map_err(|e| shifted(e, pos))?;
            }
            Head::Array(n) => {
                for i in 0..n {
                    let at = cur.pos;
                    match cur.head().map_err(|e| e.to_string())? {
                        Head::Nil => {}
                        Head::Map(pairs) => {
                            cur = record(value, cur, pairs, rule, out)
                                .map_err(|e| shifted(e, pos))?;
                        }
                        other => {
                            return Err(format!(
                                "batch element {i} (byte {}) is {}, expected a map",
                                pos + at,
                                other.kind()
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(format!(
                    "value at byte {pos} is {}, expected a map or an array of maps",
                    other.kind()
                ));
            }
        }
        pos = end;
    }
    Ok(())
}

fn shifted(e: String, by: usize) -> String {
    if by == 0 {
        e
    } else {
        format!("{e} (in the value at byte {by})")
    }
}

/// Copies one record whose map header (`pairs` pairs) `cur` has just read, dropping a
/// top-level `time` key under [`TimeRule::RecordKey`]; returns the cursor after it.
fn record<'a>(
    buf: &'a [u8],
    mut cur: Cursor<'a>,
    pairs: u32,
    rule: TimeRule,
    out: &mut Entries,
) -> Result<Cursor<'a>, String> {
    let err = |e: ScanError| e.to_string();
    let start = out.bytes.len();
    out.bytes.push(0x92);
    let (fixed, extract) = match rule {
        TimeRule::Fixed(t) => (t, false),
        TimeRule::RecordKey(t) => (t, true),
        TimeRule::TdRecordTime(t) => (t, false),
    };
    let mut time = fixed;
    let mut kept: Vec<(usize, usize)> = Vec::new();
    for _ in 0..pairs {
        let key_at = cur.pos;
        cur.skip().map_err(err)?;
        let value_at = cur.pos;
        cur.skip().map_err(err)?;
        let end = cur.pos;
        if extract && is_time_key(buf, key_at) {
            time = time_value(buf, value_at, fixed)?;
        } else {
            kept.push((key_at, end));
        }
    }
    time.encode(&mut out.bytes);
    crate::msgpack::write::container(&mut out.bytes, kept.len(), true);
    for (from, to) in kept {
        out.bytes
            .extend_from_slice(buf.get(from..to).ok_or("record is truncated")?);
    }
    match out.count.checked_add(1) {
        Some(c) => out.count = c,
        None => {
            out.bytes.truncate(start);
            return Err("too many records in one request".into());
        }
    }
    Ok(cur)
}

fn is_time_key(buf: &[u8], at: usize) -> bool {
    match read_head(buf, at) {
        Ok(Some((Head::Str(4), n))) => buf.get(at + n..at + n + 4) == Some(b"time"),
        _ => false,
    }
}

/// A record's `time` value as Fluentd's `Time.at` takes it: a number or an EventTime;
/// nil and false mean "now" (`received`).
fn time_value(buf: &[u8], at: usize, received: EventTime) -> Result<EventTime, String> {
    let (head, n) = match read_head(buf, at) {
        Ok(Some(h)) => h,
        _ => return Err(format!("bad time value at byte {at}")),
    };
    let secs = match head {
        Head::Nil | Head::Bool(false) => return Ok(received),
        Head::UInt(u) => u as f64,
        Head::Int(i) => i as f64,
        Head::Float(f) => f,
        Head::Ext { ty: 0, len: 8 } => {
            let body = buf
                .get(at + n..at + n + 8)
                .ok_or_else(|| format!("truncated EventTime at byte {at}"))?;
            let mut s = [0u8; 4];
            let mut ns = [0u8; 4];
            s.copy_from_slice(body.get(..4).unwrap_or(&[0; 4]));
            ns.copy_from_slice(body.get(4..).unwrap_or(&[0; 4]));
            return Ok(EventTime {
                secs: i64::from(u32::from_be_bytes(s)),
                nanos: u32::from_be_bytes(ns).min(999_999_999),
            });
        }
        other => {
            return Err(format!(
                "time is {}, expected a number of seconds since the epoch",
                other.kind()
            ));
        }
    };
    time_from_f64(secs).ok_or_else(|| format!("time {secs} is out of range"))
}
