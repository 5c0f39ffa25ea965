//! [`OutputBuffer`]: the handle the router appends to, and the owner of a buffer's
//! commit thread, flush workers and housekeeping task.

use super::chunk_file::{BLOCK_HEADER, MAX_KEY_LEN};
use super::commit::{AppendReq, Committer, Request};
use super::flush::{self, Mode};
use super::memory::{self, MemoryStage};
use super::metrics::{self, BufferMetrics};
use super::queue::{ChunkData, QueuedChunk, RetryState, Shared, State};
use super::{AppendError, CommitTicket, Sink, recovery, sidecar};
use crate::config::{BufferConfig, BufferKind, OverflowAction};
use anyhow::Context;
use bytes::Bytes;
use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

/// How often a running buffer looks into its `requeue/` inbox.
const REQUEUE_SCAN: Duration = Duration::from_secs(1);

/// The buffer in front of one output. Cheap to share behind an `Arc`; every method
/// takes `&self`.
///
/// Dropping it without [`shutdown`](Self::shutdown) stops everything at once, like a
/// crash: staged chunks stay on disk and are recovered at the next open (the drop
/// waits for the commit thread's current round, a few milliseconds).
pub struct OutputBuffer {
    shared: Arc<Shared>,
    backend: Backend,
    mode: watch::Sender<Mode>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held for the buffer's life so two processes never share a directory.
    _lock: File,
}

impl std::fmt::Debug for OutputBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputBuffer")
            .field("name", &self.shared.name)
            .field("dir", &self.shared.dir)
            .field("kind", &self.shared.cfg().kind)
            .finish_non_exhaustive()
    }
}

// The router shares buffers across connection tasks.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<OutputBuffer>();
    shareable::<CommitTicket>();
};

enum Backend {
    File(mpsc::Sender<Request>),
    Memory(Arc<MemoryStage>),
}

/// What [`OutputBuffer::shutdown`] left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Chunks still queued (on disk for file buffers, lost for memory buffers).
    pub remaining_chunks: usize,
    /// Their bytes.
    pub remaining_bytes: u64,
    /// Whether the timeout cut the final flush short.
    pub timed_out: bool,
}

/// What an append must do when the buffer is full, decided under the lock.
enum Overflow {
    Wait(Option<Instant>),
    Drop(QueuedChunk),
    Refuse(AppendError),
}

