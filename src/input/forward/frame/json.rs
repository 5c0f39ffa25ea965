//! JSON connections (reference section 1): a connection whose first byte is `{` or `[`
//! sends JSON frames; Message and Forward modes only, converted to packed entries.

use super::json_value::Value;
use super::{DecodeError, EventFrame, Frame, FrameLimits};
use crate::event::{Batch, EventTime, Signal};
use crate::msgpack::write;
use bytes::Bytes;

/// Incremental end-of-value search: bracket depth with string and escape awareness.
/// Validation is left to serde_json once the value is complete.
#[derive(Debug, Default)]
pub(super) struct JsonScan {
    /// Bytes already looked at in the current frame.
    pos: usize,
    /// Open brackets.
    depth: usize,
    in_str: bool,
    escape: bool,
}

impl JsonScan {
    /// Continues where the previous call stopped; see [`super::FrameScanner::next_frame`].
    pub(super) fn resume(
        &mut self,
        buf: &[u8],
        limits: &FrameLimits,
    ) -> Result<Option<usize>, DecodeError> {
        let max_depth = limits.max_depth.saturating_add(super::FRAME_DEPTH);
        let start = self.pos;
        for (i, &b) in buf.get(start..).unwrap_or_default().iter().enumerate() {
            let at = start + i;
            if self.in_str {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_str = false;
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_str = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > max_depth {
                        return Err(DecodeError::JsonTooDeep {
                            offset: at,
                            limit: max_depth,
                        });
                    }
                }
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        *self = JsonScan::default();
                        if at >= limits.max_frame_bytes {
                            return Err(too_large(at + 1, limits));
                        }
                        return Ok(Some(at + 1));
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if self.depth == 0 => {
                    return Err(DecodeError::JsonStart {
                        offset: at,
                        byte: b,
                    });
                }
                _ => {}
            }
        }
        self.pos = buf.len().max(start);
        if self.pos > limits.max_frame_bytes {
            return Err(too_large(self.pos, limits));
        }
        Ok(None)
    }
}

fn too_large(size: usize, limits: &FrameLimits) -> DecodeError {
    DecodeError::JsonTooLarge {
        size,
        limit: limits.max_frame_bytes,
    }
}

