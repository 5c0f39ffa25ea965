//! Pre-encoded HTTP requests for `load http`: the whole request (head and JSON body) is
//! built before the timed part; per request only each record's `seq` is patched in
//! place. A seq is written right-aligned in a fixed 20-byte field padded with spaces
//! (JSON allows whitespace before a number, not leading zeros), so `Content-Length`
//! never changes.

use crate::template::Shape;
use anyhow::bail;

/// Width of a patched seq: `u64::MAX` has 20 digits.
const SEQ_WIDTH: usize = 20;

/// What every request of a run shares.
pub struct HttpSpec<'a> {
    /// Request path, e.g. `/postback/v3/event/bench_db/events` or `/app.access`.
    pub path: &'a str,
    /// `Host` header value.
    pub host: &'a str,
    /// Sent as `X-TD-Write-Key` when given.
    pub write_key: Option<&'a str>,
    /// What each record looks like.
    pub shape: &'a Shape,
    /// Records per request: 1 is a JSON object, more a JSON array (in_http only).
    pub events: usize,
    /// `Some(run id)` adds `run` and `seq` to every record.
    pub run: Option<&'a str>,
}

/// One connection's request, encoded once.
pub struct HttpRequest {
    bytes: Vec<u8>,
    /// Offsets of each record's 20-byte seq field.
    seq_at: Vec<usize>,
}

/// The JSON form of a record field value (the shapes hold no binary or ext values).
fn json_of(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as V;
    match v {
        V::Nil | V::Ext(..) => serde_json::Value::Null,
        V::Boolean(b) => (*b).into(),
        V::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => n.into(),
            (None, Some(n)) => n.into(),
            (None, None) => serde_json::Value::Null,
        },
        V::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(serde_json::Value::Null, Into::into)
        }
        V::F64(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
        V::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned().into(),
        V::Binary(b) => String::from_utf8_lossy(b).into_owned().into(),
        V::Array(a) => a.iter().map(json_of).collect::<Vec<_>>().into(),
        V::Map(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    json_of(k).as_str().unwrap_or_default().to_string(),
                    json_of(v),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// Appends record `i` as a JSON object, recording where its seq field starts.
fn write_record(out: &mut Vec<u8>, spec: &HttpSpec<'_>, i: usize, seq_at: &mut Vec<usize>) {
    out.push(b'{');
    for (n, (k, v)) in spec.shape.fields(i).iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json_of(k).to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(json_of(v).to_string().as_bytes());
    }
    if let Some(run) = spec.run {
        out.extend_from_slice(b",\"run\":");
        out.extend_from_slice(serde_json::Value::from(run).to_string().as_bytes());
        out.extend_from_slice(b",\"seq\":");
        seq_at.push(out.len());
        out.extend_from_slice(&[b' '; SEQ_WIDTH - 1]);
        out.push(b'0');
    }
    out.push(b'}');
}

impl HttpRequest {
    /// Encodes connection `conn`'s request (record fields vary a little with `conn`).
    pub fn new(spec: &HttpSpec<'_>, conn: usize) -> anyhow::Result<HttpRequest> {
        if !spec.path.starts_with('/') || spec.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            bail!(
                "--path {:?} must start with / and hold no spaces or control characters",
                spec.path
            );
        }
        if let Some(k) = spec.write_key
            && k.bytes().any(|b| b < b' ' || b == 0x7f)
        {
            bail!("--write-key must hold no control characters");
        }
        let events = spec.events.max(1);
        let mut body = Vec::new();
        let mut seq_at = Vec::new();
        if events == 1 {
            write_record(&mut body, spec, conn, &mut seq_at);
        } else {
            body.push(b'[');
            for i in 0..events {
                if i > 0 {
                    body.push(b',');
                }
                write_record(&mut body, spec, conn + i, &mut seq_at);
            }
            body.push(b']');
        }
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
            spec.path, spec.host
        );
        if let Some(k) = spec.write_key {
            head.push_str("X-TD-Write-Key: ");
            head.push_str(k);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        let base = bytes.len();
        bytes.extend_from_slice(&body);
        for at in &mut seq_at {
            *at += base;
        }
        Ok(HttpRequest { bytes, seq_at })
    }

    /// Patches in `seq` (first record; the others follow on) and returns the request.
    pub fn render(&mut self, seq: u64) -> &[u8] {
        for (i, &at) in self.seq_at.iter().enumerate() {
            let Some(field) = self.bytes.get_mut(at..at + SEQ_WIDTH) else {
                continue;
            };
            field.fill(b' ');
            // Digits from the right; a u64 has at most SEQ_WIDTH of them.
            let mut n = seq.wrapping_add(i as u64);
            for slot in field.iter_mut().rev() {
                *slot = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
        }
        &self.bytes
    }
}
