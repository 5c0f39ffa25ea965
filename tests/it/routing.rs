//! Filters and explain against a real daemon: records reshaped on the way, untouched
//! tags untouched, and `tidepool route` telling the operator why.

use crate::util::*;
use std::io::Write;

fn filtered_config() -> String {
    plain_config("").replace(
        "[[match]]",
        r#"[[filter]]
type = "record_transformer"
pattern = "td.*.*"
record = { received_by = "aggregator", table = "${tag_parts[2]}" }
remove_keys = ["secret"]

[[filter]]
type = "grep"
pattern = "td.*.*"
exclude = [{ key = "level", pattern = "^debug$" }]

[[match]]"#,
    )
}

#[test]
fn filters_reshape_and_select_records_of_matching_tags_only() {
    let d = TestDaemon::start(&filtered_config());
    let mut s = connect(d.addr(0));
    let recs = [
        (
            "td.test_database.heap_info",
            r#"{"current_size": 5, "secret": "x"}"#,
            "a",
        ),
        ("td.test_database.heap_info", r#"{"level": "debug"}"#, "b"),
        ("other.tag", r#"{"secret": "kept"}"#, "c"),
    ];
    for (tag, json, chunk) in recs {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        let rec = tidepool::client::json_to_msgpack(v);
        s.write_all(&message_with_ack(tag, &rec, chunk))
            .expect("write");
        assert_eq!(read_n(&mut s, ack_for(chunk).len()), ack_for(chunk));
    }
    let heap = d.wait_records("data/out/td.test_database.heap_info.jsonl", 1);
    assert_eq!(heap[0]["current_size"], 5);
    assert_eq!(heap[0]["received_by"], "aggregator");
    assert_eq!(heap[0]["table"], "heap_info");
    assert!(heap[0].get("secret").is_none(), "{:?}", heap[0]);
    let other = d.wait_records("data/out/other.tag.jsonl", 1);
    assert_eq!(other[0]["secret"], "kept", "no filter touches other tags");
    // The debug record was dropped by grep: only one line for heap_info.
    assert_serves(d.addr(0), "after.filters");
    assert_eq!(
        d.lines("data/out/td.test_database.heap_info.jsonl").len(),
        1
    );
}

#[test]
fn route_explains_filters_match_and_outputs() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("tidepool.toml"), filtered_config()).expect("config");
    let out = tidepool_cmd(dir.path())
        .args(["-c", "tidepool.toml", "route", "td.test_database.heap_info"])
        .args(["--record", r#"{"current_size": 1, "secret": "s"}"#])
        .output()
        .expect("route");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("record_transformer"), "{text}");
    assert!(text.contains("out"), "names the output: {text}");
    assert!(
        text.contains("received_by"),
        "shows the filtered record: {text}"
    );
}

#[test]
fn one_match_copies_to_several_outputs_and_unmatched_tags_are_counted_once_logged() {
    let cfg = plain_config("")
        .replace("pattern = \"**\"", "pattern = \"copy.**\"")
        .replace("outputs = [\"out\"]", "outputs = [\"out\", \"second\"]")
        + "\n[output.second]\ntype = \"file\"\npath = \"second/${tag}.jsonl\"\n";
    let d = TestDaemon::start(&cfg);
    let mut s = connect(d.addr(0));
    let rec = rmpv::Value::Map(vec![("v".into(), 1.into())]);
    for (tag, chunk) in [("copy.me", "a"), ("nowhere.tag", "b"), ("nowhere.tag", "c")] {
        s.write_all(&message_with_ack(tag, &rec, chunk))
            .expect("write");
        assert_eq!(read_n(&mut s, ack_for(chunk).len()), ack_for(chunk));
    }
    assert_eq!(d.wait_records("data/out/copy.me.jsonl", 1)[0]["v"], 1);
    assert_eq!(d.wait_records("data/second/copy.me.jsonl", 1)[0]["v"], 1);
    d.wait_log("no [[match]] matches this tag");
    assert_eq!(
        d.stderr().matches("no [[match]] matches this tag").count(),
        1,
        "logged once per tag"
    );
    let (status, metrics) = http(d.api_addr(), "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tidepool_router_unmatched_events_total{tag=\"nowhere.tag\"} 2"),
        "{metrics}"
    );
}
