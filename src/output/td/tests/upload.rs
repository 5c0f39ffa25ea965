//! Uploads against the mock Treasure Data API on a real socket: the exact wire format,
//! the create-and-resend flow, and which answers are retryable or permanent.

use super::{T, chunk, chunk_of, entry, map, mp};
use crate::output::td::mock::{Call, Fault, MOCK_APIKEY, MockTd};
use crate::output::td::{ApiKey, NonMap, TdOutput, TdOutputConfig};
use crate::output::{Chunk, OutputError};
use rmpv::Value;
use std::time::Duration;

fn config(mock: &MockTd) -> TdOutputConfig {
    let mut c = TdOutputConfig::new(ApiKey::new(MOCK_APIKEY));
    c.endpoint = mock.url();
    c.api_endpoint = mock.url();
    c
}

fn output(mock: &MockTd) -> TdOutput {
    TdOutput::new("td", &config(mock)).expect("builds")
}

fn cpu(n: i64) -> Value {
    map(&[
        ("uptime", Value::from(n)),
        ("idle_time", Value::from(n * 2)),
    ])
}

/// `cpu(n)` as imported at `secs`.
fn row(secs: i64, n: i64) -> Value {
    map(&[
        ("time", Value::from(secs)),
        ("uptime", Value::from(n)),
        ("idle_time", Value::from(n * 2)),
    ])
}

fn retryable(r: Result<(), OutputError>) -> String {
    match r {
        Err(OutputError::Retryable(m)) => m,
        other => panic!("expected Retryable, got {other:?}"),
    }
}

fn permanent(r: Result<(), OutputError>) -> String {
    match r {
        Err(OutputError::Permanent(m)) => m,
        other => panic!("expected Permanent, got {other:?}"),
    }
}

/// (method, path, status) of every request so far.
fn calls(mock: &MockTd) -> Vec<(String, String, u16)> {
    mock.requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect()
}

const IMPORT: &str = "/v3/table/import_with_id/test_database/cpu_info";

fn import_path(id: u8) -> String {
    format!("{IMPORT}/{}/msgpack.gz", hex::encode([id; 16]))
}

#[tokio::test]
async fn one_chunk_is_one_import_with_the_exact_wire_format() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    let out = output(&mock);
    let key = out.chunk_key("td.test_database.cpu_info");
    assert_eq!(key, "test_database.cpu_info");
    let c = chunk_of(&key, 0xab, 1_700_000_000, &[cpu(1), cpu(2), cpu(3)]);
    out.write(&c).await.expect("imported");

    assert_eq!(mock.violations(), Vec::<String>::new());
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, import_path(0xab));
    let auth = format!("TD1 {MOCK_APIKEY}");
    let ua = format!("tidepool/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(r.header("authorization"), Some(auth.as_str()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("user-agent"), Some(ua.as_str()));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" +0000")));
    assert_eq!(r.header("transfer-encoding"), None);
    let imports = mock.imports();
    assert_eq!(imports.len(), 1);
    let gz_len = imports[0].gz_len.to_string();
    assert_eq!(r.header("content-length"), Some(gz_len.as_str()));
    assert_eq!(imports[0].id, c.id.hex());
    // EventTime nanoseconds dropped: integer seconds in every row.
    assert_eq!(
        imports[0].rows,
        vec![
            row(1_700_000_000, 1),
            row(1_700_000_000, 2),
            row(1_700_000_000, 3)
        ]
    );
    let s = out.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!((s.imports.load(Relaxed), s.rows.load(Relaxed)), (1, 3));

    // The next chunk reuses the kept-alive connection.
    out.write(&chunk_of(&key, 0xac, 1_700_000_001, &[cpu(4)]))
        .await
        .expect("imported");
    assert_eq!(mock.imports().len(), 2);
    assert_eq!(mock.connections(), 1);
}

