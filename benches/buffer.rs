//! Append + group-commit throughput of the file buffer, with a sink that discards.
//!
//! Each iteration is one PackedForward-sized batch of 1000 small records appended to
//! the buffer and acked (its ticket resolved after the covering fdatasync). Appenders
//! stand for connections; `window` is how many batches one keeps in flight before
//! waiting for the oldest ack. Flush workers drain to the null sink concurrently, so
//! a sustained figure includes reading chunks back and deleting them.
//!
//! Chunk files go to `$TIDEPOOL_BENCH_DIR` (default: the system temp dir); point it
//! at the disk you care about, since fdatasync cost is the whole story.
//!
//! Run: `cargo bench --bench buffer` (events/s is reported as elements/s).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidepool::buffer::{OutputBuffer, Sink};
use tidepool::config::{BufferConfig, BufferKind, FsyncPolicy, OverflowAction};
use tidepool::output::{Chunk, OutputError};

const RECORDS: u32 = 1000;

struct NullSink;

impl Sink for NullSink {
    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        std::hint::black_box(chunk.entries.len());
        Ok(())
    }
}

/// 1000 `[time, {"host": ..., "level": ..., "n": i}]` entries, about 45 bytes each.
fn batch() -> Bytes {
    let mut out = Vec::new();
    for i in 0..RECORDS {
        out.push(0x92);
        out.extend_from_slice(&[0xd7, 0x00]);
        out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        out.extend_from_slice(&i.to_be_bytes());
        out.push(0x83);
        for (k, v) in [("host", "device-017"), ("level", "info")] {
            out.push(0xa0 | k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.push(0xa0 | v.len() as u8);
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(&[0xa1, b'n', 0xce]);
        out.extend_from_slice(&i.to_be_bytes());
    }
    Bytes::from(out)
}

fn config(fsync: FsyncPolicy) -> BufferConfig {
    BufferConfig {
        kind: BufferKind::File,
        chunk_limit_size: 8 << 20,
        chunk_limit_records: None,
        flush_interval: Duration::from_secs(1),
        flush_thread_count: 2,
        retry_wait: Duration::from_secs(1),
        retry_max_interval: Duration::from_secs(60),
        retry_max_times: None,
        retry_timeout: Duration::from_secs(3600),
        retry_forever: false,
        total_limit_size: 1 << 30,
        overflow_action: OverflowAction::Block,
        fsync,
    }
}

/// Appends `iters` batches from `conns` appenders spread over `keys` chunk keys, with
/// `window` batches in flight each.
async fn run(
    buf: Arc<OutputBuffer>,
    entries: Bytes,
    iters: u64,
    (conns, keys, window): (u64, u64, usize),
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let n = iters / conns + u64::from(c < iters % conns);
        let (buf, entries) = (Arc::clone(&buf), entries.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("td.bench.t{}", c % keys);
            let mut inflight = VecDeque::new();
            for _ in 0..n {
                if inflight.len() >= window {
                    let t: tidepool::buffer::CommitTicket = inflight.pop_front().unwrap();
                    t.wait().await.unwrap();
                }
                inflight.push_back(buf.append(&key, entries.clone(), RECORDS).await.unwrap());
            }
            for t in inflight {
                t.wait().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("TIDEPOOL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let entries = batch();
    // (name, fsync, (connections, distinct chunk keys, batches in flight per connection))
    let cases: [(&str, FsyncPolicy, (u64, u64, usize)); 5] = [
        ("commit/2conn/window1", FsyncPolicy::Commit, (2, 2, 1)),
        ("commit/2conn/window8", FsyncPolicy::Commit, (2, 2, 8)),
        (
            "commit/16conn/1key/window1",
            FsyncPolicy::Commit,
            (16, 1, 1),
        ),
        (
            "commit/16conn/16keys/window1",
            FsyncPolicy::Commit,
            (16, 16, 1),
        ),
        ("never/2conn/window8", FsyncPolicy::Never, (2, 2, 8)),
    ];
    for (unit, throughput) in [
        ("events", Throughput::Elements(u64::from(RECORDS))),
        ("bytes", Throughput::Bytes(entries.len() as u64)),
    ] {
        let mut group = c.benchmark_group(format!("buffer_append_commit_{unit}"));
        group.throughput(throughput);
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        for (name, fsync, shape) in cases {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let buf = rt.block_on(async {
                Arc::new(
                    OutputBuffer::open("bench", &config(fsync), dir.path(), Arc::new(NullSink))
                        .await
                        .unwrap(),
                )
            });
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(run(Arc::clone(&buf), entries.clone(), iters, shape))
                })
            });
            rt.block_on(buf.shutdown(Duration::from_secs(10)));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
