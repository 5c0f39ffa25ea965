//! Hot-path cost of framing and validating forward-protocol frames: FrameScanner +
//! decode_frame on a PackedForward frame of 1000 small cpu_info-like records, plain and
//! gzip-compressed, and the same events in Forward mode (converted to packed form),
//! reported both in bytes/s (of the frame on the wire) and events/s.

use bytes::Bytes;
use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use rmpv::Value;
use std::hint::black_box;
use std::io::Write;
use tidepool::event::EventTime;
use tidepool::input::forward::frame::{Encoding, Frame, FrameLimits, FrameScanner, decode_frame};

const EVENTS: u64 = 1000;

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("writing to a Vec cannot fail");
    out
}

/// Concatenated `[EventTime, record]` entries, as Fluentd's out_forward packs them.
fn body() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let mut t = (1_700_000_000u32 + i as u32).to_be_bytes().to_vec();
        t.extend((i as u32 * 1000).to_be_bytes());
        let record = Value::Map(vec![
            ("cpu".into(), Value::F64(0.25 + i as f64 / 1e4)),
            ("user".into(), Value::from(12 + i % 7)),
            ("system".into(), Value::from(3)),
            ("idle".into(), Value::from(85)),
            ("host".into(), Value::from("dev-01")),
        ]);
        out.extend(enc(&Value::Array(vec![Value::Ext(0, t), record])));
    }
    out
}

/// The same events in Forward mode (`[tag, [[time, record], ...]]`), as Fluent Bit sends.
fn forward_frame() -> Vec<u8> {
    let body = body();
    let mut out = vec![0x92];
    out.extend(enc(&Value::from("td.test_database.cpu_info")));
    out.extend([0xdc, (EVENTS >> 8) as u8, EVENTS as u8]);
    out.extend(body);
    out
}

fn frame(gzip: bool) -> Vec<u8> {
    let body = body();
    let (payload, compressed) = if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&body).expect("in-memory gzip");
        (e.finish().expect("in-memory gzip"), "gzip")
    } else {
        (body, "text")
    };
    enc(&Value::Array(vec![
        Value::from("td.test_database.cpu_info"),
        Value::Binary(payload),
        Value::Map(vec![
            ("size".into(), Value::from(EVENTS)),
            ("compressed".into(), Value::from(compressed)),
            ("chunk".into(), Value::from("ZhGS2drq80SatylQKOYS/w==\n")),
        ]),
    ]))
}

fn scan_and_decode(frame: &Bytes) -> u32 {
    let limits = FrameLimits::default();
    let mut scanner = FrameScanner::new(Encoding::MessagePack, limits);
    let n = scanner
        .next_frame(frame)
        .expect("valid frame")
        .expect("complete frame");
    match decode_frame(
        frame.slice(..n),
        Encoding::MessagePack,
        EventTime::default(),
        &limits,
    ) {
        Ok(Frame::Events(e)) => e.batch.count,
        _ => 0,
    }
}

fn cases(group: &mut BenchmarkGroup<'_, WallTime>, bytes: bool) {
    for (name, f) in [
        ("packed_plain", frame(false)),
        ("packed_gzip", frame(true)),
        ("forward", forward_frame()),
    ] {
        let f = Bytes::from(f);
        assert_eq!(scan_and_decode(&f), EVENTS as u32);
        group.throughput(if bytes {
            Throughput::Bytes(f.len() as u64)
        } else {
            Throughput::Elements(EVENTS)
        });
        group.bench_function(name, |b| {
            b.iter(|| black_box(scan_and_decode(black_box(&f))))
        });
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_bytes");
    cases(&mut g, true);
    g.finish();
    let mut g = c.benchmark_group("frame_events");
    cases(&mut g, false);
    // The flush path: walking already-validated entries (time decoded, record sliced).
    let body = body();
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("entries_walk", |b| {
        b.iter(|| {
            tidepool::msgpack::entries(black_box(&body))
                .filter_map(Result::ok)
                .map(|e| e.record.len() as i64 + e.time.secs)
                .sum::<i64>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
