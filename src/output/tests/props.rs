//! Property: the transcoder agrees with a straightforward rmpv → serde_json conversion.

use super::mp;
use crate::output::json::write_json;
use base64::Engine as _;
use proptest::prelude::*;
use rmpv::Value;
use serde_json::Value as Json;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The reference conversion, written for clarity rather than speed.
fn expected(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(s)) => Json::from(s),
            (None, None) => unreachable!("rmpv integers are u64 or i64"),
        },
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Json::String(b64(b)),
        Value::Array(a) => Json::Array(a.iter().map(expected).collect()),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match (k, expected(k)) {
                    (Value::String(_) | Value::Binary(_), Json::String(s)) => s,
                    _ => text(k),
                };
                out.insert(key, expected(v));
            }
            Json::Object(out)
        }
        Value::Ext(t, d) => serde_json::json!({"ext": t, "data": b64(d)}),
    }
}

/// JSON text of `v` with map and ext members in wire order (serde_json's `Map` sorts).
fn text(v: &Value) -> String {
    let key = |k: &Value| match (k, expected(k)) {
        (Value::String(_) | Value::Binary(_), Json::String(s)) => Json::String(s).to_string(),
        _ => Json::String(text(k)).to_string(),
    };
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(text).collect::<Vec<_>>().join(",")),
        Value::Map(m) => {
            let pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", key(k), text(v)))
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
        Value::Ext(t, d) => format!("{{\"ext\":{t},\"data\":\"{}\"}}", b64(d)),
        other => expected(other).to_string(),
    }
}

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f32>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::F32),
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Binary),
        // Ext 0 with 8 bytes is an EventTime, rendered as a number: tested in the table.
        (1i8..=127, proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #[test]
    fn transcoder_matches_reference_conversion(v in value()) {
        let mut out = Vec::new();
        write_json(&mp(&v), &mut out).expect("rmpv output is valid MessagePack");
        let ours: Json = serde_json::from_slice(&out).expect("the transcoder writes JSON");
        // serde_json's default float parser may be 1 ulp off; parsing the reference's own
        // text applies the same rounding, and exactness is checked on raw text below.
        let want: Json = serde_json::from_str(&expected(&v).to_string()).expect("JSON");
        prop_assert_eq!(ours, want);
    }

    #[test]
    fn float_text_is_exact(bits in any::<u64>(), bits32 in any::<u32>()) {
        let f = f64::from_bits(bits);
        let g = f32::from_bits(bits32);
        for (v, want) in [(Value::F64(f), f), (Value::F32(g), f64::from(g))] {
            let mut out = Vec::new();
            write_json(&mp(&v), &mut out).expect("valid");
            let text = String::from_utf8(out).expect("UTF-8");
            if want.is_finite() {
                prop_assert_eq!(text.parse::<f64>().ok(), Some(want), "{}", text);
            } else {
                prop_assert_eq!(text, "null");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        let _ = write_json(&bytes, &mut out);
    }

    #[test]
    fn truncated_values_are_errors(v in value(), cut in any::<prop::sample::Index>()) {
        let bytes = mp(&v);
        let at = cut.index(bytes.len());
        let mut out = Vec::new();
        prop_assert!(write_json(bytes.get(..at).unwrap_or_default(), &mut out).is_err());
    }
}