impl OutputBuffer {
    /// Opens (creating if needed) the buffer directory `dir` of output `name`, takes
    /// its lock, recovers every chunk in it, and starts the commit thread (file
    /// buffers), `flush_thread_count` flush workers delivering to `sink`, and the
    /// requeue-inbox scanner. Must be called within a Tokio runtime.
    pub async fn open<S: Sink>(
        name: &str,
        config: &BufferConfig,
        dir: &Path,
        sink: Arc<S>,
    ) -> anyhow::Result<OutputBuffer> {
        anyhow::ensure!(
            config.chunk_limit_size > 0,
            "buffer of output {name}: chunk_limit_size must be above 0"
        );
        anyhow::ensure!(
            config.total_limit_size > 0,
            "buffer of output {name}: total_limit_size must be above 0"
        );
        let (dir_c, name_c) = (dir.to_path_buf(), name.to_string());
        let (lock, chunks) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            std::fs::create_dir_all(&dir_c).with_context(|| {
                format!(
                    "buffer of output {name_c}: cannot create directory {}",
                    dir_c.display()
                )
            })?;
            let lock = lock_dir(&dir_c)?;
            let chunks = recovery::recover_dir(&dir_c, &name_c).with_context(|| {
                format!(
                    "buffer of output {name_c}: cannot recover chunks in {}",
                    dir_c.display()
                )
            })?;
            Ok((lock, chunks))
        })
        .await
        .context("buffer recovery task failed")??;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            settings: Mutex::new(Arc::new(config.clone())),
            dir: dir.to_path_buf(),
            metrics: Arc::new(BufferMetrics::default()),
            state: Mutex::new(State::default()),
            space: Notify::new(),
            work: Notify::new(),
            closed: AtomicBool::new(false),
            inbox_scan: Mutex::new(()),
            #[cfg(test)]
            round_gate: Mutex::new(()),
            #[cfg(test)]
            inject_enospc: std::sync::atomic::AtomicU32::new(0),
            #[cfg(test)]
            scan_gate: Mutex::new(()),
            #[cfg(test)]
            scans: Default::default(),
        });
        shared.enqueue_charged(chunks);
        let (mode, mode_rx) = watch::channel(Mode::Run);
        let mut tasks = Vec::new();
        let mut writer = None;
        let backend = match config.kind {
            BufferKind::File => {
                let (tx, rx) = mpsc::channel();
                let committer = Committer::new(Arc::clone(&shared), rx);
                let handle = std::thread::Builder::new()
                    .name(format!("tp-commit-{name}"))
                    .spawn(move || committer.run())
                    .with_context(|| {
                        format!("buffer of output {name}: cannot start the commit thread")
                    })?;
                writer = Some(handle);
                Backend::File(tx)
            }
            BufferKind::Memory => {
                let stage = Arc::new(MemoryStage::new(Arc::clone(&shared)));
                tasks.push(tokio::spawn(memory::timer(
                    Arc::clone(&stage),
                    mode_rx.clone(),
                )));
                Backend::Memory(stage)
            }
        };
        let workers = (0..config.flush_thread_count.max(1))
            .map(|_| {
                tokio::spawn(flush::worker(
                    Arc::clone(&shared),
                    Arc::clone(&sink),
                    mode_rx.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(housekeeping(Arc::clone(&shared), mode_rx)));
        Ok(OutputBuffer {
            shared,
            backend,
            mode,
            workers: Mutex::new(workers),
            tasks: Mutex::new(tasks),
            writer: Mutex::new(writer),
            _lock: lock,
        })
    }

    /// Applies changed settings to the running buffer, so a reload needs no restart:
    /// chunk limits and `flush_interval` apply to staged chunks at once, retry
    /// settings from each chunk's next failure (a scheduled retry keeps its time),
    /// `total_limit_size` and `overflow_action` to the next append (blocked appends
    /// look again), `fsync` from the next commit round. `type` and
    /// `flush_thread_count` shape what `open` built: a change to either is refused
    /// with the reason, and the buffer keeps its settings.
    pub fn reconfigure(&self, config: &BufferConfig) -> Result<(), String> {
        let current = self.shared.cfg();
        if current.kind != config.kind {
            return Err("its type (file or memory) changed".into());
        }
        if current.flush_thread_count.max(1) != config.flush_thread_count.max(1) {
            return Err("its flush_thread_count changed".into());
        }
        if config.chunk_limit_size == 0 || config.total_limit_size == 0 {
            return Err("chunk_limit_size and total_limit_size must be above 0".into());
        }
        *self
            .shared
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config.clone());
        // Wake everything that waits on a deadline or a limit computed from the old
        // settings.
        match &self.backend {
            Backend::File(tx) => {
                let _ = tx.send(Request::Reconfigured);
            }
            Backend::Memory(stage) => stage.wake(),
        }
        self.shared.space.notify_waiters();
        self.shared.work.notify_waiters();
        Ok(())
    }

    /// The output this buffer feeds.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The buffer's directory (`data_dir/buffer/<output>`).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Test access to the shared state (e.g. the commit round gate).
    #[cfg(test)]
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Deadlines a memory buffer's timer computed so far (0 for file buffers).
    #[cfg(test)]
    pub(super) fn memory_timer_rounds(&self) -> u32 {
        match &self.backend {
            Backend::Memory(stage) => stage.timer_rounds.load(Ordering::SeqCst),
            Backend::File(_) => 0,
        }
    }

    /// The buffer's counters, for the status API and `/metrics`.
    pub fn metrics(&self) -> &Arc<BufferMetrics> {
        &self.shared.metrics
    }

    /// Stores one batch's entry bytes, exactly as given, as one block of `key`'s
    /// staged chunk. Returns once the batch is handed to the commit thread (file) or
    /// copied (memory); await the ticket before acking. When the buffer is full this
    /// waits (`block`), refuses (`throw_exception`) or drops the oldest queued chunk
    /// (`drop_oldest_chunk`). Empty `entries` store nothing and succeed.
    pub async fn append(
        &self,
        key: &str,
        entries: Bytes,
        records: u32,
    ) -> Result<CommitTicket, AppendError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed(shared.name.clone()));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(AppendError::KeyTooLong(key.len()));
        }
        if entries.is_empty() {
            return Ok(CommitTicket::done(Ok(())));
        }
        let bytes = (BLOCK_HEADER as u64).saturating_add(entries.len() as u64);
        let limit = shared.cfg().total_limit_size;
        if u32::try_from(entries.len()).is_err() || bytes > limit {
            return Err(AppendError::TooLarge {
                output: shared.name.clone(),
                bytes,
                limit,
            });
        }
        self.reserve(bytes).await?;
        let m = &shared.metrics;
        metrics::add(&m.emit_count, 1);
        metrics::add(&m.emit_records, u64::from(records));
        match &self.backend {
            Backend::File(tx) => {
                let (reply, rx) = oneshot::channel();
                let req = Request::Append(AppendReq {
                    key: key.to_string(),
                    entries,
                    records,
                    reserved: bytes,
                    enqueued: Instant::now(),
                    reply,
                });
                if tx.send(req).is_err() {
                    shared.release(bytes);
                    return Err(AppendError::Closed(shared.name.clone()));
                }
                Ok(CommitTicket::waiting(rx, &shared.name))
            }
            Backend::Memory(stage) => {
                let start = Instant::now();
                stage.append(key, &entries, records, bytes);
                metrics::add(&m.acked_appends, 1);
                metrics::add(&m.acked_events, u64::from(records));
                m.observe_commit(start.elapsed());
                Ok(CommitTicket::done(Ok(())))
            }
        }
    }

    /// Charges `bytes` against `total_limit_size`, applying the overflow action.
    async fn reserve(&self, bytes: u64) -> Result<(), AppendError> {
        let shared = &self.shared;
        let mut counted = false;
        loop {
            let cfg = shared.cfg();
            let notified = shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let overflow = {
                let mut st = shared.lock();
                if shared.closed.load(Ordering::Acquire) {
                    return Err(AppendError::Closed(shared.name.clone()));
                }
                let now = Instant::now();
                let disk_full = st.disk_full_until.filter(|t| *t > now);
                if disk_full.is_none() && st.used.saturating_add(bytes) <= cfg.total_limit_size {
                    st.used += bytes;
                    return Ok(());
                }
                let full_error = || match disk_full {
                    Some(_) => AppendError::NoSpace(shared.name.clone()),
                    None => AppendError::Full(shared.name.clone()),
                };
                match cfg.overflow_action {
                    OverflowAction::Block => {
                        // Operators must see why their clients stall, once in a while.
                        if st
                            .full_warned_at
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                        {
                            st.full_warned_at = Some(now);
                            tracing::warn!(
                                buffer = %shared.name,
                                used = st.used,
                                limit = cfg.total_limit_size,
                                disk_full = disk_full.is_some(),
                                "buffer full: inputs routed here wait (overflow_action = block) until flushes free space; nothing is acked meanwhile"
                            );
                        }
                        Overflow::Wait(disk_full)
                    }
                    OverflowAction::ThrowException => Overflow::Refuse(full_error()),
                    OverflowAction::DropOldestChunk => {
                        let oldest = st.queue.iter().position(|c| !c.in_flight);
                        match oldest.and_then(|pos| st.queue.remove(pos)) {
                            Some(c) => {
                                st.used = st.used.saturating_sub(c.bytes);
                                st.disk_full_until = None;
                                Overflow::Drop(c)
                            }
                            // Everything is staged or being flushed: wait for a chunk
                            // to be queued or delivered rather than refuse.
                            None => Overflow::Wait(disk_full),
                        }
                    }
                }
            };
            match overflow {
                Overflow::Refuse(e) => {
                    metrics::add(&shared.metrics.rejected_appends, 1);
                    return Err(e);
                }
                Overflow::Drop(victim) => self.drop_chunk(victim).await,
                Overflow::Wait(until) => {
                    if !counted {
                        counted = true;
                        metrics::add(&shared.metrics.blocked_appends, 1);
                    }
                    match until {
                        Some(t) => {
                            tokio::select! {
                                _ = &mut notified => {}
                                _ = tokio::time::sleep_until(t.into()) => {}
                            }
                        }
                        None => notified.await,
                    }
                }
            }
        }
    }

    /// `drop_oldest_chunk`: the one place data is deleted unflushed, by the
    /// operator's choice; counted and logged as an error.
    async fn drop_chunk(&self, c: QueuedChunk) {
        let shared = &self.shared;
        let m = &shared.metrics;
        metrics::sub(&m.queued_chunks, 1);
        metrics::sub(&m.queued_bytes, c.bytes);
        metrics::add(&m.dropped_chunks, 1);
        metrics::add(&m.dropped_records, u64::from(c.records));
        tracing::error!(buffer = %shared.name, chunk = %c.id, key = %c.key, records = c.records, bytes = c.bytes, "buffer full: dropped the oldest queued chunk (overflow_action = drop_oldest_chunk); its records are lost");
        if let ChunkData::File(path) = c.data {
            let dir = shared.dir.clone();
            let id = c.id;
            let _ = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_file(&path);
                sidecar::remove_state(&dir, &id);
            })
            .await;
        }
        shared.space.notify_waiters();
    }

    /// Commits and queues every staged chunk now, without waiting for
    /// `flush_interval` (Fluentd's "flush" signal).
    pub async fn queue_staged(&self) {
        match &self.backend {
            Backend::File(tx) => {
                let (done, rx) = oneshot::channel();
                if tx.send(Request::QueueAll(done)).is_ok() {
                    let _ = rx.await;
                }
            }
            Backend::Memory(stage) => {
                stage.queue_expired(true);
            }
        }
    }

    /// Graceful stop: refuse new appends, commit and queue every staged chunk, try
    /// each queued chunk once more (ignoring backoff) within `timeout`, then stop the
    /// workers. Whatever is not delivered stays on disk for the next start (memory
    /// buffers lose it, with a warning). Appends blocked on a full buffer fail with
    /// [`AppendError::Closed`]. Call it after the inputs stopped reading and the
    /// tickets of in-flight batches were awaited, so their acks can still go out.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        shared.space.notify_waiters();
        let mut workers = std::mem::take(&mut *lock(&self.workers));
        let writer = lock(&self.writer).take();
        let work = async {
            match &self.backend {
                Backend::File(tx) => {
                    let (done, rx) = oneshot::channel();
                    if tx.send(Request::Stop(done)).is_ok() {
                        let _ = rx.await;
                    }
                    if let Some(w) = writer {
                        let _ = tokio::task::spawn_blocking(move || w.join()).await;
                    }
                }
                Backend::Memory(stage) => {
                    stage.queue_expired(true);
                }
            }
            self.mode.send_replace(Mode::Drain);
            for w in workers.iter_mut() {
                let _ = w.await;
            }
        };
        let timed_out = tokio::time::timeout(timeout, work).await.is_err();
        self.stop_tasks(&workers);
        // Wait for the aborted tasks too, so no flush or inbox scan of this buffer is
        // still touching its directory once shutdown returns.
        // (A worker awaited to completion above must not be polled again.)
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in workers.into_iter().chain(tasks) {
            if !t.is_finished() {
                let _ = t.await;
            }
        }
        let fence = shared.clone();
        let _ = tokio::task::spawn_blocking(move || drop(lock(&fence.inbox_scan))).await;
        let st = shared.lock();
        let report = ShutdownReport {
            remaining_chunks: st.queue.len(),
            remaining_bytes: st.queue.iter().map(|c| c.bytes).sum(),
            timed_out,
        };
        drop(st);
        if let Backend::Memory(stage) = &self.backend {
            let staged = stage.staged_records();
            if report.remaining_chunks > 0 || staged > 0 {
                tracing::warn!(buffer = %shared.name, chunks = report.remaining_chunks, "memory buffer shut down with undelivered chunks; they are lost");
            }
        } else if report.remaining_chunks > 0 {
            tracing::info!(buffer = %shared.name, chunks = report.remaining_chunks, bytes = report.remaining_bytes, "undelivered chunks kept on disk for the next start");
        }
        report
    }

    /// Stops at once without committing or queueing anything, as `kill -9` would
    /// (what was written stays in the files; tickets still waiting fail). For crash
    /// tests, and for a daemon whose shutdown deadline has passed.
    pub async fn kill(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.space.notify_waiters();
        if let Backend::File(tx) = &self.backend {
            let _ = tx.send(Request::Kill);
        }
        let writer = lock(&self.writer).take();
        if let Some(w) = writer {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        let workers = std::mem::take(&mut *lock(&self.workers));
        self.stop_tasks(&workers);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in workers.into_iter().chain(tasks) {
            let _ = t.await;
        }
    }

    fn stop_tasks(&self, workers: &[JoinHandle<()>]) {
        self.mode.send_replace(Mode::Stop);
        for w in workers {
            w.abort();
        }
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

impl Drop for OutputBuffer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.space.notify_waiters();
        self.mode.send_replace(Mode::Stop);
        for t in lock(&self.workers).iter().chain(lock(&self.tasks).iter()) {
            t.abort();
        }
        if let Backend::File(tx) = &self.backend {
            let _ = tx.send(Request::Kill);
        }
        if let Some(w) = lock(&self.writer).take() {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes `dir/LOCK` exclusively, so two daemons never write one buffer directory.
fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open buffer lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "buffer directory {} is in use by another tidepool process (lock file {})",
            dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock buffer lock file {}", path.display()))
        }
    }
}

