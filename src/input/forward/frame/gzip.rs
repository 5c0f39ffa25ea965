//! CompressedPackedForward bodies (reference section 9): one or more gzip members
//! back to back, inflated under a hard output limit.

use super::DecodeError;
use flate2::read::MultiGzDecoder;
use std::io::Read;

/// Inflates every member of `body`, failing as soon as the output passes `limit`, so
/// a gzip bomb costs at most `limit` bytes of memory and the time to inflate them.
/// A bad header, a truncated member or bytes after the last member are errors.
pub(super) fn inflate(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Gzip {
            inflated: 0,
            reason: "the compressed body is empty".into(),
        });
    }
    let mut dec = MultiGzDecoder::new(body);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecodeError::Gzip {
                    inflated: out.len(),
                    reason: e.to_string(),
                });
            }
        };
        if out.len().saturating_add(n) > limit {
            return Err(DecodeError::Inflated { limit });
        }
        // Grow by doubling, but never past the limit: a bomb stopped at the limit has
        // cost at most `limit` bytes, not the next power of two above it.
        if out.capacity() - out.len() < n {
            let want = out
                .capacity()
                .saturating_mul(2)
                .min(limit)
                .max(out.len() + n);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}
