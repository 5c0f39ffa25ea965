//! Data-driven tests over the captured vectors in `tests/data/vectors/`: every client
//! capture is fed whole, split at every offset (or many, for big files) and byte by
//! byte, and must decode to what `manifest.json` records; every malformed one must be
//! refused (or, when truncated, never complete).

use super::*;
use crate::msgpack::entries;
use bytes::BytesMut;
use serde_json::{Value, json};
use std::path::PathBuf;

const ARRIVAL: EventTime = EventTime {
    secs: 1_800_000_000,
    nanos: 7,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors")
}

fn manifest() -> Vec<Value> {
    let text =
        std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json is readable");
    let m: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    m["vectors"].as_array().cloned().unwrap_or_default()
}

fn vector(name: &str) -> Value {
    manifest()
        .into_iter()
        .find(|v| v["file"] == name)
        .unwrap_or_else(|| panic!("{name} not in manifest"))
}

/// What feeding a byte stream produced.
#[derive(Debug)]
struct Outcome {
    frames: Vec<Frame>,
    /// The first scan or decode error, which ends the connection.
    error: Option<DecodeError>,
    /// Bytes left over that never formed a frame.
    leftover: usize,
}

/// Feeds `data` in pieces ending at `cuts` through one scanner, as a connection does.
fn feed(data: &[u8], cuts: &[usize], limits: &FrameLimits) -> Outcome {
    let encoding = match data.first() {
        Some(b'{') | Some(b'[') => Encoding::Json,
        _ => Encoding::MessagePack,
    };
    let mut scanner = FrameScanner::new(encoding, *limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        buf.extend_from_slice(&data[start..cut.max(start)]);
        start = cut.max(start);
        loop {
            match scanner.next_frame(&buf) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    match decode_frame(frame, encoding, ARRIVAL, limits) {
                        Ok(f) => frames.push(f),
                        Err(e) => {
                            return Outcome {
                                frames,
                                error: Some(e),
                                leftover: buf.len(),
                            };
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        error: Some(e),
                        leftover: buf.len(),
                    };
                }
            }
        }
    }
    let leftover = if scanner.at_boundary(&buf) {
        0
    } else {
        buf.len()
    };
    Outcome {
        frames,
        error: None,
        leftover,
    }
}

/// A decoded record as the manifest writes it: bytes as `{"hex": ..}`.
fn to_json(v: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => json!(b),
        M::Integer(i) => i
            .as_u64()
            .map(|u| json!(u))
            .or_else(|| i.as_i64().map(|s| json!(s)))
            .unwrap_or(Value::Null),
        M::F32(f) => json!(f64::from(*f)),
        M::F64(f) => json!(f),
        M::String(s) => json!(s.as_str().unwrap_or_default()),
        M::Binary(b) => json!({ "hex": hex::encode(b) }),
        M::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        M::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| k.to_string()),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        M::Ext(t, d) => json!({ "ext": [t, hex::encode(d)] }),
    }
}

fn expected_time(t: &Value, replace_zero: bool) -> EventTime {
    match t {
        Value::Null => ARRIVAL,
        Value::Number(n) if n.as_i64() == Some(0) && replace_zero => ARRIVAL,
        Value::Number(n) => match n.as_i64() {
            Some(i) => EventTime { secs: i, nanos: 0 },
            None => {
                let f = n.as_f64().unwrap_or_default();
                EventTime {
                    secs: f.floor() as i64,
                    nanos: ((f - f.floor()) * 1e9).round() as u32,
                }
            }
        },
        Value::Object(o) => {
            let st = &o["EventTime"];
            EventTime {
                secs: st[0].as_i64().unwrap_or_default(),
                nanos: st[1].as_u64().unwrap_or_default() as u32,
            }
        }
        other => panic!("unexpected manifest time {other}"),
    }
}

