//! Store insert throughput: 1000-record chunks of cpu_info-like records into SQLite.
//!
//! Each iteration commits one new chunk (a fresh id) in its own transaction, WAL and
//! `synchronous=NORMAL`, as the store output does; reports rows/s.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use std::time::Duration;
use tidepool::event::EventTime;
use tidepool::output::ChunkId;
use tidepool::store::Store;

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

criterion_group!(benches, insert);
criterion_main!(benches);
