//! Filter throughput: a `record_transformer` (three templated keys, one removed)
//! over batches of 1000 heap_info-like records, and the untouched fast path.
//!
//! Reports events/s on one core.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use std::hint::black_box;
use tidepool::config::Config;
use tidepool::event::{Batch, EventTime, Signal};
use tidepool::pipeline::filter::FilterChain;

const CONFIG: &str = r#"
[[filter]]
type = "record_transformer"
pattern = "td.**"
record = { aggregator = "${hostname}", database = "${tag_parts[1]}", seen = 'heap ${record["heap_free"]}' }
remove_keys = ["debug"]

[output.n]
type = "null"

[[match]]
pattern = "**"
outputs = ["n"]
"#;

/// One record shaped like the seed devices' heap_info events.
fn heap_info(i: u64) -> Value {
    Value::Map(vec![
        (
            Value::from("device"),
            Value::from(format!("mbed-{:04}", i % 500)),
        ),
        (Value::from("heap_free"), Value::from(20_000 + i % 977)),
        (Value::from("heap_total"), Value::from(65_536)),
        (Value::from("max_heap"), Value::from(41_002)),
        (Value::from("uptime_ms"), Value::from(i * 1_000)),
        (Value::from("debug"), Value::from(false)),
        (Value::from("fw"), Value::from("1.4.2")),
    ])
}

fn batch(tag: &str) -> Batch {
    let mut entries = Vec::new();
    for i in 0..1000u64 {
        entries.push(0x92);
        EventTime {
            secs: 1_700_000_000 + i as i64,
            nanos: 0,
        }
        .encode(&mut entries);
        rmpv::encode::write_value(&mut entries, &heap_info(i)).expect("encode to Vec");
    }
    Batch {
        tag: tag.to_string(),
        entries: Bytes::from(entries),
        count: 1000,
        signal: Signal::Logs,
    }
}

fn filters(c: &mut Criterion) {
    let config = Config::parse(CONFIG, "bench.toml").expect("bench config parses");
    let chain = FilterChain::with_hostname(&config, "aggregator-01.example.com");
    let filtered = batch("td.test_database.heap_info");
    let untouched = batch("other.tag");
    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("record_transformer_1000_events", |b| {
        b.iter(|| {
            let applied = chain.apply(black_box(filtered.clone()));
            black_box(applied.batches.len())
        })
    });
    g.bench_function("untouched_1000_events", |b| {
        b.iter(|| {
            let applied = chain.apply(black_box(untouched.clone()));
            black_box(applied.batches.len())
        })
    });
    g.finish();
}

criterion_group!(benches, filters);
criterion_main!(benches);
