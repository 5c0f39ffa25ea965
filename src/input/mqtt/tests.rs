//! Payload → record: each format, the topic key, bad payloads kept raw.

use super::payload::PayloadRules;
use crate::config::PayloadFormat;
use crate::event::EventTime;
use rmpv::Value;

fn rules(format: PayloadFormat, topic_key: Option<&str>) -> PayloadRules {
    PayloadRules {
        format,
        topic_key: topic_key.map(str::to_string),
        max_payload_size: 64,
    }
}

/// The record of the one entry `append_entry` wrote, and the bad-payload reason.
fn record(r: &PayloadRules, payload: &[u8]) -> (Value, Option<&'static str>) {
    let mut out = Vec::new();
    let time = EventTime {
        secs: 1_700_000_000,
        nanos: 5,
    };
    let bad = r.append_entry("dev/d1/t", payload, time, &mut out);
    let mut entries = crate::msgpack::entries(&out);
    let entry = entries
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("one valid entry in {out:?}"));
    assert!(entries.next().is_none(), "exactly one entry");
    assert_eq!(entry.time, time);
    let mut rec = entry.record;
    let value = rmpv::decode::read_value(&mut rec).unwrap_or_else(|e| panic!("record: {e}"));
    (value, bad.map(|b| b.reason))
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_map()
        .map(|m| m.iter().filter_map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn a_json_object_is_the_record_in_wire_order_with_the_topic() {
    let r = rules(PayloadFormat::Json, Some("topic"));
    let (v, bad) = record(&r, br#"{"z":1,"a":{"n":[1,-2,0.5,null,true]},"s":"x"}"#);
    assert_eq!(bad, None);
    assert_eq!(keys(&v), ["z", "a", "s", "topic"]);
    assert_eq!(get(&v, "topic").and_then(Value::as_str), Some("dev/d1/t"));
    let n = get(&v, "a").and_then(|a| get(a, "n")).cloned();
    assert_eq!(
        n,
        Some(Value::Array(vec![
            1.into(),
            (-2).into(),
            Value::F64(0.5),
            Value::Nil,
            true.into()
        ]))
    );
}

#[test]
fn the_records_own_topic_key_wins() {
    let r = rules(PayloadFormat::Json, Some("topic"));
    let (v, _) = record(&r, br#"{"topic":"mine"}"#);
    assert_eq!(keys(&v), ["topic"]);
    assert_eq!(get(&v, "topic").and_then(Value::as_str), Some("mine"));
    let r = rules(PayloadFormat::Msgpack, Some("topic"));
    let mut p = Vec::new();
    let map = Value::Map(vec![(1.into(), 2.into()), ("topic".into(), "mine".into())]);
    rmpv::encode::write_value(&mut p, &map).unwrap_or_default();
    let (v, _) = record(&r, &p);
    assert_eq!(v, map);
}

#[test]
fn json_that_is_not_an_object_goes_under_message() {
    let r = rules(PayloadFormat::Json, None);
    let (v, bad) = record(&r, b"[1,2]");
    assert_eq!(bad, None);
    assert_eq!(
        v,
        Value::Map(vec![(
            "message".into(),
            Value::Array(vec![1.into(), 2.into()])
        )])
    );
    let (v, _) = record(&r, b" 42 ");
    assert_eq!(get(&v, "message"), Some(&Value::from(42)));
    let (v, _) = record(&r, br#""hi""#);
    assert_eq!(get(&v, "message").and_then(Value::as_str), Some("hi"));
}

#[test]
fn bad_json_is_kept_raw_with_the_reason() {
    let r = rules(PayloadFormat::Json, Some("topic"));
    for payload in [
        &b"{\"a\":"[..],
        b"{\"a\":1} trailing",
        b"not json",
        b"{\"a\":\"\xff\"}",
    ] {
        let (v, bad) = record(&r, payload);
        assert_eq!(bad, Some("json"), "{payload:?}");
        assert_eq!(keys(&v), ["message", "_parse_error", "topic"]);
        let msg = get(&v, "message").cloned().unwrap_or(Value::Nil);
        match std::str::from_utf8(payload) {
            Ok(text) => assert_eq!(msg.as_str(), Some(text)),
            Err(_) => assert_eq!(msg, Value::Binary(payload.to_vec())),
        }
        let why = get(&v, "_parse_error")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(why.starts_with("invalid JSON: "), "{why}");
    }
}

#[test]
fn deep_json_is_refused_not_a_stack_overflow() {
    let r = rules(PayloadFormat::Json, None);
    let mut deep = "[".repeat(20_000);
    deep.push_str(&"]".repeat(20_000));
    let big = PayloadRules {
        max_payload_size: 1 << 20,
        ..r
    };
    let (_, bad) = record(&big, deep.as_bytes());
    assert_eq!(bad, Some("json"));
}

#[test]
fn msgpack_maps_are_records_and_other_values_go_under_message() {
    let r = rules(PayloadFormat::Msgpack, Some("t"));
    let mut p = Vec::new();
    rmpv::encode::write_value(&mut p, &Value::Map(vec![("a".into(), 1.into())]))
        .unwrap_or_default();
    let (v, bad) = record(&r, &p);
    assert_eq!(bad, None);
    assert_eq!(
        v,
        Value::Map(vec![
            ("a".into(), 1.into()),
            ("t".into(), "dev/d1/t".into())
        ])
    );
    let (v, _) = record(&r, &[0x93, 1, 2, 3]);
    assert_eq!(
        get(&v, "message"),
        Some(&Value::Array(vec![1.into(), 2.into(), 3.into()]))
    );
}

#[test]
fn bad_msgpack_is_kept_as_binary_with_the_reason() {
    let r = rules(PayloadFormat::Msgpack, None);
    for payload in [
        &[0xc1][..],
        &[0x92, 0x01],
        &[0x01, 0x02],
        &[0xdf, 0xff, 0xff, 0xff, 0xff],
    ] {
        let (v, bad) = record(&r, payload);
        assert_eq!(bad, Some("msgpack"), "{payload:?}");
        let msg = get(&v, "message").cloned();
        assert!(
            msg == Some(Value::Binary(payload.to_vec()))
                || msg.as_ref().and_then(Value::as_str).map(str::as_bytes) == Some(payload),
            "{msg:?}"
        );
    }
}

#[test]
fn raw_keeps_the_payload_as_message() {
    let r = rules(PayloadFormat::Raw, Some("topic"));
    let (v, bad) = record(&r, b"{\"not\": parsed}");
    assert_eq!(bad, None);
    assert_eq!(
        get(&v, "message").and_then(Value::as_str),
        Some("{\"not\": parsed}")
    );
    let (v, _) = record(&r, &[0xff, 0x00]);
    assert_eq!(get(&v, "message"), Some(&Value::Binary(vec![0xff, 0x00])));
}

#[test]
fn empty_payloads_are_kept_and_not_counted() {
    let (v, bad) = record(&rules(PayloadFormat::Json, None), b"");
    assert_eq!(bad, None);
    assert_eq!(v, Value::Map(vec![("message".into(), "".into())]));
}

#[test]
fn oversized_payloads_are_cut_and_flagged() {
    let r = rules(PayloadFormat::Json, None);
    // 63 ASCII bytes then a 2-byte character: the cut at 64 must not split it.
    let mut payload = "a".repeat(63);
    payload.push_str("é and more");
    let (v, bad) = record(&r, payload.as_bytes());
    assert_eq!(bad, Some("too_large"));
    assert_eq!(
        get(&v, "message").and_then(Value::as_str),
        Some("a".repeat(63).as_str())
    );
    let why = get(&v, "_parse_error")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(why.contains("max_payload_size (64 bytes)"), "{why}");
}

#[test]
fn containers_get_their_shortest_headers() {
    let r = rules(PayloadFormat::Json, None);
    let mut out = Vec::new();
    r.append_entry("t", br#"{"a":[1,2]}"#, EventTime::default(), &mut out);
    // [time, {"a": [1, 2]}]: fixarray, ext8 time (10 bytes), fixmap 1, "a", fixarray 2.
    assert_eq!(out.get(11..), Some(&[0x81, 0xa1, b'a', 0x92, 1, 2][..]));
    let many: String = format!("[{}]", vec!["0"; 70_000].join(","));
    let big = PayloadRules {
        max_payload_size: 1 << 20,
        ..r
    };
    let (v, _) = record(&big, many.as_bytes());
    assert_eq!(
        get(&v, "message").and_then(Value::as_array).map(Vec::len),
        Some(70_000)
    );
}

#[test]
fn backoff_doubles_up_to_the_cap_and_resets() {
    use super::session::Backoff;
    use std::time::Duration;
    let ms = Duration::from_millis;
    let mut b = Backoff::new(ms(100), ms(350));
    let seen: Vec<Duration> = (0..5).map(|_| b.next()).collect();
    assert_eq!(seen, [ms(100), ms(200), ms(350), ms(350), ms(350)]);
    b.reset();
    assert_eq!(b.next(), ms(100));
}
