//! Skip-scanner: finds where one MessagePack value ends, checking it is well formed.
//!
//! Nothing here builds values or allocates from a declared length: a header's length
//! is checked against [`Limits::max_bytes`] the moment it is read, a container's count
//! against the bytes still allowed (every element takes at least one byte), and the
//! only memory is a stack of open containers bounded by [`Limits::max_depth`].

use super::head::{Head, head_len, read_head, truncated};

/// Bounds that a scan enforces before trusting any length a client declared.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest value accepted, in bytes; a header declaring more is rejected at once.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and maps accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 << 20,
            max_depth: 64,
        }
    }
}

/// Outcome of scanning a buffer that may hold only part of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole value occupies the first `n` bytes.
    Complete(usize),
    /// The value is not complete; do not scan again before `at_least` bytes are buffered.
    Incomplete {
        /// Lower bound on the bytes needed.
        at_least: usize,
    },
}

/// Why bytes are not acceptable MessagePack.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    /// The bytes break the MessagePack format (e.g. the never-used byte 0xc1, a value
    /// cut short) or the shape an entry must have.
    #[error("invalid MessagePack at byte {offset}: {what}")]
    Invalid {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A header declares more bytes (or more elements) than the limit leaves room for;
    /// rejected before any of the body arrives, so a lying header costs nothing.
    #[error(
        "{what} at byte {offset} declares {declared}, only {allowed} bytes remain within the limit of {limit} bytes"
    )]
    TooLarge {
        /// Byte offset of the header.
        offset: usize,
        /// The header kind, e.g. "str32 length" or "array element count".
        what: &'static str,
        /// The length or count the header declared.
        declared: u64,
        /// Bytes still allowed after the header.
        allowed: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Well-formed MessagePack that is not a valid `[time, record]` entry.
    #[error("{what} (byte {offset})")]
    Entry {
        /// Byte offset of the offending value.
        offset: usize,
        /// What is wrong, naming the element and what was expected.
        what: &'static str,
    },
    /// Containers nest deeper than the limit.
    #[error("nesting deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Byte offset of the container that goes too deep.
        offset: usize,
        /// The configured depth limit.
        limit: usize,
    },
}

impl ScanError {
    /// The byte offset of the problem, for a log line.
    pub fn offset(&self) -> usize {
        match *self {
            ScanError::Invalid { offset, .. }
            | ScanError::TooLarge { offset, .. }
            | ScanError::Entry { offset, .. }
            | ScanError::TooDeep { offset, .. } => offset,
        }
    }
}

/// Resumable scan state for one value: the position reached and the open containers,
/// so bytes appended between calls are scanned once, never from the start again.
#[derive(Clone, Debug)]
pub struct Scanner {
    limits: Limits,
    /// Where the next header starts.
    pos: usize,
    /// Elements still expected by each open container (innermost last).
    open: Vec<u64>,
    /// Bytes that must be buffered before scanning is worth resuming.
    need: usize,
    /// [`check_value`]'s container stack, kept here so it is not zeroed per value.
    fast: Box<[u64; FAST_DEPTH]>,
}

impl Scanner {
    /// A scanner at the start of a value.
    pub fn new(limits: Limits) -> Self {
        Scanner {
            limits,
            pos: 0,
            open: Vec::new(),
            need: 0,
            fast: Box::new([0; FAST_DEPTH]),
        }
    }

