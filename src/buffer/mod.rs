//! The durable chunk buffer between the router and each output.
//!
//! Every output has one [`OutputBuffer`]. The router [`append`](OutputBuffer::append)s
//! a batch's MessagePack entry bytes, untouched, under the output's chunk key and gets
//! a [`CommitTicket`]; the connection acks the client only after
//! [`CommitTicket::wait`] returns Ok, which for a file buffer with `fsync = "commit"`
//! means an fdatasync covering the bytes has returned. Flush workers hand whole chunks
//! to the output through the [`Sink`] trait.
//!
//! # Life of a chunk
//!
//! ```text
//! append ──► staged  (b<id>.chunk, one per key, appended to by the commit thread)
//!              │  chunk_limit_size / chunk_limit_records / flush_interval / shutdown
//!              ▼
//!            queued  (q<id>.chunk, closed) ──► sink Ok ──► deleted
//!              │  ▲ retryable error: backoff retry_wait·2^n ±12.5%, ≤ retry_max_interval
//!              │  └─────────────────────┘
//!              ▼ permanent error, or retry_max_times / retry_timeout exceeded
//!            dead-letter/q<id>.chunk + q<id>.chunk.json (why)  ── CLI requeue ──► requeue/
//! ```
//!
//! Nothing is deleted unless the sink accepted it (the one exception is the opt-in
//! `overflow_action = "drop_oldest_chunk"`, which counts and logs every drop).
//!
//! # Group commit
//!
//! A dedicated commit thread per file buffer owns the staged chunk files. Each round it
//! takes every append waiting in its channel, writes each chunk's new blocks with one
//! `write`, fdatasyncs each chunk written (plus the directory when a chunk file was
//! created), then resolves the tickets of the whole round. Appends arriving meanwhile
//! form the next round, which starts as soon as this one ends. `fsync = "interval:<d>"`
//! resolves tickets after the write and syncs every `d`; `"never"` leaves syncing to
//! the OS (both documented as weaker). Details in `commit.rs`.
//!
//! # Chunk file format (version 1; all integers little-endian)
//!
//! ```text
//! header:  "TPCK"            4 bytes  magic
//!          version           u8       1
//!          flags             u8       0 (reserved)
//!          key_len           u16
//!          created_ms        u64      creation time, ms since the Unix epoch
//!          chunk_id          16 bytes random; shown as 32 hex chars, given to outputs
//!          key               key_len bytes, UTF-8 (the tag, or td.db.table)
//!          header_crc        u32      crc32c of every header byte before it
//! blocks:  len               u32      length of the entry bytes (> 0)
//!          crc               u32      crc32c of (records as 4 LE bytes ‖ entry bytes)
//!          records           u32      number of [time, record] entries in the block
//!          entries           len bytes, exactly as they came off the socket
//! ```
//!
//! One append is one block. A chunk's entries, as handed to the output, are its
//! blocks' entry bytes concatenated; its id never changes, so a retry after a restart
//! carries the same id (outputs use it to deduplicate).
//!
//! # Directory layout (`data_dir/buffer/<output>/`)
//!
//! `b<id>.chunk` staged, `q<id>.chunk` queued, `<id>.state` retry state of a chunk that
//! failed (JSON), `dead-letter/` given-up chunks with a `.json` record each,
//! `requeue/` an inbox the running buffer scans every second (and recovery reads),
//! `LOCK` held by the buffer that owns the directory.
//!
//! # Recovery
//!
//! [`OutputBuffer::open`] reads every chunk file one at a time: complete blocks with
//! good checksums are kept, a torn or corrupt tail is truncated (a warning gives the
//! byte count), a file with an unreadable header is moved to `dead-letter/` (never
//! deleted), and every survivor is queued. Queued chunks are kept as paths, so a
//! backlog of thousands drains with one open file per flush worker; staged chunks
//! keep their file open, at most 256 of them (a new key beyond that queues the
//! oldest staged chunk early).
//!
//! # Memory buffers and shutdown
//!
//! `type = "memory"` keeps staged and queued chunks as bytes: tickets resolve at
//! once, a crash loses them; limits, retries and dead letters (written out as chunk
//! files) work the same. [`OutputBuffer::shutdown`] refuses new appends, commits and
//! queues every staged chunk, tries each queued chunk once more within its timeout,
//! and leaves the rest on disk.
//!
//! # Limits
//!
//! `total_limit_size` bounds the bytes staged plus queued. When an append does not
//! fit: `block` waits until a flush frees space (the caller stops reading its socket,
//! so TCP backpressure reaches the client), `throw_exception` returns
//! [`AppendError::Full`], `drop_oldest_chunk` deletes the oldest queued chunk that is
//! not being flushed (and waits like `block` when every chunk is staged or in
//! flight). ENOSPC fails the append that hit it ([`AppendError::NoSpace`], not
//! acked) and makes the buffer count as full for a second, or until a flush frees
//! space, so the same policies apply and the buffer recovers by itself.

