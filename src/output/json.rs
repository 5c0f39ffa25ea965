//! MessagePack record bytes to JSON text, exactly: floats round-trip, binary as base64.
//!
//! The transcoder reads MessagePack bytes and writes JSON bytes directly: no
//! intermediate value tree, no allocation per value (only a non-string map key needs a
//! small scratch buffer). Every length is checked against the bytes present, nesting is
//! bounded by [`MAX_DEPTH`], and malformed input is an error, never a panic.
//!
//! Renderings for what JSON has no native form for (Fluentd's where it is lossless,
//! otherwise chosen so no information is lost):
//! - **float32** is widened to f64 and printed as that f64's shortest round-trip form,
//!   as Fluentd (Ruby has only doubles) does: `0.33333334f32` becomes `0.3333333432674408`.
//! - **float64** is printed in its shortest round-trip form; NaN and ±Infinity become `null`.
//! - **bin** becomes a string of its standard base64 (with padding).
//! - **str** that is not valid UTF-8 has each bad sequence replaced by U+FFFD.
//! - **EventTime** (ext type 0, 8 bytes) becomes a number of seconds with exactly nine
//!   fractional digits, `1700000000.123456789`: the text is exact even where an f64 is not.
//! - **other ext** becomes `{"ext":<type>,"data":"<base64>"}`.
//! - **map keys** that are strings stay strings; bin keys become their base64 string;
//!   any other key becomes a string holding its JSON text (`1` → `"1"`, `[1,2]` → `"[1,2]"`).

use crate::event::EventTime;
use crate::msgpack::ScanError;
use base64::Engine as _;
use serde_json::ser::Formatter as _;

/// Deepest nesting of arrays, maps and non-string map keys the transcoder follows.
///
/// The ingest scanner already bounds record depth (64 by default); this is a second,
/// generous guard so a mis-configured or corrupt chunk cannot exhaust the thread stack.
pub const MAX_DEPTH: usize = 128;

/// Appends the JSON form of one MessagePack value, which must fill `value` exactly.
///
/// On error `out` may hold a partial rendering; callers discard it.
pub fn write_json(value: &[u8], out: &mut Vec<u8>) -> Result<(), ScanError> {
    let mut r = Reader { buf: value, pos: 0 };
    write_value(&mut r, out, 0)?;
    r.finish()
}

/// A key and value to put first in a map record, ahead of the record's own keys.
#[derive(Clone, Copy, Debug)]
pub enum Injected<'a> {
    /// A JSON string.
    Str(&'a str),
    /// An event time, rendered like EventTime inside records (seconds, nine decimals).
    Time(EventTime),
}

