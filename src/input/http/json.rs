//! JSON bodies straight to MessagePack entries: serde_json drives a visitor that
//! writes each value as it is parsed, so no value tree is built, object keys keep the
//! order the client sent (as Fluentd's Ruby Hash keeps them), integers stay integers
//! and other numbers become float64, and nesting is bounded by `max_depth`.

use super::{BodyError, Entries, TimeRule, time_from_f64};
use crate::event::EventTime;
use crate::msgpack::write;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// What a body may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Exactly one object (the postback API).
    Object,
    /// An object, an array of objects (a batch; `null` elements are skipped) or
    /// `null` (nothing), as Fluentd's in_http takes them.
    ObjectOrBatch,
}

/// Appends the records of one JSON document to `out`, each as a `[time, record]`
/// entry with its time chosen by `rule`. On error `out` is left as it was.
pub fn decode(
    body: &[u8],
    shape: Shape,
    rule: TimeRule,
    max_depth: usize,
    out: &mut Entries,
) -> Result<(), BodyError> {
    let (len, count) = (out.bytes.len(), out.count);
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = Top {
        st: State {
            out,
            rule,
            max_depth,
        },
        shape,
    };
    let result = top.deserialize(&mut de).and_then(|()| de.end());
    result.map_err(|e| {
        out.bytes.truncate(len);
        out.count = count;
        BodyError(format!("invalid JSON body: {e}"))
    })
}

/// Appends the records of a newline-delimited JSON body (`application/x-ndjson`):
/// every non-blank line is a document as [`Shape::ObjectOrBatch`] takes it.
pub fn decode_lines(
    body: &[u8],
    rule: TimeRule,
    max_depth: usize,
    out: &mut Entries,
) -> Result<(), BodyError> {
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        decode(line, Shape::ObjectOrBatch, rule, max_depth, out)
            .map_err(|e| BodyError(format!("line {}: {}", i + 1, e.0)))?;
    }
    Ok(())
}

struct State<'a> {
    out: &'a mut Entries,
    rule: TimeRule,
    max_depth: usize,
}

/// Room left for a container header until its count is known: the largest header
/// (map32/array32) takes 5 bytes.
const HEADER_ROOM: usize = 5;

/// Bytes of an entry before its record: the 2-array marker and an EventTime.
const ENTRY_HEAD: usize = 1 + 10;

impl State<'_> {
    /// Writes one record from an open JSON object, with its time, as an entry.
    fn record<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let start = self.out.bytes.len();
        self.out.bytes.push(0x92);
        self.out.bytes.extend_from_slice(&[0; ENTRY_HEAD - 1]);
        let header = self.out.bytes.len();
        self.out.bytes.extend_from_slice(&[0; HEADER_ROOM]);
        let mut pairs = 0usize;
        let mut time: Option<EventTime> = None;
        loop {
            let key_at = self.out.bytes.len();
            let Some(key) = map.next_key_seed(KeySeed(&mut self.out.bytes))? else {
                break;
            };
            match (key, self.rule) {
                (Key::Time, TimeRule::RecordKey(received)) => {
                    // Fluentd's in_http: the key leaves the record and becomes its time.
                    self.out.bytes.truncate(key_at);
                    let seen = map.next_value_seed(TimeSeed)?;
                    time = Some(match seen {
                        Seen::Null | Seen::Bool(false) => received,
                        Seen::Num(secs) => time_from_f64(secs).ok_or_else(|| {
                            de::Error::custom(format!("time {secs} is out of range"))
                        })?,
                        other => {
                            return Err(de::Error::custom(format!(
                                "time is {}, expected a number of seconds since the epoch",
                                other.kind()
                            )));
                        }
                    });
                }
                (Key::TdRecordTime, TimeRule::TdRecordTime(received)) => {
                    let seen = map.next_value_seed(ValueSeed {
                        out: &mut self.out.bytes,
                        depth: 2,
                        max_depth: self.max_depth,
                        numeric_str: true,
                    })?;
                    time = Some(super::postback::record_time(seen.number(), received));
                    pairs += 1;
                }
                _ => {
                    map.next_value_seed(ValueSeed {
                        out: &mut self.out.bytes,
                        depth: 2,
                        max_depth: self.max_depth,
                        numeric_str: false,
                    })?;
                    pairs += 1;
                }
            }
        }
        close_container(&mut self.out.bytes, header, pairs, true);
        let time = time.unwrap_or(match self.rule {
            TimeRule::Fixed(t) | TimeRule::RecordKey(t) | TimeRule::TdRecordTime(t) => t,
        });
        let mut head = Vec::with_capacity(10);
        time.encode(&mut head);
        if let Some(slot) = self.out.bytes.get_mut(start + 1..start + ENTRY_HEAD) {
            slot.copy_from_slice(&head);
        }
        self.out.count = self
            .out
            .count
            .checked_add(1)
            .ok_or_else(|| de::Error::custom("too many records in one request"))?;
        Ok(())
    }
}

