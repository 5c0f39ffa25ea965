//! The commit thread of a file buffer: it owns every staged chunk file, writes the
//! appends it is handed, and runs group commit.
//!
//! One round: take every append waiting in the channel (up to [`ROUND_MAX_BYTES`]),
//! write each chunk's new blocks with one `write`, fdatasync each chunk file written
//! (and the directory if a chunk file was created), then resolve the tickets of every
//! append in the round. Appends arriving during the fsyncs wait in the channel and
//! form the next round, which starts as soon as this one ends: no fixed sleep, and
//! one fsync per dirty file covers however many connections appended meanwhile.
//!
//! Being a dedicated std thread keeps blocking IO off the async workers; no lock is
//! held while it writes or syncs (it takes the shared state lock only to queue chunks
//! and release bytes).

use super::AppendError;
use super::chunk_file::{self, BLOCK_HEADER, ChunkHeader, FileState};
use super::metrics;
use super::queue::{ChunkData, QueuedChunk, RetryState, Shared};
use crate::config::FsyncPolicy;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;
use tokio::sync::oneshot;

/// A round stops taking appends from the channel after this many bytes, so the first
/// appender of a burst is not made to wait for the whole burst's writes.
const ROUND_MAX_BYTES: usize = 32 << 20;

/// Most staged chunk files open at once (one per chunk key); a new key beyond it
/// queues the oldest staged chunk early, so many keys cannot exhaust file descriptors.
pub(super) const MAX_STAGED_FILES: usize = 256;

/// What appenders and the buffer's owner ask of the commit thread.
pub(super) enum Request {
    /// Store one block.
    Append(AppendReq),
    /// Commit, queue every staged chunk now, then answer.
    QueueAll(oneshot::Sender<()>),
    /// Finish pending work, commit, queue every staged chunk, then exit.
    Stop(oneshot::Sender<()>),
    /// Exit now without committing or queueing anything: what a crash would do.
    Kill,
    /// The settings changed: run a round now, so staged chunks meet the new
    /// `flush_interval` and the next deadline is computed from it.
    Reconfigured,
}

/// One append on its way to a chunk file.
pub(super) struct AppendReq {
    pub key: String,
    pub entries: Bytes,
    pub records: u32,
    /// Bytes reserved against `total_limit_size` (block header plus entries).
    pub reserved: u64,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<(), AppendError>>,
}

/// An append written (or about to be) whose ticket is not resolved yet.
struct Waiter {
    records: u32,
    reserved: u64,
    enqueued: Instant,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// A chunk file being appended to.
struct Staged {
    header: ChunkHeader,
    path: PathBuf,
    file: File,
    /// For `flush_interval`.
    opened: Instant,
    /// Bytes known to be in the file (header included).
    len: u64,
    records: u32,
    /// This round's bytes, written with one call.
    pending: Vec<u8>,
    pending_records: u32,
    waiting: Vec<Waiter>,
    /// Written since the last fdatasync.
    dirty: bool,
    /// Created this round: the directory must be synced before its tickets resolve.
    fresh: bool,
    /// An fdatasync failed: the chunk is retired at the end of the round.
    sync_failed: bool,
    /// Blocks written but not yet acked (policy `commit`): resolved after the sync.
    written: Vec<Waiter>,
}

impl Staged {
    fn logical_len(&self) -> u64 {
        self.len + self.pending.len() as u64
    }

    fn total_records(&self) -> u32 {
        self.records.saturating_add(self.pending_records)
    }
}

/// The commit thread's own state.
pub(super) struct Committer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    staged: HashMap<String, Staged>,
    /// Chunks full or expired: synced, then closed and queued at the end of the round.
    retiring: Vec<Staged>,
    last_sync: Instant,
}

impl Committer {
    pub fn new(shared: Arc<Shared>, rx: Receiver<Request>) -> Self {
        Committer {
            shared,
            rx,
            staged: HashMap::new(),
            retiring: Vec::new(),
            last_sync: Instant::now(),
        }
    }