    /// Forgets progress (after a value was taken) but keeps the stack's memory.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
        self.need = 0;
    }

    /// Continues scanning `buf`, whose first bytes are the ones seen by earlier calls
    /// since the last [`Scanner::reset`]. Cost is proportional to the new bytes only.
    pub fn resume(&mut self, buf: &[u8]) -> Result<Scan, ScanError> {
        if buf.len() < self.need {
            return Ok(Scan::Incomplete {
                at_least: self.need,
            });
        }
        let max = self.limits.max_bytes;
        loop {
            let pos = self.pos;
            let Some(&marker) = buf.get(pos) else {
                return Ok(self.wait(pos.saturating_add(1)));
            };
            // Hot path: scalars whose size the marker alone fixes (most of a record)
            // skip the general header decoding. Anything unusual, including a value
            // that would cross the limit, falls through to the exact checks below.
            if let Some(len) = fixed_len(marker) {
                let end = pos.saturating_add(len);
                if end <= max {
                    if end > buf.len() {
                        return Ok(self.wait(end));
                    }
                    self.pos = end;
                    if self.finish_value() {
                        return Ok(self.done());
                    }
                    continue;
                }
            }
            let (head, hlen) = match read_head(buf, pos)? {
                Some(h) => h,
                None => return Ok(self.wait(pos.saturating_add(head_len(marker)))),
            };
            let after = pos.saturating_add(hlen);
            if after > max {
                let left = max.saturating_sub(pos) as u64;
                return Err(too_large(pos, 0, hlen as u64, left, max));
            }
            let allowed = (max - after) as u64;
            let elements = match head {
                Head::Array(n) => u64::from(n),
                Head::Map(n) => u64::from(n) * 2,
                _ => {
                    let body = u64::from(head.body_len());
                    if body > allowed {
                        return Err(too_large(pos, marker, body, allowed, max));
                    }
                    let end = after + body as usize;
                    if end > buf.len() {
                        // Stay on this header: it is re-read (O(1)) once `end` bytes exist.
                        return Ok(self.wait(end));
                    }
                    self.pos = end;
                    if self.finish_value() {
                        return Ok(self.done());
                    }
                    continue;
                }
            };
            if elements > allowed {
                return Err(too_large(pos, marker, elements, allowed, max));
            }
            self.pos = after;
            if elements == 0 {
                if self.finish_value() {
                    return Ok(self.done());
                }
                continue;
            }
            if self.open.len() >= self.limits.max_depth {
                return Err(ScanError::TooDeep {
                    offset: pos,
                    limit: self.limits.max_depth,
                });
            }
            self.open.push(elements);
        }
    }

    fn wait(&mut self, at_least: usize) -> Scan {
        self.need = at_least;
        Scan::Incomplete { at_least }
    }

    fn done(&mut self) -> Scan {
        let n = self.pos;
        self.reset();
        Scan::Complete(n)
    }

    /// Records that a value ended; true when that closed the outermost value.
    #[inline]
    fn finish_value(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }
}

/// The whole encoded size of a value that has no length field beyond its marker, or
/// None for containers, variable-length values and the never-used byte.
#[inline]
fn fixed_len(marker: u8) -> Option<usize> {
    Some(match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
        0xa0..=0xbf => 1 + usize::from(marker & 0x1f),
        0xcc | 0xd0 => 2,
        0xcd | 0xd1 => 3,
        0xca | 0xce | 0xd2 => 5,
        0xcb | 0xcf | 0xd3 => 9,
        0xd4 => 3,
        0xd5 => 4,
        0xd6 => 6,
        0xd7 => 10,
        0xd8 => 18,
        _ => return None,
    })
}

fn too_large(offset: usize, marker: u8, declared: u64, allowed: u64, limit: usize) -> ScanError {
    let what = match marker {
        0xc4..=0xc6 => "bin length",
        0xa0..=0xbf | 0xd9..=0xdb => "str length",
        0xc7..=0xc9 | 0xd4..=0xd8 => "ext length",
        0x90..=0x9f | 0xdc | 0xdd => "array element count",
        0x80..=0x8f | 0xde | 0xdf => "map key/value count",
        _ => "value header",
    };
    ScanError::TooLarge {
        offset,
        what,
        declared,
        allowed,
        limit,
    }
}

/// Scans one value at the start of `buf`.
pub fn scan_value(buf: &[u8], limits: &Limits) -> Result<Scan, ScanError> {
    Scanner::new(*limits).resume(buf)
}

/// Deepest nesting [`check_value`] validates with a stack on the call stack; deeper
/// limits go through the resumable [`Scanner`].
const FAST_DEPTH: usize = 64;

/// Checks that `buf[pos..]` starts with one complete, well-formed value within
/// `scanner`'s limits (reusing its stack), and returns where the value ends.
///
/// This is the per-record check of every PackedForward entry, so when the whole value
/// is already buffered and cannot cross the byte limit (the usual case: the frame
/// was bounded by the same limit), a straight loop with its container stack in a
/// fixed array does the work; it accepts and rejects exactly what the scanner does.
#[inline]
pub fn check_value(scanner: &mut Scanner, buf: &[u8], pos: usize) -> Result<usize, ScanError> {
    let rest = buf.get(pos..).ok_or_else(|| truncated(pos))?;
    if rest.len() <= scanner.limits.max_bytes && scanner.limits.max_depth <= FAST_DEPTH {
        return check_complete(rest, &scanner.limits, &mut scanner.fast)
            .map(|n| pos + n)
            .map_err(|e| shift(e, pos));
    }
    scanner.reset();
    let res = scanner.resume(rest);
    scanner.reset();
    match res {
        Ok(Scan::Complete(n)) => Ok(pos + n),
        Ok(Scan::Incomplete { .. }) => Err(truncated(pos)),
        Err(e) => Err(shift(e, pos)),
    }
}

