//! MessagePack frames: mode selection, options, entries (reference sections 2-4).

use super::{DecodeError, EventFrame, Frame, FrameLimits, gzip};
use crate::event::{Batch, EventTime, Signal};
use crate::msgpack::ScanError;
use crate::msgpack::entry::{
    entry_type_error, read_entry, read_meta_time, read_time, time_type_error,
};
use crate::msgpack::head::{Cursor, Head};
use crate::msgpack::scan::{Limits, Scanner, check_value, shift};
use bytes::Bytes;
use std::ops::Range;

/// How the entries body is compressed (`compressed` option, reference section 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Compression {
    #[default]
    Text,
    Gzip,
}

/// The options map, with `chunk` as a range into the frame so it can be sliced.
#[derive(Debug, Default)]
struct Options {
    size: Option<u64>,
    chunk: Option<Range<usize>>,
    compressed: Compression,
    signal: Signal,
}

/// Decodes one MessagePack frame (see [`super::decode_frame`]).
pub(super) fn decode(
    frame: Bytes,
    arrival: EventTime,
    limits: &FrameLimits,
) -> Result<Frame, DecodeError> {
    let buf: &[u8] = &frame;
    let mut cur = Cursor::new(buf);
    let len = match cur.head()? {
        Head::Nil if buf.len() == 1 => return Ok(Frame::Heartbeat),
        Head::Nil => {
            return Err(DecodeError::Trailing {
                offset: 1,
                extra: buf.len() - 1,
            });
        }
        Head::Array(n) => n,
        other => {
            return Err(DecodeError::NotArray {
                found: other.kind(),
            });
        }
    };
    if len < 2 {
        return Err(DecodeError::Arity {
            len,
            mode: "a forward frame",
            expected: "2 to 4 elements",
        });
    }
    let tag = read_tag(&mut cur)?;
    let mut scanner = Scanner::new(Limits {
        max_bytes: limits.max_frame_bytes.max(limits.max_decompressed_bytes),
        max_depth: limits.max_depth,
    });
    let mut peek = cur;
    let event = match peek.head()? {
        Head::Str(n) | Head::Bin(n) => {
            arity(len, 2, 3, "PackedForward mode", "2 or 3 elements")?;
            cur = peek;
            let start = cur.pos;
            cur.body(n)?;
            let body = start..cur.pos;
            let opts = if len == 3 {
                read_options(&mut cur)?
            } else {
                Options::default()
            };
            packed(&frame, body, opts, tag, &mut scanner, limits)?
        }
        Head::Array(n) => {
            arity(len, 2, 3, "Forward mode", "2 or 3 elements")?;
            cur = peek;
            let mut out = Vec::with_capacity(buf.len());
            let mut count = 0u32;
            let mut skipped = 0u32;
            for index in 0..n {
                let at = cur.pos;
                match cur.head().map_err(DecodeError::entry(index))? {
                    Head::Array(2) => {}
                    other => {
                        return Err(DecodeError::Entry {
                            index,
                            source: ScanError::Entry {
                                offset: at,
                                what: entry_type_error(&other),
                            },
                        });
                    }
                }
                if convert_pair(&mut cur, &mut out, arrival, &mut scanner)
                    .map_err(DecodeError::entry(index))?
                {
                    count += 1;
                } else {
                    skipped += 1;
                }
            }
            let opts = if len == 3 {
                read_options(&mut cur)?
            } else {
                Options::default()
            };
            finish(&frame, tag, Bytes::from(out), count, skipped, opts)?
        }
        _ => {
            arity(len, 3, 4, "Message mode", "3 or 4 elements")?;
            let mut out = Vec::with_capacity(buf.len());
            if !convert_pair(&mut cur, &mut out, arrival, &mut scanner)
                .map_err(DecodeError::entry(0))?
            {
                return Err(DecodeError::NilRecord);
            }
            let opts = if len == 4 {
                read_options(&mut cur)?
            } else {
                Options::default()
            };
            finish(&frame, tag, Bytes::from(out), 1, 0, opts)?
        }
    };
    if cur.pos != buf.len() {
        return Err(DecodeError::Trailing {
            offset: cur.pos,
            extra: buf.len().saturating_sub(cur.pos),
        });
    }
    Ok(Frame::Events(event))
}

