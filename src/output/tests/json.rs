//! Table of tricky values, malformed input and `time_key`/`tag_key` injection.

use super::{json_of, map, mp};
use crate::event::EventTime;
use crate::output::json::{
    Injected, MAX_DEPTH, write_event_time_number, write_json, write_json_injected,
};
use rmpv::Value;

#[test]
fn table_of_tricky_values() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (mp(&Value::Nil), "null"),
        (mp(&Value::from(true)), "true"),
        (mp(&Value::from(u64::MAX)), "18446744073709551615"),
        (mp(&Value::from(i64::MIN)), "-9223372036854775808"),
        (vec![0xd0, 0x80], "-128"),
        (vec![0xcd, 0xff, 0xff], "65535"),
        (vec![0xe0], "-32"),
        (vec![0x7f], "127"),
        (mp(&Value::F32(1.0 / 3.0)), "0.3333333432674408"),
        (mp(&Value::F32(1.5)), "1.5"),
        (mp(&Value::F64(1.0 / 3.0)), "0.3333333333333333"),
        (mp(&Value::F64(1.0)), "1.0"),
        (mp(&Value::F64(-0.0)), "-0.0"),
        (mp(&Value::F64(f64::NAN)), "null"),
        (mp(&Value::F64(f64::INFINITY)), "null"),
        (mp(&Value::F32(f32::NEG_INFINITY)), "null"),
        (mp(&Value::Binary(b"hi".to_vec())), "\"aGk=\""),
        (mp(&Value::Binary(vec![0xff, 0xfe, 0x00])), "\"//4A\""),
        (mp(&Value::Binary(Vec::new())), "\"\""),
        (
            mp(&Value::from("a\"b\\c\n\t\r\u{1}\u{1f}\u{8}\u{c}/")),
            r#""a\"b\\c\n\t\r\u0001\u001f\b\f/""#,
        ),
        (mp(&Value::from("héllo ✓ 😀")), "\"héllo ✓ 😀\""),
        (vec![0xa3, b'a', 0xff, b'b'], "\"a\u{fffd}b\""),
        (mp(&Value::Map(Vec::new())), "{}"),
        (mp(&Value::Array(Vec::new())), "[]"),
        (vec![0xdf, 0, 0, 0, 1, 0xa1, b'a', 0x01], r#"{"a":1}"#),
        (vec![0xde, 0, 1, 0xa1, b'a', 0x02], r#"{"a":2}"#),
        (vec![0xdd, 0, 0, 0, 2, 0x01, 0x02], "[1,2]"),
        (vec![0xdb, 0, 0, 0, 1, b'x'], "\"x\""),
        (vec![0xd9, 1, b'y'], "\"y\""),
        (vec![0xc6, 0, 0, 0, 1, b'a'], "\"YQ==\""),
        (
            mp(&map(&[(
                "nested",
                map(&[(
                    "a",
                    Value::Array(vec![1.into(), "two".into(), Value::F64(3.5), Value::Nil]),
                )]),
            )])),
            r#"{"nested":{"a":[1,"two",3.5,null]}}"#,
        ),
        (
            mp(&Value::Map(vec![
                (Value::from(1), "a".into()),
                (Value::Nil, 1.into()),
                (Value::Array(vec![1.into(), 2.into()]), true.into()),
                (Value::from(false), 0.into()),
                (Value::F64(0.5), 0.into()),
                (Value::Binary(b"k".to_vec()), 0.into()),
                (map(&[("q", "\"".into())]), 0.into()),
                (Value::Array(vec![Value::Ext(1, Vec::new())]), 0.into()),
            ])),
            r#"{"1":"a","null":1,"[1,2]":true,"false":0,"0.5":0,"aw==":0,"{\"q\":\"\\\"\"}":0,"[{\"ext\":1,\"data\":\"\"}]":0}"#,
        ),
        (
            mp(&Value::Ext(
                0,
                vec![0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15],
            )),
            "1700000000.123456789",
        ),
        (
            mp(&Value::Ext(5, vec![1, 2, 3])),
            r#"{"ext":5,"data":"AQID"}"#,
        ),
        (
            mp(&Value::Ext(-1, vec![0; 4])),
            r#"{"ext":-1,"data":"AAAAAA=="}"#,
        ),
        (mp(&Value::Ext(0, vec![9])), r#"{"ext":0,"data":"CQ=="}"#),
    ];
    for (bytes, want) in cases {
        assert_eq!(json_of(&bytes), want, "input {bytes:02x?}");
        serde_json::from_str::<serde_json::Value>(want).expect("expected text is JSON");
    }
}

#[test]
fn floats_parse_back_to_the_exact_value() {
    let f64s = [
        0.1,
        1e300,
        -1e-300,
        f64::MIN_POSITIVE,
        f64::MAX,
        5e-324,
        123_456_789.123_456_78,
        2f64.powi(60),
    ];
    for v in f64s {
        let text = json_of(&mp(&Value::F64(v)));
        assert_eq!(text.parse::<f64>().ok(), Some(v), "{text}");
    }
    for v in [0.1f32, f32::MAX, f32::MIN_POSITIVE, 1e-45, 16777217.0] {
        let text = json_of(&mp(&Value::F32(v)));
        assert_eq!(text.parse::<f64>().ok(), Some(f64::from(v)), "{text}");
    }
}

#[test]
fn every_truncation_of_a_value_is_an_error() {
    let v = map(&[
        ("s", "text".into()),
        ("n", Value::from(u64::MAX)),
        ("f", Value::F64(0.25)),
        ("b", Value::Binary(vec![1, 2, 3])),
        ("e", Value::Ext(0, vec![0; 8])),
        ("a", Value::Array(vec![map(&[("x", Value::Nil)])])),
    ]);
    let bytes = mp(&v);
    for cut in 0..bytes.len() {
        let mut out = Vec::new();
        let prefix = bytes.get(..cut).expect("cut within bytes");
        assert!(
            write_json(prefix, &mut out).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
}

#[test]
fn malformed_input_is_an_error() {
    let bad: &[&[u8]] = &[
        &[],
        &[0xc1],
        &[0x01, 0x02],
        &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0xdf, 0xff, 0xff, 0xff, 0xff],
        &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x81, 0xc1, 0x01],
        &[0x81, 0xa1, b'a'],
    ];
    for b in bad {
        let mut out = Vec::new();
        assert!(write_json(b, &mut out).is_err(), "accepted {b:02x?}");
    }
}

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    let nested = |depth: usize| {
        let mut b = vec![0x91; depth];
        b.push(0x01);
        b
    };
    let ok = nested(MAX_DEPTH - 1);
    let text = json_of(&ok);
    let n = MAX_DEPTH - 1;
    assert_eq!(text, format!("{}1{}", "[".repeat(n), "]".repeat(n)));
    let mut out = Vec::new();
    assert!(write_json(&nested(MAX_DEPTH), &mut out).is_err());
    assert!(write_json(&nested(100_000), &mut out).is_err());
    // Non-string keys recurse through a scratch buffer: still bounded.
    let mut keys = vec![0x81; 100_000];
    keys.push(0x01);
    assert!(write_json(&keys, &mut out).is_err());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        let len = usize::from(bytes[0] % 9);
        let mut out = Vec::new();
        let _ = write_json(bytes.get(..len).unwrap_or_default(), &mut out);
    }
}

