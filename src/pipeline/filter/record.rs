//! Between entry bytes and what filters work on: a map record split into its
//! top-level key/value pairs, each still MessagePack bytes until a filter reads it.
//!
//! Filters never build a full value tree: a record is split once (one pass over
//! its bytes, no allocation per field), values are read in place when a rule
//! needs one, and the record is re-encoded by concatenating the pairs' bytes.
//! Entries are re-encoded as `[time, record]` with the time bytes exactly as
//! received (EventTime, integer, float or Fluent Bit's `[time, {metadata}]`).

use crate::msgpack::head::{Cursor, Head};
use crate::msgpack::write;
use crate::output::json::write_json;
use std::borrow::Cow;

/// MessagePack bytes of one value, borrowed from the batch (or from something
/// that outlives the event), or built by a filter.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    /// Borrowed bytes.
    Raw(&'a [u8]),
    /// Bytes a filter produced.
    Owned(Vec<u8>),
}

impl Val<'_> {
    /// The value's MessagePack bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Val::Raw(b) => b,
            Val::Owned(b) => b,
        }
    }
}

/// A map key: the encoded key as received (any type), or a string a filter set.
#[derive(Clone, Debug)]
pub enum Key<'a> {
    /// The key's MessagePack bytes as received.
    Raw(&'a [u8]),
    /// A string key set by a filter.
    Name(Cow<'a, str>),
}

impl Key<'_> {
    /// Whether this is the string key `name`.
    pub fn is(&self, name: &str) -> bool {
        match self {
            Key::Name(n) => n == name,
            Key::Raw(b) => match b.split_first() {
                // fixstr, the usual key: compare without decoding a header.
                Some((&m, body)) if m & 0xe0 == 0xa0 => body == name.as_bytes(),
                _ => str_body(b).is_some_and(|s| s == name.as_bytes()),
            },
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Key::Raw(b) => out.extend_from_slice(b),
            Key::Name(n) => write::str(out, n),
        }
    }
}

/// One top-level key/value pair of a map record.
#[derive(Clone, Debug)]
pub struct Pair<'a> {
    /// The key.
    pub key: Key<'a>,
    /// The value.
    pub val: Val<'a>,
}

/// A map record as pairs, in the order received.
#[derive(Clone, Debug, Default)]
pub struct Pairs<'a>(pub Vec<Pair<'a>>);

impl<'a> Pairs<'a> {
    /// Splits a map record; None when `record` is not a map (or is malformed).
    pub fn split(record: &'a [u8]) -> Option<Pairs<'a>> {
        Pairs::split_into(record, Vec::new())
    }

    /// [`Pairs::split`] reusing `pairs`' allocation (cleared first).
    pub fn split_into(record: &'a [u8], mut pairs: Vec<Pair<'a>>) -> Option<Pairs<'a>> {
        pairs.clear();
        let mut cur = Cursor::new(record);
        let Ok(Head::Map(n)) = cur.head() else {
            return None;
        };
        // Bounded by the bytes present: every pair takes at least 2 bytes.
        pairs.reserve((n as usize).min(record.len() / 2));
        let mut pos = cur.pos;
        for _ in 0..n {
            let v = skip(record, pos)?;
            let end = skip(record, v)?;
            pairs.push(Pair {
                key: Key::Raw(record.get(pos..v)?),
                val: Val::Raw(record.get(v..end)?),
            });
            pos = end;
        }
        Some(Pairs(pairs))
    }

    /// The value of the string key `name` (the last one if repeated).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|p| p.key.is(name))
            .map(|p| p.val.bytes())
    }

    /// The value at a key path: a top-level key, then keys of nested maps.
    pub fn lookup(&self, path: &[String]) -> Option<&[u8]> {
        let (first, rest) = path.split_first()?;
        let mut v = self.get(first)?;
        for key in rest {
            v = map_get(v, key)?;
        }
        Some(v)
    }

    /// Sets `name` to `val`, in place if present (keeping its position, dropping any
    /// repeats of the key), else last.
    pub fn set(&mut self, name: &str, val: Val<'a>) {
        self.set_key(name, || Key::Name(Cow::Owned(name.to_string())), val);
    }

    /// [`Pairs::set`] with the key already encoded as a MessagePack string (no
    /// allocation for a new key).
    pub fn set_encoded(&mut self, name: &str, encoded: &'a [u8], val: Val<'a>) {
        self.set_key(name, || Key::Raw(encoded), val);
    }

    fn set_key(&mut self, name: &str, key: impl FnOnce() -> Key<'a>, val: Val<'a>) {
        match self.0.iter().position(|p| p.key.is(name)) {
            Some(i) => {
                if let Some(p) = self.0.get_mut(i) {
                    p.val = val;
                }
                let rest = i + 1;
                if self
                    .0
                    .get(rest..)
                    .is_some_and(|r| r.iter().any(|p| p.key.is(name)))
                {
                    let mut k = 0;
                    self.0.retain(|p| {
                        k += 1;
                        k <= rest || !p.key.is(name)
                    });
                }
            }
            None => self.0.push(Pair { key: key(), val }),
        }
    }

    /// Removes every pair with the string key `name`; true when one was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|p| !p.key.is(name));
        self.0.len() != before
    }

    /// Appends the record as a MessagePack map.
    pub fn write(&self, out: &mut Vec<u8>) {
        write::container(out, self.0.len(), true);
        for p in &self.0 {
            p.key.write(out);
            out.extend_from_slice(p.val.bytes());
        }
    }
}

