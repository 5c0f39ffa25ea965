//! The mock's own checks: a wrong request must be caught, or the upload tests that
//! assert "no violations" would prove nothing.

use super::{map, mp};
use crate::output::td::body::gzip;
use crate::output::td::mock::{MOCK_APIKEY, MockTd};
use crate::output::td::request::{USER_AGENT, date_header};
use rmpv::Value;
use std::time::SystemTime;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn path(id: &str) -> String {
    format!("/v3/table/import_with_id/test_database/cpu_info/{id}/msgpack.gz")
}

/// PUTs `rows` (raw MessagePack, gzipped unless `tweak` says otherwise) with the
/// right headers except the one `tweak` names; returns the status.
async fn put(mock: &MockTd, path: &str, rows: &[u8], tweak: &str) -> u16 {
    let header = |name: &str, good: String, bad: &str| {
        if tweak == name { bad.to_string() } else { good }
    };
    let body = match tweak {
        "not-gzip" => rows.to_vec(),
        _ => gzip(rows, 1, Vec::new()),
    };
    reqwest::Client::new()
        .put(format!("{}{path}", mock.url()))
        .header("authorization", format!("TD1 {MOCK_APIKEY}"))
        .header(
            "date",
            header("date", date_header(SystemTime::now()), "yesterday"),
        )
        .header(
            "user-agent",
            header("user-agent", USER_AGENT.into(), "curl/8"),
        )
        .header(
            "content-type",
            header(
                "content-type",
                "application/octet-stream".into(),
                "application/json",
            ),
        )
        .body(body)
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

fn good_row() -> Vec<u8> {
    mp(&map(&[("time", Value::from(5)), ("a", Value::from(1))]))
}

#[tokio::test]
async fn the_mock_accepts_a_correct_import_and_flags_each_broken_rule() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    assert_eq!(put(&mock, &path(ID), &good_row(), "").await, 200);
    assert_eq!(mock.violations(), Vec::<String>::new());

    let float_time = mp(&map(&[("time", Value::F64(5.5))]));
    let no_time = mp(&map(&[("a", Value::from(1))]));
    let two_times = mp(&Value::Map(vec![
        (Value::from("time"), Value::from(1)),
        (Value::from("time"), Value::from(2)),
    ]));
    let array = mp(&Value::Array(vec![Value::from(1)]));
    let cases: Vec<(String, Vec<u8>, &str, &str)> = vec![
        (path(ID), good_row(), "date", "date header"),
        (path(ID), good_row(), "user-agent", "user-agent"),
        (path(ID), good_row(), "content-type", "content-type"),
        (path(ID), good_row(), "not-gzip", "not gzip"),
        (path("0123"), good_row(), "", "not 32 lowercase hex"),
        (
            path(&ID.to_uppercase()),
            good_row(),
            "",
            "not 32 lowercase hex",
        ),
        (path(ID), float_time, "", "time is not an integer"),
        (path(ID), no_time, "", "0 time keys"),
        (path(ID), two_times, "", "2 time keys"),
        (path(ID), array, "", "not a map"),
        (path(ID), vec![0xc1], "", "not MessagePack"),
    ];
    for (i, (p, rows, tweak, want)) in cases.iter().enumerate() {
        assert_eq!(put(&mock, p, rows, tweak).await, 400, "case {i}");
        let v = mock.violations();
        assert_eq!(v.len(), i + 1, "case {i}: {v:?}");
        assert!(v[i].contains(want), "case {i}: {}", v[i]);
    }
    // The same id with other rows is flagged too (an id must stand for one content).
    let other = mp(&map(&[("time", Value::from(6))]));
    assert_eq!(put(&mock, &path(ID), &other, "").await, 200);
    assert!(
        mock.violations()
            .last()
            .is_some_and(|v| v.contains("reused"))
    );
    assert_eq!(mock.imports().len(), 1);
}
