//! The Treasure Data output against a mock of the import API (the only mock in these
//! tests: it stands in for the cloud and checks the wire format exactly), with a real
//! daemon, real buffers and real restarts.

use crate::util::*;
use std::io::Write;
use tidepool::output::td::mock::{Call, Fault, MOCK_APIKEY, MockTd};

/// A runtime to host the mock server for the length of a test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn td_config(url: &str) -> String {
    plain_config("")
        .replace("pattern = \"**\"", "pattern = \"td.*.*\"")
        .replace(
            "type = \"file\"\npath = \"out/${tag}.jsonl\"\ntime_key = \"time\"",
            &format!(
                "type = \"td\"\napikey = \"${{TP_TD_KEY}}\"\nendpoint = \"{url}\"\napi_endpoint = \"{url}\"\n\
                 buffer = {{ flush_interval = \"200ms\", retry_wait = \"100ms\", retry_max_interval = \"300ms\" }}"
            ),
        )
}

fn start(dir: &std::path::Path, url: &str, key: &str) -> TestDaemon {
    TestDaemon::start_in_with_env(dir, &td_config(url), &[("TP_TD_KEY", key)])
}

/// Sends `batches` acked Forward frames of `per` numbered events to `tag`.
fn send_numbered(d: &TestDaemon, tag: &str, batches: u64, per: u64) {
    let mut s = connect(d.addr(0));
    for b in 0..batches {
        let entries = (0..per)
            .map(|i| {
                rmpv::Value::Array(vec![
                    rmpv::Value::from(1_700_000_000u64),
                    rmpv::Value::Map(vec![("seq".into(), (b * per + i).into())]),
                ])
            })
            .collect();
        let chunk = format!("b{b}");
        let frame = rmpv::Value::Array(vec![
            tag.into(),
            rmpv::Value::Array(entries),
            rmpv::Value::Map(vec![("chunk".into(), chunk.as_str().into())]),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &frame).expect("encode");
        s.write_all(&buf).expect("write");
        assert_eq!(read_n(&mut s, ack_for(&chunk).len()), ack_for(&chunk));
    }
}

fn seqs(mock: &MockTd, db: &str, table: &str) -> Vec<u64> {
    let mut v: Vec<u64> = mock
        .rows(db, table)
        .iter()
        .filter_map(|r| {
            r.as_map()?
                .iter()
                .find(|(k, _)| k.as_str() == Some("seq"))
                .and_then(|(_, v)| v.as_u64())
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn every_event_is_imported_exactly_once_through_503s_and_lost_answers() {
    let rt = runtime();
    let mock = rt.block_on(MockTd::start()).expect("mock");
    mock.set_random_failures(30, 7);
    let dir = tempfile::tempdir().expect("tmp");
    let d = start(dir.path(), &mock.url(), MOCK_APIKEY);
    send_numbered(&d, "td.test_database.cpu_info", 20, 50);
    // The table did not exist: created on the first 404, then the rows resent.
    let got = wait_for("1000 rows imported", || {
        let s = seqs(&mock, "test_database", "cpu_info");
        (s.len() >= 1000).then_some(s)
    });
    assert_eq!(
        got,
        (0..1000).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
    assert!(
        mock.tables()
            .contains(&("test_database".into(), "cpu_info".into()))
    );
    assert!(
        !d.stderr().contains(MOCK_APIKEY),
        "the API key reached the log"
    );
    // Every row carries an integer time.
    assert!(mock.rows("test_database", "cpu_info").iter().all(|r| {
        r.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("time")))
            .is_some_and(|(_, t)| t.as_u64() == Some(1_700_000_000))
    }));
}

#[test]
fn a_restart_between_a_failed_upload_and_its_retry_reuses_the_chunk_id() {
    let rt = runtime();
    let mock = rt.block_on(MockTd::start()).expect("mock");
    mock.add_database("test_database");
    mock.add_table("test_database", "heap_info");
    for _ in 0..3 {
        mock.push_fault(Call::Import, Fault::Status(503));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut d = start(dir.path(), &mock.url(), MOCK_APIKEY);
    send_numbered(&d, "td.test_database.heap_info", 1, 10);
    let first_id = wait_for("a failed upload", || {
        mock.requests()
            .iter()
            .find(|r| r.method == "PUT" && r.status == 503)
            .map(|r| r.path.clone())
    });
    d.kill9();
    let d = start(dir.path(), &mock.url(), MOCK_APIKEY);
    wait_for("the rows after the restart", || {
        (mock.rows("test_database", "heap_info").len() == 10).then_some(())
    });
    let puts: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path.clone())
        .collect();
    assert!(
        puts.iter().all(|p| *p == first_id),
        "one id for every try: {puts:?}"
    );
    assert!(first_id.ends_with("/msgpack.gz"));
    drop(d);
}

#[test]
fn a_wrong_api_key_dead_letters_and_requeue_after_the_fix_delivers() {
    let rt = runtime();
    let mock = rt.block_on(MockTd::start()).expect("mock");
    let dir = tempfile::tempdir().expect("tmp");
    let mut d = start(dir.path(), &mock.url(), "1/wrong-key-0000000000");
    send_numbered(&d, "td.test_database.stack_info", 1, 5);
    d.wait_log("dead");
    assert!(!d.stderr().contains("wrong-key-0000000000"), "key redacted");
    assert!(d.stop().success());
    let d = start(dir.path(), &mock.url(), MOCK_APIKEY);
    let out = tidepool_cmd(dir.path())
        .args([
            "-c",
            "tidepool.toml",
            "buffer",
            "dead-letter",
            "requeue",
            "ALL",
        ])
        .env("TP_TD_KEY", MOCK_APIKEY)
        .output()
        .expect("requeue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the requeued rows", || {
        (seqs(&mock, "test_database", "stack_info") == vec![0, 1, 2, 3, 4]).then_some(())
    });
    drop(d);
}