#[tokio::test]
async fn missing_database_and_table_are_created_then_the_body_resent() {
    let mock = MockTd::start().await.expect("mock");
    let out = output(&mock);
    let c = chunk_of("test_database.cpu_info", 1, 1_700_000_000, &[cpu(1)]);
    out.write(&c).await.expect("imported after creating");
    assert_eq!(
        calls(&mock),
        vec![
            ("PUT".into(), import_path(1), 404),
            (
                "POST".into(),
                "/v3/table/create/test_database/cpu_info/log".into(),
                404
            ),
            (
                "POST".into(),
                "/v3/database/create/test_database".into(),
                200
            ),
            (
                "POST".into(),
                "/v3/table/create/test_database/cpu_info/log".into(),
                200
            ),
            ("PUT".into(), import_path(1), 200),
        ]
    );
    let create = &mock.requests()[1];
    assert_eq!(
        create.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(create.header("content-length"), Some("0"));
    assert_eq!(
        mock.rows("test_database", "cpu_info"),
        vec![row(1_700_000_000, 1)]
    );
    assert_eq!(mock.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn conflict_409_on_either_create_counts_as_success() {
    // Another worker creates the table between our 404 and our create.
    let mock = MockTd::start().await.expect("mock");
    mock.add_database("test_database");
    mock.push_fault(Call::CreateTable, Fault::AfterWork(409));
    let out = output(&mock);
    out.write(&chunk_of("test_database.cpu_info", 2, 5, &[cpu(1)]))
        .await
        .expect("409 on create table is fine");
    let statuses: Vec<u16> = calls(&mock).into_iter().map(|c| c.2).collect();
    assert_eq!(statuses, vec![404, 409, 200]);

    // ... and the database: fluent-plugin-td's pitfall (reference, section 3).
    let mock = MockTd::start().await.expect("mock");
    mock.push_fault(Call::CreateDatabase, Fault::AfterWork(409));
    let out = output(&mock);
    out.write(&chunk_of("test_database.cpu_info", 3, 5, &[cpu(1)]))
        .await
        .expect("409 on create database is fine");
    let statuses: Vec<u16> = calls(&mock).into_iter().map(|c| c.2).collect();
    assert_eq!(statuses, vec![404, 404, 409, 200, 200]);
    assert_eq!(mock.rows("test_database", "cpu_info").len(), 1);
}

#[tokio::test]
async fn a_404_that_persists_is_retried_later_not_looped() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    for _ in 0..3 {
        mock.push_fault(Call::Import, Fault::Status(404));
    }
    let out = output(&mock);
    let m = retryable(
        out.write(&chunk_of("test_database.cpu_info", 4, 5, &[cpu(1)]))
            .await,
    );
    assert!(m.contains("answered 404") && m.contains("2 times"), "{m}");
    let puts = calls(&mock).iter().filter(|c| c.0 == "PUT").count();
    assert_eq!(puts, 3, "the first send and two resends");
}

#[tokio::test]
async fn without_auto_create_a_404_is_permanent() {
    let mock = MockTd::start().await.expect("mock");
    let mut c = config(&mock);
    c.auto_create_table = false;
    let out = TdOutput::new("td", &c).expect("builds");
    let m = permanent(
        out.write(&chunk_of("test_database.cpu_info", 5, 5, &[cpu(1)]))
            .await,
    );
    assert!(m.contains("404") && m.contains("auto_create_table"), "{m}");
    assert_eq!(mock.requests().len(), 1, "no create call");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    let out = output(&mock);
    let c = chunk_of("test_database.cpu_info", 6, 5, &[cpu(1)]);
    for status in [503, 429, 500, 502] {
        mock.push_fault(Call::Import, Fault::Status(status));
        let m = retryable(out.write(&c).await);
        assert!(m.contains(&format!("answered {status}")), "{m}");
    }
    out.write(&c).await.expect("then stored");
    assert_eq!(mock.imports().len(), 1);
    assert_eq!(mock.duplicates(), 0);
}

#[tokio::test]
async fn client_errors_are_permanent_with_status_and_body() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    let out = output(&mock);
    let c = chunk_of("test_database.cpu_info", 7, 5, &[cpu(1)]);
    for status in [400, 403, 413, 422] {
        mock.push_fault(Call::Import, Fault::Status(status));
        let m = permanent(out.write(&c).await);
        assert!(
            m.contains(&format!("answered {status}")) && m.contains("injected"),
            "{m}"
        );
    }
    assert!(mock.imports().is_empty());
}

#[tokio::test]
async fn a_wrong_key_is_permanent_and_never_quoted() {
    // The mock echoes the Authorization it got in its 401 body, as a careless server
    // might: the message must still not show the key.
    let mock = MockTd::start_with_key("1/the-right-key")
        .await
        .expect("mock");
    mock.add_table("test_database", "cpu_info");
    let wrong = "9999/wrong-key-that-must-not-leak";
    let mut c = config(&mock);
    c.apikey = ApiKey::new(wrong);
    let out = TdOutput::new("td", &c).expect("builds");
    assert!(!format!("{out:?}").contains(wrong));
    let m = permanent(
        out.write(&chunk_of("test_database.cpu_info", 8, 5, &[cpu(1)]))
            .await,
    );
    assert!(m.contains("answered 401"), "{m}");
    assert!(m.contains("TD1 ***"), "the echo is there, redacted: {m}");
    assert!(!m.contains("wrong-key"), "{m}");
    // After the operator fixes the key, the same chunk goes through.
    mock.set_apikey(wrong);
    out.write(&chunk_of("test_database.cpu_info", 8, 5, &[cpu(1)]))
        .await
        .expect("stored");
}

#[tokio::test]
async fn md5_mismatch_is_retryable_and_the_retry_is_deduplicated() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    mock.push_fault(Call::Import, Fault::WrongMd5);
    let out = output(&mock);
    let c = chunk_of("test_database.cpu_info", 9, 5, &[cpu(1), cpu(2)]);
    let m = retryable(out.write(&c).await);
    assert!(m.contains("md5_hex") && m.contains("same id"), "{m}");
    out.write(&c).await.expect("second try");
    assert_eq!(mock.imports().len(), 1);
    assert_eq!(mock.duplicates(), 1);
    assert_eq!(mock.rows("test_database", "cpu_info").len(), 2);
}

