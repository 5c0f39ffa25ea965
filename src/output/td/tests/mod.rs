//! td output tests: names, request format, body bytes, config, and uploads against
//! the mock Treasure Data API on a real socket.

mod body;
mod config;
mod mock;
mod names;
mod props;
mod request;
mod tls;
mod upload;

use crate::event::EventTime;
use crate::output::{Chunk, ChunkId};
use rmpv::Value;

/// MessagePack bytes of `v`.
fn mp(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encoding to a Vec cannot fail");
    out
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

/// The time encodings an entry can carry.
#[derive(Clone, Copy, Debug)]
enum T {
    /// EventTime (ext 0) with nanoseconds.
    Event(u32, u32),
    /// A plain integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// `[EventTime, {metadata}]` (Fluent Bit 5).
    Meta(u32),
}

/// One `[time, record]` entry's bytes; `record` is raw MessagePack.
fn entry(t: T, record: &[u8]) -> Vec<u8> {
    let mut out = vec![0x92];
    match t {
        T::Event(s, n) => EventTime {
            secs: i64::from(s),
            nanos: n,
        }
        .encode(&mut out),
        T::Int(i) => out.extend_from_slice(&mp(&Value::from(i))),
        T::Float(f) => out.extend_from_slice(&mp(&Value::F64(f))),
        T::Meta(s) => {
            out.push(0x92);
            EventTime {
                secs: i64::from(s),
                nanos: 5,
            }
            .encode(&mut out);
            out.extend_from_slice(&mp(&map(&[("m", Value::from(1))])));
        }
    }
    out.extend_from_slice(record);
    out
}

/// A chunk keyed `key` with id `[id; 16]` from whole entries.
fn chunk(key: &str, id: u8, entries: &[Vec<u8>]) -> Chunk {
    Chunk {
        key: key.to_string(),
        id: ChunkId([id; 16]),
        entries: entries.concat().into(),
        records: u32::try_from(entries.len()).expect("few entries"),
    }
}

/// A chunk of `records` as EventTime entries at `secs` (+ 123 ns).
fn chunk_of(key: &str, id: u8, secs: u32, records: &[Value]) -> Chunk {
    let entries: Vec<Vec<u8>> = records
        .iter()
        .map(|r| entry(T::Event(secs, 123), &mp(r)))
        .collect();
    chunk(key, id, &entries)
}
