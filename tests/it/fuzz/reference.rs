//! The plain rmpv reading a decoded frame must agree with.

use super::*;

// ---------------------------------------------------------------------------------
// Reference decoding with rmpv

/// What a frame means, by the straightforward reading.
#[derive(Debug, PartialEq, Eq)]
pub enum RefFrame {
    /// A top-level nil.
    Heartbeat,
    /// Events.
    Events {
        /// The tag's bytes.
        tag: Vec<u8>,
        /// Events kept (nil records dropped in Forward mode).
        count: u32,
        /// The packed entries.
        entries: Vec<u8>,
        /// The `chunk` option's bytes.
        chunk: Option<Vec<u8>>,
    },
}

/// rmpv's depth budget: two units per container level and three for a string, so the
/// scanner's deepest accepted frame fits with room to spare.
pub(crate) const REF_DEPTH: usize = 512;

pub(crate) fn raw_value<'a>(rd: &mut &'a [u8]) -> Result<(rmpv::Value, &'a [u8]), String> {
    let start: &'a [u8] = rd;
    let v = rmpv::decode::read_value_with_max_depth(rd, REF_DEPTH).map_err(|e| e.to_string())?;
    let used = start.len() - rd.len();
    Ok((v, &start[..used]))
}

pub(crate) fn bytes_of(v: &rmpv::Value) -> Option<Vec<u8>> {
    match v {
        rmpv::Value::String(s) => Some(s.as_bytes().to_vec()),
        rmpv::Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

/// Whether Fluentd would replace this time by the arrival time (`time.to_i == 0`).
pub(crate) fn zero_time(v: &rmpv::Value) -> bool {
    match v {
        rmpv::Value::Nil => true,
        rmpv::Value::Integer(i) => i.as_i64() == Some(0),
        rmpv::Value::F32(f) => f.trunc() == 0.0,
        rmpv::Value::F64(f) => f.trunc() == 0.0,
        rmpv::Value::Ext(0, d) => d.get(..4) == Some(&[0, 0, 0, 0][..]),
        _ => false,
    }
}

pub(crate) fn array_len(rd: &mut &[u8]) -> Result<u32, String> {
    rmp::decode::read_array_len(rd).map_err(|e| e.to_string())
}

/// One `time, record` pair read after its array header, appended in packed form.
/// Returns whether an entry was written (false for a nil record).
pub(crate) fn ref_pair(
    rd: &mut &[u8],
    arrival: EventTime,
    out: &mut Vec<u8>,
) -> Result<bool, String> {
    let mut peek = *rd;
    let (tv, _) = raw_value(&mut peek)?;
    let mut time = Vec::new();
    if let rmpv::Value::Array(_) = &tv {
        array_len(rd)?;
        let (t, traw) = raw_value(rd)?;
        let (_, mraw) = raw_value(rd)?;
        if zero_time(&t) {
            time.push(0x92);
            arrival.encode(&mut time);
            time.extend_from_slice(mraw);
        } else {
            time.push(0x92);
            time.extend_from_slice(traw);
            time.extend_from_slice(mraw);
        }
    } else {
        let (t, traw) = raw_value(rd)?;
        if zero_time(&t) {
            arrival.encode(&mut time);
        } else {
            time.extend_from_slice(traw);
        }
    }
    let (rec, rraw) = raw_value(rd)?;
    if rec.is_nil() {
        return Ok(false);
    }
    out.push(0x92);
    out.extend_from_slice(&time);
    out.extend_from_slice(rraw);
    Ok(true)
}

pub(crate) fn options(v: Option<&rmpv::Value>) -> (Option<Vec<u8>>, bool) {
    let mut chunk = None;
    let mut gz = false;
    if let Some(rmpv::Value::Map(m)) = v {
        for (k, v) in m {
            match k.as_str() {
                Some("chunk") => chunk = bytes_of(v),
                Some("compressed") => gz = v.as_str() == Some("gzip"),
                _ => {}
            }
        }
    }
    (chunk, gz)
}

/// Decodes a MessagePack frame the plain way: rmpv reads it whole (an error when it
/// cannot, or when bytes follow the value), then the mode is read from the values.
/// The meaning of modes and times follows the reference; it does not re-check the
/// rules the decoder enforces (those decide acceptance, not content).
pub fn reference_decode(
    frame: &[u8],
    arrival: EventTime,
    max_inflated: usize,
) -> Result<RefFrame, String> {
    let mut whole = frame;
    let (v, _) = raw_value(&mut whole)?;
    if !whole.is_empty() {
        return Err(format!("{} bytes after the value", whole.len()));
    }
    let items = match v {
        rmpv::Value::Nil => return Ok(RefFrame::Heartbeat),
        rmpv::Value::Array(items) => items,
        other => return Err(format!("not an array: {other}")),
    };
    let mut rd = frame;
    array_len(&mut rd)?;
    let (tagv, _) = raw_value(&mut rd)?;
    let tag = bytes_of(&tagv).ok_or("tag is not str or bin")?;
    let second = items.get(1).ok_or("no second element")?;
    let mut entries = Vec::new();
    let mut count = 0u32;
    let chunk;
    match second {
        rmpv::Value::String(_) | rmpv::Value::Binary(_) => {
            let body = bytes_of(second).unwrap_or_default();
            let (c, gz) = options(items.get(2));
            chunk = c;
            let body = if gz {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&body[..])
                    .take(max_inflated as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| e.to_string())?;
                out
            } else {
                body
            };
            let mut rest = &body[..];
            while !rest.is_empty() {
                raw_value(&mut rest)?;
                count += 1;
            }
            entries = body;
        }
        rmpv::Value::Array(list) => {
            let (c, _) = options(items.get(2));
            chunk = c;
            array_len(&mut rd)?;
            for _ in 0..list.len() {
                array_len(&mut rd)?;
                if ref_pair(&mut rd, arrival, &mut entries)? {
                    count += 1;
                }
            }
        }
        _ => {
            let (c, _) = options(items.get(3));
            chunk = c;
            if ref_pair(&mut rd, arrival, &mut entries)? {
                count += 1;
            }
        }
    }
    Ok(RefFrame::Events {
        tag,
        count,
        entries,
        chunk,
    })
}
