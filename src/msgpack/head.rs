//! One MessagePack header at a time: the single place that knows every marker byte.
//!
//! The scanner, the entry walker and the frame decoder all read headers through
//! [`read_head`], so each type and width is decoded (and bounds-checked) exactly once.

use super::ScanError;

/// A decoded header. Scalars carry their value; `Str`, `Bin` and `Ext` carry the length
/// of the body that follows; containers carry their declared element count, which is
/// a claim by the sender and must never size an allocation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Head {
    /// `nil` (0xc0).
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer of any width.
    UInt(u64),
    /// A negative integer of any width (or a signed width holding a non-negative value).
    Int(i64),
    /// float32 (widened) or float64.
    Float(f64),
    /// A string body of this many bytes follows.
    Str(u32),
    /// A binary body of this many bytes follows.
    Bin(u32),
    /// An extension body of `len` bytes with type `ty` follows.
    Ext {
        /// The application-defined type (0 is Fluentd's EventTime, -1 msgpack Timestamp).
        ty: i8,
        /// Body length in bytes.
        len: u32,
    },
    /// An array of this many elements follows.
    Array(u32),
    /// A map of this many key/value pairs follows.
    Map(u32),
}

impl Head {
    /// A short phrase naming the type, for error messages ("time is a string").
    pub fn kind(&self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "a boolean",
            Head::UInt(_) | Head::Int(_) => "an integer",
            Head::Float(_) => "a float",
            Head::Str(_) => "a string",
            Head::Bin(_) => "a binary",
            Head::Ext { .. } => "an extension",
            Head::Array(_) => "an array",
            Head::Map(_) => "a map",
        }
    }

    /// Bytes of body that follow the header (0 for scalars and containers).
    pub fn body_len(&self) -> u32 {
        match *self {
            Head::Str(n) | Head::Bin(n) => n,
            Head::Ext { len, .. } => len,
            _ => 0,
        }
    }
}

/// Length of the header that starts with `marker`, including fixed-size scalar
/// payloads and the ext type byte; 0 for the never-used byte 0xc1.
#[inline]
pub fn head_len(marker: u8) -> usize {
    match marker {
        0x00..=0xbf | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
        0xc1 => 0,
        0xc4 | 0xd9 | 0xcc | 0xd0 => 2,
        0xc5 | 0xda | 0xcd | 0xd1 | 0xdc | 0xde => 3,
        0xc7 => 3,
        0xc8 => 4,
        0xc6 | 0xdb | 0xce | 0xd2 | 0xca | 0xdd | 0xdf => 5,
        0xc9 => 6,
        0xcf | 0xd3 | 0xcb => 9,
        0xd4..=0xd8 => 2,
    }
}

