//! Re-reading a buffer directory at start (and the `requeue/` inbox while running).
//!
//! Every chunk file is read, one at a time (so a backlog of thousands holds one file
//! open at once), and parsed: complete blocks with good checksums are kept, a torn or
//! corrupt tail is truncated and logged with its byte count, an unreadable header sends
//! the file to the dead-letter directory. Survivors are renamed to their queued name
//! and queued oldest first, with the retry state their sidecar recorded.

use super::chunk_file::{self, FileState};
use super::dead_letter::{self, RETRY_NOW_SUFFIX};
use super::queue::{ChunkData, QueuedChunk, RetryState};
use super::sidecar::{self, DeadLetterRecord};
use crate::output::ChunkId;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

/// Creates the buffer directory layout and recovers every chunk in it and in its
/// `requeue/` inbox.
pub(super) fn recover_dir(dir: &Path, output: &str) -> io::Result<Vec<QueuedChunk>> {
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(dead_letter::dead_letter_dir(dir))?;
    std::fs::create_dir_all(dead_letter::requeue_dir(dir))?;
    let mut seen = HashSet::new();
    let mut chunks = Vec::new();
    for path in chunk_files(dir)? {
        if let Some(c) = recover_file(dir, output, &path, &mut seen) {
            chunks.push(c);
        }
    }
    let (requeued, _) = scan_inbox(dir, output, &mut seen)?;
    chunks.extend(requeued);
    for c in &mut chunks {
        if let Some(state) = sidecar::read_state(dir, &c.id) {
            c.retry = state.into_state();
        }
    }
    remove_orphan_states(dir, &seen);
    chunks.sort_by_key(|c| c.created_ms);
    if !chunks.is_empty() {
        let bytes: u64 = chunks.iter().map(|c| c.bytes).sum();
        tracing::info!(
            buffer = output,
            chunks = chunks.len(),
            bytes,
            "recovered buffered chunks"
        );
    }
    Ok(chunks)
}

/// Picks up chunks dropped into `requeue/` (by `tidepool buffer dead-letter requeue`)
/// and the ids of `<id>.now` markers (by `tidepool buffer requeue`). Chunks whose id
/// is in `seen` are left in the inbox with a warning rather than flushed twice.
pub(super) fn scan_inbox(
    dir: &Path,
    output: &str,
    seen: &mut HashSet<ChunkId>,
) -> io::Result<(Vec<QueuedChunk>, Vec<ChunkId>)> {
    let inbox = dead_letter::requeue_dir(dir);
    let mut chunks = Vec::new();
    let mut markers = Vec::new();
    let entries = match std::fs::read_dir(&inbox) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((chunks, markers)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(hex) = name.strip_suffix(RETRY_NOW_SUFFIX) {
            if let Some(id) = chunk_file::parse_id(hex) {
                markers.push(id);
            }
            let _ = std::fs::remove_file(&path);
        } else if path.is_file()
            && !name.starts_with('.')
            && let Some(c) = recover_file(dir, output, &path, seen)
        {
            tracing::info!(buffer = output, chunk = %c.id, key = %c.key, "requeued chunk picked up");
            chunks.push(c);
        }
    }
    Ok((chunks, markers))
}

/// Every `*.chunk` file directly in `dir`, in name order.
fn chunk_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "chunk") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Validates one chunk file and moves it to `dir/q<id>.chunk`; None if it went to the
/// dead-letter directory, held nothing, or could not be read (then it stays put).
pub(super) fn recover_file(
    dir: &Path,
    output: &str,
    path: &Path,
    seen: &mut HashSet<ChunkId>,
) -> Option<QueuedChunk> {
    let file_name = path.file_name()?.to_string_lossy().into_owned();
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(buffer = output, path = %path.display(), error = %e, "cannot read a chunk file; leaving it in place");
            return None;
        }
    };
    let image = match chunk_file::parse(&buf) {
        Ok(i) => i,
        Err(e) => {
            let reason = format!("unreadable chunk header: {e}");
            give_up(
                dir,
                output,
                path,
                &file_name,
                buf.len() as u64,
                reason,
                None,
            );
            return None;
        }
    };
    let header = &image.header;
    if let Some(tail) = &image.tail {
        tracing::warn!(
            buffer = output,
            path = %path.display(),
            offset = tail.offset,
            dropped_bytes = tail.dropped,
            reason = tail.reason,
            "truncating a torn or corrupt chunk tail; the blocks before it are kept"
        );
        let cut = OpenOptions::new().write(true).open(path).and_then(|f| {
            f.set_len(image.good_len as u64)
                .and_then(|()| f.sync_data())
        });
        if let Err(e) = cut {
            tracing::error!(buffer = output, path = %path.display(), error = %e, "could not truncate the chunk; its good blocks will still be flushed");
        }
    }
    if image.entries.is_empty() {
        tracing::info!(buffer = output, path = %path.display(), "removing a chunk file that holds no complete block");
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(buffer = output, path = %path.display(), error = %e, "could not remove an empty chunk file");
        }
        return None;
    }
    let target = chunk_file::chunk_path(dir, FileState::Queued, &header.id);
    if !seen.insert(header.id) || (target != path && target.exists()) {
        let reason = format!(
            "duplicate chunk id {}: another chunk file has it",
            header.id
        );
        give_up(
            dir,
            output,
            path,
            &file_name,
            buf.len() as u64,
            reason,
            Some(&image.header),
        );
        return None;
    }
    let path = if target == path {
        target
    } else {
        match std::fs::rename(path, &target) {
            Ok(()) => target,
            Err(e) => {
                tracing::warn!(buffer = output, path = %path.display(), error = %e, "could not rename a recovered chunk to its queued name");
                path.to_path_buf()
            }
        }
    };
    Some(QueuedChunk {
        id: header.id,
        key: header.key.clone(),
        records: image.records,
        bytes: image.good_len as u64,
        created_ms: header.created_ms,
        data: ChunkData::File(path),
        retry: RetryState::default(),
        in_flight: false,
        drain_attempted: false,
    })
}

fn give_up(
    dir: &Path,
    output: &str,
    path: &Path,
    file_name: &str,
    bytes: u64,
    reason: String,
    header: Option<&chunk_file::ChunkHeader>,
) {
    let record = DeadLetterRecord {
        output: output.to_string(),
        id: header.map(|h| h.id.hex()),
        key: header.map(|h| h.key.clone()),
        records: None,
        bytes,
        reason: reason.clone(),
        failures: 0,
        created_ms: header.map(|h| h.created_ms),
        dead_lettered_ms: chunk_file::now_ms(),
        original_name: file_name.to_string(),
    };
    match dead_letter::move_file(dir, path, file_name, &record) {
        Ok(dest) => {
            tracing::error!(buffer = output, path = %path.display(), moved_to = %dest.display(), reason = %reason, "chunk moved to the dead-letter directory")
        }
        Err(e) => {
            tracing::error!(buffer = output, path = %path.display(), reason = %reason, error = %e, "chunk cannot be used and could not be moved to the dead-letter directory; leaving it in place")
        }
    }
}

/// Removes `<id>.state` files whose chunk is gone (flushed before the state was
/// cleaned up, e.g. by a crash in between).
fn remove_orphan_states(dir: &Path, live: &HashSet<ChunkId>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let id = name
            .strip_suffix(".state")
            .or_else(|| name.strip_suffix(".state.tmp"))
            .and_then(chunk_file::parse_id);
        if let Some(id) = id
            && (name.ends_with(".tmp") || !live.contains(&id))
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}
