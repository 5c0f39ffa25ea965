//! Payload → `[time, record]` entry bytes, for the three payload formats.
//!
//! A payload that does not parse is never dropped: it becomes
//! `{"message": <payload>, "_parse_error": "<why>"}` and the caller counts it. `message`
//! is a string when the bytes are UTF-8, else binary, so nothing is altered.

use super::json::{self, Extra};
use crate::config::PayloadFormat;
use crate::event::EventTime;
use crate::msgpack::head::{Cursor, Head};
use crate::msgpack::{Limits, Scan, scan_value, write};

/// Deepest MessagePack nesting accepted in a payload (as the forward input's default).
const MAX_DEPTH: usize = 64;

/// Record key of the reason a payload was kept raw.
pub const PARSE_ERROR_KEY: &str = "_parse_error";

/// How one source turns payloads into records.
#[derive(Clone, Debug, PartialEq)]
pub struct PayloadRules {
    /// The payload format.
    pub format: PayloadFormat,
    /// Record key that receives the topic, if any.
    pub topic_key: Option<String>,
    /// Payloads above this many bytes are cut and flagged.
    pub max_payload_size: usize,
}

/// Why a payload was kept raw: a short label for the metric and the full reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPayload {
    /// `json`, `msgpack` or `too_large`.
    pub reason: &'static str,
    /// What was wrong, as put in `_parse_error`.
    pub detail: String,
}

impl PayloadRules {
    /// Appends the entry `[time, record]` for one message to `out`; returns why the
    /// payload was kept raw, if it was.
    pub fn append_entry(
        &self,
        topic: &str,
        payload: &[u8],
        time: EventTime,
        out: &mut Vec<u8>,
    ) -> Option<BadPayload> {
        out.push(0x92);
        time.encode(out);
        let start = out.len();
        let extra = self
            .topic_key
            .as_deref()
            .map(|key| Extra { key, value: topic });
        if payload.len() > self.max_payload_size {
            let kept = utf8_floor(payload, self.max_payload_size);
            let bad = BadPayload {
                reason: "too_large",
                detail: format!(
                    "payload of {} bytes is over max_payload_size ({} bytes); kept its first {} bytes",
                    payload.len(),
                    self.max_payload_size,
                    kept.len()
                ),
            };
            raw_record(kept, Some(&bad.detail), extra, out);
            return Some(bad);
        }
        if payload.is_empty() {
            // Empty payloads are normal in MQTT (clearing a retained message).
            raw_record(payload, None, extra, out);
            return None;
        }
        let outcome = match self.format {
            PayloadFormat::Raw => Ok(()),
            PayloadFormat::Json => {
                json::record(payload, extra, out)
                    .map(|_| ())
                    .map_err(|e| BadPayload {
                        reason: "json",
                        detail: format!("invalid JSON: {e}"),
                    })
            }
            PayloadFormat::Msgpack => msgpack_record(payload, extra, out).map_err(|e| BadPayload {
                reason: "msgpack",
                detail: format!("invalid MessagePack: {e}"),
            }),
        };
        match (self.format, outcome) {
            (PayloadFormat::Raw, _) => {
                raw_record(payload, None, extra, out);
                None
            }
            (_, Ok(())) => None,
            (_, Err(bad)) => {
                out.truncate(start);
                raw_record(payload, Some(&bad.detail), extra, out);
                Some(bad)
            }
        }
    }
}

/// The longest prefix of `bytes` of at most `max` bytes that does not cut a UTF-8
/// character in two (any cut when the bytes are not UTF-8 text anyway).
fn utf8_floor(bytes: &[u8], max: usize) -> &[u8] {
    let cut = bytes.get(..max).unwrap_or(bytes);
    match std::str::from_utf8(cut) {
        Err(e) if e.error_len().is_none() => cut.get(..e.valid_up_to()).unwrap_or(cut),
        _ => cut,
    }
}

/// `{"message": payload, "_parse_error": why?, topic_key: topic?}`.
fn raw_record(payload: &[u8], error: Option<&str>, extra: Option<Extra<'_>>, out: &mut Vec<u8>) {
    let n = 1 + usize::from(error.is_some()) + usize::from(extra.is_some());
    write::container(out, n, true);
    write::str(out, "message");
    if std::str::from_utf8(payload).is_ok() {
        write::str_bytes(out, payload);
    } else {
        bin(out, payload);
    }
    if let Some(e) = error {
        write::str(out, PARSE_ERROR_KEY);
        write::str(out, e);
    }
    if let Some(x) = extra {
        write::str(out, x.key);
        write::str(out, x.value);
    }
}

/// A MessagePack bin in its shortest form.
fn bin(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len();
    if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xc5);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// One whole MessagePack value: a map is the record (plus `extra` unless it has the
/// key); anything else becomes `{"message": value}` (plus `extra`).
fn msgpack_record(
    payload: &[u8],
    extra: Option<Extra<'_>>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let limits = Limits {
        max_bytes: payload.len(),
        max_depth: MAX_DEPTH,
    };
    match scan_value(payload, &limits) {
        Ok(Scan::Complete(n)) if n == payload.len() => {}
        Ok(Scan::Complete(n)) => {
            return Err(format!(
                "{} bytes follow the first value (expected exactly one value, a map)",
                payload.len() - n
            ));
        }
        Ok(Scan::Incomplete { .. }) => return Err("value is truncated".to_string()),
        Err(e) => return Err(e.to_string()),
    }
    let mut cur = Cursor::new(payload);
    let head = cur.head().map_err(|e| e.to_string())?;
    match (head, extra) {
        (Head::Map(n), Some(x)) if !has_key(&mut cur, n, x.key) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1);
            write::container(out, n, true);
            out.extend_from_slice(payload.get(header_len(payload)..).unwrap_or_default());
            write::str(out, x.key);
            write::str(out, x.value);
        }
        (Head::Map(_), _) => out.extend_from_slice(payload),
        (_, extra) => {
            let n = 1 + usize::from(extra.is_some());
            write::container(out, n, true);
            write::str(out, "message");
            out.extend_from_slice(payload);
            if let Some(x) = extra {
                write::str(out, x.key);
                write::str(out, x.value);
            }
        }
    }
    Ok(())
}

/// Bytes of the header at the start of a validated value.
fn header_len(payload: &[u8]) -> usize {
    payload
        .first()
        .map_or(0, |&m| crate::msgpack::head::head_len(m))
}

/// Whether the validated map whose `n` pairs start at `cur` has the str key `key`.
fn has_key(cur: &mut Cursor<'_>, n: u32, key: &str) -> bool {
    for _ in 0..n {
        let at = cur.pos;
        let is_key = match cur.head() {
            Ok(Head::Str(len)) => match cur.body(len) {
                Ok(k) => k == key.as_bytes(),
                Err(_) => return false,
            },
            Ok(_) => {
                cur.pos = at;
                if cur.skip().is_err() {
                    return false;
                }
                false
            }
            Err(_) => return false,
        };
        if is_key {
            return true;
        }
        if cur.skip().is_err() {
            return false;
        }
    }
    false
}
