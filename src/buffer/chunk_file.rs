//! The on-disk chunk format: one checksummed header, then framed, checksummed blocks.
//!
//! The layout is specified in the [`crate::buffer`] module documentation; this module is
//! the only code that encodes or decodes it, and every decoder here treats the file as
//! untrusted: lengths are checked against the bytes actually present before use, and no
//! allocation is sized from a length read out of a file.

use crate::output::ChunkId;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The first four bytes of every chunk file.
pub const MAGIC: [u8; 4] = *b"TPCK";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the header before the key: magic, version, flags, key length, time, id.
const FIXED_HEADER: usize = 4 + 1 + 1 + 2 + 8 + 16;
/// Bytes of a block's frame before its entries: length, crc32c, record count.
pub const BLOCK_HEADER: usize = 12;
/// Longest chunk key the header can hold.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// What a chunk file's header says about the chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The chunk key (the tag by default).
    pub key: String,
    /// The id handed to outputs, stable across retries and restarts.
    pub id: ChunkId,
    /// When the chunk was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// Why a header cannot be trusted; such a file goes to the dead-letter directory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header needs.
    #[error("header truncated: {0} bytes present")]
    Truncated(usize),
    /// Not a tidepool chunk file.
    #[error("bad magic {0:02x?}, expected \"TPCK\"")]
    BadMagic([u8; 4]),
    /// Written by a newer tidepool.
    #[error("unsupported chunk format version {0}, this build reads version {VERSION}")]
    Version(u8),
    /// The header checksum does not match its bytes.
    #[error("header checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The crc32c found in the file.
        stored: u32,
        /// The crc32c of the header bytes.
        computed: u32,
    },
    /// The key is not UTF-8.
    #[error("chunk key is not UTF-8")]
    Key,
}

impl ChunkHeader {
    /// A header for a new chunk with a fresh random id, created now.
    pub fn new(key: &str) -> Self {
        ChunkHeader {
            key: key.to_string(),
            id: ChunkId::random(),
            created_ms: now_ms(),
        }
    }

    /// The header's size on disk.
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER + self.key.len() + 4
    }

    /// Appends the encoded header; the key must be at most [`MAX_KEY_LEN`] bytes (the
    /// buffer refuses longer keys before a chunk is created).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let key_len = u16::try_from(self.key.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.key.as_bytes()[..usize::from(key_len)]);
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a header from the start of `buf`, returning it and its length.
    pub fn decode(buf: &[u8]) -> Result<(ChunkHeader, usize), HeaderError> {
        let fixed = buf
            .get(..FIXED_HEADER)
            .ok_or(HeaderError::Truncated(buf.len()))?;
        let magic = [fixed[0], fixed[1], fixed[2], fixed[3]];
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        if fixed[4] != VERSION {
            return Err(HeaderError::Version(fixed[4]));
        }
        let key_len = usize::from(u16::from_le_bytes([fixed[6], fixed[7]]));
        let mut created = [0u8; 8];
        created.copy_from_slice(&fixed[8..16]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&fixed[16..32]);
        let body_len = FIXED_HEADER + key_len;
        let total = body_len + 4;
        let all = buf.get(..total).ok_or(HeaderError::Truncated(buf.len()))?;
        let stored = u32_at(all, body_len);
        let computed = crc32c::crc32c(&all[..body_len]);
        if stored != computed {
            return Err(HeaderError::Checksum { stored, computed });
        }
        let key =
            std::str::from_utf8(&all[FIXED_HEADER..body_len]).map_err(|_| HeaderError::Key)?;
        Ok((
            ChunkHeader {
                key: key.to_string(),
                id: ChunkId(id),
                created_ms: u64::from_le_bytes(created),
            },
            total,
        ))
    }
}

/// The frame of one block, to be followed by the entry bytes themselves.
pub fn block_header(entries: &[u8], records: u32) -> [u8; BLOCK_HEADER] {
    let len = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    let crc = block_crc(records, entries);
    let mut out = [0u8; BLOCK_HEADER];
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out[8..12].copy_from_slice(&records.to_le_bytes());
    out
}

/// The block checksum covers the record count and the entries, so neither can rot unseen.
fn block_crc(records: u32, entries: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&records.to_le_bytes()), entries)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

/// Why the blocks of a chunk stop before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailProblem {
    /// Where the first bad or incomplete block starts.
    pub offset: usize,
    /// Bytes from `offset` to the end of the file, all dropped by truncation.
    pub dropped: usize,
    /// What was wrong, for the log.
    pub reason: &'static str,
}

/// A whole chunk file, parsed: its header and the location of every good block.
#[derive(Clone, Debug)]
pub struct ChunkImage {
    /// The decoded header.
    pub header: ChunkHeader,
    /// Byte ranges of each good block's entries within the file.
    pub entries: Vec<Range<usize>>,
    /// Sum of the good blocks' record counts.
    pub records: u32,
    /// Bytes up to the end of the last good block; the file is truncated to this.
    pub good_len: usize,
    /// Set when bytes follow the last good block.
    pub tail: Option<TailProblem>,
}