    /// The thread's body; returns when asked to stop or when every sender is gone.
    pub fn run(mut self) {
        loop {
            let first = match self.next_deadline() {
                Some(at) => match self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now()))
                {
                    Ok(r) => Some(r),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.stop(),
                },
                None => match self.rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => return self.stop(),
                },
            };
            #[cfg(test)]
            drop(self.shared.round_gate.lock());
            let mut stop = None;
            let mut queue_all = None;
            let mut round_bytes = 0usize;
            let mut next = first;
            while let Some(req) = next {
                match req {
                    Request::Append(a) => {
                        round_bytes += a.entries.len();
                        self.stage(a);
                    }
                    Request::QueueAll(done) => {
                        queue_all = Some(done);
                        break;
                    }
                    Request::Stop(done) => {
                        stop = Some(done);
                        break;
                    }
                    Request::Kill => return,
                    Request::Reconfigured => break,
                }
                if round_bytes >= ROUND_MAX_BYTES {
                    break;
                }
                next = self.rx.try_recv().ok();
            }
            self.round(stop.is_some() || queue_all.is_some());
            if let Some(done) = queue_all {
                let _ = done.send(());
            }
            if let Some(done) = stop {
                let _ = done.send(());
                return;
            }
        }
    }

    /// Exit path when the buffer was dropped: keep what is written, queue nothing new.
    fn stop(&mut self) {
        self.round(false);
    }

    /// When the loop must wake without a request: the oldest staged chunk's
    /// `flush_interval`, or the next periodic sync.
    fn next_deadline(&self) -> Option<Instant> {
        let cfg = self.shared.cfg();
        let interval = cfg.flush_interval;
        let mut at = self.staged.values().map(|s| s.opened + interval).min();
        if let FsyncPolicy::Interval(every) = cfg.fsync
            && self.staged.values().any(|s| s.dirty)
        {
            let sync_at = self.last_sync + every;
            at = Some(at.map_or(sync_at, |a| a.min(sync_at)));
        }
        at
    }

    /// Adds one append to its key's staged chunk, opening a new chunk if needed.
    fn stage(&mut self, a: AppendReq) {
        let cfg = self.shared.cfg();
        let block_len = (BLOCK_HEADER + a.entries.len()) as u64;
        if let Some(s) = self.staged.get(&a.key) {
            let has_blocks = s.logical_len() > s.header.encoded_len() as u64;
            let too_big = s.logical_len() + block_len > cfg.chunk_limit_size;
            let records = u64::from(s.total_records()) + u64::from(a.records);
            let too_many = cfg.chunk_limit_records.is_some_and(|l| records > l)
                || records > u64::from(u32::MAX);
            if has_blocks
                && (too_big || too_many)
                && let Some(full) = self.staged.remove(&a.key)
            {
                self.retiring.push(full);
            }
        }
        if !self.staged.contains_key(&a.key) && self.staged.len() >= MAX_STAGED_FILES {
            // Bound open files: the chunk opened longest ago is queued early.
            let oldest = self
                .staged
                .iter()
                .min_by_key(|(_, s)| s.opened)
                .map(|(k, _)| k.clone());
            if let Some(s) = oldest.and_then(|k| self.staged.remove(&k)) {
                self.retiring.push(s);
            }
        }
        if !self.staged.contains_key(&a.key) {
            match self.create(&a.key) {
                Ok(s) => {
                    self.staged.insert(a.key.clone(), s);
                }
                Err(e) => {
                    self.fail(a.reserved, &e, &a.key, a.reply);
                    return;
                }
            }
        }
        let Some(s) = self.staged.get_mut(&a.key) else {
            return;
        };
        s.pending
            .extend_from_slice(&chunk_file::block_header(&a.entries, a.records));
        s.pending.extend_from_slice(&a.entries);
        s.pending_records = s.pending_records.saturating_add(a.records);
        s.waiting.push(Waiter {
            records: a.records,
            reserved: a.reserved,
            enqueued: a.enqueued,
            reply: a.reply,
        });
        let full = s.logical_len() >= cfg.chunk_limit_size
            || cfg
                .chunk_limit_records
                .is_some_and(|l| u64::from(s.total_records()) >= l);
        if full && let Some(s) = self.staged.remove(&a.key) {
            self.retiring.push(s);
        }
    }

    /// Creates a staged chunk file; its header is written with the round's first block.
    fn create(&self, key: &str) -> io::Result<Staged> {
        let header = ChunkHeader::new(key);
        let path = chunk_file::chunk_path(&self.shared.dir, FileState::Staged, &header.id);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        let mut pending = Vec::new();
        header.encode(&mut pending);
        self.shared.charge(pending.len() as u64);
        metrics::add(&self.shared.metrics.staged_chunks, 1);
        Ok(Staged {
            header,
            path,
            file,
            opened: Instant::now(),
            len: 0,
            records: 0,
            pending,
            pending_records: 0,
            waiting: Vec::new(),
            dirty: false,
            fresh: true,
            sync_failed: false,
            written: Vec::new(),
        })
    }

    /// Answers an append that could not be stored and gives back its reservation.
    fn fail(
        &self,
        reserved: u64,
        e: &io::Error,
        key: &str,
        reply: oneshot::Sender<Result<(), AppendError>>,
    ) {
        self.shared.release(reserved);
        metrics::add(&self.shared.metrics.write_errors, 1);
        let err = if is_no_space(e) {
            self.shared.mark_disk_full();
            AppendError::NoSpace(self.shared.name.clone())
        } else {
            AppendError::Io(format!(
                "buffer {} could not store a block for key {key:?} under {}: {e}",
                self.shared.name,
                self.shared.dir.display()
            ))
        };
        let _ = reply.send(Err(err));
    }

    /// Writes, syncs, resolves tickets and queues finished chunks.
    fn round(&mut self, queue_everything: bool) {
        let now = Instant::now();
        let cfg = self.shared.cfg();
        let interval = cfg.flush_interval;
        let expired: Vec<String> = self
            .staged
            .iter()
            .filter(|(_, s)| queue_everything || s.opened + interval <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(s) = self.staged.remove(&key) {
                self.retiring.push(s);
            }
        }
        let mut broken = Vec::new();
        for (key, s) in self.staged.iter_mut() {
            if !write_pending(&self.shared, s) {
                broken.push(key.clone());
            }
        }
        for key in broken {
            if let Some(s) = self.staged.remove(&key) {
                self.retiring.push(s);
            }
        }
        for s in &mut self.retiring {
            write_pending(&self.shared, s);
        }
        match cfg.fsync {
            FsyncPolicy::Commit => self.sync(true),
            FsyncPolicy::Interval(every) => {
                self.ack_written();
                let due = self.last_sync + every <= Instant::now();
                // Chunks about to be closed are synced now: the periodic sync only
                // sees open ones.
                if due || self.retiring.iter().any(|s| s.dirty) {
                    self.sync(due);
                }
            }
            FsyncPolicy::Never => self.ack_written(),
        }
        self.queue_retiring();
    }

    /// Resolves every written append without waiting for a sync (`interval`, `never`).
    fn ack_written(&mut self) {
        let all = self.staged.values_mut().chain(self.retiring.iter_mut());
        for s in all {
            for w in s.written.drain(..) {
                ack(&self.shared, w);
            }
        }
    }

    /// fdatasyncs every dirty chunk file (and the directory if one is new), then
    /// resolves the tickets those syncs cover.
    fn sync(&mut self, staged_too: bool) {
        let shared = Arc::clone(&self.shared);
        let staged = self.staged.values_mut().filter(|_| staged_too);
        let mut dirty: Vec<&mut Staged> = staged
            .chain(self.retiring.iter_mut())
            .filter(|s| s.dirty)
            .collect();
        let fresh = dirty.iter().any(|s| s.fresh);
        let files: Vec<&File> = dirty.iter().map(|s| &s.file).collect();
        let results = sync_files(&files);
        if !dirty.is_empty() {
            metrics::add(&shared.metrics.commit_rounds, 1);
            metrics::add(&shared.metrics.fsync_count, dirty.len() as u64);
        }
        for (s, result) in dirty.iter_mut().zip(results) {
            after_sync(&shared, s, result);
        }
        let dir_ok = !fresh || sync_dir(&shared);
        for s in dirty.iter_mut() {
            let dir_unsynced = s.fresh && !dir_ok;
            s.fresh = dir_unsynced;
            for w in s.written.drain(..) {
                if dir_unsynced {
                    let _ = w.reply.send(Err(AppendError::Io(format!(
                        "buffer {}: syncing directory {} failed",
                        shared.name,
                        shared.dir.display()
                    ))));
                } else {
                    ack(&shared, w);
                }
            }
        }
        let failed: Vec<String> = self
            .staged
            .iter()
            .filter(|(_, s)| s.sync_failed)
            .map(|(k, _)| k.clone())
            .collect();
        for key in failed {
            if let Some(s) = self.staged.remove(&key) {
                self.retiring.push(s);
            }
        }
        if staged_too {
            self.last_sync = Instant::now();
        }
    }

    /// Closes the finished chunks, renames them to their queued name and queues them.
    fn queue_retiring(&mut self) {
        for s in self.retiring.drain(..) {
            let m = &self.shared.metrics;
            metrics::sub(&m.staged_chunks, 1);
            metrics::sub(&m.staged_bytes, s.len);
            let Staged {
                header, path, file, ..
            } = s;
            drop(file);
            let header_len = header.encoded_len() as u64;
            if s.len <= header_len {
                // Nothing acked lives here (its only writes failed): nothing to flush.
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(buffer = %self.shared.name, path = %path.display(), error = %e, "could not remove an empty chunk file");
                }
                self.shared.release(header_len);
                continue;
            }
            let queued = chunk_file::chunk_path(&self.shared.dir, FileState::Queued, &header.id);
            let path = match std::fs::rename(&path, &queued) {
                Ok(()) => queued,
                Err(e) => {
                    tracing::warn!(buffer = %self.shared.name, path = %path.display(), error = %e, "could not rename a chunk to its queued name; flushing it under its staged name");
                    path
                }
            };
            self.shared.enqueue(QueuedChunk {
                id: header.id,
                key: header.key,
                records: s.records,
                bytes: s.len,
                created_ms: header.created_ms,
                data: ChunkData::File(path),
                retry: RetryState::default(),
                in_flight: false,
                drain_attempted: false,
            });
        }
    }
}

