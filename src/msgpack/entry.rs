//! Walks validated entry bytes without building values.
//!
//! TEMPORARY body (output branch): a simple walker built on `rmpv` so output tests run.
//! The frame engineer's fast walker replaces it at merge; the signature is unchanged.

use crate::event::EventTime;
use rmpv::ValueRef;

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
pub fn entries(buf: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, super::ScanError>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let res = entry_at(buf, pos);
        match &res {
            Ok(e) => pos += e.raw.len(),
            Err(_) => pos = buf.len(),
        }
        Some(res)
    })
}

fn invalid(offset: usize, what: &'static str) -> super::ScanError {
    super::ScanError::Invalid { offset, what }
}

/// Reads one value at `pos`, returning it and the offset just past it.
fn value_at(buf: &[u8], pos: usize) -> Result<(ValueRef<'_>, usize), super::ScanError> {
    let mut rest = buf.get(pos..).ok_or(invalid(pos, "entry expected"))?;
    let before = rest.len();
    let v = rmpv::decode::read_value_ref(&mut rest).map_err(|_| invalid(pos, "bad value"))?;
    Ok((v, pos + (before - rest.len())))
}

/// Reads an array header of exactly two elements at `pos`, returning the offset after it.
fn pair_header(buf: &[u8], pos: usize) -> Result<usize, super::ScanError> {
    let mut rest = buf.get(pos..).ok_or(invalid(pos, "entry expected"))?;
    let before = rest.len();
    match rmp::decode::read_array_len(&mut rest) {
        Ok(2) => Ok(pos + (before - rest.len())),
        _ => Err(invalid(pos, "entry is not a 2-element array")),
    }
}

fn time_of(v: &ValueRef<'_>, pos: usize) -> Result<EventTime, super::ScanError> {
    match v {
        ValueRef::Integer(i) => Ok(EventTime {
            secs: i.as_i64().ok_or(invalid(pos, "time out of range"))?,
            nanos: 0,
        }),
        ValueRef::F32(f) => Ok(float_time(f64::from(*f))),
        ValueRef::F64(f) => Ok(float_time(*f)),
        ValueRef::Ext(0, d) if d.len() == 8 => {
            let mut s = [0u8; 4];
            let mut n = [0u8; 4];
            s.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
            n.copy_from_slice(d.get(4..).unwrap_or(&[0; 4]));
            Ok(EventTime {
                secs: i64::from(u32::from_be_bytes(s)),
                nanos: u32::from_be_bytes(n),
            })
        }
        _ => Err(invalid(pos, "time is not an integer, float or EventTime")),
    }
}

fn float_time(f: f64) -> EventTime {
    let secs = f.floor();
    EventTime {
        secs: secs as i64,
        nanos: ((f - secs) * 1e9) as u32,
    }
}

fn entry_at(buf: &[u8], start: usize) -> Result<Entry<'_>, super::ScanError> {
    let time_pos = pair_header(buf, start)?;
    let (tv, record_pos) = value_at(buf, time_pos)?;
    let (time, metadata) = match tv {
        ValueRef::Array(_) => {
            let inner = pair_header(buf, time_pos)?;
            let (t, meta_pos) = value_at(buf, inner)?;
            (time_of(&t, inner)?, buf.get(meta_pos..record_pos))
        }
        other => (time_of(&other, time_pos)?, None),
    };
    let (_, end) = value_at(buf, record_pos)?;
    Ok(Entry {
        time,
        metadata,
        record: buf.get(record_pos..end).unwrap_or_default(),
        raw: buf.get(start..end).unwrap_or_default(),
    })
}
