//! Settings changed by a reload reach a running buffer (`OutputBuffer::reconfigure`).

use super::tests::{batch, config, sink, stored, until};
use super::tests_limits::tight;
use super::*;
use crate::config::{BufferConfig, BufferKind, OverflowAction};
use std::sync::Arc;
use std::time::Duration;

/// A staged chunk waits out the `flush_interval` it was opened under unless the
/// change wakes the committer (file) or the timer (memory): with the old hour-long
/// interval the sink would see nothing within the test's patience.
async fn shorter_flush_interval_flushes_a_staged_chunk(kind: BufferKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(true);
    let slow = BufferConfig { kind, ..config() };
    let buf = OutputBuffer::open("out", &slow, dir.path(), s.sink.clone())
        .await
        .unwrap();
    stored(&buf, "k", batch(3), 1).await;
    if kind == BufferKind::Memory {
        // The timer's first round and the one the new chunk woke: by then it sleeps
        // until the chunk's hour-long deadline.
        until("the memory timer to see the chunk", || {
            buf.memory_timer_rounds() >= 2
        })
        .await;
    }
    let fast = BufferConfig {
        flush_interval: Duration::from_millis(20),
        ..slow
    };
    buf.reconfigure(&fast).unwrap();
    assert_eq!(&s.recv().await.entries[..], &batch(3)[..]);
    buf.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_flush_interval_applies_to_staged_file_chunks() {
    shorter_flush_interval_flushes_a_staged_chunk(BufferKind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_flush_interval_applies_to_staged_memory_chunks() {
    shorter_flush_interval_flushes_a_staged_chunk(BufferKind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_total_limit_releases_a_blocked_append() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(false);
    let tight = tight(OverflowAction::Block);
    let buf = Arc::new(
        OutputBuffer::open("out", &tight, dir.path(), s.sink.clone())
            .await
            .unwrap(),
    );
    for i in 0..2 {
        stored(&buf, "k", batch(i), 1).await;
    }
    let third = {
        let buf = Arc::clone(&buf);
        tokio::spawn(async move { buf.append("k", batch(2), 1).await.unwrap().wait().await })
    };
    until("the third append to block", || {
        buf.metrics().snapshot().blocked_appends == 1
    })
    .await;
    let roomy = BufferConfig {
        total_limit_size: 1 << 20,
        ..tight
    };
    buf.reconfigure(&roomy).unwrap();
    // The sink is still closed: only the new limit can have let it through.
    tokio::time::timeout(super::tests::PATIENCE, third)
        .await
        .expect("the blocked append is still blocked under the larger limit")
        .unwrap()
        .unwrap();
    assert_eq!(buf.metrics().snapshot().acked_events, 3);
    buf.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_type_or_worker_count_is_refused_and_the_old_settings_stay() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(true);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    let memory = BufferConfig {
        kind: BufferKind::Memory,
        flush_interval: Duration::from_millis(1),
        ..config()
    };
    let err = buf.reconfigure(&memory).unwrap_err();
    assert!(err.contains("type"), "{err}");
    let workers = BufferConfig {
        flush_thread_count: 7,
        ..config()
    };
    let err = buf.reconfigure(&workers).unwrap_err();
    assert!(err.contains("flush_thread_count"), "{err}");
    assert_eq!(*buf.shared().cfg(), config());
    buf.shutdown(Duration::ZERO).await;
}