/// Appends the JSON of a record with `fields` injected as the first keys of a map.
///
/// This is Fluentd's `<inject>` (`time_key`, `tag_key`) without decoding the record: a
/// record key equal to an injected key is dropped, so each key appears once. A record
/// that is not a map is written unchanged, as Fluentd leaves non-map records alone.
pub fn write_json_injected(
    record: &[u8],
    fields: &[(&str, Injected<'_>)],
    out: &mut Vec<u8>,
) -> Result<(), ScanError> {
    let mut r = Reader {
        buf: record,
        pos: 0,
    };
    injected(&mut r, fields, out)?;
    r.finish()
}

/// Like [`write_json_injected`] (plain [`write_json`] when `fields` is empty) for the
/// value at the start of `buf`, which may be followed by more bytes; returns the
/// value's length. The flush path uses it to walk entries and render records in one
/// pass instead of first skipping each record to find where it ends.
pub fn write_json_prefix(
    buf: &[u8],
    fields: &[(&str, Injected<'_>)],
    out: &mut Vec<u8>,
) -> Result<usize, ScanError> {
    let mut r = Reader { buf, pos: 0 };
    injected(&mut r, fields, out)?;
    Ok(r.pos)
}

fn injected(
    r: &mut Reader<'_>,
    fields: &[(&str, Injected<'_>)],
    out: &mut Vec<u8>,
) -> Result<(), ScanError> {
    let pairs = match r.peek()? {
        0x80..=0x8f | 0xde | 0xdf if !fields.is_empty() => map_len(r)?,
        _ => return write_value(r, out, 0),
    };
    out.push(b'{');
    let mut first = true;
    for (key, value) in fields {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str_bytes(key.as_bytes(), out);
        out.push(b':');
        match value {
            Injected::Str(s) => write_str_bytes(s.as_bytes(), out),
            Injected::Time(t) => write_event_time_number(*t, out),
        }
    }
    for _ in 0..pairs {
        let key_start = r.pos;
        if let Some(key) = r.str_key()?
            && fields.iter().any(|(k, _)| k.as_bytes() == key)
        {
            // Render the replaced value into `out` only to validate and pass it.
            let mark = out.len();
            write_value(r, out, 1)?;
            out.truncate(mark);
            continue;
        }
        r.pos = key_start;
        out.push(b',');
        write_key(r, out, 1)?;
        write_value(r, out, 1)?;
    }
    out.push(b'}');
    Ok(())
}

/// Appends an event time as a JSON number of seconds with nine fractional digits.
///
/// Exact for every EventTime (an f64 is not, past about 2^53 ns), and negative times
/// are rendered by value: `{secs: -2, nanos: 500_000_000}` is `-1.500000000`.
pub fn write_event_time_number(t: EventTime, out: &mut Vec<u8>) {
    let total = i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
    if total < 0 {
        out.push(b'-');
    }
    let abs = total.unsigned_abs();
    // |i64| seconds plus under 5 s of nanoseconds always fits a u64.
    write_u64(u64::try_from(abs / 1_000_000_000).unwrap_or(u64::MAX), out);
    out.push(b'.');
    let mut nanos = abs % 1_000_000_000;
    let mut digits = [b'0'; 9];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    out.extend_from_slice(&digits);
}

/// Bytes being read, with the position of the next unread byte.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &'static str) -> ScanError {
        ScanError::Invalid {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Result<u8, ScanError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("value expected, input ends"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ScanError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.err("declared length runs past the end of the input"))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("bad range"))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ScanError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, ScanError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, ScanError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, ScanError> {
        usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| self.err("length does not fit this platform"))
    }

    /// A str's bytes, consuming it, or `None` (consuming only the marker) for other types.
    fn str_key(&mut self) -> Result<Option<&'a [u8]>, ScanError> {
        let marker = self.byte()?;
        self.str_body(marker)
    }

    /// The bytes of a str whose marker was just read, or `None` if it is not a str marker.
    fn str_body(&mut self, marker: u8) -> Result<Option<&'a [u8]>, ScanError> {
        let len = match marker {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.u16()?,
            0xdb => self.u32()?,
            _ => return Ok(None),
        };
        self.take(len).map(Some)
    }

    fn finish(&self) -> Result<(), ScanError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes after the value"))
        }
    }
}

/// Reads a map header, returning its pair count.
fn map_len(r: &mut Reader<'_>) -> Result<usize, ScanError> {
    let marker = r.byte()?;
    map_len_after(r, marker)
}

/// The pair count of a map whose marker was just read.
fn map_len_after(r: &mut Reader<'_>, marker: u8) -> Result<usize, ScanError> {
    match marker {
        m @ 0x80..=0x8f => Ok(usize::from(m & 0x0f)),
        0xde => r.u16(),
        0xdf => r.u32(),
        _ => Err(r.err("map expected")),
    }
}

/// Integers and floats go through serde_json's formatter (itoa / shortest float), which
/// writes into a `Vec` and so cannot fail.
fn write_i64(v: i64, out: &mut Vec<u8>) {
    let _ = serde_json::ser::CompactFormatter.write_i64(out, v);
}

fn write_u64(v: u64, out: &mut Vec<u8>) {
    let _ = serde_json::ser::CompactFormatter.write_u64(out, v);
}

fn write_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        let _ = serde_json::ser::CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_base64(data: &[u8], out: &mut Vec<u8>) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    // The input is in memory, so its base64 length fits too; 0 only on absurd overflow.
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    match out
        .get_mut(start..)
        .map(|tail| engine.encode_slice(data, tail))
    {
        Some(Ok(n)) => out.truncate(start + n),
        _ => out.truncate(start),
    }
}

/// Appends `bytes` as a JSON string; invalid UTF-8 sequences become U+FFFD.
pub(crate) fn write_str_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    // Fast path for the common case, printable ASCII with nothing to escape: one check
    // pass and one copy, skipping UTF-8 validation.
    if bytes
        .iter()
        .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
    {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => write_escaped(s, out),
        Err(_) => write_escaped(&String::from_utf8_lossy(bytes), out),
    }
}

