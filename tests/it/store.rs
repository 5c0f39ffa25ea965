//! The local records store end to end: device events become rows that the seed's
//! queries read, through `tidepool query` and the HTTP API.

use crate::util::*;
use std::net::SocketAddr;

fn store_config() -> String {
    plain_config("").replace(
        "type = \"file\"\npath = \"out/${tag}.jsonl\"\ntime_key = \"time\"",
        "type = \"store\"\nbuffer = { flush_interval = \"200ms\" }",
    )
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path)
}

fn query(d: &TestDaemon, db: &str, sql: &str, extra: &[&str]) -> String {
    let out = tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "query", "-d", db, sql])
        .args(extra)
        .output()
        .expect("tidepool query");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn device_records_are_queryable_with_the_seed_queries_and_the_api() {
    let d = TestDaemon::start(&store_config());
    let device = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tidepool"))
        .parent()
        .expect("dir")
        .join("examples/device");
    if !device.exists() && skip("examples/device is not built") {
        return;
    }
    let out = std::process::Command::new(&device)
        .args([
            "--addr",
            &d.addr(0).to_string(),
            "--count",
            "10",
            "--interval-ms",
            "0",
        ])
        .output()
        .expect("device");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows = wait_for("heap_info rows", || {
        let dir = d.dir.join("data/store");
        if !dir.join("test_database.sqlite").exists() {
            return None;
        }
        let text = query(
            &d,
            "test_database",
            "select count(*) as n from heap_info",
            &["--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let n = v["rows"][0][0].as_i64()?;
        (n >= 2).then_some(n)
    });
    assert!(rows >= 2);
    let seed = "select time, current_size, total_size, alloc_cnt, max_size, reserved_size, alloc_fail_cnt from heap_info order by time asc";
    let table = query(&d, "test_database", seed, &[]);
    for col in [
        "time",
        "current_size",
        "total_size",
        "alloc_cnt",
        "alloc_fail_cnt",
    ] {
        assert!(table.contains(col), "column {col} in:\n{table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&query(&d, "test_database", seed, &["--json"])).expect("json");
    let times: Vec<i64> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r[0].as_i64())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time order: {times:?}"
    );
    assert!(query(&d, "test_database", "select * from cpu_info", &[]).contains("time"));

    let api = d.api_addr();
    let (status, body) = http_get(api, "/api/records?database=test_database&table=heap_info");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("records json");
    let recs = v["records"].as_array().expect("records");
    assert!(!recs.is_empty());
    assert!(recs[0].get("current_size").is_some(), "{:?}", recs[0]);
    let (status, body) = http_get(
        api,
        "/api/records?database=test_database&table=heap_info&limit=x",
    );
    assert_eq!(status, 400);
    assert!(body.contains("limit"), "{body}");
    let (status, metrics) = http_get(api, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("tidepool_input_events_total"), "{metrics}");
    assert!(
        metrics.contains("tidepool_buffer_flush_total{output=\"out\"}"),
        "{metrics}"
    );
    let (status, body) = http_get(api, "/api/status");
    assert_eq!(status, 200);
    assert!(body.contains("\"plugin_category\":\"output\""), "{body}");
}

/// `tidepool query` asks a running daemon through its API (found through the URL
/// file the daemon writes, ephemeral port included, with the config's token), reads
/// the files with `--offline`, and takes any API with `--api URL --token`.
#[test]
fn query_goes_through_the_running_daemons_api_unless_offline() {
    let config = store_config().replace(
        "[api]\nlisten = \"127.0.0.1:0\"",
        "[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef-query\"",
    );
    let d = TestDaemon::start(&config);
    let mut s = connect(d.addr(0));
    let rec = rmpv::Value::Map(vec![("n".into(), 7.into())]);
    std::io::Write::write_all(&mut s, &message_with_ack("td.qdb.items", &rec, "c1")).expect("send");
    let want = ack_for("c1");
    assert_eq!(read_n(&mut s, want.len()), want);
    let sql = "select n from items";
    wait_for("the row through the API", || {
        let out = tidepool_cmd(&d.dir)
            .args(["-c", "tidepool.toml", "query", "-d", "qdb", sql, "--json"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("[[7]]")
            .then_some(())
    });
    let api = std::fs::read_to_string(d.dir.join("data/tidepool.api")).expect("URL file");
    assert_eq!(api.trim(), format!("http://{}", d.api_addr()));
    let with_token = query(
        &d,
        "qdb",
        sql,
        &[
            "--json",
            "--api",
            api.trim(),
            "--token",
            "0123456789abcdef-query",
        ],
    );
    assert!(with_token.contains("[[7]]"), "{with_token}");
    // A wrong token is refused by the API, which proves --api went there.
    let out = tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "query", "-d", "qdb", sql])
        .args(["--api", api.trim(), "--token", "wrong-token-wrong-token"])
        .output()
        .expect("tidepool query");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pointing the URL file elsewhere breaks the default path but not --offline.
    std::fs::write(d.dir.join("data/tidepool.api"), "http://127.0.0.1:9\n").expect("write");
    let out = tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "query", "-d", "qdb", sql])
        .output()
        .expect("tidepool query");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the tidepool API"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(query(&d, "qdb", sql, &["--json", "--offline"]).contains("[[7]]"));
}