#[inline(always)]
fn be<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Reads the header at `pos`. `Ok(None)` means the buffer ends inside the header (it
/// needs `pos + head_len(marker)` bytes); on success returns the header and its length.
#[inline(always)]
pub fn read_head(buf: &[u8], pos: usize) -> Result<Option<(Head, usize)>, ScanError> {
    let Some(&m) = buf.get(pos) else {
        return Ok(None);
    };
    let p = pos.wrapping_add(1);
    macro_rules! get {
        ($n:expr) => {
            match be::<$n>(buf, p) {
                Some(b) => b,
                None => return Ok(None),
            }
        };
    }
    let head = match m {
        0x00..=0x7f => return Ok(Some((Head::UInt(u64::from(m)), 1))),
        0x80..=0x8f => return Ok(Some((Head::Map(u32::from(m & 0x0f)), 1))),
        0x90..=0x9f => return Ok(Some((Head::Array(u32::from(m & 0x0f)), 1))),
        0xa0..=0xbf => return Ok(Some((Head::Str(u32::from(m & 0x1f)), 1))),
        0xe0..=0xff => return Ok(Some((Head::Int(i64::from(m as i8)), 1))),
        0xc0 => Head::Nil,
        0xc1 => {
            return Err(ScanError::Invalid {
                offset: pos,
                what: "byte 0xc1 is never used in MessagePack",
            });
        }
        0xc2 => Head::Bool(false),
        0xc3 => Head::Bool(true),
        0xc4 => Head::Bin(u32::from(get!(1)[0])),
        0xc5 => Head::Bin(u32::from(u16::from_be_bytes(get!(2)))),
        0xc6 => Head::Bin(u32::from_be_bytes(get!(4))),
        0xc7 => {
            let b: [u8; 2] = get!(2);
            Head::Ext {
                len: u32::from(b[0]),
                ty: b[1] as i8,
            }
        }
        0xc8 => {
            let b: [u8; 3] = get!(3);
            Head::Ext {
                len: u32::from(u16::from_be_bytes([b[0], b[1]])),
                ty: b[2] as i8,
            }
        }
        0xc9 => {
            let b: [u8; 5] = get!(5);
            Head::Ext {
                len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                ty: b[4] as i8,
            }
        }
        0xca => Head::Float(f64::from(f32::from_be_bytes(get!(4)))),
        0xcb => Head::Float(f64::from_be_bytes(get!(8))),
        0xcc => Head::UInt(u64::from(get!(1)[0])),
        0xcd => Head::UInt(u64::from(u16::from_be_bytes(get!(2)))),
        0xce => Head::UInt(u64::from(u32::from_be_bytes(get!(4)))),
        0xcf => Head::UInt(u64::from_be_bytes(get!(8))),
        0xd0 => Head::Int(i64::from(get!(1)[0] as i8)),
        0xd1 => Head::Int(i64::from(i16::from_be_bytes(get!(2)))),
        0xd2 => Head::Int(i64::from(i32::from_be_bytes(get!(4)))),
        0xd3 => Head::Int(i64::from_be_bytes(get!(8))),
        0xd4..=0xd8 => Head::Ext {
            ty: get!(1)[0] as i8,
            len: 1 << (m - 0xd4),
        },
        0xd9 => Head::Str(u32::from(get!(1)[0])),
        0xda => Head::Str(u32::from(u16::from_be_bytes(get!(2)))),
        0xdb => Head::Str(u32::from_be_bytes(get!(4))),
        0xdc => Head::Array(u32::from(u16::from_be_bytes(get!(2)))),
        0xdd => Head::Array(u32::from_be_bytes(get!(4))),
        0xde => Head::Map(u32::from(u16::from_be_bytes(get!(2)))),
        0xdf => Head::Map(u32::from_be_bytes(get!(4))),
    };
    Ok(Some((head, head_len(m))))
}

/// A read position over a complete buffer: a truncated value is an error here, never
/// "need more", because frames reach the decoder whole.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    /// The whole buffer.
    pub buf: &'a [u8],
    /// Offset of the next header.
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// True once every byte is consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads the next header and moves past it (not past a str/bin/ext body).
    #[inline]
    pub fn head(&mut self) -> Result<Head, ScanError> {
        match read_head(self.buf, self.pos)? {
            Some((h, n)) => {
                self.pos += n;
                Ok(h)
            }
            None => Err(truncated(self.pos)),
        }
    }

    /// Takes the `len`-byte body that follows a str/bin/ext header.
    #[inline]
    pub fn body(&mut self, len: u32) -> Result<&'a [u8], ScanError> {
        let end = (len as usize)
            .checked_add(self.pos)
            .ok_or_else(|| truncated(self.pos))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| truncated(self.pos))?;
        self.pos = end;
        Ok(b)
    }

    /// Skips one whole value of any type without checking nesting depth; meant for
    /// bytes that were validated before. Returns the value's byte range start.
    #[inline]
    pub fn skip(&mut self) -> Result<usize, ScanError> {
        let start = self.pos;
        self.pos = super::scan::skip_value(self.buf, self.pos)?;
        Ok(start)
    }
}

/// The error for a value cut short by the end of a complete buffer.
pub fn truncated(offset: usize) -> ScanError {
    ScanError::Invalid {
        offset,
        what: "value is truncated",
    }
}
