//! Every captured client vector, replayed over a real socket: the daemon must answer
//! exactly what Fluentd answered and write exactly the events the manifest lists.

use crate::util::*;
use base64::Engine;
use serde_json::Value;
use std::io::Write;

/// Vectors that are protocol data (not handshake, UDP or malformed input).
fn data_vectors(manifest: &Value) -> Vec<&Value> {
    manifest["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .filter(|v| {
            let f = v["file"].as_str().unwrap_or("");
            f.ends_with(".client.bin")
                && !f.contains("handshake")
                && !f.starts_with("malformed-")
                && !f.starts_with("udp-")
                && f != "synthetic-message-msgpack-timestamp-ext.client.bin"
                && f != "synthetic-tag-empty.client.bin"
        })
        .collect()
}

/// The events a frame of the manifest yields, as (tag, time, record).
fn expected_events(v: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for f in v["frames"].as_array().into_iter().flatten() {
        let tag = f["tag"].as_str().unwrap_or("").to_string();
        match f["kind"].as_str().unwrap_or("") {
            "Message" if !f["record"].is_null() => {
                out.push((tag, f["time"].clone(), f["record"].clone()));
            }
            "Forward" | "PackedForward" | "CompressedPackedForward" => {
                for e in f["entries"].as_array().into_iter().flatten() {
                    if !e["record"].is_null() {
                        out.push((tag.clone(), e["time"].clone(), e["record"].clone()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The manifest renders bytes as `{"hex": ..}`; tidepool writes base64 strings.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("hex") => {
            let bytes = hex::decode(m["hex"].as_str().unwrap_or("")).expect("hex");
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Seconds of a manifest time, or None for "replaced by the arrival time".
fn expected_secs(t: &Value) -> Option<f64> {
    if let Some(et) = t.get("EventTime") {
        let s = et[0].as_f64()?;
        let n = et[1].as_f64()?;
        return Some(s + n / 1e9);
    }
    match t.as_f64() {
        Some(0.0) | None => None,
        Some(s) => Some(s),
    }
}

fn marker(json: bool, name: &str) -> (Vec<u8>, Vec<u8>) {
    let chunk = format!("marker-{name}");
    if json {
        let frame = format!(r#"["marker.done", 1700000000, {{"m": 1}}, {{"chunk": "{chunk}"}}]"#);
        (
            frame.into_bytes(),
            format!(r#"{{"ack":"{chunk}"}}"#).into_bytes(),
        )
    } else {
        let rec = rmpv::Value::Map(vec![("m".into(), 1.into())]);
        (
            message_with_ack("marker.done", &rec, &chunk),
            ack_for(&chunk),
        )
    }
}

#[test]
fn every_data_vector_replays_with_exact_replies_and_events() {
    let d = TestDaemon::start(&plain_config(""));
    let addr = d.addr(0);
    let manifest = manifest();
    let vectors = data_vectors(&manifest);
    assert!(vectors.len() >= 25, "only {} data vectors", vectors.len());
    for v in vectors {
        let file = v["file"].as_str().expect("file");
        let bytes = vector(file);
        let json = bytes.first() == Some(&b'[') || bytes.first() == Some(&b'{');
        let reply_file = file.replace(".client.bin", ".server.bin");
        let reply_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/vectors")
            .join(&reply_file);
        let expected_reply = if reply_path.exists() {
            vector(&reply_file)
        } else {
            Vec::new()
        };
        let events = expected_events(v);
        let mut before = std::collections::BTreeMap::new();
        for (tag, _, _) in &events {
            before
                .entry(tag.clone())
                .or_insert_with(|| d.lines(&format!("data/out/{tag}.jsonl")).len());
        }

        let mut s = connect(addr);
        s.write_all(&bytes).expect("write vector");
        let (mark, mark_ack) = marker(json, file);
        s.write_all(&mark).expect("write marker");
        let reply = read_n(&mut s, expected_reply.len() + mark_ack.len());
        assert_eq!(
            &reply[..expected_reply.len()],
            &expected_reply[..],
            "{file}: reply differs from Fluentd's"
        );
        assert_eq!(
            &reply[expected_reply.len()..],
            &mark_ack[..],
            "{file}: marker ack"
        );

        let mut by_tag: std::collections::BTreeMap<String, Vec<(Value, Value)>> =
            Default::default();
        for (tag, t, r) in events {
            by_tag.entry(tag).or_default().push((t, r));
        }
        for (tag, want) in by_tag {
            let path = format!("data/out/{tag}.jsonl");
            let start = before[&tag];
            let all = d.wait_records(&path, start + want.len());
            let got = &all[start..];
            assert_eq!(got.len(), want.len(), "{file}: event count for {tag}");
            for (i, ((t, rec), line)) in want.iter().zip(got).enumerate() {
                let mut line = line.clone();
                let time = line.as_object_mut().and_then(|m| m.remove("time"));
                assert_eq!(line, normalize(rec), "{file}: record {i} of {tag}");
                if let (Some(want_t), Some(got_t)) =
                    (expected_secs(t), time.and_then(|t| t.as_f64()))
                {
                    assert!(
                        (want_t - got_t).abs() < 1e-6,
                        "{file}: time of record {i}: want {want_t}, got {got_t}"
                    );
                }
            }
        }
    }
}

#[test]
fn udp_heartbeat_is_answered_with_one_zero_byte() {
    let d = TestDaemon::start(&plain_config(""));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(PATIENCE)).expect("timeout");
    sock.send_to(&vector("udp-heartbeat.client.bin"), d.addr(0))
        .expect("send");
    let mut buf = [0u8; 16];
    let (n, _) = sock.recv_from(&mut buf).expect("reply");
    assert_eq!(&buf[..n], &vector("udp-heartbeat.server.bin")[..]);
}

#[test]
fn a_vector_fed_byte_by_byte_still_decodes() {
    let d = TestDaemon::start(&plain_config(""));
    let bytes = vector("fluentd-1.16-packed-ack.client.bin");
    let mut s = connect(d.addr(0));
    for b in &bytes {
        s.write_all(std::slice::from_ref(b)).expect("write");
    }
    let want = vector("fluentd-1.16-packed-ack.server.bin");
    assert_eq!(read_n(&mut s, want.len()), want);
    let recs = d.wait_records("data/out/td.test_database.cpu_info.jsonl", 3);
    assert_eq!(recs[0]["message"], "hello from fluentd out_forward");
}

#[test]
fn source_address_and_hostname_keys_are_added_to_map_records_only() {
    let d = TestDaemon::start(&plain_config(
        "source_address_key = \"host_ip\"\nsource_hostname_key = \"host\"",
    ));
    let mut s = connect(d.addr(0));
    let rec = rmpv::Value::Map(vec![("a".into(), 1.into())]);
    s.write_all(&message_with_ack("src.keys", &rec, "k1"))
        .expect("write");
    let arr = rmpv::Value::Array(vec!["sint".into(), 1.into()]);
    s.write_all(&message_with_ack("src.keys", &arr, "k2"))
        .expect("write");
    let want = [ack_for("k1"), ack_for("k2")].concat();
    assert_eq!(read_n(&mut s, want.len()), want);
    let recs = d.wait_records("data/out/src.keys.jsonl", 2);
    assert_eq!(recs[0]["host_ip"], "127.0.0.1");
    assert_eq!(recs[0]["a"], 1);
    assert!(
        recs[0]["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{:?}",
        recs[0]
    );
    assert_eq!(
        recs[1],
        serde_json::json!(["sint", 1]),
        "arrays pass unchanged"
    );
}