fn arity(
    len: u32,
    min: u32,
    max: u32,
    mode: &'static str,
    expected: &'static str,
) -> Result<(), DecodeError> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(DecodeError::Arity {
            len,
            mode,
            expected,
        })
    }
}

/// Reads the tag: str, or bin holding UTF-8 (Fluentd accepts both), non-empty.
fn read_tag(cur: &mut Cursor<'_>) -> Result<String, DecodeError> {
    let bytes = match cur.head()? {
        Head::Str(n) | Head::Bin(n) => cur.body(n)?,
        other => {
            return Err(DecodeError::Tag {
                found: other.kind(),
            });
        }
    };
    if bytes.is_empty() {
        return Err(DecodeError::Tag { found: "empty" });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(DecodeError::Tag {
            found: "not valid UTF-8",
        }),
    }
}

/// Checks `size` and assembles the frame's result.
fn finish(
    frame: &Bytes,
    tag: String,
    entries: Bytes,
    count: u32,
    skipped: u32,
    opts: Options,
) -> Result<EventFrame, DecodeError> {
    // A non-log signal's `size` need not count top-level objects, so it is not checked.
    if let (Some(declared), Signal::Logs) = (opts.size, opts.signal) {
        let actual = u64::from(count) + u64::from(skipped);
        if declared != actual {
            return Err(DecodeError::SizeMismatch { declared, actual });
        }
    }
    Ok(EventFrame {
        batch: Batch {
            tag,
            entries,
            count,
            signal: opts.signal,
        },
        chunk: opts.chunk.map(|r| frame.slice(r)),
        skipped,
    })
}

/// PackedForward and CompressedPackedForward: validate every entry of the (inflated)
/// body and pass the bytes on unchanged.
fn packed(
    frame: &Bytes,
    body: Range<usize>,
    opts: Options,
    tag: String,
    scanner: &mut Scanner,
    limits: &FrameLimits,
) -> Result<EventFrame, DecodeError> {
    // Plain bodies report offsets within the frame; inflated ones within the output.
    let base = match opts.compressed {
        Compression::Text => body.start,
        Compression::Gzip => 0,
    };
    let entries = match opts.compressed {
        Compression::Text => frame.slice(body),
        Compression::Gzip => {
            let raw = frame.get(body).unwrap_or_default();
            Bytes::from(gzip::inflate(raw, limits.max_decompressed_bytes)?)
        }
    };
    let count = match opts.signal {
        Signal::Logs => count_entries(&entries, base, scanner)?,
        Signal::Other(_) => count_objects(&entries, base, scanner)?,
    };
    finish(frame, tag, entries, count, 0, opts)
}

fn count_entries(body: &[u8], base: usize, scanner: &mut Scanner) -> Result<u32, DecodeError> {
    let mut pos = 0;
    let mut count = 0u32;
    while pos < body.len() {
        let (_, end) = read_entry(body, pos, Some(scanner)).map_err(|e| DecodeError::Entry {
            index: count,
            source: shift(e, base),
        })?;
        pos = end;
        count = count.checked_add(1).ok_or(DecodeError::SizeMismatch {
            declared: 0,
            actual: u64::from(u32::MAX) + 1,
        })?;
    }
    Ok(count)
}

/// Counts the top-level objects of a non-log signal payload, checking each is
/// well-formed; they are cmetrics/ctraces objects, not entries (reference section 4).
fn count_objects(body: &[u8], base: usize, scanner: &mut Scanner) -> Result<u32, DecodeError> {
    let mut pos = 0;
    let mut count = 0u32;
    while pos < body.len() {
        pos = check_value(scanner, body, pos).map_err(|e| DecodeError::Payload {
            index: count,
            source: shift(e, base),
        })?;
        count = count.saturating_add(1);
    }
    Ok(count)
}