/// Writes a chunk's pending bytes with one call. On failure the file is cut back to
/// its last good length and the round's appends to it fail; returns false if the
/// chunk should not take more appends.
fn write_pending(shared: &Shared, s: &mut Staged) -> bool {
    if s.pending.is_empty() {
        return true;
    }
    #[cfg(not(test))]
    let result = s.file.write_all(&s.pending);
    #[cfg(test)]
    let result = injected_write(shared, s);
    match result {
        Ok(()) => {
            let n = s.pending.len() as u64;
            s.len += n;
            s.records = s.total_records();
            s.dirty = true;
            metrics::add(&shared.metrics.staged_bytes, n);
            s.written.append(&mut s.waiting);
            s.pending.clear();
            s.pending.shrink_to(1 << 20);
            s.pending_records = 0;
            true
        }
        Err(e) => {
            tracing::error!(buffer = %shared.name, path = %s.path.display(), error = %e, "writing to a chunk file failed; the affected appends are not acked");
            let cut = s.file.set_len(s.len).is_ok();
            let key = s.header.key.clone();
            for w in s.waiting.drain(..) {
                fail_waiter(shared, w, &e, &key);
            }
            s.pending.clear();
            s.pending_records = 0;
            if s.len == 0 {
                // The header never made it: the next append must write it again.
                s.header.encode(&mut s.pending);
            }
            cut
        }
    }
}