/// Validates the value at the start of `buf`, all of which is buffered and no longer
/// than `limits.max_bytes`; returns its length. Errors are the scanner's: a length
/// or count crossing the limit is [`ScanError::TooLarge`], one that only runs past
/// the buffer is truncation at the value's start.
fn check_complete(
    buf: &[u8],
    limits: &Limits,
    open: &mut [u64; FAST_DEPTH],
) -> Result<usize, ScanError> {
    // `open` holds the elements still expected by each open container, innermost at
    // `depth - 1`; slots at `depth` and above are stale and written before being read.
    let mut depth = 0usize;
    let mut pos = 0usize;
    loop {
        let start = pos;
        let Some(&marker) = buf.get(pos) else {
            return Err(truncated(0));
        };
        let elements = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {
                pos += 1;
                0
            }
            0xa0..=0xbf => {
                pos += 1 + usize::from(marker & 0x1f);
                0
            }
            0x80..=0x8f => {
                pos += 1;
                u64::from(marker & 0x0f) * 2
            }
            0x90..=0x9f => {
                pos += 1;
                u64::from(marker & 0x0f)
            }
            _ => {
                let (head, hlen) = read_head(buf, pos)?.ok_or_else(|| truncated(0))?;
                pos += hlen;
                let allowed = limits.max_bytes.saturating_sub(pos) as u64;
                let declared = match head {
                    Head::Array(n) => u64::from(n),
                    Head::Map(n) => u64::from(n) * 2,
                    _ => u64::from(head.body_len()),
                };
                if declared > allowed {
                    return Err(too_large(
                        start,
                        marker,
                        declared,
                        allowed,
                        limits.max_bytes,
                    ));
                }
                match head {
                    Head::Array(_) | Head::Map(_) => declared,
                    _ => {
                        pos += declared as usize;
                        0
                    }
                }
            }
        };
        if pos > buf.len() {
            return Err(truncated(0));
        }
        if elements > 0 {
            if depth >= limits.max_depth {
                return Err(ScanError::TooDeep {
                    offset: start,
                    limit: limits.max_depth,
                });
            }
            if elements > (buf.len() - pos) as u64 {
                return Err(truncated(0));
            }
            if let Some(slot) = open.get_mut(depth) {
                *slot = elements;
            }
            depth += 1;
            continue;
        }
        // A value ended: count it against the open containers, closing finished ones.
        loop {
            let Some(left) = depth.checked_sub(1).and_then(|d| open.get_mut(d)) else {
                return Ok(pos);
            };
            *left -= 1;
            if *left > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// Moves an error's offset from slice-relative to buffer-relative.
pub fn shift(e: ScanError, by: usize) -> ScanError {
    match e {
        ScanError::Invalid { offset, what } => ScanError::Invalid {
            offset: offset.saturating_add(by),
            what,
        },
        ScanError::TooLarge {
            offset,
            what,
            declared,
            allowed,
            limit,
        } => ScanError::TooLarge {
            offset: offset.saturating_add(by),
            what,
            declared,
            allowed,
            limit,
        },
        ScanError::Entry { offset, what } => ScanError::Entry {
            offset: offset.saturating_add(by),
            what,
        },
        ScanError::TooDeep { offset, limit } => ScanError::TooDeep {
            offset: offset.saturating_add(by),
            limit,
        },
    }
}

/// Skips the value at `pos` in a complete buffer and returns where it ends, with no
/// depth stack (a single count of values still to skip), so it never allocates; for
/// bytes already validated, e.g. entries on the flush path. Still never panics and
/// rejects truncation, because a count larger than the bytes left is impossible.
#[inline]
pub fn skip_value(buf: &[u8], mut pos: usize) -> Result<usize, ScanError> {
    let mut left: u64 = 1;
    while left > 0 {
        let (head, hlen) = read_head(buf, pos)?.ok_or_else(|| truncated(pos))?;
        let after = pos + hlen;
        left -= 1;
        match head {
            Head::Array(n) => left += u64::from(n),
            Head::Map(n) => left += u64::from(n) * 2,
            _ => {}
        }
        let end = after
            .checked_add(head.body_len() as usize)
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| truncated(pos))?;
        if left > (buf.len() - end) as u64 {
            return Err(truncated(pos));
        }
        pos = end;
    }
    Ok(pos)
}
