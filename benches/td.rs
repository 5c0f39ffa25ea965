//! The td output's flush path: one 8096-record chunk (fluent-plugin-td's record
//! limit) of small Mbed-like `cpu_info` records turned into an import body.
//!
//! Reports MB/s over the chunk's entry bytes for the row rewrite alone and for the
//! whole body (rows + gzip + MD5) at several gzip levels; the default level (1) is
//! chosen from these numbers. Also prints each level's compressed size once.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use std::hint::black_box;
use tidepool::event::EventTime;
use tidepool::output::td::NonMap;
use tidepool::output::td::body::{build, write_rows};

/// Entries `[EventTime, {uptime, idle_time, sleep_time, deep_sleep_time}]`, as the
/// seed's devices send them (reference, section 8), with varying counters.
fn chunk(records: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..records {
        out.push(0x92);
        EventTime {
            secs: 1_764_000_000 + i64::from(i / 100),
            nanos: i * 7919 % 1_000_000_000,
        }
        .encode(&mut out);
        let up = u64::from(i) * 10_007 + 123_456_789;
        let rec = Value::Map(vec![
            (Value::from("uptime"), Value::from(up)),
            (Value::from("idle_time"), Value::from(up / 3 * 2)),
            (Value::from("sleep_time"), Value::from(up / 7)),
            (Value::from("deep_sleep_time"), Value::from(up / 11)),
        ]);
        rmpv::encode::write_value(&mut out, &rec).expect("encode to Vec");
    }
    out
}

fn body(c: &mut Criterion) {
    let entries = chunk(8096);
    let mut g = c.benchmark_group("td_body");
    g.throughput(Throughput::Bytes(entries.len() as u64));
    let mut rows = Vec::new();
    let mut skip = Vec::new();
    g.bench_function("rows_8096", |b| {
        b.iter(|| {
            rows.clear();
            write_rows(black_box(&entries), NonMap::Wrap, &mut rows, &mut skip).expect("rows");
            black_box(rows.len());
        })
    });
    for level in [0, 1, 3, 6] {
        let once = build(&entries, NonMap::Wrap, level, &mut rows).expect("body");
        eprintln!(
            "td_body level {level}: {} entry bytes -> {} rows bytes -> {} gzip bytes",
            entries.len(),
            rows.len(),
            once.gz.len()
        );
        g.bench_function(format!("gzip_level{level}_8096"), |b| {
            b.iter(|| {
                let body =
                    build(black_box(&entries), NonMap::Wrap, level, &mut rows).expect("body");
                black_box(body.gz.len());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, body);
criterion_main!(benches);