/// Checks one decoded frame against its manifest description.
fn check_frame(name: &str, got: &Frame, want: &Value) {
    let kind = want["kind"].as_str().unwrap_or_default();
    if kind.starts_with("nil") {
        assert!(
            matches!(got, Frame::Heartbeat),
            "{name}: expected heartbeat, got {got:?}"
        );
        return;
    }
    let Frame::Events(ev) = got else {
        panic!("{name}: expected events, got heartbeat")
    };
    assert_eq!(
        ev.batch.tag,
        want["tag"].as_str().unwrap_or_default(),
        "{name}: tag"
    );
    assert_eq!(ev.batch.signal, crate::event::Signal::Logs, "{name}");
    let packed = kind.contains("Packed");
    let want_entries: Vec<Value> = match kind {
        "Message" => vec![json!({ "time": want["time"], "record": want["record"] })],
        _ => want["entries"].as_array().cloned().unwrap_or_default(),
    };
    let kept: Vec<&Value> = want_entries
        .iter()
        .filter(|e| !e["record"].is_null() || packed)
        .collect();
    assert_eq!(ev.batch.count as usize, kept.len(), "{name}: count");
    assert_eq!(
        ev.skipped as usize,
        want_entries.len() - kept.len(),
        "{name}: skipped"
    );
    let got_entries: Vec<_> = entries(&ev.batch.entries)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got_entries.len(), kept.len(), "{name}: entries walked");
    for (i, (g, w)) in got_entries.iter().zip(&kept).enumerate() {
        assert_eq!(
            g.time,
            expected_time(&w["time"], !packed),
            "{name}: entry {i} time"
        );
        let mut rd = g.record;
        let rec =
            rmpv::decode::read_value(&mut rd).unwrap_or_else(|e| panic!("{name}: entry {i}: {e}"));
        assert!(rd.is_empty(), "{name}: entry {i} record has trailing bytes");
        assert_eq!(to_json(&rec), w["record"], "{name}: entry {i} record");
    }
    let chunk = want["options"]["chunk"]
        .as_str()
        .map(|s| s.as_bytes().to_vec());
    assert_eq!(
        ev.chunk.as_deref().map(<[u8]>::to_vec),
        chunk,
        "{name}: chunk"
    );
}

