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