/// The end of the value at `pos`: one-byte values and short strings (most keys and
/// many values) inline, the rest through the scanner's skip.
#[inline(always)]
fn skip(buf: &[u8], pos: usize) -> Option<usize> {
    let m = *buf.get(pos)?;
    match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(pos + 1),
        0xa0..=0xbf => {
            let end = pos + 1 + usize::from(m & 0x1f);
            (end <= buf.len()).then_some(end)
        }
        _ => crate::msgpack::scan::skip_value(buf, pos).ok(),
    }
}

/// The body of a MessagePack string, if `b` is exactly one string.
pub fn str_body(b: &[u8]) -> Option<&[u8]> {
    let mut cur = Cursor::new(b);
    match cur.head().ok()? {
        Head::Str(n) => cur.body(n).ok(),
        _ => None,
    }
}

/// The value of string key `key` in the map `map` (its last occurrence).
pub fn map_get<'b>(map: &'b [u8], key: &str) -> Option<&'b [u8]> {
    let mut cur = Cursor::new(map);
    let Ok(Head::Map(n)) = cur.head() else {
        return None;
    };
    let mut found = None;
    for _ in 0..n {
        let k = cur.skip().ok()?;
        let v = cur.skip().ok()?;
        if str_body(map.get(k..v)?) == Some(key.as_bytes()) {
            found = map.get(v..cur.pos);
        }
    }
    found
}

/// Appends [`text`] of `v` to `out`, without an intermediate string for numbers.
pub fn push_text(v: Option<&[u8]>, out: &mut String) {
    use std::fmt::Write as _;
    let mut cur = Cursor::new(v.unwrap_or_default());
    // Writing to a String cannot fail.
    match cur.head() {
        Ok(Head::UInt(n)) => {
            let _ = write!(out, "{n}");
        }
        Ok(Head::Int(n)) => {
            let _ = write!(out, "{n}");
        }
        Ok(Head::Str(n)) => match cur.body(n).map(std::str::from_utf8) {
            Ok(Ok(s)) => out.push_str(s),
            _ => out.push_str(&text(v)),
        },
        _ => out.push_str(&text(v)),
    }
}

/// A value as text, the way Fluentd's `to_s` shows it to regexes and templates:
/// strings as they are, nil (or a missing key) as "", numbers and booleans in
/// their usual form, anything else as JSON.
pub fn text(v: Option<&[u8]>) -> Cow<'_, str> {
    let Some(v) = v else {
        return Cow::Borrowed("");
    };
    let mut cur = Cursor::new(v);
    match cur.head() {
        Ok(Head::Str(n)) | Ok(Head::Bin(n)) => match cur.body(n) {
            Ok(b) => String::from_utf8_lossy(b),
            Err(_) => Cow::Borrowed(""),
        },
        Ok(Head::Nil) => Cow::Borrowed(""),
        Ok(Head::Bool(b)) => Cow::Borrowed(if b { "true" } else { "false" }),
        Ok(Head::UInt(n)) => Cow::Owned(n.to_string()),
        Ok(Head::Int(n)) => Cow::Owned(n.to_string()),
        Ok(Head::Float(f)) => Cow::Owned(format!("{f:?}")),
        Ok(_) => {
            let mut out = Vec::new();
            match write_json(v, &mut out) {
                Ok(()) => Cow::Owned(String::from_utf8_lossy(&out).into_owned()),
                Err(_) => Cow::Borrowed(""),
            }
        }
        Err(_) => Cow::Borrowed(""),
    }
}

/// A string as a MessagePack value.
pub fn str_value(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 5);
    write::str(&mut out, s);
    out
}