/// Decodes one JSON frame into the same [`Frame`] a MessagePack frame gives.
pub(super) fn decode(
    frame: &[u8],
    arrival: EventTime,
    limits: &FrameLimits,
) -> Result<Frame, DecodeError> {
    let value: Value =
        serde_json::from_slice(frame).map_err(|e| DecodeError::Json(e.to_string()))?;
    let arr = match value {
        Value::Array(a) => a,
        Value::Null => return Ok(Frame::Heartbeat),
        other => {
            return Err(DecodeError::NotArray {
                found: kind(&other),
            });
        }
    };
    let len = u32::try_from(arr.len()).unwrap_or(u32::MAX);
    let tag = match arr.first() {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(DecodeError::Tag { found: "empty" }),
        Some(other) => return Err(DecodeError::Tag { found: kind(other) }),
        None => {
            return Err(DecodeError::Arity {
                len,
                mode: "a forward frame",
                expected: "2 to 4 elements",
            });
        }
    };
    let mut out = Vec::with_capacity(frame.len());
    let (count, skipped, options) = match arr.get(1) {
        Some(Value::String(_)) => return Err(DecodeError::JsonPacked),
        Some(Value::Array(entries)) => {
            if len > 3 {
                return Err(DecodeError::Arity {
                    len,
                    mode: "Forward mode",
                    expected: "2 or 3 elements",
                });
            }
            let (mut count, mut skipped) = (0u32, 0u32);
            for (index, e) in entries.iter().enumerate() {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let pair = match e {
                    Value::Array(p) if p.len() == 2 => p,
                    _ => {
                        return Err(json_entry(
                            index,
                            "entry is not a [time, record] array of 2",
                        ));
                    }
                };
                let (t, r) = (
                    pair.first().unwrap_or(&Value::Null),
                    pair.get(1).unwrap_or(&Value::Null),
                );
                if convert(t, r, arrival, limits, &mut out)
                    .map_err(|what| json_entry(index, what))?
                {
                    count += 1;
                } else {
                    skipped += 1;
                }
            }
            (count, skipped, arr.get(2))
        }
        Some(t) => {
            if !(3..=4).contains(&len) {
                return Err(DecodeError::Arity {
                    len,
                    mode: "Message mode",
                    expected: "3 or 4 elements",
                });
            }
            let r = arr.get(2).unwrap_or(&Value::Null);
            if !convert(t, r, arrival, limits, &mut out).map_err(|what| json_entry(0, what))? {
                return Err(DecodeError::NilRecord);
            }
            (1, 0, arr.get(3))
        }
        None => {
            return Err(DecodeError::Arity {
                len,
                mode: "a forward frame",
                expected: "2 to 4 elements",
            });
        }
    };
    let mut chunk = None;
    let mut signal = Signal::Logs;
    if let Some(opts) = options {
        let Value::Object(map) = opts else {
            return Err(DecodeError::OptionsNotMap { found: kind(opts) });
        };
        if let Some(v) = Value::field(map, "size") {
            let declared = v.as_u64().ok_or(DecodeError::OptionType {
                key: "size",
                found: kind(v),
                expected: "a non-negative integer",
            })?;
            let actual = u64::from(count) + u64::from(skipped);
            if declared != actual {
                return Err(DecodeError::SizeMismatch { declared, actual });
            }
        }
        match Value::field(map, "chunk") {
            Some(Value::String(s)) => chunk = Some(Bytes::from(s.clone().into_bytes())),
            Some(v) => {
                return Err(DecodeError::OptionType {
                    key: "chunk",
                    found: kind(v),
                    expected: "a string",
                });
            }
            None => {}
        }
        match Value::field(map, "compressed") {
            None => {}
            Some(Value::String(s)) if s == "text" => {}
            Some(v) => {
                return Err(DecodeError::Compression {
                    value: match v {
                        Value::String(s) => s.clone(),
                        other => kind(other).to_owned(),
                    },
                });
            }
        }
        if let Some(v) = Value::field(map, "fluent_signal") {
            let n = v.as_u64().ok_or(DecodeError::OptionType {
                key: "fluent_signal",
                found: kind(v),
                expected: "an integer",
            })?;
            signal = match n {
                0 => Signal::Logs,
                n => Signal::Other(u8::try_from(n).map_err(|_| DecodeError::Signal { value: n })?),
            };
        }
    }
    Ok(Frame::Events(EventFrame {
        batch: Batch {
            tag,
            entries: Bytes::from(out),
            count,
            signal,
        },
        chunk,
        skipped,
    }))
}

fn json_entry(index: u32, what: &'static str) -> DecodeError {
    DecodeError::JsonEntry { index, what }
}

/// Writes `[time, record]`; false (nothing written) for a null record.
fn convert(
    time: &Value,
    record: &Value,
    arrival: EventTime,
    limits: &FrameLimits,
    out: &mut Vec<u8>,
) -> Result<bool, &'static str> {
    if *record == Value::Null {
        return Ok(false);
    }
    let mark = out.len();
    out.push(0x92);
    match time {
        Value::Null => arrival.encode(out),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u == 0 {
                    arrival.encode(out)
                } else {
                    write::uint(out, u)
                }
            } else if let Some(i) = n.as_i64() {
                write::int(out, i)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.trunc() == 0.0 {
                    arrival.encode(out)
                } else {
                    write::f64(out, f)
                }
            }
        }
        _ => {
            out.truncate(mark);
            return Err("time is not a number, expected integer or float");
        }
    }
    if let Err(e) = value(record, 1, limits.max_depth, out) {
        out.truncate(mark);
        return Err(e);
    }
    Ok(true)
}

/// Converts a JSON value to MessagePack: integers stay integers, other numbers f64.
fn value(v: &Value, depth: usize, max_depth: usize, out: &mut Vec<u8>) -> Result<(), &'static str> {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write::uint(out, u)
            } else if let Some(i) = n.as_i64() {
                write::int(out, i)
            } else {
                write::f64(out, n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => write::str(out, s),
        Value::Array(a) => {
            if depth > max_depth {
                return Err("record nests deeper than max_depth");
            }
            write::container(out, a.len(), false);
            for item in a {
                value(item, depth + 1, max_depth, out)?;
            }
        }
        Value::Object(m) => {
            if depth > max_depth {
                return Err("record nests deeper than max_depth");
            }
            write::container(out, m.len(), true);
            for (k, item) in m.iter() {
                write::str(out, k);
                value(item, depth + 1, max_depth, out)?;
            }
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