fn fail_waiter(shared: &Shared, w: Waiter, e: &io::Error, key: &str) {
    shared.release(w.reserved);
    metrics::add(&shared.metrics.write_errors, 1);
    let err = if is_no_space(e) {
        shared.mark_disk_full();
        AppendError::NoSpace(shared.name.clone())
    } else {
        AppendError::Io(format!(
            "buffer {}: writing key {key:?} to {} failed: {e}",
            shared.name,
            shared.dir.display()
        ))
    };
    let _ = w.reply.send(Err(err));
}

/// Most threads one round uses to fdatasync several chunk files at once; concurrent
/// syncs let the filesystem fold them into fewer journal commits.
const SYNC_THREADS: usize = 4;

/// Tests make the next writes fail with ENOSPC after writing half their bytes (a
/// torn write), through [`Shared::inject_enospc`].
#[cfg(test)]
fn injected_write(shared: &Shared, s: &mut Staged) -> io::Result<()> {
    use std::sync::atomic::Ordering;
    let inject = shared
        .inject_enospc
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if inject.is_err() {
        return s.file.write_all(&s.pending);
    }
    let half = s.pending.len() / 2;
    s.file.write_all(&s.pending[..half])?;
    Err(io::Error::from(io::ErrorKind::StorageFull))
}

