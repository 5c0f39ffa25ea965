//! Unit tests of the HTTP input's pure parts: paths, keys, times, and bodies to
//! entries (checked by decoding the entries back).

use super::fluentd::{self, BodyKind, Params};
use super::json::{self, Shape};
use super::postback::{self, KeyCheck};
use super::{Entries, TimeRule, msgpack, time_from_f64};
use crate::event::EventTime;
use rmpv::Value;

const NOW: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 5,
};

/// (time, record) pairs of entries, with the EventTime decoded.
fn pairs(e: &Entries) -> Vec<(EventTime, Value)> {
    let mut rd = e.bytes.as_slice();
    let mut out = Vec::new();
    while !rd.is_empty() {
        let v = rmpv::decode::read_value(&mut rd).expect("entry decodes");
        let arr = v.as_array().expect("entry is an array");
        assert_eq!(arr.len(), 2);
        let Value::Ext(0, body) = &arr[0] else {
            panic!("time is not an EventTime: {:?}", arr[0]);
        };
        let secs = u32::from_be_bytes(body[..4].try_into().expect("4"));
        let nanos = u32::from_be_bytes(body[4..].try_into().expect("4"));
        out.push((
            EventTime {
                secs: i64::from(secs),
                nanos,
            },
            arr[1].clone(),
        ));
    }
    assert_eq!(out.len() as u32, e.count, "count matches the entries");
    out
}

fn json_in(body: &str, shape: Shape, rule: TimeRule) -> Result<Entries, String> {
    let mut e = Entries::default();
    json::decode(body.as_bytes(), shape, rule, 8, &mut e).map_err(|e| e.0)?;
    Ok(e)
}

fn keys(v: &Value) -> Vec<String> {
    v.as_map()
        .expect("map")
        .iter()
        .map(|(k, _)| k.as_str().expect("str key").to_string())
        .collect()
}

#[test]
fn json_records_keep_key_order_and_number_kinds() {
    let e = json_in(
        r#"{"z":1,"a":-2,"m":0.5,"s":"x\"y","n":null,"b":true,"arr":[1,[2,{"k":"v"}]],"big":18446744073709551615}"#,
        Shape::Object,
        TimeRule::Fixed(NOW),
    )
    .expect("decodes");
    let p = pairs(&e);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, NOW);
    let r = &p[0].1;
    assert_eq!(keys(r), ["z", "a", "m", "s", "n", "b", "arr", "big"]);
    assert_eq!(r["z"].as_u64(), Some(1));
    assert_eq!(r["a"].as_i64(), Some(-2));
    assert!(r["m"].is_f64());
    assert_eq!(r["s"].as_str(), Some("x\"y"));
    assert!(r["n"].is_nil());
    assert_eq!(r["arr"][1][1]["k"].as_str(), Some("v"));
    assert_eq!(r["big"].as_u64(), Some(u64::MAX));
}