/// Converts the `time, record` after an entry's array header into a packed entry in
/// `out`. Returns false (writing nothing) when the record is nil.
fn convert_pair(
    cur: &mut Cursor<'_>,
    out: &mut Vec<u8>,
    arrival: EventTime,
    scanner: &mut Scanner,
) -> Result<bool, ScanError> {
    let buf = cur.buf;
    let start = cur.pos;
    let mut peek = *cur;
    // The time bytes to write: the wire's own bytes, or arrival (with metadata).
    let (raw_time, meta): (Option<Range<usize>>, Option<Range<usize>>) = match peek.head()? {
        Head::Nil => {
            *cur = peek;
            (None, None)
        }
        Head::Array(2) => {
            *cur = peek;
            let (t, (a, b)) = read_meta_time(cur, Some(scanner))?;
            if t.zero {
                (None, Some(a..b))
            } else {
                (Some(start..cur.pos), None)
            }
        }
        Head::Array(_) => {
            return Err(ScanError::Entry {
                offset: start,
                what: time_type_error(&Head::Array(0)),
            });
        }
        _ => {
            let t = read_time(cur)?;
            if t.zero {
                (None, None)
            } else {
                (Some(start..cur.pos), None)
            }
        }
    };
    let rec = cur.pos;
    let mut peek = *cur;
    if peek.head()? == Head::Nil {
        *cur = peek;
        return Ok(false);
    }
    cur.pos = check_value(scanner, buf, rec)?;
    out.push(0x92);
    match (raw_time, meta) {
        (Some(r), _) => out.extend_from_slice(buf.get(r).unwrap_or_default()),
        (None, Some(m)) => {
            out.push(0x92);
            arrival.encode(out);
            out.extend_from_slice(buf.get(m).unwrap_or_default());
        }
        (None, None) => arrival.encode(out),
    }
    out.extend_from_slice(buf.get(rec..cur.pos).unwrap_or_default());
    Ok(true)
}

/// Reads the options map (reference section 4); unknown keys are skipped.
fn read_options(cur: &mut Cursor<'_>) -> Result<Options, DecodeError> {
    let n = match cur.head()? {
        Head::Map(n) => n,
        other => {
            return Err(DecodeError::OptionsNotMap {
                found: other.kind(),
            });
        }
    };
    let mut opts = Options::default();
    for _ in 0..n {
        let mut peek = *cur;
        let key: &[u8] = match peek.head()? {
            Head::Str(l) => {
                *cur = peek;
                cur.body(l)?
            }
            _ => {
                cur.skip()?;
                b""
            }
        };
        let vstart = cur.pos;
        let mut value = *cur;
        let head = value.head()?;
        let wrong = |key, expected| DecodeError::OptionType {
            key,
            found: head.kind(),
            expected,
        };
        match key {
            b"size" => match head {
                Head::UInt(s) => opts.size = Some(s),
                _ => return Err(wrong("size", "a non-negative integer")),
            },
            b"chunk" => match head {
                Head::Str(l) => {
                    let s = value.pos;
                    value.body(l)?;
                    opts.chunk = Some(s..value.pos);
                }
                _ => return Err(wrong("chunk", "a string")),
            },
            b"compressed" => match head {
                Head::Str(l) => match value.body(l)? {
                    b"gzip" => opts.compressed = Compression::Gzip,
                    b"text" => opts.compressed = Compression::Text,
                    other => {
                        return Err(DecodeError::Compression {
                            value: String::from_utf8_lossy(other).into_owned(),
                        });
                    }
                },
                _ => return Err(wrong("compressed", "the string \"gzip\" or \"text\"")),
            },
            b"fluent_signal" => match head {
                Head::UInt(0) => opts.signal = Signal::Logs,
                Head::UInt(v) => {
                    opts.signal = Signal::Other(
                        u8::try_from(v).map_err(|_| DecodeError::Signal { value: v })?,
                    )
                }
                _ => return Err(wrong("fluent_signal", "an integer")),
            },
            _ => {}
        }
        cur.pos = vstart;
        cur.skip()?;
    }
    Ok(opts)
}
