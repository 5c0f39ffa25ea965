//! Outputs: where chunks of events leave tidepool.
//!
//! An output receives a whole chunk (key, unique id, entry bytes, record count) and
//! answers Ok, a retryable error or a permanent error; the buffer's flush workers
//! decide what happens next. Outputs never import one another.

pub mod file;
pub mod json;
pub mod stdout;
pub mod store;
pub mod td;
#[cfg(test)]
mod tests;

use crate::config::OutputConfig;
use bytes::Bytes;
use std::path::Path;

/// A chunk's unique id: 16 random bytes, shown as 32 hex characters like Fluentd's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    /// A fresh random id.
    pub fn random() -> Self {
        ChunkId(rand::random())
    }

    /// The 32 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// What an output is handed: the events of one chunk key, as bytes.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The chunk key (the tag by default).
    pub key: String,
    /// Stable across retries and restarts, so sinks can deduplicate.
    pub id: ChunkId,
    /// Concatenated validated `[time, record]` entries (see [`crate::event::Batch`]).
    pub entries: Bytes,
    /// Number of entries.
    pub records: u32,
}

/// Why a chunk was not delivered; flush workers branch on the variant, never on text.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Try again later with backoff (sink down, timeout, disk full).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Never succeeds as is: the chunk goes to the dead-letter directory.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A built output. A closed enum: adding an output adds one arm here.
#[derive(Debug)]
pub enum Output {
    /// Discards everything.
    Null,
    /// Prints Fluentd-like lines.
    Stdout(stdout::StdoutOutput),
    /// Appends JSON lines to files.
    File(file::FileOutput),
    /// Uploads to Treasure Data's streaming import API.
    Td(td::TdOutput),
    /// Rows in the local records store.
    Store(store::StoreOutput),
}

impl Output {
    /// Builds the output named `name` from its config; `data_dir` anchors relative paths.
    pub fn build(name: &str, config: &OutputConfig, data_dir: &Path) -> anyhow::Result<Output> {
        Ok(match config {
            OutputConfig::Null => Output::Null,
            OutputConfig::Stdout => Output::Stdout(stdout::StdoutOutput::new(name)),
            OutputConfig::File(c) => Output::File(file::FileOutput::new(name, c, data_dir)?),
            OutputConfig::Td(c) => Output::Td(td::TdOutput::new(name, c)?),
            OutputConfig::Store(c) => Output::Store(store::StoreOutput::new(name, c)?),
        })
    }

    /// Delivers one chunk.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        match self {
            Output::Null => Ok(()),
            Output::Stdout(o) => o.write(chunk).await,
            Output::File(o) => o.write(chunk).await,
            Output::Td(o) => o.write(chunk).await,
            Output::Store(o) => o.write(chunk).await,
        }
    }

    /// The `type` name, for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Null => "null",
            Output::Stdout(_) => "stdout",
            Output::File(_) => "file",
            Output::Td(_) => "td",
            Output::Store(_) => "store",
        }
    }

    /// The store output, for wiring its [`crate::store::Store`] into the HTTP API.
    pub fn as_store(&self) -> Option<&store::StoreOutput> {
        match self {
            Output::Store(s) => Some(s),
            _ => None,
        }
    }

    /// The chunk key events of `tag` are buffered under: the tag, except for outputs
    /// whose destination is coarser (td: the normalized `db.table`, one import per chunk).
    pub fn chunk_key(&self, tag: &str) -> String {
        match self {
            Output::Td(o) => o.chunk_key(tag),
            _ => tag.to_string(),
        }
    }
}
