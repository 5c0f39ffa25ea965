//! Import rows built from entry bytes: `time` first and always the event's seconds,
//! nothing else changed (reference, section 5).

use super::{T, entry, map, mp};
use crate::output::td::NonMap;
use crate::output::td::body::{MAX_KEYS, RowCounts, build, gzip, write_rows};
use flate2::read::GzDecoder;
use md5::{Digest, Md5};
use rmpv::Value;
use std::io::Read;

/// The rows of `entries`, decoded.
fn rows(entries: &[Vec<u8>], non_map: NonMap) -> (Vec<Value>, RowCounts) {
    let mut out = Vec::new();
    let counts =
        write_rows(&entries.concat(), non_map, &mut out, &mut Vec::new()).expect("rows build");
    (decode(&out), counts)
}

fn decode(mut bytes: &[u8]) -> Vec<Value> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        values.push(rmpv::decode::read_value(&mut bytes).expect("rows are MessagePack"));
    }
    values
}

fn time(secs: i64) -> (&'static str, Value) {
    ("time", Value::from(secs))
}

#[test]
fn time_is_prepended_as_integer_seconds() {
    let rec = map(&[("cpu", Value::from(3)), ("host", Value::from("dev-7"))]);
    let (got, counts) = rows(
        &[
            entry(T::Event(1_700_000_000, 999_999_999), &mp(&rec)),
            entry(T::Int(1_700_000_001), &mp(&rec)),
            entry(T::Float(1_700_000_002.75), &mp(&rec)),
            entry(T::Meta(1_700_000_003), &mp(&rec)),
        ],
        NonMap::Wrap,
    );
    let want = |secs| {
        map(&[
            time(secs),
            ("cpu", Value::from(3)),
            ("host", Value::from("dev-7")),
        ])
    };
    assert_eq!(
        got,
        vec![
            want(1_700_000_000),
            want(1_700_000_001),
            want(1_700_000_002),
            want(1_700_000_003)
        ]
    );
    assert_eq!(
        counts,
        RowCounts {
            rows: 4,
            wrapped: 0,
            dropped: 0
        }
    );
}

#[test]
fn a_records_own_time_is_overwritten_wherever_it_is() {
    // `time` first, last, in str8 form, twice; `times` and a "time" value stay.
    let mut str8_time = vec![0x83, 0xd9, 0x04];
    str8_time.extend_from_slice(b"time");
    str8_time.extend_from_slice(&mp(&Value::from("old")));
    str8_time.extend_from_slice(&mp(&Value::from("a")));
    str8_time.extend_from_slice(&mp(&Value::from(1)));
    str8_time.extend_from_slice(&mp(&Value::from("times")));
    str8_time.extend_from_slice(&mp(&Value::from("time")));
    let twice = Value::Map(vec![
        (Value::from("time"), Value::from(1)),
        (Value::from("k"), Value::from("time")),
        (Value::from("time"), Value::F64(2.5)),
    ]);
    let last = map(&[("x", Value::Nil), ("time", Value::from("2024-01-01"))]);
    let nested = map(&[("inner", map(&[("time", Value::from(7))]))]);
    let (got, _) = rows(
        &[
            entry(T::Int(10), &str8_time),
            entry(T::Int(11), &mp(&twice)),
            entry(T::Int(12), &mp(&last)),
            entry(T::Int(13), &mp(&nested)),
        ],
        NonMap::Wrap,
    );
    assert_eq!(
        got,
        vec![
            map(&[
                time(10),
                ("a", Value::from(1)),
                ("times", Value::from("time"))
            ]),
            map(&[time(11), ("k", Value::from("time"))]),
            map(&[time(12), ("x", Value::Nil)]),
            map(&[time(13), ("inner", map(&[("time", Value::from(7))]))]),
        ]
    );
}

#[test]
fn time_keys_in_every_str_width_are_found_and_lookalikes_kept() {
    let key = |header: &[u8]| {
        let mut rec = vec![0x83];
        rec.extend_from_slice(header);
        rec.extend_from_slice(b"time");
        rec.extend_from_slice(&mp(&Value::from(1)));
        rec.extend_from_slice(&mp(&Value::from("uptime")));
        rec.extend_from_slice(&mp(&Value::from(2)));
        rec.extend_from_slice(&mp(&Value::from("deep_sleep_time")));
        rec.extend_from_slice(&mp(&Value::from("time")));
        rec
    };
    let want = map(&[
        time(9),
        ("uptime", Value::from(2)),
        ("deep_sleep_time", Value::from("time")),
    ]);
    for header in [&[0xa4][..], &[0xd9, 4], &[0xda, 0, 4], &[0xdb, 0, 0, 0, 4]] {
        let (got, _) = rows(&[entry(T::Int(9), &key(header))], NonMap::Wrap);
        assert_eq!(got, vec![want.clone()], "header {header:02x?}");
    }
    let mbed = map(&[
        ("uptime", Value::from(1)),
        ("idle_time", Value::from(2)),
        ("sleep_time", Value::from(3)),
    ]);
    let (got, _) = rows(&[entry(T::Int(9), &mp(&mbed))], NonMap::Wrap);
    assert_eq!(
        got,
        vec![map(&[
            time(9),
            ("uptime", Value::from(1)),
            ("idle_time", Value::from(2)),
            ("sleep_time", Value::from(3)),
        ])]
    );
}