#[tokio::test]
async fn a_lost_answer_then_retry_stores_once() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    mock.push_fault(Call::Import, Fault::AfterWork(503));
    let out = output(&mock);
    let c = chunk_of("test_database.cpu_info", 10, 5, &[cpu(1)]);
    retryable(out.write(&c).await);
    out.write(&c).await.expect("retry");
    assert_eq!(mock.rows("test_database", "cpu_info"), vec![row(5, 1)]);
    assert_eq!(mock.duplicates(), 1);
    // After a restart (a new output), the buffer hands over the same persisted id.
    drop(out);
    output(&mock).write(&c).await.expect("after restart");
    assert_eq!(mock.imports().len(), 1);
    assert_eq!(mock.duplicates(), 2);
    assert!(mock.import(&c.id.hex()).is_some());
    assert_eq!(mock.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn random_failures_still_store_every_chunk_exactly_once() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    mock.set_random_failures(30, 42);
    let out = output(&mock);
    let mut failures = 0;
    for id in 0..40u8 {
        let c = chunk_of(
            "test_database.cpu_info",
            id,
            1000 + u32::from(id),
            &[cpu(i64::from(id))],
        );
        // Bounded: with 30 % failures, 40 tries per chunk never all fail.
        let mut stored = false;
        for _ in 0..40 {
            match out.write(&c).await {
                Ok(()) => {
                    stored = true;
                    break;
                }
                Err(OutputError::Retryable(_)) => failures += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(stored, "chunk {id}");
    }
    assert!(failures > 0, "the seed injects failures");
    let mut rows = mock.rows("test_database", "cpu_info");
    rows.sort_by_key(|r| r.as_map().and_then(|m| m[0].1.as_i64()));
    let want: Vec<Value> = (0..40).map(|i| row(1000 + i, i)).collect();
    assert_eq!(rows, want);
    assert!(
        mock.duplicates() > 0,
        "some answers were lost after storing"
    );
    assert_eq!(mock.row_count("test_database", "cpu_info"), 40);
    assert_eq!(mock.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn tags_without_two_parts_are_permanent_without_a_request() {
    let mock = MockTd::start().await.expect("mock");
    let out = output(&mock);
    let key = out.chunk_key("lonely");
    assert_eq!(key, "lonely");
    let m = permanent(out.write(&chunk_of(&key, 11, 5, &[cpu(1)])).await);
    assert!(
        m.contains("\"lonely\"") && m.contains("fewer than two"),
        "{m}"
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn normalized_tags_and_fixed_destinations() {
    let mock = MockTd::start().await.expect("mock");
    let out = output(&mock);
    let key = out.chunk_key("td.Test-DB.x");
    assert_eq!(key, "test_db.x__");
    out.write(&chunk_of(&key, 12, 5, &[cpu(1)]))
        .await
        .expect("stored");
    assert_eq!(mock.rows("test_db", "x__").len(), 1);

    let mut c = config(&mock);
    c.destination = Some(("fixed_db".into(), "fixed_table".into()));
    let fixed = TdOutput::new("td", &c).expect("builds");
    assert_eq!(fixed.chunk_key("anything"), "fixed_db.fixed_table");
    fixed
        .write(&chunk_of("anything", 13, 5, &[cpu(1)]))
        .await
        .expect("stored");
    assert_eq!(mock.rows("fixed_db", "fixed_table").len(), 1);
}

#[tokio::test]
async fn array_records_are_wrapped_or_dropped() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    let arr = Value::Array(vec![Value::from(1), Value::from("x")]);
    let c = chunk(
        "test_database.cpu_info",
        14,
        &[
            entry(T::Event(77, 500), &mp(&arr)),
            entry(T::Int(78), &mp(&cpu(1))),
        ],
    );
    let out = output(&mock);
    out.write(&c).await.expect("stored");
    assert_eq!(
        mock.rows("test_database", "cpu_info"),
        vec![
            map(&[("time", Value::from(77)), ("value", arr)]),
            row(78, 1)
        ]
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(out.stats().wrapped.load(Relaxed), 1);

    // Dropping: a chunk of only arrays sends nothing at all.
    let mut cfg = config(&mock);
    cfg.non_map = NonMap::Drop;
    let drop = TdOutput::new("td", &cfg).expect("builds");
    let only = chunk(
        "test_database.cpu_info",
        15,
        &[entry(T::Int(1), &mp(&Value::from("s")))],
    );
    let before = mock.requests().len();
    drop.write(&only)
        .await
        .expect("nothing to import is success");
    assert_eq!(mock.requests().len(), before);
    assert_eq!(drop.stats().dropped.load(Relaxed), 1);
    assert_eq!(drop.stats().imports.load(Relaxed), 0);
}

#[tokio::test]
async fn too_many_keys_is_permanent() {
    let mock = MockTd::start().await.expect("mock");
    let wide = Value::Map(
        (0..600)
            .map(|i| (Value::from(format!("k{i}")), Value::from(i)))
            .collect(),
    );
    let out = output(&mock);
    let m = permanent(
        out.write(&chunk_of("test_database.cpu_info", 16, 5, &[wide]))
            .await,
    );
    assert!(m.contains("601 keys") && m.contains("512"), "{m}");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn connection_errors_and_timeouts_are_retryable() {
    // Nothing listens on a port that was just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut c = TdOutputConfig::new(ApiKey::new(MOCK_APIKEY));
    c.endpoint = format!("http://127.0.0.1:{port}");
    c.api_endpoint = c.endpoint.clone();
    let out = TdOutput::new("td", &c).expect("builds");
    let m = retryable(
        out.write(&chunk_of("test_database.cpu_info", 17, 5, &[cpu(1)]))
            .await,
    );
    assert!(m.starts_with("output td: PUT http://127.0.0.1:"), "{m}");
    assert!(m.contains("cannot connect"), "{m}");
    assert!(!m.contains(MOCK_APIKEY));

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    c.endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    c.request_timeout = Duration::from_millis(300);
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let out = TdOutput::new("td", &c).expect("builds");
    let m = retryable(
        out.write(&chunk_of("test_database.cpu_info", 18, 5, &[cpu(1)]))
            .await,
    );
    assert!(m.contains("timed out"), "{m}");
    hold.abort();
}

#[tokio::test]
async fn a_chunk_with_corrupt_bytes_is_permanent() {
    let mock = MockTd::start().await.expect("mock");
    let out = output(&mock);
    let mut bad: Chunk = chunk_of("test_database.cpu_info", 19, 5, &[cpu(1)]);
    bad.entries = bad.entries.slice(..bad.entries.len() - 1);
    let m = permanent(out.write(&bad).await);
    assert!(m.contains("corrupt"), "{m}");
}

#[tokio::test]
async fn the_output_enum_builds_td_and_keys_chunks_by_destination() {
    use crate::config::OutputConfig;
    use crate::output::Output;
    let mock = MockTd::start().await.expect("mock");
    let out = Output::build(
        "td",
        &OutputConfig::Td(config(&mock)),
        std::path::Path::new("."),
    )
    .expect("builds");
    assert!(matches!(out, Output::Td(_)));
    assert_eq!(out.chunk_key("td.Test-DB.x"), "test_db.x__");
    assert_eq!(out.chunk_key("one"), "one");
    out.write(&chunk_of("test_db.x__", 20, 5, &[cpu(1)]))
        .await
        .expect("stored");
    assert_eq!(mock.rows("test_db", "x__"), vec![row(5, 1)]);
    assert_eq!(Output::Null.chunk_key("td.Test-DB.x"), "td.Test-DB.x");
}

#[tokio::test]
async fn the_mock_can_count_rows_without_keeping_them() {
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    mock.set_keep_rows(false);
    let out = output(&mock);
    out.write(&chunk_of(
        "test_database.cpu_info",
        21,
        5,
        &[cpu(1), cpu(2)],
    ))
    .await
    .expect("stored");
    assert_eq!(mock.row_count("test_database", "cpu_info"), 2);
    assert!(mock.rows("test_database", "cpu_info").is_empty());
    assert_eq!(mock.violations(), Vec::<String>::new());
}