/// Picks up requeued dead letters and retry-now markers every [`REQUEUE_SCAN`].
async fn housekeeping(shared: Arc<Shared>, mut mode: watch::Receiver<Mode>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REQUEUE_SCAN) => {}
            r = mode.changed() => {
                if r.is_err() || *mode.borrow() == Mode::Stop {
                    return;
                }
            }
        }
        scan_requeue(&shared).await;
    }
}

async fn scan_requeue(shared: &Arc<Shared>) {
    let mut seen: HashSet<_> = shared.lock().queue.iter().map(|c| c.id).collect();
    let scanning = shared.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        #[cfg(test)]
        scanning.scans[0].fetch_add(1, Ordering::SeqCst);
        #[cfg(test)]
        drop(lock(&scanning.scan_gate));
        let _scan = lock(&scanning.inbox_scan);
        let found = if scanning.closed.load(Ordering::Acquire) {
            Ok((Vec::new(), Vec::new()))
        } else {
            recovery::scan_inbox(&scanning.dir, &scanning.name, &mut seen)
        };
        #[cfg(test)]
        scanning.scans[1].fetch_add(1, Ordering::SeqCst);
        found
    })
    .await;
    let (chunks, markers) = match scanned {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(buffer = %shared.name, error = %e, "cannot scan the requeue inbox");
            return;
        }
        Err(_) => return,
    };
    shared.enqueue_charged(chunks);
    if markers.is_empty() {
        return;
    }
    let mut st = shared.lock();
    for id in &markers {
        if let Some(c) = st.queue.iter_mut().find(|c| c.id == *id) {
            c.retry = RetryState::default();
            tracing::info!(buffer = %shared.name, chunk = %id, "retrying chunk now, as requested");
        }
    }
    drop(st);
    shared.work.notify_waiters();
}