pub mod chunk_file;
pub mod cli;
mod commit;
pub mod dead_letter;
mod flush;
mod memory;
pub mod metrics;
mod output_buffer;
mod queue;
mod recovery;
pub mod sidecar;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_reconfigure;
#[cfg(test)]
mod tests_recovery;

pub use cli::{BufferCommand, DeadLetterCommand, run_cli};
pub use metrics::{BufferMetrics, MetricsSnapshot};
pub use output_buffer::{OutputBuffer, ShutdownReport};

use crate::output::{Chunk, OutputError};
use std::future::Future;
use tokio::sync::oneshot;

/// Where flushed chunks go. Implemented for [`crate::output::Output`]; the buffer is
/// generic over it so tests and benchmarks can plug in their own sinks.
pub trait Sink: Send + Sync + 'static {
    /// Delivers one whole chunk: Ok deletes it, [`OutputError::Retryable`] retries it
    /// with backoff, [`OutputError::Permanent`] dead-letters it.
    fn write(&self, chunk: &Chunk) -> impl Future<Output = Result<(), OutputError>> + Send;
}

impl Sink for crate::output::Output {
    fn write(&self, chunk: &Chunk) -> impl Future<Output = Result<(), OutputError>> + Send {
        crate::output::Output::write(self, chunk)
    }
}

/// Why an append was not stored; the caller must not ack the batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// `total_limit_size` is reached and `overflow_action = "throw_exception"`.
    #[error("buffer of output {0} is full (total_limit_size reached); the batch was not stored")]
    Full(String),
    /// The disk is full (ENOSPC/EDQUOT); the batch was not stored.
    #[error("buffer of output {0}: the disk is full; the batch was not stored")]
    NoSpace(String),
    /// One batch bigger than the whole buffer may hold can never be stored.
    #[error(
        "batch of {bytes} bytes can never fit buffer of output {output} (total_limit_size {limit} bytes, or a block's 4 GiB)"
    )]
    TooLarge {
        /// The output.
        output: String,
        /// The batch's size with its block frame.
        bytes: u64,
        /// The buffer's `total_limit_size`.
        limit: u64,
    },
    /// Chunk keys are stored with a u16 length.
    #[error("chunk key of {0} bytes is longer than the 65535 bytes a chunk header holds")]
    KeyTooLong(usize),
    /// The buffer is shutting down (or its commit thread is gone).
    #[error("buffer of output {0} is shut down; the batch was not stored")]
    Closed(String),
    /// Writing or syncing failed; the message names the file or directory.
    #[error("{0}")]
    Io(String),
}

/// The promise an append returns: resolves once the batch is as durable as the
/// buffer's `fsync` policy makes it. Dropping it does not undo the append.
#[must_use = "a batch may be acked only after its ticket resolves"]
#[derive(Debug)]
pub struct CommitTicket(Ticket);

#[derive(Debug)]
enum Ticket {
    Done(Result<(), AppendError>),
    Waiting {
        rx: oneshot::Receiver<Result<(), AppendError>>,
        output: String,
    },
}

impl CommitTicket {
    fn done(result: Result<(), AppendError>) -> Self {
        CommitTicket(Ticket::Done(result))
    }

    fn waiting(rx: oneshot::Receiver<Result<(), AppendError>>, output: &str) -> Self {
        CommitTicket(Ticket::Waiting {
            rx,
            output: output.to_string(),
        })
    }

    /// Waits for the commit covering the append; Ok means the batch may be acked.
    pub async fn wait(self) -> Result<(), AppendError> {
        match self.0 {
            Ticket::Done(r) => r,
            Ticket::Waiting { rx, output } => rx.await.unwrap_or(Err(AppendError::Closed(output))),
        }
    }
}
