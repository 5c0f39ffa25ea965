//! Store insert throughput: 1000-record chunks of cpu_info-like records into SQLite.
//!
//! Each iteration commits one new chunk (a fresh id) in its own transaction, WAL and
//! `synchronous=NORMAL`, as the store output does; reports rows/s. A second group
//! times reading the newest 10000 rows of a 10 M-row table.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use std::time::Duration;
use tidepool::event::EventTime;
use tidepool::output::ChunkId;
use tidepool::store::Store;
use tidepool::store::query::{Limits, run};
use tidepool::store::records::{RecordsQuery, records};

/// The seed device's cpu_info record (mbed-os-example-treasuredata-rest).
fn seed_cpu_info(i: u32) -> Value {
    Value::Map(vec![
        ("uptime".into(), Value::from(u64::from(i) * 10)),
        ("idle_time".into(), Value::from(u64::from(i) * 9)),
        ("sleep_time".into(), Value::from(u64::from(i % 100))),
        ("deep_sleep_time".into(), Value::from(u64::from(i % 10))),
    ])
}

/// Fluent Bit's `cpu` input on a 4-core host: 15 floats, a host name, two scalars.
fn fluent_bit_cpu(i: u32) -> Value {
    let f = |x: f64| Value::F64(x + f64::from(i % 7) * 0.125);
    let mut pairs = vec![
        (Value::from("cpu_p"), f(1.25)),
        (Value::from("user_p"), f(0.75)),
        (Value::from("system_p"), f(0.5)),
    ];
    for cpu in 0..4 {
        for (k, v) in [("p_cpu", 0.25), ("p_user", 0.125), ("p_system", 0.0625)] {
            pairs.push((Value::from(format!("cpu{cpu}.{k}")), f(v)));
        }
    }
    pairs.push((Value::from("host"), Value::from("dev-01.example.com")));
    pairs.push((Value::from("seq"), Value::from(u64::from(i) * 1_000_003)));
    Value::Map(pairs)
}

/// One chunk of 1000 entries, one second apart, starting at `start`.
fn chunk(record: fn(u32) -> Value, start: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..1000u32 {
        out.push(0x92);
        EventTime {
            secs: start + i64::from(i),
            nanos: i,
        }
        .encode(&mut out);
        rmpv::encode::write_value(&mut out, &record(i)).expect("encode to Vec");
    }
    out
}

fn insert(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path().join("store")).expect("open store");
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1000));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    for (name, record) in [
        ("seed_cpu_info_1000_rows", seed_cpu_info as fn(u32) -> Value),
        ("fluent_bit_cpu_1000_rows", fluent_bit_cpu),
    ] {
        let mut n: u64 = 0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // Built outside the timing: each chunk's times follow the last's.
                    n += 1;
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&n.to_be_bytes());
                    let start = 1_700_000_000 + i64::try_from(n).unwrap_or(0) * 1000;
                    (ChunkId(id), chunk(record, start))
                },
                |(id, bytes)| {
                    let out = store
                        .write_chunk("bench", name, id, &bytes)
                        .expect("write chunk");
                    assert_eq!(out.rows, 1000);
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// The newest 10000 rows of a big table (10 M rows by default; set
/// `TIDEPOOL_BENCH_QUERY_ROWS` for another size), through `/api/records`' code and
/// through SQL.
fn newest(c: &mut Criterion) {
    let rows: u64 = std::env::var("TIDEPOOL_BENCH_QUERY_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path().join("store")).expect("open store");
    for n in 0..rows.div_ceil(1000) {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        let start = 1_600_000_000 + i64::try_from(n).unwrap_or(0) * 1000;
        store
            .write_chunk(
                "test_database",
                "cpu_info",
                ChunkId(id),
                &chunk(seed_cpu_info, start),
            )
            .expect("write chunk");
    }
    let dir = store.dir().to_path_buf();
    let q = RecordsQuery {
        database: "test_database".into(),
        table: "cpu_info".into(),
        limit: 10_000,
        since: None,
        filters: Vec::new(),
    };
    let mut g = c.benchmark_group("store_query");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function(format!("records_newest_10000_of_{rows}"), |b| {
        b.iter(|| {
            let r = records(&dir, &q, Duration::from_secs(5)).expect("records");
            assert_eq!(r.len(), 10_000);
        })
    });
    g.bench_function(format!("sql_newest_10000_of_{rows}"), |b| {
        b.iter(|| {
            let r = run(
                &dir,
                "test_database",
                "select * from cpu_info order by time desc limit 10000",
                Limits::default(),
            )
            .expect("query");
            assert_eq!(r.rows.len(), 10_000);
        })
    });
    g.finish();
}

criterion_group!(benches, insert, newest);
criterion_main!(benches);