#[test]
fn non_map_records_are_wrapped_or_dropped() {
    let arr = Value::Array(vec![Value::from(1), Value::from("two")]);
    let entries = [
        entry(T::Event(100, 5), &mp(&arr)),
        entry(T::Int(101), &mp(&Value::from("line"))),
        entry(T::Int(102), &mp(&Value::Nil)),
        entry(T::Int(103), &mp(&map(&[("ok", Value::from(true))]))),
    ];
    let (got, counts) = rows(&entries, NonMap::Wrap);
    assert_eq!(
        got,
        vec![
            map(&[time(100), ("value", arr)]),
            map(&[time(101), ("value", Value::from("line"))]),
            map(&[time(102), ("value", Value::Nil)]),
            map(&[time(103), ("ok", Value::from(true))]),
        ]
    );
    assert_eq!((counts.rows, counts.wrapped, counts.dropped), (4, 3, 0));

    let (got, counts) = rows(&entries, NonMap::Drop);
    assert_eq!(got, vec![map(&[time(103), ("ok", Value::from(true))])]);
    assert_eq!((counts.rows, counts.wrapped, counts.dropped), (1, 0, 3));
}

/// A map of `n` keys `k0..`, optionally with its own `time`.
fn wide(n: usize, with_time: bool) -> Value {
    let mut pairs: Vec<(Value, Value)> = (0..n)
        .map(|i| (Value::from(format!("k{i}")), Value::from(i as u64)))
        .collect();
    if with_time {
        pairs.push((Value::from("time"), Value::from(0)));
    }
    Value::Map(pairs)
}

#[test]
fn at_most_512_keys_counting_time() {
    let ok = [
        entry(T::Int(1), &mp(&wide(511, false))),
        entry(T::Int(2), &mp(&wide(511, true))),
    ];
    let (got, _) = rows(&ok, NonMap::Wrap);
    for row in &got {
        assert_eq!(row.as_map().map(Vec::len), Some(MAX_KEYS as usize));
    }
    let too_many = [
        entry(T::Int(1), &mp(&wide(3, false))),
        entry(T::Int(1), &mp(&wide(512, false))),
    ];
    let e = write_rows(
        &too_many.concat(),
        NonMap::Wrap,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .expect_err("513 keys");
    assert!(e.contains("record 1") && e.contains("513 keys"), "{e}");
}

#[test]
fn map_header_widths_are_rewritten() {
    // 15 keys + time = fixmap -> map16; 65535 keys would be map32 (too many anyway).
    let (got, _) = rows(&[entry(T::Int(5), &mp(&wide(15, false)))], NonMap::Wrap);
    let row = got[0].as_map().expect("a map");
    assert_eq!(row.len(), 16);
    assert_eq!(row[0], (Value::from("time"), Value::from(5)));
    // A fixmap record written with a map32 header is read as a map too.
    let mut map32 = vec![0xdf, 0, 0, 0, 1];
    map32.extend_from_slice(&mp(&Value::from("a")));
    map32.extend_from_slice(&mp(&Value::from(1)));
    let (got, _) = rows(&[entry(T::Int(6), &map32)], NonMap::Wrap);
    assert_eq!(got, vec![map(&[time(6), ("a", Value::from(1))])]);
}

#[test]
fn negative_and_large_times_keep_their_sign_and_width() {
    let rec = mp(&map(&[("a", Value::from(1))]));
    let (got, _) = rows(
        &[entry(T::Int(-5), &rec), entry(T::Int(4_294_967_296), &rec)],
        NonMap::Wrap,
    );
    assert_eq!(got[0].as_map().expect("map")[0].1, Value::from(-5));
    assert_eq!(
        got[1].as_map().expect("map")[0].1,
        Value::from(4_294_967_296_i64)
    );
}

#[test]
fn corrupt_entries_are_an_error_not_a_panic() {
    let good = entry(T::Int(1), &mp(&map(&[("a", Value::from(1))])));
    for cut in 1..good.len() {
        let bytes = &good[..cut];
        let r = write_rows(bytes, NonMap::Wrap, &mut Vec::new(), &mut Vec::new());
        assert!(r.is_err(), "cut at {cut}");
    }
    // A record whose declared pairs run past its end while it contains "time".
    let mut lying = vec![0x92, 0x01, 0x83];
    lying.extend_from_slice(&mp(&Value::from("time")));
    let e =
        write_rows(&lying, NonMap::Wrap, &mut Vec::new(), &mut Vec::new()).expect_err("truncated");
    assert!(e.contains("corrupt"), "{e}");
}

#[test]
fn body_is_gzip_of_the_rows_with_its_md5() {
    let rec = map(&[("cpu", Value::from(1))]);
    let entries = [entry(T::Int(7), &mp(&rec)), entry(T::Int(8), &mp(&rec))];
    let mut scratch = Vec::new();
    let body = build(&entries.concat(), NonMap::Wrap, 1, &mut scratch).expect("body");
    let mut raw = Vec::new();
    GzDecoder::new(&body.gz[..])
        .read_to_end(&mut raw)
        .expect("gzip");
    assert_eq!(
        decode(&raw),
        vec![
            map(&[time(7), ("cpu", Value::from(1))]),
            map(&[time(8), ("cpu", Value::from(1))])
        ]
    );
    assert_eq!(body.md5_hex, hex::encode(Md5::digest(&body.gz)));
    assert_eq!(body.counts.rows, 2);
    // Same input, same bytes: a retry re-sends exactly what the id stands for.
    let again = build(&entries.concat(), NonMap::Wrap, 1, &mut scratch).expect("body");
    assert_eq!(again.gz, body.gz);
    // An empty body is still valid gzip (20 bytes on the wire, reference section 2).
    assert_eq!(gzip(&[], 1, Vec::new()).len(), 20);
}
