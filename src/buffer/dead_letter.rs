//! The dead-letter directory: where chunks go that will never be delivered as they
//! are (a permanent output error, retries exhausted, an unreadable header). Files are
//! moved here, never deleted, with a JSON record saying why; `tidepool buffer
//! dead-letter requeue` moves them into the `requeue/` inbox, which a running buffer
//! scans every second and a starting one reads during recovery.

use super::chunk_file::{self, ChunkHeader};
use super::sidecar::{self, DeadLetterRecord};
use std::io;
use std::path::{Path, PathBuf};

/// Subdirectory of a buffer directory holding dead letters.
pub const DEAD_LETTER_DIR: &str = "dead-letter";
/// Subdirectory of a buffer directory where requeued chunks wait to be picked up.
pub const REQUEUE_DIR: &str = "requeue";
/// Suffix of a marker file in `requeue/` asking a running buffer to retry a queued
/// chunk now with a fresh retry budget.
pub const RETRY_NOW_SUFFIX: &str = ".now";

/// `dir/dead-letter`.
pub fn dead_letter_dir(buffer_dir: &Path) -> PathBuf {
    buffer_dir.join(DEAD_LETTER_DIR)
}

/// `dir/requeue`.
pub fn requeue_dir(buffer_dir: &Path) -> PathBuf {
    buffer_dir.join(REQUEUE_DIR)
}

/// A name in `dir` not yet taken, starting from `name` and adding `.1`, `.2`, ...
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Moves a chunk file into the dead-letter directory and writes its record next to it.
/// The move happens first: a chunk without a record is still kept.
pub fn move_file(
    buffer_dir: &Path,
    src: &Path,
    file_name: &str,
    record: &DeadLetterRecord,
) -> io::Result<PathBuf> {
    let dl = dead_letter_dir(buffer_dir);
    std::fs::create_dir_all(&dl)?;
    let dest = free_name(&dl, file_name);
    std::fs::rename(src, &dest)?;
    write_record(&dest, record);
    Ok(dest)
}

/// Writes a memory chunk as a chunk file (header plus one block) into the dead-letter
/// directory, so it can be inspected and requeued like any other.
pub fn write_chunk(
    buffer_dir: &Path,
    header: &ChunkHeader,
    entries: &[u8],
    records: u32,
    record: &DeadLetterRecord,
) -> io::Result<PathBuf> {
    let dl = dead_letter_dir(buffer_dir);
    std::fs::create_dir_all(&dl)?;
    let name = chunk_file::chunk_file_name(chunk_file::FileState::Queued, &header.id);
    let dest = free_name(&dl, &name);
    let mut bytes = Vec::new();
    header.encode(&mut bytes);
    bytes.extend_from_slice(&chunk_file::block_header(entries, records));
    bytes.extend_from_slice(entries);
    let tmp = dl.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &dest)?;
    write_record(&dest, record);
    Ok(dest)
}

fn write_record(dest: &Path, record: &DeadLetterRecord) {
    let result = serde_json::to_vec_pretty(record)
        .map_err(io::Error::other)
        .and_then(|json| std::fs::write(sidecar::record_path(dest), json));
    if let Err(e) = result {
        tracing::warn!(path = %dest.display(), error = %e, "could not write the dead-letter record; the chunk itself is kept");
    }
}
