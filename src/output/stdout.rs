//! `type = "stdout"`: `time tag: json` lines, like Fluentd's stdout output.
//!
//! A line is `2023-11-14 22:13:20.123456789 +0000 td.test_database.cpu_info: {"a":1}`:
//! Fluentd's default stdout format, always in UTC, with nanoseconds. The whole chunk is
//! rendered first and written with one locked write, so chunks never interleave.

use super::{Chunk, OutputError};
use crate::event::EventTime;
use crate::msgpack::entry::entry_head;
use std::io::Write as _;

/// Writes lines to the process's stdout.
#[derive(Debug)]
pub struct StdoutOutput {
    name: String,
}

impl StdoutOutput {
    /// A stdout output named `name`.
    pub fn new(name: &str) -> Self {
        StdoutOutput {
            name: name.to_string(),
        }
    }

    /// Prints every event of the chunk with one write of the locked stdout.
    ///
    /// A chunk whose entries cannot be transcoded is `Permanent`; a failed write (closed
    /// pipe, full disk behind a redirect) is `Retryable`.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let text = render_chunk(chunk)?;
        let name = self.name.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&text).and_then(|()| stdout.flush())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OutputError::Retryable(format!(
                "output {name}: writing chunk {} to stdout failed: {e}",
                chunk.id
            ))),
            Err(e) => Err(OutputError::Retryable(format!(
                "output {name}: stdout writer task for chunk {} failed: {e}",
                chunk.id
            ))),
        }
    }
}

/// Renders every event of `chunk` as stdout lines, the chunk key standing for the tag.
///
/// Pure, so the exact line format is testable without capturing stdout. A malformed
/// entry makes the whole chunk `Permanent`: it will never render on a retry.
pub fn render_chunk(chunk: &Chunk) -> Result<Vec<u8>, OutputError> {
    let buf = &chunk.entries[..];
    let mut out = Vec::with_capacity(buf.len().saturating_mul(2));
    let (mut pos, mut i) = (0usize, 0usize);
    while pos < buf.len() {
        let bad = |e: crate::msgpack::ScanError| {
            OutputError::Permanent(format!(
                "chunk {} (key {:?}): entry {i} cannot be rendered as JSON: {e}",
                chunk.id, chunk.key
            ))
        };
        // One pass per record: the time is read, then the record is rendered while
        // it is walked, which also finds where the next entry starts.
        let (time, record_at) = entry_head(buf, pos).map_err(bad)?;
        let rest = buf.get(record_at..).unwrap_or_default();
        let len = write_prefix_line(time, &chunk.key, rest, &mut out).map_err(bad)?;
        pos = record_at + len;
        i += 1;
    }
    Ok(out)
}

/// Appends one `time tag: json\n` line for the record at the start of `record`
/// (more bytes may follow it); returns the record's length. On error `out` is left
/// as it was.
fn write_prefix_line(
    time: EventTime,
    tag: &str,
    record: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, crate::msgpack::ScanError> {
    let start = out.len();
    write_line_head(time, tag, out);
    match super::json::write_json_prefix(record, &[], out) {
        Ok(len) => {
            out.push(b'\n');
            Ok(len)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// `time tag: `, control characters in the tag printed as `?` so a tag cannot forge
/// extra lines.
fn write_line_head(time: EventTime, tag: &str, out: &mut Vec<u8>) {
    write_time_utc(time, out);
    out.push(b' ');
    out.extend(
        tag.bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b'?' } else { b }),
    );
    out.extend_from_slice(b": ");
}

/// Appends one `time tag: json\n` line; on error `out` is left as it was.
///
/// Control characters in the tag are printed as `?` so a tag cannot forge extra lines.
pub fn write_line(
    time: EventTime,
    tag: &str,
    record: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), crate::msgpack::ScanError> {
    let start = out.len();
    write_line_head(time, tag, out);
    if let Err(e) = super::json::write_json(record, out) {
        out.truncate(start);
        return Err(e);
    }
    out.push(b'\n');
    Ok(())
}

/// Appends `t` as `YYYY-MM-DD HH:MM:SS.nnnnnnnnn +0000` (UTC), Fluentd's stdout time.
///
/// Nanoseconds of a malformed EventTime (1e9 or more) carry into the seconds, so every
/// time renders as a valid clock reading.
pub fn write_time_utc(t: EventTime, out: &mut Vec<u8>) {
    let secs = t.secs.saturating_add(i64::from(t.nanos / 1_000_000_000));
    let nanos = t.nanos % 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::event::civil_from_days(days);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{nanos:09} +0000",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}
