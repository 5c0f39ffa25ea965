//! JSON → MessagePack in one pass, straight into the entry buffer: no intermediate
//! values, object keys kept in the order the publisher wrote them (as Fluentd keeps
//! them), integers kept as integers.
//!
//! Containers get a placeholder header that is replaced by the shortest one once the
//! element count is known. Nesting is bounded by serde_json's recursion limit (128), so
//! hostile payloads cannot exhaust the stack.

use crate::msgpack::write;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// What the top level of a JSON payload was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Top {
    /// An object, written as a map with `extra` appended unless the object had that key.
    Object,
    /// Any other value, written as the value of a `{"message": ...}` map.
    Other,
}

/// A key/value pair a record gets (the topic), unless it has the key already.
#[derive(Clone, Copy, Debug)]
pub(super) struct Extra<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

/// Appends the record for `json` to `out`: a JSON object becomes a map (plus `extra`
/// when the object lacks its key); any other value becomes `{"message": value}` (plus
/// `extra`). On error `out` may hold a partial value: the caller truncates it.
pub(super) fn record(
    json: &[u8],
    extra: Option<Extra<'_>>,
    out: &mut Vec<u8>,
) -> Result<Top, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let top = TopSeed { out, extra }.deserialize(&mut de)?;
    de.end()?;
    Ok(top)
}

/// Reserves a map32/array32 header to be patched by [`close`].
fn open(out: &mut Vec<u8>, map: bool) -> usize {
    let at = out.len();
    out.extend_from_slice(&[if map { 0xdf } else { 0xdd }, 0, 0, 0, 0]);
    at
}

/// Replaces the placeholder at `at` with the shortest header for `n` elements.
fn close(out: &mut Vec<u8>, at: usize, n: usize, map: bool) {
    let mut head = Vec::with_capacity(5);
    write::container(&mut head, n, map);
    let end = at.saturating_add(5).min(out.len());
    out.splice(at..end, head);
}

/// The top level: an object is the record itself; anything else goes under `message`.
struct TopSeed<'o, 'e> {
    out: &'o mut Vec<u8>,
    extra: Option<Extra<'e>>,
}

impl TopSeed<'_, '_> {
    /// Writes `{"message": <value written by f>, extra}`.
    fn wrapped(self, f: impl FnOnce(&mut Vec<u8>)) -> Top {
        let n = if self.extra.is_some() { 2 } else { 1 };
        write::container(self.out, n, true);
        write::str(self.out, "message");
        f(self.out);
        if let Some(x) = self.extra {
            write::str(self.out, x.key);
            write::str(self.out, x.value);
        }
        Top::Other
    }
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Top;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Top, E> {
        Ok(self.wrapped(|o| o.push(if v { 0xc3 } else { 0xc2 })))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Top, E> {
        Ok(self.wrapped(|o| write::int(o, v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Top, E> {
        Ok(self.wrapped(|o| write::uint(o, v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Top, E> {
        Ok(self.wrapped(|o| write::f64(o, v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Top, E> {
        Ok(self.wrapped(|o| write::str(o, v)))
    }
    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(self.wrapped(|o| o.push(0xc0)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
        let n = if self.extra.is_some() { 2 } else { 1 };
        write::container(self.out, n, true);
        write::str(self.out, "message");
        ValueSeed(self.out).visit_seq(seq)?;
        if let Some(x) = self.extra {
            write::str(self.out, x.key);
            write::str(self.out, x.value);
        }
        Ok(Top::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let at = open(self.out, true);
        let mut n = 0usize;
        let mut has_extra = false;
        while let Some(()) = map.next_key_seed(KeySeed {
            out: self.out,
            watch: self.extra.map(|x| x.key),
            seen: &mut has_extra,
        })? {
            map.next_value_seed(ValueSeed(self.out))?;
            n += 1;
        }
        if let Some(x) = self.extra.filter(|_| !has_extra) {
            write::str(self.out, x.key);
            write::str(self.out, x.value);
            n += 1;
        }
        close(self.out, at, n, true);
        Ok(Top::Object)
    }
}

/// A map key: written as a str; notes whether it equals `watch`.
struct KeySeed<'o, 'w, 's> {
    out: &'o mut Vec<u8>,
    watch: Option<&'w str>,
    seen: &'s mut bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.watch == Some(v) {
            *self.seen = true;
        }
        write::str(self.out, v);
        Ok(())
    }
}

/// Any nested value.
struct ValueSeed<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        write::int(self.0, v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        write::uint(self.0, v);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        write::f64(self.0, v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write::str(self.0, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(0xc0);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = open(self.0, false);
        let mut n = 0usize;
        while let Some(()) = seq.next_element_seed(ValueSeed(self.0))? {
            n += 1;
        }
        close(self.0, at, n, false);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = open(self.0, true);
        let mut n = 0usize;
        let mut unused = false;
        while let Some(()) = map.next_key_seed(KeySeed {
            out: self.0,
            watch: None,
            seen: &mut unused,
        })? {
            map.next_value_seed(ValueSeed(self.0))?;
            n += 1;
        }
        close(self.0, at, n, true);
        Ok(())
    }
}
