//! Request bodies: read under a size limit and a deadline, then inflated (gzip or
//! deflate) under a second limit, so neither a big, a slow nor a compressed-bomb body
//! costs more than the config allows.

use bytes::{Bytes, BytesMut};
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use http_body_util::BodyExt;
use std::io::Read;
use std::time::Duration;

/// Why a body could not be taken; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFailure {
    /// Longer than `max_body_size` (declared or as sent): 413.
    #[error("request body is larger than max_body_size ({limit} bytes)")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Larger than `max_decompressed_size` once inflated: 413.
    #[error("request body inflates to more than max_decompressed_size ({limit} bytes)")]
    InflatedTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Not complete within `body_timeout`: 408.
    #[error("request body not received within body_timeout ({0:?})")]
    Timeout(Duration),
    /// The connection failed while reading: nobody to answer.
    #[error("reading the request body failed: {0}")]
    Read(String),
    /// A `Content-Encoding` tidepool does not inflate: 415.
    #[error("unsupported Content-Encoding \"{0}\" (expected gzip, deflate or identity)")]
    Encoding(String),
    /// A broken gzip/deflate stream: 400.
    #[error("cannot inflate the {encoding} body: {reason}")]
    Corrupt {
        /// `gzip` or `deflate`.
        encoding: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

/// Reads a whole body of at most `limit` bytes within `timeout`. A declared
/// `Content-Length` above the limit fails before anything is read; a body that
/// streams past it fails as soon as it does. A body sent in one piece is returned
/// without a copy.
pub async fn read<B>(
    body: B,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyFailure>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyFailure::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, collect(body, limit)).await {
        Ok(r) => r,
        Err(_) => Err(BodyFailure::Timeout(timeout)),
    }
}

async fn collect<B>(mut body: B, limit: usize) -> Result<Bytes, BodyFailure>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyFailure::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        total = total
            .checked_add(data.len())
            .filter(|t| *t <= limit)
            .ok_or(BodyFailure::TooLarge { limit })?;
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                let mut buf = BytesMut::with_capacity(head.len().saturating_mul(2).min(limit));
                buf.extend_from_slice(head);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(b), None) => b,
        (None, None) => Bytes::new(),
    })
}

/// Undoes `Content-Encoding` (`gzip`, `x-gzip`, `deflate` as zlib, `identity` or
/// none), inflating at most `limit` bytes.
pub fn decode(body: Bytes, encoding: Option<&str>, limit: usize) -> Result<Bytes, BodyFailure> {
    let enc = encoding.map(str::trim).unwrap_or("");
    if enc.is_empty() || enc.eq_ignore_ascii_case("identity") {
        return Ok(body);
    }
    if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        inflate(MultiGzDecoder::new(&body[..]), "gzip", limit)
    } else if enc.eq_ignore_ascii_case("deflate") {
        inflate(ZlibDecoder::new(&body[..]), "deflate", limit)
    } else {
        Err(BodyFailure::Encoding(enc.to_string()))
    }
}

fn inflate(mut dec: impl Read, encoding: &'static str, limit: usize) -> Result<Bytes, BodyFailure> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(0) => return Ok(Bytes::from(out)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BodyFailure::Corrupt {
                    encoding,
                    reason: e.to_string(),
                });
            }
        };
        if out.len().saturating_add(n) > limit {
            return Err(BodyFailure::InflatedTooLarge { limit });
        }
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}
