//! Transcoding throughput: 1000 Fluent Bit cpu_info-like map records to JSON.
//!
//! Reports MB/s (over the MessagePack input) and records/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use std::hint::black_box;
use tidepool::output::json::write_json;

/// One record shaped like Fluent Bit's `cpu` input on a 4-core host.
fn cpu_info(i: u32) -> Vec<u8> {
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
    pairs.push((Value::from("ok"), Value::from(true)));
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &Value::Map(pairs)).expect("encode to Vec");
    out
}

fn transcode(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..1000).map(cpu_info).collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(bytes * 3);
    let run = |out: &mut Vec<u8>| {
        out.clear();
        for r in &records {
            write_json(black_box(r), out).expect("valid record");
            out.push(b'\n');
        }
        black_box(out.len());
    };
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("cpu_info_1000_bytes", |b| b.iter(|| run(&mut out)));
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("cpu_info_1000_records", |b| b.iter(|| run(&mut out)));
    g.finish();
}

criterion_group!(benches, transcode);
criterion_main!(benches);
