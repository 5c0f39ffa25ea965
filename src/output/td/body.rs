//! The import body: gzip of concatenated MessagePack maps, one per event, each with
//! `time` = the event's whole seconds (reference, sections 2 and 5).
//!
//! Built straight from a chunk's entry bytes: each record's map header is rewritten
//! and `time` prepended; keys and values are copied, never decoded. A record's own
//! `time` key is removed (the event time always wins, as in fluent-plugin-td). The
//! common record without a `time` key is recognized by one substring search and copied
//! whole; only records holding a 4-byte string `time` somewhere have their keys walked.

use super::config::NonMap;
use crate::msgpack::entries;
use crate::msgpack::head::{Cursor, Head};
use crate::msgpack::write;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use std::io::Write as _;

/// Most keys a row may have, counting `time`: Treasure Data's documented column limit
/// for streaming import (reference, section 5: fluent-plugin-td's `@key_num_limit`).
pub const MAX_KEYS: u32 = 512;

/// `time` as a fixstr key.
const TIME_KEY: &[u8] = b"\xa4time";
/// `value` as a fixstr key, for wrapped non-map records.
const VALUE_KEY: &[u8] = b"\xa5value";

/// What went into a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows written (maps, plus wrapped non-map records).
    pub rows: u64,
    /// Non-map records imported as `{"time", "value"}`.
    pub wrapped: u64,
    /// Non-map records skipped (`non_map = "drop"`).
    pub dropped: u64,
}

/// A finished import body, ready to be sent (and re-sent) as is.
#[derive(Clone, Debug)]
pub struct Body {
    /// The gzip bytes (`Content-Length` is their length).
    pub gz: Bytes,
    /// Lowercase hex MD5 of `gz`, compared with the answer's `md5_hex`.
    pub md5_hex: String,
    /// What the rows are.
    pub counts: RowCounts,
}

/// Appends one row per entry of `entries` to `out` (uncompressed MessagePack).
///
/// Errors (meant to dead-letter the chunk, since no retry can fix them): entry bytes
/// that do not parse, or a map with more than [`MAX_KEYS`] keys once `time` is in.
/// `scratch` holds the byte ranges of `time` keys found in one record; pass the same
/// vector every time to reuse its memory.
pub fn write_rows(
    entry_bytes: &[u8],
    non_map: NonMap,
    out: &mut Vec<u8>,
    scratch: &mut Vec<(usize, usize)>,
) -> Result<RowCounts, String> {
    let mut counts = RowCounts::default();
    for (index, entry) in entries(entry_bytes).enumerate() {
        let entry = entry.map_err(|e| {
            format!("chunk entry {index} cannot be read ({e}); the chunk bytes are corrupt")
        })?;
        let secs = entry.time.secs;
        match map_header(entry.record) {
            Some((pairs, header_len)) => {
                write_map(out, entry.record, pairs, header_len, secs, scratch)
                    .map_err(|e| format!("record {index}: {e}"))?;
                counts.rows += 1;
            }
            None if non_map == NonMap::Wrap => {
                out.push(0x82);
                out.extend_from_slice(TIME_KEY);
                write::int(out, secs);
                out.extend_from_slice(VALUE_KEY);
                out.extend_from_slice(entry.record);
                counts.rows += 1;
                counts.wrapped += 1;
            }
            None => counts.dropped += 1,
        }
    }
    Ok(counts)
}

/// A map's pair count and header length, or None when the value is not a map.
fn map_header(value: &[u8]) -> Option<(u32, usize)> {
    match *value.first()? {
        b @ 0x80..=0x8f => Some((u32::from(b & 0x0f), 1)),
        0xde => {
            let b: [u8; 2] = value.get(1..3)?.try_into().ok()?;
            Some((u32::from(u16::from_be_bytes(b)), 3))
        }
        0xdf => {
            let b: [u8; 4] = value.get(1..5)?.try_into().ok()?;
            Some((u32::from_be_bytes(b), 5))
        }
        _ => None,
    }
}