#[test]
fn containers_of_every_header_width_round_trip() {
    for n in [0usize, 15, 16, 65_535, 65_536] {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let body = format!(r#"{{"a":[{}],"z":1}}"#, items.join(","));
        let e = json_in(&body, Shape::Object, TimeRule::Fixed(NOW)).expect("decodes");
        let p = pairs(&e);
        assert_eq!(p[0].1["a"].as_array().map(Vec::len), Some(n), "n = {n}");
        assert_eq!(p[0].1["z"].as_u64(), Some(1));
    }
}

#[test]
fn batches_skip_nulls_and_refuse_non_objects() {
    let e = json_in(
        r#"[{"a":1}, null, {"b":2}]"#,
        Shape::ObjectOrBatch,
        TimeRule::Fixed(NOW),
    )
    .expect("batch");
    assert_eq!(e.count, 2);
    let err = json_in(
        r#"[{"a":1}, "x"]"#,
        Shape::ObjectOrBatch,
        TimeRule::Fixed(NOW),
    )
    .expect_err("string element");
    assert!(err.contains("batch element 1"), "{err}");
    let none = json_in("null", Shape::ObjectOrBatch, TimeRule::Fixed(NOW)).expect("null");
    assert_eq!(none.count, 0);
    let err = json_in(r#"[{"a":1}]"#, Shape::Object, TimeRule::Fixed(NOW)).expect_err("array");
    assert!(err.contains("one JSON object"), "{err}");
    let err = json_in(r#"{"a":1} x"#, Shape::Object, TimeRule::Fixed(NOW)).expect_err("trailing");
    assert!(err.contains("trailing"), "{err}");
    for bad in ["", "{", r#"{"a":}"#, "42", r#""s""#] {
        assert!(
            json_in(bad, Shape::ObjectOrBatch, TimeRule::Fixed(NOW)).is_err(),
            "{bad:?} must fail"
        );
    }
}

#[test]
fn a_failed_document_leaves_earlier_entries_alone() {
    let mut e = Entries::default();
    json::decode(
        br#"{"a":1}"#,
        Shape::Object,
        TimeRule::Fixed(NOW),
        8,
        &mut e,
    )
    .expect("ok");
    let before = e.bytes.clone();
    json::decode(
        br#"[{"b":1},{"c":"#,
        Shape::ObjectOrBatch,
        TimeRule::Fixed(NOW),
        8,
        &mut e,
    )
    .expect_err("cut short");
    assert_eq!(e.bytes, before);
    assert_eq!(e.count, 1);
}

#[test]
fn depth_is_limited() {
    let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    assert!(json_in(&deep(8), Shape::Object, TimeRule::Fixed(NOW)).is_ok());
    let err = json_in(&deep(9), Shape::Object, TimeRule::Fixed(NOW)).expect_err("too deep");
    assert!(err.contains("max_depth (8)"), "{err}");
    let arrays = format!(r#"{{"a":{}1{}}}"#, "[".repeat(8), "]".repeat(8));
    assert!(json_in(&arrays, Shape::Object, TimeRule::Fixed(NOW)).is_err());
}

#[test]
fn record_time_keys_follow_fluentd() {
    let e = json_in(
        r#"[{"time":1600000000,"a":1},{"a":2},{"time":1600000000.25,"time2":1},{"time":null}]"#,
        Shape::ObjectOrBatch,
        TimeRule::RecordKey(NOW),
    )
    .expect("batch");
    let p = pairs(&e);
    assert_eq!(p[0].0.secs, 1_600_000_000);
    assert_eq!(keys(&p[0].1), ["a"], "time key removed");
    assert_eq!(p[1].0, NOW);
    assert_eq!(p[2].0.secs, 1_600_000_000);
    assert_eq!(p[2].0.nanos, 250_000_000);
    assert_eq!(keys(&p[2].1), ["time2"]);
    assert_eq!(p[3].0, NOW);
    assert!(p[3].1.as_map().expect("map").is_empty());
    let err = json_in(
        r#"{"time":"soon"}"#,
        Shape::Object,
        TimeRule::RecordKey(NOW),
    )
    .expect_err("string time");
    assert!(err.contains("time is a string"), "{err}");
    // A fixed time leaves the record's own `time` key alone.
    let e = json_in(r#"{"time":1}"#, Shape::Object, TimeRule::Fixed(NOW)).expect("fixed");
    let p = pairs(&e);
    assert_eq!(p[0].0, NOW);
    assert_eq!(p[0].1["time"].as_u64(), Some(1));
}

#[test]
fn td_record_time_is_honoured_within_tds_window() {
    let now = EventTime::now();
    let t = now.secs - 3600;
    for body in [
        format!(r#"{{"a":1,"td_record_time":{t}}}"#),
        format!(r#"{{"a":1,"td_record_time":"{t}"}}"#),
    ] {
        let e = json_in(&body, Shape::Object, TimeRule::TdRecordTime(now)).expect("ok");
        let p = pairs(&e);
        assert_eq!(p[0].0, EventTime { secs: t, nanos: 0 }, "{body}");
        assert_eq!(keys(&p[0].1), ["a", "td_record_time"], "kept in the record");
    }
    let old = now.secs - postback::RECORD_TIME_PAST - 10;
    let future = now.secs + postback::RECORD_TIME_FUTURE + 10;
    for body in [
        format!(r#"{{"td_record_time":{old}}}"#),
        format!(r#"{{"td_record_time":{future}}}"#),
        r#"{"td_record_time":"yesterday"}"#.to_string(),
        r#"{"td_record_time":null}"#.to_string(),
    ] {
        let e = json_in(&body, Shape::Object, TimeRule::TdRecordTime(now)).expect("ok");
        assert_eq!(pairs(&e)[0].0, now, "{body}");
    }
}

#[test]
fn postback_paths_and_names() {
    assert_eq!(
        postback::parse_path("test_database/heap_info"),
        Ok(("test_database", "heap_info"))
    );
    for bad in [
        "db",
        "db/t",
        "Test/table",
        "db/table/x",
        "dbx/ta-ble",
        "/table",
        "",
    ] {
        assert!(postback::parse_path(bad).is_err(), "{bad:?} must fail");
    }
    let long = "a".repeat(256);
    assert!(postback::check_name("table", &long).is_err());
    assert!(postback::check_name("table", &long[..255]).is_ok());
}

#[test]
fn write_keys_come_from_header_authorization_or_query_in_that_order() {
    use postback::write_key;
    assert_eq!(write_key(Some("h"), Some("TD1 a"), Some("q")), Some("h"));
    assert_eq!(write_key(None, Some("TD1 a"), Some("q")), Some("a"));
    assert_eq!(write_key(None, Some("td1  a "), None), Some("a"));
    assert_eq!(write_key(None, Some("Bearer a"), Some("q")), Some("q"));
    assert_eq!(write_key(Some(" "), None, None), None);
    let keys = vec!["1/abc".to_string(), "2/def".to_string()];
    assert_eq!(postback::check_key(&keys, Some("2/def")), KeyCheck::Ok);
    assert_eq!(postback::check_key(&keys, Some("2/dex")), KeyCheck::Wrong);
    assert_eq!(postback::check_key(&keys, Some("2/de")), KeyCheck::Wrong);
    assert_eq!(postback::check_key(&keys, None), KeyCheck::Missing);
    assert_eq!(postback::check_key(&[], None), KeyCheck::Ok);
}

#[test]
fn tags_from_paths() {
    assert_eq!(fluentd::tag_of("/app.log", None), Ok("app.log".into()));
    assert_eq!(fluentd::tag_of("/a/b/c", None), Ok("a.b.c".into()));
    assert_eq!(fluentd::tag_of("/a/b", Some("http")), Ok("http.a.b".into()));
    for bad in ["/", "", "/a//b", "/a/", "/.a", "/a..b", "/a b"] {
        assert!(fluentd::tag_of(bad, None).is_err(), "{bad:?} must fail");
    }
}

#[test]
fn form_params_and_time_rules() {
    let mut p = Params::default();
    p.add_form(b"json=%7B%22a%22%3A1%7D&time=1600000000.5&x=1&flag");
    assert_eq!(p.json.as_deref(), Some(&b"{\"a\":1}"[..]));
    assert_eq!(p.time.as_deref(), Some("1600000000.5"));
    match p.time_rule(NOW) {
        TimeRule::Fixed(t) => assert_eq!(
            t,
            EventTime {
                secs: 1_600_000_000,
                nanos: 500_000_000
            }
        ),
        other => panic!("{other:?}"),
    }
    p.time = Some("0".into());
    assert!(matches!(p.time_rule(NOW), TimeRule::Fixed(t) if t == NOW));
    p.time = Some("abc".into());
    assert!(matches!(p.time_rule(NOW), TimeRule::Fixed(t) if t == NOW));
    p.time = None;
    assert!(matches!(p.time_rule(NOW), TimeRule::RecordKey(_)));
    assert_eq!(fluentd::percent_decode(b"a+b%20c%zz%4"), b"a b c%zz%4");
    assert_eq!(fluentd::percent_decode(b"%c3%a9%00"), vec![0xc3, 0xa9, 0]);
}

#[test]
fn content_types() {
    assert_eq!(
        fluentd::body_kind(Some("application/json; charset=utf-8")),
        BodyKind::Json
    );
    assert_eq!(
        fluentd::body_kind(Some("Application/X-Msgpack")),
        BodyKind::Msgpack
    );
    assert_eq!(
        fluentd::body_kind(Some("application/msgpack")),
        BodyKind::Msgpack
    );
    assert_eq!(
        fluentd::body_kind(Some("application/x-www-form-urlencoded")),
        BodyKind::Form
    );
    assert_eq!(
        fluentd::body_kind(Some("application/x-ndjson")),
        BodyKind::Ndjson
    );
    assert_eq!(fluentd::body_kind(Some("text/plain")), BodyKind::Other);
    assert_eq!(fluentd::body_kind(None), BodyKind::Other);
}

fn mp(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode");
    out
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

#[test]
fn msgpack_bodies_maps_batches_and_streams() {
    let one = map(&[("a", Value::from(1)), ("time", Value::from(1_600_000_000))]);
    let batch = Value::Array(vec![
        map(&[("b", Value::from("x"))]),
        Value::Nil,
        map(&[
            ("time", Value::F64(1_600_000_000.5)),
            ("c", Value::from(true)),
        ]),
    ]);
    let mut body = mp(&one);
    body.extend(mp(&batch));
    let mut e = Entries::default();
    msgpack::decode(&body, TimeRule::RecordKey(NOW), 8, &mut e).expect("decodes");
    let p = pairs(&e);
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].0.secs, 1_600_000_000);
    assert_eq!(keys(&p[0].1), ["a"]);
    assert_eq!(p[1].0, NOW);
    assert_eq!(p[2].0.nanos, 500_000_000);
    assert_eq!(keys(&p[2].1), ["c"]);
    // A fixed time keeps the record whole.
    let mut e = Entries::default();
    msgpack::decode(&mp(&one), TimeRule::Fixed(NOW), 8, &mut e).expect("decodes");
    assert_eq!(keys(&pairs(&e)[0].1), ["a", "time"]);
}

#[test]
fn bad_msgpack_bodies_are_refused_without_trusting_lengths() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xc1],
        vec![0x2a],
        mp(&Value::from("str")),
        mp(&Value::Array(vec![Value::from(1)])),
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        vec![0x81, 0xa1, b'a'],
        mp(&map(&[("time", Value::from("now"))])),
    ];
    for body in cases {
        let mut e = Entries::default();
        let r = msgpack::decode(&body, TimeRule::RecordKey(NOW), 8, &mut e);
        assert!(r.is_err(), "{body:02x?} must fail");
        assert!(e.bytes.is_empty() && e.count == 0, "nothing kept");
    }
    let mut deep = map(&[("a", Value::from(1))]);
    for _ in 0..9 {
        deep = map(&[("a", deep)]);
    }
    let mut e = Entries::default();
    assert!(msgpack::decode(&mp(&deep), TimeRule::Fixed(NOW), 8, &mut e).is_err());
}

#[test]
fn fluentd_requests_decode_by_content_type_and_params() {
    let e = fluentd::decode(
        Some("time=1600000000"),
        BodyKind::Json,
        br#"{"time":5,"a":1}"#,
        NOW,
        8,
    )
    .expect("json");
    let p = pairs(&e);
    assert_eq!(p[0].0.secs, 1_600_000_000);
    assert_eq!(p[0].1["time"].as_u64(), Some(5), "kept under a time param");
    let e = fluentd::decode(
        None,
        BodyKind::Form,
        b"json=%5B%7B%22a%22%3A1%7D%2C%7B%22a%22%3A2%7D%5D",
        NOW,
        8,
    )
    .expect("form batch");
    assert_eq!(e.count, 2);
    let mut packed = b"msgpack=".to_vec();
    for b in mp(&map(&[("m", Value::from(1))])) {
        packed.extend_from_slice(format!("%{b:02X}").as_bytes());
    }
    let e = fluentd::decode(None, BodyKind::Form, &packed, NOW, 8).expect("form msgpack");
    assert_eq!(pairs(&e)[0].1["m"].as_u64(), Some(1));
    let e = fluentd::decode(
        None,
        BodyKind::Ndjson,
        b"{\"a\":1}\r\n\n{\"a\":2}\n",
        NOW,
        8,
    )
    .expect("ndjson");
    assert_eq!(e.count, 2);
    let e = fluentd::decode(
        Some("json=%7B%22q%22%3A1%7D"),
        BodyKind::Other,
        b"ignored",
        NOW,
        8,
    )
    .expect("query json");
    assert_eq!(pairs(&e)[0].1["q"].as_u64(), Some(1));
    let err = fluentd::decode(None, BodyKind::Other, b"{}", NOW, 8).expect_err("no params");
    assert!(err.0.contains("parameter is required"), "{err}");
    assert!(fluentd::decode(None, BodyKind::Multipart, b"", NOW, 8).is_err());
}

#[test]
fn float_times() {
    assert_eq!(
        time_from_f64(1.999_999_999_9),
        Some(EventTime { secs: 2, nanos: 0 })
    );
    assert_eq!(
        time_from_f64(-1.5),
        Some(EventTime {
            secs: -2,
            nanos: 500_000_000
        })
    );
    assert_eq!(time_from_f64(f64::NAN), None);
    assert_eq!(time_from_f64(1e300), None);
}

#[test]
fn gzip_and_deflate_bodies_inflate_within_the_limit() {
    use super::body::{BodyFailure, decode};
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;
    let data = vec![b'x'; 10_000];
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&data).expect("gzip");
    let gz = bytes::Bytes::from(gz.finish().expect("gzip"));
    assert_eq!(
        decode(gz.clone(), Some("gzip"), 10_000)
            .expect("fits")
            .len(),
        10_000
    );
    assert_eq!(
        decode(gz.clone(), Some("gzip"), 9_999),
        Err(BodyFailure::InflatedTooLarge { limit: 9_999 })
    );
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(&data).expect("zlib");
    let z = bytes::Bytes::from(z.finish().expect("zlib"));
    assert_eq!(
        decode(z, Some("Deflate"), 20_000).expect("fits").len(),
        10_000
    );
    assert!(matches!(
        decode(bytes::Bytes::from_static(b"nope"), Some("gzip"), 100),
        Err(BodyFailure::Corrupt { .. })
    ));
    assert!(matches!(
        decode(gz.clone(), Some("br"), 100),
        Err(BodyFailure::Encoding(_))
    ));
    assert_eq!(decode(gz.clone(), None, 1).expect("identity"), gz);
}

fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        // Quarter steps print and parse exactly (serde_json's default float parser
        // may miss the last bit of arbitrary decimals).
        (-4_000_000i64..4_000_000).prop_map(|q| serde_json::Value::from(q as f64 / 4.0 + 0.25)),
        "[a-z\"\\\\é\\u{1F600}]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..20).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..20)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The JSON value an entry's record stands for (maps compared as sets of pairs).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(s)) => s.into(),
            _ => serde_json::Value::Null,
        },
        Value::F64(f) => (*f).into(),
        Value::String(s) => s.as_str().unwrap_or("").into(),
        Value::Array(a) => a.iter().map(to_json).collect(),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or("").to_string(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => panic!("unexpected {other:?}"),
    }
}

proptest::proptest! {
    #[test]
    fn json_objects_round_trip(fields in proptest::collection::btree_map("[a-z]{1,6}", arb_json(), 0..20)) {
        let record = serde_json::Value::Object(fields.into_iter().collect());
        let text = record.to_string();
        let mut e = Entries::default();
        json::decode(text.as_bytes(), Shape::Object, TimeRule::Fixed(NOW), 16, &mut e)
            .expect("valid JSON decodes");
        let p = pairs(&e);
        proptest::prop_assert_eq!(p.len(), 1);
        proptest::prop_assert_eq!(to_json(&p[0].1), record);
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), kind in 0usize..6) {
        let kinds = [BodyKind::Json, BodyKind::Msgpack, BodyKind::Form, BodyKind::Ndjson, BodyKind::Other, BodyKind::Multipart];
        if let Ok(e) = fluentd::decode(Some("time=1"), kinds[kind], &body, NOW, 4) {
            pairs(&e);
        }
        if let Ok(e) = fluentd::decode(None, kinds[kind], &body, NOW, 4) {
            pairs(&e);
        }
    }
}
