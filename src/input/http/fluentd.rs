//! Fluentd's in_http: `POST /<tag>` with the records in a `json=` / `msgpack=` /
//! `ndjson=` parameter (query string or form body) or as a JSON, MessagePack or
//! ndjson body, and an optional `time` parameter. Pure functions; behaviour follows
//! Fluentd v1's `in_http.rb` (`parse_params_default`, `on_request`).

use super::json::{self, Shape};
use super::{BodyError, Entries, TimeRule, msgpack, time_from_f64};
use crate::event::EventTime;

/// The tag of a request path: `/a/b/c` → `a.b.c`, with `prefix.` in front when set.
/// Empty parts, spaces and control characters are refused.
pub fn tag_of(path: &str, prefix: Option<&str>) -> Result<String, String> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Err("missing tag: POST to /<tag>, e.g. /app.access or /app/access".into());
    }
    let bad = rest.split('/').any(str::is_empty)
        || rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
    if bad || rest.starts_with('.') || rest.ends_with('.') || rest.contains("..") {
        return Err(format!(
            "bad tag path \"/{}\" (expected /part or /part/part..., parts non-empty, no spaces)",
            rest.escape_default()
        ));
    }
    let tag = rest.replace('/', ".");
    Ok(match prefix {
        Some(p) => format!("{p}.{tag}"),
        None => tag,
    })
}

/// The parameters in_http reads, from the query string and a form body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params {
    /// `json=`: a JSON document.
    pub json: Option<Vec<u8>>,
    /// `msgpack=`: MessagePack bytes.
    pub msgpack: Option<Vec<u8>>,
    /// `ndjson=`: JSON documents, one per line.
    pub ndjson: Option<Vec<u8>>,
    /// `time=`: the event time of every record, unix seconds (float allowed).
    pub time: Option<String>,
}

impl Params {
    /// Adds the pairs of an `application/x-www-form-urlencoded` string (a query
    /// string or a form body); later values override earlier ones, as in Ruby.
    pub fn add_form(&mut self, form: &[u8]) {
        for pair in form.split(|&b| b == b'&') {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..)),
                None => (pair, None),
            };
            let key = percent_decode(k);
            let value = || percent_decode(v.unwrap_or_default());
            match key.as_slice() {
                b"json" => self.json = Some(value()),
                b"msgpack" => self.msgpack = Some(value()),
                b"ndjson" => self.ndjson = Some(value()),
                b"time" => self.time = Some(String::from_utf8_lossy(&value()).into_owned()),
                _ => {}
            }
        }
    }

    /// How record times are chosen: a non-zero `time` parameter fixes them (a zero
    /// or non-numeric one means now, as Ruby's `to_f` gives 0); without it each
    /// record's `time` key is used.
    pub fn time_rule(&self, received: EventTime) -> TimeRule {
        match &self.time {
            Some(t) => {
                let secs = t.trim().parse::<f64>().unwrap_or(0.0);
                if secs == 0.0 {
                    TimeRule::Fixed(received)
                } else {
                    TimeRule::Fixed(time_from_f64(secs).unwrap_or(received))
                }
            }
            None => TimeRule::RecordKey(received),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; a
/// malformed escape is kept as written.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// What a body is, from its `Content-Type` (parameters such as `charset` ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`: parameters.
    Form,
    /// `application/json` (or `application/csp-report`): the `json` parameter.
    Json,
    /// `application/msgpack` or `application/x-msgpack`: the `msgpack` parameter.
    Msgpack,
    /// `application/x-ndjson`: the `ndjson` parameter.
    Ndjson,
    /// `multipart/form-data`: not supported.
    Multipart,
    /// Anything else or no type: the body is ignored, as in Fluentd.
    Other,
}

/// Classifies a `Content-Type` value.
pub fn body_kind(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::Other;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let is = |t: &str| essence.eq_ignore_ascii_case(t);
    if is("application/x-www-form-urlencoded") {
        BodyKind::Form
    } else if is("application/json") || is("application/csp-report") {
        BodyKind::Json
    } else if is("application/msgpack") || is("application/x-msgpack") {
        BodyKind::Msgpack
    } else if is("application/x-ndjson") {
        BodyKind::Ndjson
    } else if is("multipart/form-data") {
        BodyKind::Multipart
    } else {
        BodyKind::Other
    }
}

/// Turns a request (query, body kind, body) into entries, as Fluentd's
/// `parse_params_default` does: `msgpack` first, then `json`, then `ndjson`.
pub fn decode(
    query: Option<&str>,
    kind: BodyKind,
    body: &[u8],
    received: EventTime,
    max_depth: usize,
) -> Result<Entries, BodyError> {
    let mut params = Params::default();
    if let Some(q) = query {
        params.add_form(q.as_bytes());
    }
    let mut entries = Entries::default();
    let rule = params.time_rule(received);
    match kind {
        BodyKind::Form => {
            params.add_form(body);
            return decode_params(&params, params.time_rule(received), max_depth);
        }
        BodyKind::Json => json::decode(body, Shape::ObjectOrBatch, rule, max_depth, &mut entries)?,
        BodyKind::Msgpack => msgpack::decode(body, rule, max_depth, &mut entries)?,
        BodyKind::Ndjson => json::decode_lines(body, rule, max_depth, &mut entries)?,
        BodyKind::Multipart => {
            return Err(BodyError(
                "multipart/form-data is not supported: send application/json, application/msgpack or a json= form field".into(),
            ));
        }
        BodyKind::Other => return decode_params(&params, rule, max_depth),
    }
    Ok(entries)
}

fn decode_params(params: &Params, rule: TimeRule, max_depth: usize) -> Result<Entries, BodyError> {
    let mut entries = Entries::default();
    if let Some(m) = &params.msgpack {
        msgpack::decode(m, rule, max_depth, &mut entries)?;
    } else if let Some(j) = &params.json {
        json::decode(j, Shape::ObjectOrBatch, rule, max_depth, &mut entries)?;
    } else if let Some(n) = &params.ndjson {
        json::decode_lines(n, rule, max_depth, &mut entries)?;
    } else {
        return Err(BodyError(
            "'json', 'ndjson' or 'msgpack' parameter is required (or a Content-Type of application/json or application/msgpack)".into(),
        ));
    }
    Ok(entries)
}