/// A string as a MessagePack value, reusing the string's buffer.
pub fn str_value_owned(s: String) -> Vec<u8> {
    let n = s.len();
    let header: &[u8] = &if n < 32 {
        [0xa0 | n as u8, 0, 0, 0, 0]
    } else if n <= 0xff {
        [0xd9, n as u8, 0, 0, 0]
    } else if n <= 0xffff {
        let b = (n as u16).to_be_bytes();
        [0xda, b[0], b[1], 0, 0]
    } else {
        let b = (n as u32).to_be_bytes();
        [0xdb, b[0], b[1], b[2], b[3]]
    };
    let len = match header.first() {
        Some(0xd9) => 2,
        Some(0xda) => 3,
        Some(0xdb) => 5,
        _ => 1,
    };
    let mut v = s.into_bytes();
    v.splice(0..0, header.iter().take(len).copied());
    v
}

/// The bytes before the record in an entry (the time, as received); `raw` is the
/// whole entry and `record` its record, a suffix of it.
pub fn time_bytes<'b>(raw: &'b [u8], record: &[u8]) -> &'b [u8] {
    let header = match raw.first() {
        Some(0xdc) => 3,
        Some(0xdd) => 5,
        _ => 1,
    };
    raw.get(header..raw.len().saturating_sub(record.len()))
        .unwrap_or_default()
}

/// Appends `[time, record]` with the time bytes as received.
pub fn write_entry(out: &mut Vec<u8>, time: &[u8], record: impl FnOnce(&mut Vec<u8>)) {
    out.push(0x92);
    out.extend_from_slice(time);
    record(out);
}

/// A JSON value as MessagePack: integers in their shortest form, other numbers
/// as float64, objects as maps in the value's key order.
pub fn json_to_msgpack(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::Null => out.push(0xc0),
        serde_json::Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        serde_json::Value::Number(n) => number(n, out),
        serde_json::Value::String(s) => write::str(out, s),
        serde_json::Value::Array(a) => {
            write::container(out, a.len(), false);
            for x in a {
                json_to_msgpack(x, out);
            }
        }
        serde_json::Value::Object(m) => {
            write::container(out, m.len(), true);
            for (k, x) in m {
                write::str(out, k);
                json_to_msgpack(x, out);
            }
        }
    }
}

fn number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        write::uint(out, u);
    } else if let Some(i) = n.as_i64() {
        write::int(out, i);
    } else {
        write::f64(out, n.as_f64().unwrap_or(0.0));
    }
}

/// Deepest JSON nesting the parser filter follows (serde_json's own limit is 128).
const JSON_DEPTH: usize = 64;

/// Parses a JSON object into pairs of MessagePack bytes, keys in the order
/// written (serde_json's `Value` would sort them). None unless it is one object.
pub fn json_object_pairs(text: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let v: Ordered = serde_json::from_str(text).ok()?;
    match v {
        Ordered::Object(pairs) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let mut out = Vec::new();
                    v.encode(&mut out, 0);
                    (k, out)
                })
                .collect(),
        ),
        _ => None,
    }
}

/// A JSON value keeping object key order.
enum Ordered {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Ordered {
    fn encode(&self, out: &mut Vec<u8>, depth: usize) {
        if depth > JSON_DEPTH {
            out.push(0xc0);
            return;
        }
        match self {
            Ordered::Null => out.push(0xc0),
            Ordered::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Ordered::Number(n) => number(n, out),
            Ordered::String(s) => write::str(out, s),
            Ordered::Array(a) => {
                write::container(out, a.len(), false);
                for x in a {
                    x.encode(out, depth + 1);
                }
            }
            Ordered::Object(m) => {
                write::container(out, m.len(), true);
                for (k, x) in m {
                    write::str(out, k);
                    x.encode(out, depth + 1);
                }
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Ordered, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Ordered::Null, Ordered::Number))
            }
            fn visit_str<E>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Ordered, E> {
                Ok(Ordered::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = seq.next_element()? {
                    items.push(x);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut pairs: Vec<(String, Ordered)> = Vec::new();
                let mut index: std::collections::HashMap<String, usize> =
                    std::collections::HashMap::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    // A repeated key overrides in place, as in serde_json and Ruby.
                    match index.get(&k).and_then(|&i| pairs.get_mut(i)) {
                        Some(slot) => slot.1 = v,
                        None => {
                            index.insert(k.clone(), pairs.len());
                            pairs.push((k, v));
                        }
                    }
                }
                Ok(Ordered::Object(pairs))
            }
        }
        d.deserialize_any(V)
    }
}
