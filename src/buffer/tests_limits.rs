//! Limits: `total_limit_size` with each overflow action, disk full (ENOSPC), oversized
//! batches and keys, and the bound on open staged files.

use super::chunk_file::FileState;
use super::tests::{batch, chunk_ids, config, sink, stored, until};
use super::*;
use crate::config::{BufferConfig, OverflowAction};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Two one-record chunks fill the buffer; the gate keeps them there.
pub(super) fn tight(overflow: OverflowAction) -> BufferConfig {
    BufferConfig {
        chunk_limit_records: Some(1),
        total_limit_size: 2 * (12 + 13 + 36 + 1 + 4) + 10,
        overflow_action: overflow,
        flush_thread_count: 1,
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_stalls_an_append_until_the_sink_drains() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(false);
    let buf = Arc::new(
        OutputBuffer::open(
            "out",
            &tight(OverflowAction::Block),
            dir.path(),
            s.sink.clone(),
        )
        .await
        .unwrap(),
    );
    for i in 0..2 {
        stored(&buf, "k", batch(i), 1).await;
    }
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let third = {
        let (buf, order) = (Arc::clone(&buf), Arc::clone(&order));
        tokio::spawn(async move {
            let t = buf.append("k", batch(2), 1).await.unwrap();
            t.wait().await.unwrap();
            order.lock().unwrap().push("third stored");
        })
    };
    until("the third append to block", || {
        buf.metrics().snapshot().blocked_appends == 1
    })
    .await;
    order.lock().unwrap().push("sink opened");
    s.open_gate();
    third.await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["sink opened", "third stored"]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(s.recv().await.entries);
    }
    buf.queue_staged().await;
    seen.push(s.recv().await.entries);
    seen.sort();
    assert_eq!(seen, [batch(0), batch(1), batch(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throw_exception_refuses_a_batch_when_full_and_accepts_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(false);
    let cfg = tight(OverflowAction::ThrowException);
    let buf = OutputBuffer::open("out", &cfg, dir.path(), s.sink.clone())
        .await
        .unwrap();
    for i in 0..2 {
        stored(&buf, "k", batch(i), 1).await;
    }
    let err = buf.append("k", batch(2), 1).await.unwrap_err();
    assert_eq!(err, AppendError::Full("out".into()));
    assert_eq!(buf.metrics().snapshot().rejected_appends, 1);
    s.open_gate();
    until("both chunks flushed", || {
        buf.metrics().snapshot().flush_count == 2
    })
    .await;
    stored(&buf, "k", batch(2), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_chunk_drops_a_queued_chunk_not_the_one_being_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(false);
    let cfg = tight(OverflowAction::DropOldestChunk);
    let buf = OutputBuffer::open("out", &cfg, dir.path(), s.sink.clone())
        .await
        .unwrap();
    stored(&buf, "k", batch(0), 1).await;
    until("the first chunk in flight", || {
        s.sink.attempts.load(Ordering::SeqCst) == 1
    })
    .await;
    stored(&buf, "k", batch(1), 1).await;
    stored(&buf, "k", batch(2), 1).await;
    let m = buf.metrics().snapshot();
    assert_eq!((m.dropped_chunks, m.dropped_records), (1, 1));
    s.open_gate();
    let mut seen = vec![s.recv().await.entries, s.recv().await.entries];
    seen.sort();
    assert_eq!(seen, [batch(0), batch(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_and_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(true);
    let cfg = BufferConfig {
        total_limit_size: 100,
        ..config()
    };
    let buf = OutputBuffer::open("out", &cfg, dir.path(), s.sink.clone())
        .await
        .unwrap();
    let err = buf
        .append("k", Bytes::from(vec![0u8; 200]), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::TooLarge {
                bytes: 212,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    let long = "k".repeat(70_000);
    let err = buf.append(&long, batch(1), 1).await.unwrap_err();
    assert_eq!(err, AppendError::KeyTooLong(70_000));
    stored(&buf, "k", Bytes::new(), 0).await;
    assert_eq!(buf.metrics().snapshot().emit_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_fails_the_append_cuts_the_torn_write_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(true);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    stored(&buf, "k", batch(1), 1).await;
    buf.shared().inject_enospc.store(1, Ordering::SeqCst);
    let err = buf.append("k", batch(2), 1).await.unwrap().wait().await;
    assert_eq!(err, Err(AppendError::NoSpace("out".into())));
    // The disk counts as full now: under `block` the next append waits, then goes in.
    stored(&buf, "k", batch(3), 1).await;
    let m = buf.metrics().snapshot();
    assert_eq!(
        (m.write_errors, m.blocked_appends, m.acked_appends),
        (1, 1, 2)
    );
    buf.queue_staged().await;
    let chunk = s.recv().await;
    assert_eq!(&chunk.entries[..], &[batch(1), batch(3)].concat()[..]);
    assert_eq!(chunk.records, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_under_throw_exception() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(true);
    let cfg = BufferConfig {
        overflow_action: OverflowAction::ThrowException,
        ..config()
    };
    let buf = OutputBuffer::open("out", &cfg, dir.path(), s.sink.clone())
        .await
        .unwrap();
    buf.shared().inject_enospc.store(1, Ordering::SeqCst);
    let err = buf.append("k", batch(1), 1).await.unwrap().wait().await;
    assert_eq!(err, Err(AppendError::NoSpace("out".into())));
    let err = buf.append("k", batch(2), 1).await.unwrap_err();
    assert_eq!(err, AppendError::NoSpace("out".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_keep_a_bounded_number_of_staged_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(false);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    let keys = commit::MAX_STAGED_FILES + 44;
    for i in 0..keys {
        let key = format!("td.db.table{i}");
        stored(&buf, &key, batch(i), 1).await;
    }
    // Tickets resolve before the round renames its retired chunks; wait for that.
    until("chunks beyond the bound queued", || {
        chunk_ids(dir.path(), FileState::Queued).len() == keys - commit::MAX_STAGED_FILES
    })
    .await;
    let staged = chunk_ids(dir.path(), FileState::Staged).len();
    assert_eq!(staged, commit::MAX_STAGED_FILES);
}
