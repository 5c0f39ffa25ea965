//! Staging for memory buffers (`type = "memory"`): chunks are byte buffers, tickets
//! resolve as soon as the bytes are copied, and a crash loses them. Limits, queueing,
//! retries and dead letters are the same as for file buffers.

use super::flush::Mode;
use super::metrics;
use super::queue::{ChunkData, QueuedChunk, RetryState, Shared};
use crate::output::ChunkId;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{Notify, watch};

/// A chunk being filled.
struct MemChunk {
    id: ChunkId,
    created_ms: u64,
    opened: Instant,
    data: BytesMut,
    records: u32,
    /// Bytes charged against `total_limit_size`.
    charged: u64,
}

/// The staged chunks of one memory buffer, one per key.
///
/// Lock order: this lock, then the shared state lock; never the other way round.
pub(super) struct MemoryStage {
    shared: Arc<Shared>,
    staged: Mutex<HashMap<String, MemChunk>>,
    /// Wakes the timer when a chunk is opened (its deadline may be the earliest).
    opened: Notify,
    /// Deadlines the timer computed (tests wait for one to be in force).
    #[cfg(test)]
    pub timer_rounds: std::sync::atomic::AtomicU32,
}

impl MemoryStage {
    pub fn new(shared: Arc<Shared>) -> Self {
        MemoryStage {
            shared,
            staged: Mutex::new(HashMap::new()),
            opened: Notify::new(),
            #[cfg(test)]
            timer_rounds: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MemChunk>> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies one block into `key`'s chunk; `charged` bytes were already reserved.
    pub fn append(&self, key: &str, entries: &Bytes, records: u32, charged: u64) {
        let cfg = self.shared.cfg();
        let mut staged = self.lock();
        if let Some(c) = staged.get(key) {
            let total = u64::from(c.records) + u64::from(records);
            let too_big = (c.data.len() + entries.len()) as u64 > cfg.chunk_limit_size;
            let too_many =
                cfg.chunk_limit_records.is_some_and(|l| total > l) || total > u64::from(u32::MAX);
            if c.records > 0
                && (too_big || too_many)
                && let Some(full) = staged.remove(key)
            {
                self.retire(key.to_string(), full);
            }
        }
        let c = staged.entry(key.to_string()).or_insert_with(|| {
            metrics::add(&self.shared.metrics.staged_chunks, 1);
            self.opened.notify_one();
            MemChunk {
                id: ChunkId::random(),
                created_ms: super::chunk_file::now_ms(),
                opened: Instant::now(),
                data: BytesMut::new(),
                records: 0,
                charged: 0,
            }
        });
        c.data.extend_from_slice(entries);
        c.records = c.records.saturating_add(records);
        c.charged += charged;
        metrics::add(&self.shared.metrics.staged_bytes, charged);
        let full = c.data.len() as u64 >= cfg.chunk_limit_size
            || cfg
                .chunk_limit_records
                .is_some_and(|l| u64::from(c.records) >= l);
        if full && let Some(c) = staged.remove(key) {
            self.retire(key.to_string(), c);
        }
    }

    fn retire(&self, key: String, c: MemChunk) {
        let m = &self.shared.metrics;
        metrics::sub(&m.staged_chunks, 1);
        metrics::sub(&m.staged_bytes, c.charged);
        self.shared.enqueue(QueuedChunk {
            id: c.id,
            key,
            records: c.records,
            bytes: c.charged,
            created_ms: c.created_ms,
            data: ChunkData::Memory(c.data.freeze()),
            retry: RetryState::default(),
            in_flight: false,
            drain_attempted: false,
        });
    }

    /// Queues chunks past `flush_interval` (or all of them); returns the next deadline.
    pub fn queue_expired(&self, all: bool) -> Option<Instant> {
        let now = Instant::now();
        let interval = self.shared.cfg().flush_interval;
        let mut staged = self.lock();
        let expired: Vec<String> = staged
            .iter()
            .filter(|(_, c)| all || c.opened + interval <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(c) = staged.remove(&key) {
                self.retire(key, c);
            }
        }
        staged.values().map(|c| c.opened + interval).min()
    }

    /// Bytes held in staged chunks (lost if the process dies now).
    pub fn staged_records(&self) -> u64 {
        self.lock().values().map(|c| u64::from(c.records)).sum()
    }

    /// Makes the timer recompute its deadline (the settings changed).
    pub fn wake(&self) {
        self.opened.notify_one();
    }
}

/// Queues memory chunks when their `flush_interval` passes.
pub(super) async fn timer(stage: Arc<MemoryStage>, mut mode: watch::Receiver<Mode>) {
    loop {
        let opened = stage.opened.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        let next = stage.queue_expired(false);
        #[cfg(test)]
        stage
            .timer_rounds
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut opened => {}
            _ = sleep => {}
            r = mode.changed() => {
                if r.is_err() || *mode.borrow() != Mode::Run {
                    return;
                }
            }
        }
    }
}