/// Appends `s` quoted, escaping quote, backslash and control characters only.
fn write_escaped(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
        if esc.is_empty() {
            let hex = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ];
            out.extend_from_slice(&hex);
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

fn write_ext(r: &mut Reader<'_>, len: usize, out: &mut Vec<u8>) -> Result<(), ScanError> {
    let ty = i8::from_be_bytes(r.array()?);
    let data = r.take(len)?;
    match (ty, <[u8; 8]>::try_from(data)) {
        (0, Ok(b)) => {
            let [s0, s1, s2, s3, n0, n1, n2, n3] = b;
            let t = EventTime {
                secs: i64::from(u32::from_be_bytes([s0, s1, s2, s3])),
                nanos: u32::from_be_bytes([n0, n1, n2, n3]),
            };
            write_event_time_number(t, out);
        }
        _ => {
            out.extend_from_slice(b"{\"ext\":");
            write_i64(i64::from(ty), out);
            out.extend_from_slice(b",\"data\":\"");
            write_base64(data, out);
            out.extend_from_slice(b"\"}");
        }
    }
    Ok(())
}

/// Writes one map key followed by `:`.
fn write_key(r: &mut Reader<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), ScanError> {
    let start = r.pos;
    if let Some(key) = r.str_key()? {
        write_str_bytes(key, out);
    } else {
        r.pos = start;
        match r.peek()? {
            0xc4..=0xc6 => write_value(r, out, depth)?,
            _ => {
                let mut scratch = Vec::new();
                write_value(r, &mut scratch, depth)?;
                write_str_bytes(&scratch, out);
            }
        }
    }
    out.push(b':');
    Ok(())
}

/// Writes the value at `r` and advances past it. Recursion is bounded by [`MAX_DEPTH`].
fn write_value(r: &mut Reader<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), ScanError> {
    if depth >= MAX_DEPTH {
        return Err(r.err("nesting deeper than the transcoder's limit of 128"));
    }
    let marker = r.byte()?;
    match marker {
        0x00..=0x7f => write_u64(u64::from(marker), out),
        0xe0..=0xff => write_i64(i64::from(marker as i8), out),
        0xc0 => out.extend_from_slice(b"null"),
        0xc2 => out.extend_from_slice(b"false"),
        0xc3 => out.extend_from_slice(b"true"),
        0xcc => write_u64(u64::from(r.byte()?), out),
        0xcd => write_u64(u64::from(u16::from_be_bytes(r.array()?)), out),
        0xce => write_u64(u64::from(u32::from_be_bytes(r.array()?)), out),
        0xcf => write_u64(u64::from_be_bytes(r.array()?), out),
        0xd0 => write_i64(i64::from(i8::from_be_bytes(r.array()?)), out),
        0xd1 => write_i64(i64::from(i16::from_be_bytes(r.array()?)), out),
        0xd2 => write_i64(i64::from(i32::from_be_bytes(r.array()?)), out),
        0xd3 => write_i64(i64::from_be_bytes(r.array()?), out),
        0xca => write_f64(f64::from(f32::from_be_bytes(r.array()?)), out),
        0xcb => write_f64(f64::from_be_bytes(r.array()?), out),
        0xa0..=0xbf | 0xd9..=0xdb => {
            let s = r.str_body(marker)?.ok_or_else(|| r.err("str expected"))?;
            write_str_bytes(s, out);
        }
        0xc4..=0xc6 => {
            let len = match marker {
                0xc4 => usize::from(r.byte()?),
                0xc5 => r.u16()?,
                _ => r.u32()?,
            };
            out.push(b'"');
            write_base64(r.take(len)?, out);
            out.push(b'"');
        }
        0xd4 => write_ext(r, 1, out)?,
        0xd5 => write_ext(r, 2, out)?,
        0xd6 => write_ext(r, 4, out)?,
        0xd7 => write_ext(r, 8, out)?,
        0xd8 => write_ext(r, 16, out)?,
        0xc7 => {
            let len = usize::from(r.byte()?);
            write_ext(r, len, out)?;
        }
        0xc8 => {
            let len = r.u16()?;
            write_ext(r, len, out)?;
        }
        0xc9 => {
            let len = r.u32()?;
            write_ext(r, len, out)?;
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let len = match marker {
                0xdc => r.u16()?,
                0xdd => r.u32()?,
                m => usize::from(m & 0x0f),
            };
            out.push(b'[');
            for i in 0..len {
                if i > 0 {
                    out.push(b',');
                }
                write_value(r, out, depth + 1)?;
            }
            out.push(b']');
        }
        0x80..=0x8f | 0xde | 0xdf => {
            let pairs = map_len_after(r, marker)?;
            out.push(b'{');
            for i in 0..pairs {
                if i > 0 {
                    out.push(b',');
                }
                write_key(r, out, depth + 1)?;
                write_value(r, out, depth + 1)?;
            }
            out.push(b'}');
        }
        0xc1 => return Err(r.err("byte 0xc1 is never used in MessagePack")),
    }
    Ok(())
}
