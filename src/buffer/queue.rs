//! The state shared by appenders, the commit thread and the flush workers: the byte
//! budget and the queue of chunks waiting to be flushed.
//!
//! One `std::sync::Mutex` guards it; it is held only for bookkeeping, never across an
//! `.await`, a write or an fsync.

use super::metrics::{self, BufferMetrics};
use crate::config::BufferConfig;
use crate::output::ChunkId;
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long appends treat the disk as full after an ENOSPC before trying again (a
/// flush that deletes a chunk ends the pause earlier).
pub(super) const DISK_FULL_PAUSE: Duration = Duration::from_secs(1);

/// Everything one buffer's tasks share.
pub(super) struct Shared {
    /// The output's name, for logs and dead-letter records.
    pub name: String,
    /// The buffer's settings; a reload may swap them (see [`Shared::cfg`]).
    pub settings: Mutex<Arc<BufferConfig>>,
    /// `data_dir/buffer/<output>`.
    pub dir: PathBuf,
    /// Counters for the API.
    pub metrics: Arc<BufferMetrics>,
    /// Budget and queue.
    pub state: Mutex<State>,
    /// Signalled whenever bytes are released or the buffer closes (wakes blocked appends).
    pub space: Notify,
    /// Signalled whenever a chunk becomes ready to flush (wakes flush workers).
    pub work: Notify,
    /// Set by shutdown: appends are refused from then on.
    pub closed: AtomicBool,
    /// Held while the `requeue/` inbox is scanned. Shutdown takes it once after setting
    /// `closed`, so no scan of this buffer still moves files once shutdown returns: a
    /// scan runs on a blocking thread that aborting its task does not stop, and one
    /// that ran late would move a chunk requeued for the *next* buffer on this
    /// directory out of that buffer's sight.
    pub inbox_scan: Mutex<()>,
    /// Tests hold this to make the commit thread wait before it drains its channel,
    /// so "many appends, few rounds" is deterministic.
    #[cfg(test)]
    pub round_gate: Mutex<()>,
    /// Tests set this to make that many chunk writes fail with ENOSPC.
    #[cfg(test)]
    pub inject_enospc: std::sync::atomic::AtomicU32,
    /// Tests hold this to keep an inbox scan waiting on its blocking thread.
    #[cfg(test)]
    pub scan_gate: Mutex<()>,
    /// Inbox scans started and finished on their blocking thread (tests only).
    #[cfg(test)]
    pub scans: [std::sync::atomic::AtomicU32; 2],
}

/// The mutable part of [`Shared`].
#[derive(Default)]
pub(super) struct State {
    /// Bytes staged, queued and reserved by appends in flight; bounded by
    /// `total_limit_size`.
    pub used: u64,
    /// Chunks ready to flush, oldest first.
    pub queue: VecDeque<QueuedChunk>,
    /// Set after an ENOSPC: until then appends treat the buffer as full.
    pub disk_full_until: Option<Instant>,
    /// When the last "buffer full, blocking" warning was logged (one per 10 s at most).
    pub full_warned_at: Option<Instant>,
}

/// Where a queued chunk's entries are.
#[derive(Clone, Debug)]
pub(super) enum ChunkData {
    /// In a chunk file (file buffers, and dead letters requeued into a memory buffer).
    File(PathBuf),
    /// In memory (memory buffers).
    Memory(Bytes),
}

/// Retry bookkeeping of one chunk, persisted next to file chunks so the retry budget
/// survives restarts.
#[derive(Clone, Debug, Default)]
pub(super) struct RetryState {
    /// Failed attempts so far.
    pub failures: u32,
    /// When the first attempt failed (ms since the epoch), for `retry_timeout`.
    pub first_failure_ms: Option<u64>,
    /// The last error's text, for the CLI and the dead-letter record.
    pub last_error: Option<String>,
    /// Not to be attempted before this.
    pub next_attempt: Option<Instant>,
}

/// A closed chunk waiting for a flush worker.
#[derive(Debug)]
pub(super) struct QueuedChunk {
    pub id: ChunkId,
    pub key: String,
    pub records: u32,
    /// Bytes charged against `total_limit_size`, released when the chunk leaves.
    pub bytes: u64,
    pub created_ms: u64,
    pub data: ChunkData,
    pub retry: RetryState,
    /// A worker is delivering it right now.
    pub in_flight: bool,
    /// Shutdown's final pass already tried it.
    pub drain_attempted: bool,
}

impl Shared {
    /// The settings in force now. Read once per decision: a reload may replace them
    /// between two calls (`OutputBuffer::reconfigure`).
    pub fn cfg(&self) -> Arc<BufferConfig> {
        Arc::clone(&self.settings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Locks the state; a panic elsewhere while holding it leaves consistent-enough
    /// counters, so poisoning is ignored rather than spreading the panic.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a chunk to the back of the queue and wakes the flush workers.
    pub fn enqueue(&self, chunk: QueuedChunk) {
        metrics::add(&self.metrics.queued_chunks, 1);
        metrics::add(&self.metrics.queued_bytes, chunk.bytes);
        self.lock().queue.push_back(chunk);
        self.work.notify_waiters();
        // A newly queued chunk is droppable under `drop_oldest_chunk`.
        self.space.notify_waiters();
    }

    /// Adds recovered or requeued chunks whose bytes are not yet charged; charging
    /// them may exceed the limit (they are already on disk), which only delays appends.
    pub fn enqueue_charged(&self, chunks: Vec<QueuedChunk>) {
        if chunks.is_empty() {
            return;
        }
        let mut st = self.lock();
        for chunk in chunks {
            st.used = st.used.saturating_add(chunk.bytes);
            metrics::add(&self.metrics.queued_chunks, 1);
            metrics::add(&self.metrics.queued_bytes, chunk.bytes);
            st.queue.push_back(chunk);
        }
        drop(st);
        self.work.notify_waiters();
    }

    /// Removes a chunk from the queue and releases its bytes; returns it if present.
    pub fn remove(&self, id: &ChunkId) -> Option<QueuedChunk> {
        let mut st = self.lock();
        let pos = st.queue.iter().position(|c| c.id == *id)?;
        let chunk = st.queue.remove(pos)?;
        st.used = st.used.saturating_sub(chunk.bytes);
        st.disk_full_until = None;
        drop(st);
        metrics::sub(&self.metrics.queued_chunks, 1);
        metrics::sub(&self.metrics.queued_bytes, chunk.bytes);
        self.space.notify_waiters();
        Some(chunk)
    }

    /// Releases bytes an append reserved but never stored.
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut st = self.lock();
        st.used = st.used.saturating_sub(bytes);
        drop(st);
        self.space.notify_waiters();
    }

    /// Charges bytes that are stored without a reservation (chunk headers).
    pub fn charge(&self, bytes: u64) {
        let mut st = self.lock();
        st.used = st.used.saturating_add(bytes);
    }

    /// Records an ENOSPC: appends pause for [`DISK_FULL_PAUSE`].
    pub fn mark_disk_full(&self) {
        self.lock().disk_full_until = Some(Instant::now() + DISK_FULL_PAUSE);
    }
}
