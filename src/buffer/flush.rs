//! Flush workers: take queued chunks oldest first, hand them to the sink, and then
//! delete them (success), schedule a retry with exponential backoff and jitter
//! (retryable error), or move them to the dead-letter directory (permanent error or
//! retries exhausted). A chunk leaves the disk only after the sink accepted it.

use super::Sink;
use super::chunk_file::{self, ChunkHeader};
use super::dead_letter;
use super::metrics;
use super::queue::{ChunkData, RetryState, Shared};
use super::sidecar::{self, DeadLetterRecord, RetryFile};
use crate::config::BufferConfig;
use crate::output::{Chunk, ChunkId, OutputError};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the flush workers are asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Flush chunks as they become due.
    Run,
    /// Shutdown's final pass: try every queued chunk once, ignoring backoff, then exit.
    Drain,
    /// Exit now.
    Stop,
}

/// A chunk taken by a worker.
struct Job {
    id: ChunkId,
    key: String,
    records: u32,
    bytes: u64,
    created_ms: u64,
    data: ChunkData,
    retry: RetryState,
}

enum Next {
    Job(Job),
    Wait(Option<Instant>),
    Exit,
}

/// One flush worker's loop.
pub(super) async fn worker<S: Sink>(
    shared: Arc<Shared>,
    sink: Arc<S>,
    mut mode: watch::Receiver<Mode>,
) {
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Stop {
            return;
        }
        let notified = shared.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match next_job(&shared, current == Mode::Drain) {
            Next::Job(job) => deliver(&shared, &*sink, job).await,
            Next::Exit => return,
            Next::Wait(at) => {
                let sleep = async {
                    match at {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = &mut notified => {}
                    _ = sleep => {}
                    r = mode.changed() => if r.is_err() { return; },
                }
            }
        }
    }
}

/// Claims the oldest chunk that is due (or, draining, not yet tried in this pass).
fn next_job(shared: &Shared, draining: bool) -> Next {
    let now = Instant::now();
    let mut st = shared.lock();
    let mut earliest: Option<Instant> = None;
    for c in st.queue.iter_mut() {
        if c.in_flight {
            continue;
        }
        let due = match c.retry.next_attempt {
            Some(t) if t > now && !draining => {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
                false
            }
            _ => !(draining && c.drain_attempted),
        };
        if due {
            c.in_flight = true;
            c.drain_attempted |= draining;
            return Next::Job(Job {
                id: c.id,
                key: c.key.clone(),
                records: c.records,
                bytes: c.bytes,
                created_ms: c.created_ms,
                data: c.data.clone(),
                retry: c.retry.clone(),
            });
        }
    }
    if draining {
        Next::Exit
    } else {
        Next::Wait(earliest)
    }
}

/// Why a chunk's entries could not be loaded.
enum LoadError {
    /// The file is gone (removed by hand); nothing to deliver.
    Missing,
    /// Its header no longer parses: dead letter.
    Corrupt(String),
    /// Reading failed; try again later.
    Io(String),
}

/// Reads a chunk file's good blocks into one contiguous entries buffer.
fn load_file(path: &std::path::Path, output: &str) -> Result<(Bytes, u32), LoadError> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Missing),
        Err(e) => return Err(LoadError::Io(format!("reading {}: {e}", path.display()))),
    };
    let image = chunk_file::parse(&buf).map_err(|e| LoadError::Corrupt(e.to_string()))?;
    if let Some(tail) = &image.tail {
        tracing::warn!(buffer = output, path = %path.display(), offset = tail.offset, dropped_bytes = tail.dropped, reason = tail.reason, "chunk has a corrupt tail; flushing the blocks before it");
    }
    let entries = match image.entries.as_slice() {
        [one] => Bytes::from(buf).slice(one.clone()),
        many => {
            let mut out = BytesMut::with_capacity(image.good_len);
            for r in many {
                out.extend_from_slice(buf.get(r.clone()).unwrap_or_default());
            }
            out.freeze()
        }
    };
    Ok((entries, image.records))
}

async fn deliver<S: Sink>(shared: &Arc<Shared>, sink: &S, job: Job) {
    let name = shared.name.clone();
    let loaded = match &job.data {
        ChunkData::Memory(b) => Ok((b.clone(), job.records)),
        ChunkData::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || load_file(&path, &name))
                .await
                .unwrap_or_else(|e| Err(LoadError::Io(format!("reader task failed: {e}"))))
        }
    };
    let (entries, records) = match loaded {
        Ok(l) => l,
        Err(LoadError::Missing) => {
            tracing::warn!(buffer = %shared.name, chunk = %job.id, "chunk file vanished before it was flushed (removed by hand?)");
            remove_files(shared, &job).await;
            shared.remove(&job.id);
            return;
        }
        Err(LoadError::Corrupt(e)) => {
            return dead_letter(shared, job, None, format!("chunk became unreadable: {e}")).await;
        }
        Err(LoadError::Io(e)) => return retry_or_give_up(shared, job, e).await,
    };
    let chunk = Chunk {
        key: job.key.clone(),
        id: job.id,
        entries,
        records,
    };
    match sink.write(&chunk).await {
        Ok(()) => {
            remove_files(shared, &job).await;
            shared.remove(&job.id);
            let m = &shared.metrics;
            metrics::add(&m.flush_count, 1);
            metrics::add(&m.flush_records, u64::from(records));
        }
        Err(OutputError::Retryable(e)) => retry_or_give_up(shared, job, e).await,
        Err(OutputError::Permanent(e)) => {
            let reason = format!("permanent output error: {e}");
            dead_letter(shared, job, Some(chunk.entries), reason).await;
        }
    }
}