/// Where the data phase of a capture starts (after any handshake PING).
fn data_start(v: &Value) -> usize {
    v["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["kind"] != "PING")
        .and_then(|f| f["offset"].as_u64())
        .unwrap_or(0) as usize
}

fn must_fail(name: &str) -> bool {
    name.starts_with("malformed-")
        || name == "synthetic-message-msgpack-timestamp-ext.client.bin"
        || name == "synthetic-tag-empty.client.bin"
}

/// The split points a vector is tried with: every offset for small files, else many.
fn split_points(len: usize) -> Vec<usize> {
    if len <= 4096 {
        (0..=len).collect()
    } else {
        (0..=len).step_by(len / 31 + 1).collect()
    }
}

fn check_vector(name: &str) {
    let v = vector(name);
    let all = std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let start = data_start(&v);
    let data = &all[start..];
    let want: Vec<&Value> = v["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["kind"] != "PING")
        .collect();
    let limits = FrameLimits::default();
    let mut runs: Vec<Vec<usize>> = vec![vec![], (1..data.len()).collect()];
    runs.extend(split_points(data.len()).into_iter().map(|k| vec![k]));
    for cuts in runs {
        let out = feed(data, &cuts, &limits);
        let how = if cuts.len() > 1 {
            "byte by byte".to_string()
        } else {
            format!("split at {cuts:?}")
        };
        if must_fail(name) {
            assert!(
                out.error.is_some() || out.leftover > 0,
                "{name} ({how}) was accepted: {:?}",
                out.frames
            );
            continue;
        }
        assert!(!want.is_empty(), "{name}: manifest lists no frames");
        assert!(out.error.is_none(), "{name} ({how}): {:?}", out.error);
        assert_eq!(out.leftover, 0, "{name} ({how}): trailing bytes");
        assert_eq!(out.frames.len(), want.len(), "{name} ({how}): frames");
        for (got, w) in out.frames.iter().zip(&want) {
            check_frame(name, got, w);
        }
    }
    check_ack(name, &v);
}

/// Where Fluentd answered this capture with an ack, ours must equal it byte for byte.
fn check_ack(name: &str, client: &Value) {
    let server_name = name.replace(".client.bin", ".server.bin");
    let Ok(server) = std::fs::read(dir().join(&server_name)) else {
        return;
    };
    if must_fail(name) {
        return;
    }
    let sv = vector(&server_name);
    let encoding = match client["frames"][0]["encoding"].as_str() {
        Some("JSON") => Encoding::Json,
        _ => Encoding::MessagePack,
    };
    for f in sv["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["kind"] == "ack")
    {
        let chunk = f["ack"].as_str().unwrap_or_default();
        let off = f["offset"].as_u64().unwrap_or_default() as usize;
        let ours = encode_ack(chunk.as_bytes(), encoding);
        assert_eq!(
            server.get(off..off + ours.len()),
            Some(&ours[..]),
            "{name}: ack bytes"
        );
        assert_eq!(
            off + ours.len(),
            f["length"]
                .as_u64()
                .map_or(server.len(), |l| off + l as usize)
        );
    }
}

#[test]
fn every_client_vector_decodes_as_the_manifest_says() {
    let mut checked = 0;
    for v in manifest() {
        let name = v["file"].as_str().unwrap_or_default();
        let dir = v["direction"].as_str().unwrap_or_default();
        let is_ping_only = v["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|f| f["kind"] == "PING");
        if dir != "client->server" || name.starts_with("handshake-") || is_ping_only {
            continue; // UDP datagrams and pure handshakes belong to the handshake tests
        }
        check_vector(name);
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} vectors checked");
}

#[test]
fn giant_declared_lengths_fail_at_once() {
    for name in [
        "malformed-giant-str32-entries.client.bin",
        "malformed-giant-bin32-entries.client.bin",
        "malformed-giant-array32.client.bin",
        "malformed-giant-map32-record.client.bin",
    ] {
        let data = std::fs::read(dir().join(name)).unwrap_or_default();
        let mut s = FrameScanner::new(Encoding::MessagePack, FrameLimits::default());
        let e = s.next_frame(&data);
        assert!(
            matches!(
                e,
                Err(DecodeError::Malformed(
                    crate::msgpack::ScanError::TooLarge { .. }
                ))
            ),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn truncated_frames_wait_forever() {
    for name in [
        "malformed-truncated-message.client.bin",
        "malformed-truncated-packed.client.bin",
    ] {
        let data = std::fs::read(dir().join(name)).unwrap_or_default();
        let out = feed(&data, &[], &FrameLimits::default());
        assert!(
            out.error.is_none() && out.frames.is_empty() && out.leftover == data.len(),
            "{name}: {out:?}"
        );
    }
}

#[test]
fn malformed_vectors_name_the_problem() {
    let cases = [
        ("malformed-array-too-short.client.bin", "elements"),
        ("malformed-bad-gzip.client.bin", "gzip body is invalid"),
        ("malformed-deep-nesting.client.bin", "nesting deeper than"),
        ("malformed-eventtime-fixext4.client.bin", "entry 0: "),
        ("malformed-forward-entry-not-pair.client.bin", "entry 0: "),
        ("malformed-gzip-bomb.client.bin", "max_decompressed_bytes"),
        (
            "malformed-gzip-trailing-garbage.client.bin",
            "gzip body is invalid",
        ),
        ("malformed-never-used-byte.client.bin", "0xc1"),
        ("malformed-not-array.client.bin", "frame is a map"),
        (
            "malformed-option-not-map.client.bin",
            "options are a string",
        ),
        (
            "malformed-packed-entries-not-pairs.client.bin",
            "entry 0: entry is an integer, expected a [time, record] array (byte 29)",
        ),
        ("malformed-packed-invalid-msgpack.client.bin", "0xc1"),
        ("malformed-tag-int.client.bin", "tag is an integer"),
        ("malformed-tag-nil.client.bin", "tag is nil"),
        ("malformed-time-string.client.bin", "entry 0"),
        (
            "malformed-truncated-gzip.client.bin",
            "gzip body is invalid",
        ),
        ("malformed-unknown-compression.client.bin", "\"zstd\""),
        (
            "synthetic-message-msgpack-timestamp-ext.client.bin",
            "Timestamp (ext -1)",
        ),
        ("synthetic-tag-empty.client.bin", "tag is empty"),
    ];
    for (name, want) in cases {
        let data = std::fs::read(dir().join(name)).unwrap_or_default();
        let out = feed(&data, &[], &FrameLimits::default());
        let msg = out.error.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(want), "{name}: {msg:?} lacks {want:?}");
        assert!(!msg.ends_with('.'), "{name}: {msg}");
    }
}