/// fdatasyncs `files`, in parallel when there are several; results in input order.
fn sync_files(files: &[&File]) -> Vec<io::Result<()>> {
    let serial = |part: &[&File]| part.iter().map(|f| f.sync_data()).collect::<Vec<_>>();
    if files.len() <= 1 {
        return serial(files);
    }
    let per = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let mut parts = files.chunks(per);
        let first = parts.next().unwrap_or_default();
        let spawned: Vec<_> = parts
            .map(|part| {
                let handle = std::thread::Builder::new()
                    .name("tp-fsync".into())
                    .spawn_scoped(scope, move || serial(part));
                (part, handle)
            })
            .collect();
        let mut out = serial(first);
        for (part, handle) in spawned {
            match handle {
                Ok(h) => out.extend(h.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|_| Err(io::Error::other("fsync thread panicked")))
                        .collect()
                })),
                // No thread to be had: sync this part here.
                Err(_) => out.extend(serial(part)),
            }
        }
        out
    })
}

/// Books one chunk's fdatasync result. On failure its written appends fail (after a
/// failed fsync the kernel may have dropped the pages, so nothing written since the
/// last good sync can be vouched for) and the chunk takes no more appends.
fn after_sync(shared: &Shared, s: &mut Staged, result: io::Result<()>) {
    match result {
        Ok(()) => s.dirty = false,
        Err(e) => {
            tracing::error!(buffer = %shared.name, path = %s.path.display(), error = %e, "fdatasync of a chunk file failed; the affected appends are not acked");
            let key = s.header.key.clone();
            for w in s.written.drain(..) {
                fail_waiter(shared, w, &e, &key);
            }
            s.sync_failed = true;
        }
    }
}

/// Syncs the buffer directory so newly created chunk files survive a crash.
fn sync_dir(shared: &Shared) -> bool {
    match File::open(&shared.dir).and_then(|d| d.sync_all()) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(buffer = %shared.name, dir = %shared.dir.display(), error = %e, "syncing the buffer directory failed");
            false
        }
    }
}

fn ack(shared: &Shared, w: Waiter) {
    let m = &shared.metrics;
    metrics::add(&m.acked_appends, 1);
    metrics::add(&m.acked_events, u64::from(w.records));
    m.observe_commit(w.enqueued.elapsed());
    let _ = w.reply.send(Ok(()));
}

/// ENOSPC and EDQUOT both mean "no room until something is deleted".
pub(super) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(28)
}
