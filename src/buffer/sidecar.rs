//! Small JSON files kept next to chunks: the retry state of a queued chunk
//! (`<id>.state`), so the retry budget and last error survive restarts and show in
//! `tidepool buffer list`; and the record of why a chunk was dead-lettered
//! (`dead-letter/<file>.json`).

use super::queue::RetryState;
use crate::output::ChunkId;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The persisted part of a queued chunk's retry state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryFile {
    /// Failed delivery attempts so far.
    pub failures: u32,
    /// When the first attempt failed, in ms since the Unix epoch.
    pub first_failure_ms: Option<u64>,
    /// The last error the output returned.
    pub last_error: Option<String>,
    /// When the next attempt is due, in ms since the Unix epoch.
    pub next_attempt_ms: Option<u64>,
}

/// Why and when a chunk was moved to the dead-letter directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The output whose buffer gave it up.
    pub output: String,
    /// The chunk id (32 hex), when the header was readable.
    pub id: Option<String>,
    /// The chunk key, when the header was readable.
    pub key: Option<String>,
    /// Records in the chunk, when known.
    pub records: Option<u32>,
    /// Size of the chunk file.
    pub bytes: u64,
    /// The reason: a permanent output error, retries exhausted, or a corrupt header.
    pub reason: String,
    /// Failed attempts before it was given up.
    pub failures: u32,
    /// When the chunk was created (ms since the epoch), when known.
    pub created_ms: Option<u64>,
    /// When it was moved here (ms since the epoch).
    pub dead_lettered_ms: u64,
    /// The file's name in the buffer directory before the move.
    pub original_name: String,
}

/// Path of a chunk's retry state file.
pub fn state_path(dir: &Path, id: &ChunkId) -> PathBuf {
    dir.join(format!("{}.state", id.hex()))
}

/// Writes a chunk's retry state (write to a temporary name, then rename, so a reader
/// never sees half a file).
pub fn write_state(dir: &Path, id: &ChunkId, state: &RetryFile) -> io::Result<()> {
    let path = state_path(dir, id);
    let tmp = path.with_extension("state.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, &path)
}

/// Reads a chunk's retry state; a missing or unreadable file is no state.
pub fn read_state(dir: &Path, id: &ChunkId) -> Option<RetryFile> {
    let bytes = std::fs::read(state_path(dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes a chunk's retry state; a missing file is fine.
pub fn remove_state(dir: &Path, id: &ChunkId) {
    let _ = std::fs::remove_file(state_path(dir, id));
}

impl RetryFile {
    /// The persisted form of an in-memory retry state.
    pub(super) fn from_state(state: &RetryState, next_attempt_ms: Option<u64>) -> Self {
        RetryFile {
            failures: state.failures,
            first_failure_ms: state.first_failure_ms,
            last_error: state.last_error.clone(),
            next_attempt_ms,
        }
    }

    /// Back to an in-memory state; a restart attempts the chunk at once.
    pub(super) fn into_state(self) -> RetryState {
        RetryState {
            failures: self.failures,
            first_failure_ms: self.first_failure_ms,
            last_error: self.last_error,
            next_attempt: None,
        }
    }
}

/// Path of the record that goes with a dead-lettered file.
pub fn record_path(dead_letter_file: &Path) -> PathBuf {
    let mut name = dead_letter_file.as_os_str().to_os_string();
    name.push(".json");
    PathBuf::from(name)
}

/// Reads a dead-letter record; a missing or unreadable one is None.
pub fn read_record(dead_letter_file: &Path) -> Option<DeadLetterRecord> {
    let bytes = std::fs::read(record_path(dead_letter_file)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
