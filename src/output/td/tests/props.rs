//! Properties of the row rewrite: it agrees with a plain rmpv model on any record, and
//! no byte string makes it panic.

use super::{T, entry, mp};
use crate::output::td::NonMap;
use crate::output::td::body::write_rows;
use proptest::prelude::*;
use rmpv::Value;

/// Keys that are, contain or resemble `time`.
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from("time")),
        Just(Value::from("uptime")),
        Just(Value::from("times")),
        Just(Value::from("t")),
        Just(Value::from(4)),
        "[a-z]{0,6}".prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from("time")),
        "[ -~]{0,40}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Binary),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..5).prop_map(Value::Map),
        ]
    })
}

fn record() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => proptest::collection::vec((key(), value()), 0..20).prop_map(Value::Map),
        1 => value(),
    ]
}

/// The model: `time` first, then the record's pairs without its `time` keys; a
/// non-map record wrapped as `value`.
fn model(secs: i64, record: &Value) -> Value {
    let mut pairs = vec![(Value::from("time"), Value::from(secs))];
    match record {
        Value::Map(m) => pairs.extend(
            m.iter()
                .filter(|(k, _)| k.as_str() != Some("time"))
                .cloned(),
        ),
        other => pairs.push((Value::from("value"), other.clone())),
    }
    Value::Map(pairs)
}

proptest! {
    #[test]
    fn rows_match_the_model(records in proptest::collection::vec((any::<i32>(), record()), 1..8)) {
        let entries: Vec<Vec<u8>> = records
            .iter()
            .map(|(t, r)| entry(T::Int(i64::from(*t)), &mp(r)))
            .collect();
        let mut out = Vec::new();
        write_rows(&entries.concat(), NonMap::Wrap, &mut out, &mut Vec::new())
            .expect("few keys, valid bytes");
        let mut rest = out.as_slice();
        for (t, r) in &records {
            let got = rmpv::decode::read_value(&mut rest).expect("a row");
            prop_assert_eq!(got, model(i64::from(*t), r));
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn any_bytes_give_rows_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Raw, and behind a valid `[time, ` so the record itself is random.
        let framed = [&[0x92, 0x01][..], &bytes].concat();
        for input in [&bytes, &framed] {
            let mut out = Vec::new();
            let _ = write_rows(input, NonMap::Wrap, &mut out, &mut Vec::new());
            let _ = write_rows(input, NonMap::Drop, &mut out, &mut Vec::new());
        }
    }
}
