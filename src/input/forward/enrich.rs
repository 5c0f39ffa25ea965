//! Adds keys to every map record of a batch (`source_address_key`,
//! `source_hostname_key`) by rewriting map headers, without decoding values.

use crate::msgpack::{ScanError, entries, write};
use bytes::Bytes;

/// Returns the entries with `extra` keys prepended to every map record; other records
/// (arrays, strings) pass unchanged, as Fluentd leaves them.
pub fn add_keys(buf: &Bytes, extra: &[(&str, String)]) -> Result<Bytes, ScanError> {
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 4);
    for entry in entries(buf) {
        let entry = entry?;
        let Some((pairs, header_len)) = map_header(entry.record) else {
            out.extend_from_slice(entry.raw);
            continue;
        };
        // raw = array header, time, record: copy everything before the record as is.
        let before = entry.raw.len().saturating_sub(entry.record.len());
        out.extend_from_slice(&entry.raw[..before]);
        write::container(&mut out, pairs as usize + extra.len(), true);
        for (k, v) in extra {
            write::str(&mut out, k);
            write::str(&mut out, v);
        }
        out.extend_from_slice(&entry.record[header_len..]);
    }
    Ok(Bytes::from(out))
}

/// A map's pair count and header length, or None when the value is not a map.
pub fn map_header(value: &[u8]) -> Option<(u32, usize)> {
    match *value.first()? {
        b @ 0x80..=0x8f => Some((u32::from(b & 0x0f), 1)),
        0xde => {
            let b = value.get(1..3)?;
            Some((u32::from(u16::from_be_bytes([b[0], b[1]])), 3))
        }
        0xdf => {
            let b = value.get(1..5)?;
            Some((u32::from_be_bytes([b[0], b[1], b[2], b[3]]), 5))
        }
        _ => None,
    }
}