/// Replaces the [`HEADER_ROOM`] bytes at `at` with the shortest header for `n`
/// elements, moving the content left over the unused room.
fn close_container(out: &mut Vec<u8>, at: usize, n: usize, map: bool) {
    let mut head = Vec::with_capacity(HEADER_ROOM);
    write::container(&mut head, n, map);
    let content = at + HEADER_ROOM;
    let shift = HEADER_ROOM.saturating_sub(head.len());
    if shift > 0 && content <= out.len() {
        out.copy_within(content.., at + head.len());
        out.truncate(out.len() - shift);
    }
    if let Some(slot) = out.get_mut(at..at + head.len()) {
        slot.copy_from_slice(&head);
    }
}

/// The document: one object, or (for in_http) a batch or null.
struct Top<'a> {
    st: State<'a>,
    shape: Shape,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.shape {
            Shape::Object => f.write_str("one JSON object"),
            Shape::ObjectOrBatch => f.write_str("a JSON object or an array of objects"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        self.st.record(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.shape == Shape::Object {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut index = 0usize;
        while seq
            .next_element_seed(Element {
                st: &mut self.st,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match self.shape {
            Shape::ObjectOrBatch => Ok(()), // Fluentd skips a nil record
            Shape::Object => Err(de::Error::invalid_type(de::Unexpected::Unit, &self)),
        }
    }
}

/// One element of a batch: an object, or null (skipped).
struct Element<'s, 'a> {
    st: &'s mut State<'a>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for Element<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "batch element {} to be an object", self.index)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.st.record(map)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Which record keys matter for the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Time,
    TdRecordTime,
    Other,
}

/// Writes an object key as a MessagePack str and says whether it is a time key.
struct KeySeed<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        write::str(self.0, v);
        Ok(match v {
            "time" => Key::Time,
            "td_record_time" => Key::TdRecordTime,
            _ => Key::Other,
        })
    }
}

/// A scalar as seen, for time keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Seen {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any number.
    Num(f64),
    /// A string, with its numeric value when asked for and it has one.
    Str(Option<f64>),
    /// An array or object.
    Container,
}

impl Seen {
    /// The number it stands for: a number, or a numeric string.
    pub fn number(self) -> Option<f64> {
        match self {
            Seen::Num(n) | Seen::Str(Some(n)) => Some(n),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Seen::Null => "null",
            Seen::Bool(_) => "a boolean",
            Seen::Num(_) => "a number",
            Seen::Str(_) => "a string",
            Seen::Container => "an array or object",
        }
    }
}

/// Reads a `time` value without writing it.
struct TimeSeed;

impl<'de> DeserializeSeed<'de> for TimeSeed {
    type Value = Seen;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Seen, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TimeSeed {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number of seconds since the epoch")
    }
    fn visit_unit<E>(self) -> Result<Seen, E> {
        Ok(Seen::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Seen, E> {
        Ok(Seen::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Seen, E> {
        Ok(Seen::Num(v as f64))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Seen, E> {
        Ok(Seen::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Seen, E> {
        Ok(Seen::Num(v))
    }
    fn visit_str<E>(self, _: &str) -> Result<Seen, E> {
        Ok(Seen::Str(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Seen, A::Error> {
        Err(de::Error::custom(
            "time is an array, expected a number of seconds since the epoch",
        ))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Seen, A::Error> {
        Err(de::Error::custom(
            "time is an object, expected a number of seconds since the epoch",
        ))
    }
}

/// Writes any value as MessagePack at nesting level `depth`.
struct ValueSeed<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    max_depth: usize,
    /// Parse strings as numbers too (for `td_record_time`).
    numeric_str: bool,
}

impl ValueSeed<'_> {
    fn nested(&mut self) -> ValueSeed<'_> {
        ValueSeed {
            out: &mut *self.out,
            depth: self.depth + 1,
            max_depth: self.max_depth,
            numeric_str: false,
        }
    }

    fn open<E: de::Error>(&mut self) -> Result<usize, E> {
        if self.depth > self.max_depth {
            return Err(E::custom(format!(
                "record nests deeper than max_depth ({})",
                self.max_depth
            )));
        }
        let at = self.out.len();
        self.out.extend_from_slice(&[0; HEADER_ROOM]);
        Ok(at)
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Seen;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Seen, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Seen, E> {
        self.out.push(0xc0);
        Ok(Seen::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Seen, E> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(Seen::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Seen, E> {
        write::uint(self.out, v);
        Ok(Seen::Num(v as f64))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Seen, E> {
        write::int(self.out, v);
        Ok(Seen::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Seen, E> {
        write::f64(self.out, v);
        Ok(Seen::Num(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Seen, E> {
        write::str(self.out, v);
        Ok(Seen::Str(if self.numeric_str {
            v.trim().parse::<f64>().ok()
        } else {
            None
        }))
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Seen, A::Error> {
        let at = self.open()?;
        let mut n = 0usize;
        while seq.next_element_seed(self.nested())?.is_some() {
            n += 1;
        }
        close_container(&mut *self.out, at, n, false);
        Ok(Seen::Container)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Seen, A::Error> {
        let at = self.open()?;
        let mut n = 0usize;
        while map.next_key_seed(KeySeed(&mut *self.out))?.is_some() {
            map.next_value_seed(self.nested())?;
            n += 1;
        }
        close_container(&mut *self.out, at, n, true);
        Ok(Seen::Container)
    }
}