fn injected(record: &Value, fields: &[(&str, Injected<'_>)]) -> String {
    let mut out = Vec::new();
    write_json_injected(&mp(record), fields, &mut out).expect("valid record");
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn injected_keys_come_first_and_replace_record_keys() {
    let t = EventTime {
        secs: 1_700_000_000,
        nanos: 5,
    };
    let fields = [("time", Injected::Time(t)), ("tag", Injected::Str("a.b"))];
    let rec = map(&[("x", 1.into()), ("tag", "old".into()), ("y", Value::Nil)]);
    assert_eq!(
        injected(&rec, &fields),
        r#"{"time":1700000000.000000005,"tag":"a.b","x":1,"y":null}"#
    );
    assert_eq!(
        injected(&Value::Map(Vec::new()), &fields),
        r#"{"time":1700000000.000000005,"tag":"a.b"}"#
    );
    let arr = Value::Array(vec!["sint".into(), 0.into(), (-1).into()]);
    assert_eq!(injected(&arr, &fields), r#"["sint",0,-1]"#);
    assert_eq!(injected(&"Hello".into(), &fields), r#""Hello""#);
    assert_eq!(injected(&rec, &[]), r#"{"x":1,"tag":"old","y":null}"#);
    let map32 = [0xdf, 0, 0, 0, 1, 0xa1, b'k', 0xc3];
    let mut out = Vec::new();
    write_json_injected(&map32, &fields[1..], &mut out).expect("valid");
    assert_eq!(out, br#"{"tag":"a.b","k":true}"#);
    let mut out = Vec::new();
    assert!(write_json_injected(&[0x82, 0xa1, b'k', 0xc3], &fields, &mut out).is_err());
}

#[test]
fn event_time_numbers_are_exact_and_signed_by_value() {
    let text = |secs, nanos| {
        let mut out = Vec::new();
        write_event_time_number(EventTime { secs, nanos }, &mut out);
        String::from_utf8(out).expect("UTF-8")
    };
    assert_eq!(text(1_700_000_000, 123_456_789), "1700000000.123456789");
    assert_eq!(text(0, 0), "0.000000000");
    assert_eq!(text(-1, 0), "-1.000000000");
    assert_eq!(text(-2, 500_000_000), "-1.500000000");
    assert_eq!(text(i64::MIN, 0), "-9223372036854775808.000000000");
    assert_eq!(text(i64::MAX, 999_999_999), "9223372036854775807.999999999");
}