/// Writes `record` (a map of `pairs` pairs) with `time` = `secs` first and any `time`
/// key of its own left out.
fn write_map(
    out: &mut Vec<u8>,
    record: &[u8],
    pairs: u32,
    header_len: usize,
    secs: i64,
    skip: &mut Vec<(usize, usize)>,
) -> Result<(), String> {
    skip.clear();
    if may_hold_time_key(record.get(header_len..).unwrap_or_default()) {
        find_time_keys(record, header_len, pairs, skip)?;
    }
    let keys = u64::from(pairs) - skip.len() as u64 + 1;
    if keys > u64::from(MAX_KEYS) {
        return Err(format!(
            "map has {keys} keys counting time, Treasure Data imports at most {MAX_KEYS} columns per row"
        ));
    }
    write::container(out, keys as usize, true);
    out.extend_from_slice(TIME_KEY);
    write::int(out, secs);
    let mut from = header_len;
    for &(start, end) in skip.iter() {
        out.extend_from_slice(record.get(from..start).unwrap_or_default());
        from = end;
    }
    out.extend_from_slice(record.get(from..).unwrap_or_default());
    Ok(())
}

/// False only when no `time` string can be in `bytes`: every str header for 4 bytes
/// (`a4`, `d9 04`, `da 00 04`, `db 00 00 00 04`) ends in `a4` or `04`, so a `time`
/// not preceded by one of those is part of something else (`uptime`, `idle_time`).
fn may_hold_time_key(bytes: &[u8]) -> bool {
    memchr::memchr2_iter(0xa4, 0x04, bytes).any(|at| {
        at.checked_add(1)
            .and_then(|from| bytes.get(from..from.checked_add(4)?))
            == Some(b"time".as_slice())
    })
}

/// Records the byte range of every `time` key/value pair of the map in `record`.
fn find_time_keys(
    record: &[u8],
    header_len: usize,
    pairs: u32,
    found: &mut Vec<(usize, usize)>,
) -> Result<(), String> {
    let mut cur = Cursor {
        buf: record,
        pos: header_len,
    };
    let bad = |e| format!("map cannot be read ({e}); the chunk bytes are corrupt");
    for _ in 0..pairs {
        let start = cur.pos;
        let mut key = cur;
        let is_time = match key.head().map_err(bad)? {
            Head::Str(4) => key.body(4).map_err(bad)? == b"time",
            _ => false,
        };
        cur.skip().map_err(bad)?;
        cur.skip().map_err(bad)?;
        if is_time {
            found.push((start, cur.pos));
        }
    }
    Ok(())
}

/// gzip of `rows` at `level` (0-9), appended to `out`.
pub fn gzip(rows: &[u8], level: u32, out: Vec<u8>) -> Vec<u8> {
    let mut enc = GzEncoder::new(out, Compression::new(level.min(9)));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(rows);
    enc.finish().unwrap_or_default()
}

/// Builds the whole body of a chunk: rows, gzip, MD5. `rows` is scratch memory for
/// the uncompressed rows (cleared first), kept by the caller for the next chunk.
pub fn build(
    entry_bytes: &[u8],
    non_map: NonMap,
    level: u32,
    rows: &mut Vec<u8>,
) -> Result<Body, String> {
    rows.clear();
    // Rows are the entries minus array headers plus a `time` key: about the same size.
    rows.reserve(entry_bytes.len().saturating_add(entry_bytes.len() / 8));
    let counts = write_rows(entry_bytes, non_map, rows, &mut Vec::new())?;
    let gz = gzip(rows, level, Vec::with_capacity(rows.len() / 4 + 64));
    let md5_hex = hex::encode(Md5::digest(&gz));
    Ok(Body {
        gz: Bytes::from(gz),
        md5_hex,
        counts,
    })
}