/// Parses a chunk file's bytes; blocks are kept up to the first torn or corrupt one.
pub fn parse(buf: &[u8]) -> Result<ChunkImage, HeaderError> {
    let (header, mut at) = ChunkHeader::decode(buf)?;
    let mut entries = Vec::new();
    let mut records: u32 = 0;
    let tail = loop {
        if at == buf.len() {
            break None;
        }
        let problem = |reason| {
            Some(TailProblem {
                offset: at,
                dropped: buf.len() - at,
                reason,
            })
        };
        let Some(frame) = buf.get(at..at + BLOCK_HEADER) else {
            break problem("torn block header");
        };
        let len = u32_at(frame, 0) as usize;
        let crc = u32_at(frame, 4);
        let n = u32_at(frame, 8);
        if len == 0 {
            break problem("empty block");
        }
        let start = at + BLOCK_HEADER;
        let Some(end) = start.checked_add(len).filter(|&e| e <= buf.len()) else {
            break problem("torn block: length runs past the end of the file");
        };
        if block_crc(n, &buf[start..end]) != crc {
            break problem("block checksum mismatch");
        }
        let Some(total) = records.checked_add(n) else {
            break problem("record count overflows u32");
        };
        records = total;
        entries.push(start..end);
        at = end;
    };
    let good_len = tail.as_ref().map_or(buf.len(), |t| t.offset);
    Ok(ChunkImage {
        header,
        entries,
        records,
        good_len,
        tail,
    })
}

/// A cheap look at a chunk file for listings: header and block frames, without
/// reading or checking entry bytes.
#[derive(Clone, Debug)]
pub struct ChunkSummary {
    /// The decoded header.
    pub header: ChunkHeader,
    /// Number of complete blocks.
    pub blocks: usize,
    /// Sum of their record counts.
    pub records: u64,
    /// The file's size.
    pub file_len: u64,
    /// Bytes after the last complete block (a torn tail).
    pub torn_bytes: u64,
}

/// Reads a chunk's header and walks its block frames by seeking over the entries.
pub fn summarize(path: &Path) -> io::Result<Result<ChunkSummary, HeaderError>> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let mut head = Vec::new();
    (&mut r).take(FIXED_HEADER as u64).read_to_end(&mut head)?;
    let key_len = match head.get(6..8) {
        Some(b) => u64::from(u16::from_le_bytes([b[0], b[1]])),
        None => return Ok(Err(HeaderError::Truncated(head.len()))),
    };
    (&mut r).take(key_len + 4).read_to_end(&mut head)?;
    let (header, header_len) = match ChunkHeader::decode(&head) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let mut at = header_len as u64;
    let mut blocks = 0;
    let mut records = 0u64;
    loop {
        let mut frame = [0u8; BLOCK_HEADER];
        if at + BLOCK_HEADER as u64 > file_len || r.read_exact(&mut frame).is_err() {
            break;
        }
        let len = u64::from(u32_at(&frame, 0));
        let end = at + BLOCK_HEADER as u64 + len;
        if len == 0 || end > file_len {
            break;
        }
        r.seek_relative(len as i64)?;
        blocks += 1;
        records += u64::from(u32_at(&frame, 8));
        at = end;
    }
    Ok(Ok(ChunkSummary {
        header,
        blocks,
        records,
        file_len,
        torn_bytes: file_len - at,
    }))
}

/// Where a chunk file is in its life, as told by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    /// `b<id>.chunk`: still being appended to.
    Staged,
    /// `q<id>.chunk`: closed, waiting for (or between attempts at) a flush.
    Queued,
}

/// The file name of a chunk in a given state.
pub fn chunk_file_name(state: FileState, id: &ChunkId) -> String {
    let prefix = match state {
        FileState::Staged => 'b',
        FileState::Queued => 'q',
    };
    format!("{prefix}{}.chunk", id.hex())
}

/// The path of a chunk in a given state under `dir`.
pub fn chunk_path(dir: &Path, state: FileState, id: &ChunkId) -> PathBuf {
    dir.join(chunk_file_name(state, id))
}

/// Reads a chunk file name back into its state and id.
pub fn parse_chunk_name(name: &str) -> Option<(FileState, ChunkId)> {
    let stem = name.strip_suffix(".chunk")?;
    let state = match stem.as_bytes().first()? {
        b'b' => FileState::Staged,
        b'q' => FileState::Queued,
        _ => return None,
    };
    Some((state, parse_id(stem.get(1..)?)?))
}

/// Parses 32 hex characters into a chunk id.
pub fn parse_id(hex_text: &str) -> Option<ChunkId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_text, &mut id).ok()?;
    Some(ChunkId(id))
}

/// Milliseconds since the Unix epoch, for headers and sidecar files.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
