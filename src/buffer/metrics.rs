//! Per-buffer counters and gauges, lock-free so the hot path only does relaxed adds.
//!
//! One [`BufferMetrics`] lives behind an `Arc` per output buffer; the API and status
//! endpoints read it through [`BufferMetrics::snapshot`].

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (microseconds) of the commit-latency histogram buckets; a final
/// implicit bucket holds everything slower.
pub const COMMIT_LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// The live counters of one output's buffer (Fluentd monitor_agent's buffer fields and
/// more). Gauges go up and down; counters only grow.
#[derive(Debug, Default)]
pub struct BufferMetrics {
    /// Gauge: chunks waiting for, or between attempts at, a flush.
    pub queued_chunks: AtomicU64,
    /// Gauge: bytes of those chunks.
    pub queued_bytes: AtomicU64,
    /// Gauge: chunks still being appended to.
    pub staged_chunks: AtomicU64,
    /// Gauge: bytes written to staged chunks.
    pub staged_bytes: AtomicU64,
    /// Appends accepted.
    pub emit_count: AtomicU64,
    /// Records in accepted appends.
    pub emit_records: AtomicU64,
    /// Chunks delivered to the output.
    pub flush_count: AtomicU64,
    /// Records in delivered chunks.
    pub flush_records: AtomicU64,
    /// Failed deliveries that will be retried.
    pub retry_count: AtomicU64,
    /// Chunks moved to the dead-letter directory.
    pub dead_letter_count: AtomicU64,
    /// Chunks dropped by `overflow_action = "drop_oldest_chunk"` (data lost).
    pub dropped_chunks: AtomicU64,
    /// Records in dropped chunks (data lost).
    pub dropped_records: AtomicU64,
    /// Appends refused because the buffer (or disk) was full.
    pub rejected_appends: AtomicU64,
    /// Appends that had to wait for space under `overflow_action = "block"`.
    pub blocked_appends: AtomicU64,
    /// Write or sync failures (including ENOSPC); those appends were not acked.
    pub write_errors: AtomicU64,
    /// Group-commit rounds that synced at least one file.
    pub commit_rounds: AtomicU64,
    /// fdatasync calls on chunk files.
    pub fsync_count: AtomicU64,
    /// Appends whose ticket resolved successfully.
    pub acked_appends: AtomicU64,
    /// Records in those appends: what clients may be told is safe.
    pub acked_events: AtomicU64,
    commit_latency: [AtomicU64; COMMIT_LATENCY_BUCKETS_US.len() + 1],
    commit_latency_sum_us: AtomicU64,
}

/// A point-in-time copy of [`BufferMetrics`], serializable for the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct MetricsSnapshot {
    pub queued_chunks: u64,
    pub queued_bytes: u64,
    pub staged_chunks: u64,
    pub staged_bytes: u64,
    pub emit_count: u64,
    pub emit_records: u64,
    pub flush_count: u64,
    pub flush_records: u64,
    pub retry_count: u64,
    pub dead_letter_count: u64,
    pub dropped_chunks: u64,
    pub dropped_records: u64,
    pub rejected_appends: u64,
    pub blocked_appends: u64,
    pub write_errors: u64,
    pub commit_rounds: u64,
    pub fsync_count: u64,
    pub acked_appends: u64,
    pub acked_events: u64,
    /// `(upper bound in µs, count)` per bucket, not cumulative; the last bound is
    /// `u64::MAX` for "slower than every bound".
    pub commit_latency_buckets: Vec<(u64, u64)>,
    /// Sum of all observed commit latencies, in microseconds.
    pub commit_latency_sum_us: u64,
}

impl BufferMetrics {
    /// Records how long one append waited from `append` to its ticket resolving.
    pub fn observe_commit(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = COMMIT_LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(COMMIT_LATENCY_BUCKETS_US.len());
        if let Some(c) = self.commit_latency.get(bucket) {
            c.fetch_add(1, Relaxed);
        }
        self.commit_latency_sum_us.fetch_add(us, Relaxed);
    }

    /// Copies every value; each is read atomically, the set is not one instant.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let bounds = COMMIT_LATENCY_BUCKETS_US.iter().copied().chain([u64::MAX]);
        MetricsSnapshot {
            queued_chunks: self.queued_chunks.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            staged_chunks: self.staged_chunks.load(Relaxed),
            staged_bytes: self.staged_bytes.load(Relaxed),
            emit_count: self.emit_count.load(Relaxed),
            emit_records: self.emit_records.load(Relaxed),
            flush_count: self.flush_count.load(Relaxed),
            flush_records: self.flush_records.load(Relaxed),
            retry_count: self.retry_count.load(Relaxed),
            dead_letter_count: self.dead_letter_count.load(Relaxed),
            dropped_chunks: self.dropped_chunks.load(Relaxed),
            dropped_records: self.dropped_records.load(Relaxed),
            rejected_appends: self.rejected_appends.load(Relaxed),
            blocked_appends: self.blocked_appends.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            commit_rounds: self.commit_rounds.load(Relaxed),
            fsync_count: self.fsync_count.load(Relaxed),
            acked_appends: self.acked_appends.load(Relaxed),
            acked_events: self.acked_events.load(Relaxed),
            commit_latency_buckets: bounds
                .zip(self.commit_latency.iter().map(|c| c.load(Relaxed)))
                .collect(),
            commit_latency_sum_us: self.commit_latency_sum_us.load(Relaxed),
        }
    }
}

/// Adds to a counter or gauge.
pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// Subtracts from a gauge, saturating at zero so a bookkeeping slip cannot wrap.
pub(super) fn sub(c: &AtomicU64, n: u64) {
    let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
}