/// Deletes a delivered chunk's file and retry state.
async fn remove_files(shared: &Shared, job: &Job) {
    let dir = shared.dir.clone();
    let id = job.id;
    let path = match &job.data {
        ChunkData::File(p) => Some(p.clone()),
        ChunkData::Memory(_) => None,
    };
    let name = shared.name.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(path) = path {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound {
                    tracing::error!(buffer = %name, path = %path.display(), error = %e, "could not delete a flushed chunk; it will be delivered again after a restart");
                }
            sidecar::remove_state(&dir, &id);
        }
    })
    .await;
}

/// The delay before attempt `failures + 1`: `retry_wait * 2^(failures-1)`, capped at
/// `retry_max_interval`, times a random factor in [0.875, 1.125) so many chunks that
/// failed together do not retry together.
pub(super) fn backoff(cfg: &BufferConfig, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(31);
    let base = cfg
        .retry_wait
        .checked_mul(1u32 << exp)
        .unwrap_or(cfg.retry_max_interval)
        .min(cfg.retry_max_interval);
    let jitter = 0.875 + 0.25 * rand::random::<f64>();
    base.mul_f64(jitter).min(cfg.retry_max_interval)
}

/// Whether a chunk that failed `retry` must now be given up.
fn exhausted(cfg: &BufferConfig, retry: &RetryState, now_ms: u64) -> bool {
    if cfg.retry_forever {
        return false;
    }
    let too_many = cfg.retry_max_times.is_some_and(|max| retry.failures > max);
    let timeout_ms = u64::try_from(cfg.retry_timeout.as_millis()).unwrap_or(u64::MAX);
    let too_long = retry
        .first_failure_ms
        .is_some_and(|first| now_ms.saturating_sub(first) >= timeout_ms);
    too_many || too_long
}

async fn retry_or_give_up(shared: &Arc<Shared>, job: Job, error: String) {
    let now_ms = chunk_file::now_ms();
    let mut retry = job.retry.clone();
    retry.failures = retry.failures.saturating_add(1);
    retry.first_failure_ms.get_or_insert(now_ms);
    retry.last_error = Some(error.clone());
    let cfg = shared.cfg();
    if exhausted(&cfg, &retry, now_ms) {
        let reason = format!("gave up after {} failed attempts: {error}", retry.failures);
        let job = Job { retry, ..job };
        return dead_letter(shared, job, None, reason).await;
    }
    let delay = backoff(&cfg, retry.failures);
    retry.next_attempt = Some(Instant::now() + delay);
    metrics::add(&shared.metrics.retry_count, 1);
    tracing::warn!(buffer = %shared.name, chunk = %job.id, key = %job.key, attempt = retry.failures, retry_in = ?delay, error = %error, "flush failed; will retry");
    if let ChunkData::File(_) = job.data {
        let dir = shared.dir.clone();
        let file = RetryFile::from_state(
            &retry,
            Some(now_ms.saturating_add(delay.as_millis() as u64)),
        );
        let id = job.id;
        let _ = tokio::task::spawn_blocking(move || sidecar::write_state(&dir, &id, &file)).await;
    }
    release_with(shared, &job.id, retry);
}

/// Puts a chunk back in the queue with new retry state.
fn release_with(shared: &Shared, id: &ChunkId, retry: RetryState) {
    let mut st = shared.lock();
    if let Some(c) = st.queue.iter_mut().find(|c| c.id == *id) {
        c.retry = retry;
        c.in_flight = false;
    }
}

/// Moves a chunk to the dead-letter directory; if even that fails it stays queued and
/// is retried later, never deleted.
async fn dead_letter(shared: &Arc<Shared>, job: Job, entries: Option<Bytes>, reason: String) {
    let record = DeadLetterRecord {
        output: shared.name.clone(),
        id: Some(job.id.hex()),
        key: Some(job.key.clone()),
        records: Some(job.records),
        bytes: job.bytes,
        reason: reason.clone(),
        failures: job.retry.failures,
        created_ms: Some(job.created_ms),
        dead_lettered_ms: chunk_file::now_ms(),
        original_name: String::new(),
    };
    let dir = shared.dir.clone();
    let data = job.data.clone();
    let header = ChunkHeader {
        key: job.key.clone(),
        id: job.id,
        created_ms: job.created_ms,
    };
    let records = job.records;
    let moved = tokio::task::spawn_blocking(move || match data {
        ChunkData::File(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| header.id.hex());
            let record = DeadLetterRecord {
                original_name: name.clone(),
                ..record
            };
            let dest = dead_letter::move_file(&dir, &path, &name, &record)?;
            sidecar::remove_state(&dir, &header.id);
            Ok(dest)
        }
        ChunkData::Memory(b) => {
            let entries = entries.unwrap_or(b);
            dead_letter::write_chunk(&dir, &header, &entries, records, &record)
        }
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match moved {
        Ok(dest) => {
            shared.remove(&job.id);
            metrics::add(&shared.metrics.dead_letter_count, 1);
            tracing::error!(buffer = %shared.name, chunk = %job.id, key = %job.key, records = job.records, moved_to = %dest.display(), reason = %reason, "chunk moved to the dead-letter directory; `tidepool buffer dead-letter requeue` brings it back");
        }
        Err(e) => {
            tracing::error!(buffer = %shared.name, chunk = %job.id, error = %e, reason = %reason, "could not move a chunk to the dead-letter directory; keeping it queued");
            let mut retry = job.retry;
            retry.next_attempt = Some(Instant::now() + shared.cfg().retry_max_interval);
            release_with(shared, &job.id, retry);
        }
    }
}
