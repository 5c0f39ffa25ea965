//! Output tests: the transcoder (table, vectors, properties), stdout lines, file output.

mod file;
mod json;
mod props;
mod stdout;
mod vectors;

use super::{Chunk, ChunkId};
use crate::event::EventTime;
use rmpv::Value;

/// MessagePack bytes of `v`.
fn mp(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encoding to a Vec cannot fail");
    out
}

/// A chunk holding `[EventTime, record]` entries under key `tag`.
fn chunk(tag: &str, events: &[(EventTime, Value)]) -> Chunk {
    let mut entries = Vec::new();
    for (t, record) in events {
        entries.push(0x92);
        t.encode(&mut entries);
        entries.extend_from_slice(&mp(record));
    }
    Chunk {
        key: tag.to_string(),
        id: ChunkId([7; 16]),
        entries: entries.into(),
        records: u32::try_from(events.len()).expect("few events"),
    }
}

/// A map record from string keys.
fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// The JSON text of `bytes`, which must transcode.
fn json_of(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    super::json::write_json(bytes, &mut out).expect("valid MessagePack transcodes");
    String::from_utf8(out).expect("the transcoder writes UTF-8")
}
