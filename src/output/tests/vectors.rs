//! Every record of the captured vectors transcodes to the JSON the manifest records.

use crate::output::json::write_json;
use serde_json::Value as Json;
use std::io::Read as _;
use std::path::Path;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors");

/// The offset just past the value at `pos`.
fn skip(buf: &[u8], pos: usize) -> usize {
    let mut rest = buf.get(pos..).expect("offset inside the frame");
    let before = rest.len();
    rmpv::decode::read_value_ref(&mut rest).expect("vector frames are valid MessagePack");
    pos + before - rest.len()
}

/// The offset after an array header at `pos`.
fn array_header(buf: &[u8], pos: usize) -> usize {
    let mut rest = buf.get(pos..).expect("offset inside the frame");
    let before = rest.len();
    rmp::decode::read_array_len(&mut rest).expect("frame is an array");
    pos + before - rest.len()
}

/// Record bytes of a Message, Forward, PackedForward or CompressedPackedForward frame.
fn records(frame: &[u8], kind: &str) -> Vec<Vec<u8>> {
    let tag_end = skip(frame, array_header(frame, 0));
    let second_end = skip(frame, tag_end);
    let second = frame.get(tag_end..second_end).expect("in frame");
    let entry_bytes: Vec<u8> = match kind {
        "Message" => {
            let end = skip(frame, second_end);
            return vec![frame.get(second_end..end).expect("in frame").to_vec()];
        }
        "Forward" => second
            .get(array_header(second, 0)..)
            .expect("in frame")
            .to_vec(),
        _ => {
            let v = rmpv::decode::read_value(&mut &second[..]).expect("valid");
            let payload = match v {
                rmpv::Value::Binary(b) => b,
                rmpv::Value::String(s) => s.into_bytes(),
                other => panic!("entries are {other:?}"),
            };
            if kind == "CompressedPackedForward" {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(payload.as_slice())
                    .read_to_end(&mut out)
                    .expect("vector gzip is valid");
                out
            } else {
                payload
            }
        }
    };
    // Split entries here rather than with `msgpack::entries`, which expects the ingest
    // path to have replaced nil times already.
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < entry_bytes.len() {
        let record = skip(&entry_bytes, array_header(&entry_bytes, pos));
        pos = skip(&entry_bytes, record);
        out.push(entry_bytes.get(record..pos).expect("in entries").to_vec());
    }
    out
}

/// Whether the manifest rendered something its own way (hex bytes, ext), not as JSON.
fn manifest_specific(v: &Json) -> bool {
    match v {
        Json::Object(m) => {
            ["hex", "ext", "EventTime", "msgpack_timestamp_ext_-1"]
                .iter()
                .any(|k| m.contains_key(*k))
                || m.keys().any(|k| k.starts_with("hex:"))
                || m.values().any(manifest_specific)
        }
        Json::Array(a) => a.iter().any(manifest_specific),
        _ => false,
    }
}

#[test]
fn vector_records_match_the_manifest() {
    let text = std::fs::read_to_string(Path::new(DIR).join("manifest.json")).expect("manifest");
    let manifest: Json = serde_json::from_str(&text).expect("manifest is JSON");
    let vectors = manifest["vectors"].as_array().expect("vectors list");
    let mut checked = 0;
    for v in vectors {
        let file = v["file"].as_str().expect("file name");
        if file.starts_with("malformed-") {
            continue;
        }
        let bytes = std::fs::read(Path::new(DIR).join(file)).expect("vector file");
        for f in v["frames"].as_array().into_iter().flatten() {
            let kind = f["kind"].as_str().unwrap_or("");
            let is_event = matches!(
                kind,
                "Message" | "Forward" | "PackedForward" | "CompressedPackedForward"
            );
            if !is_event || f.get("error").is_some() || f.get("encoding").is_some() {
                continue;
            }
            let off = f["offset"].as_u64().expect("offset") as usize;
            let len = f["length"].as_u64().expect("length") as usize;
            let frame = bytes.get(off..off + len).expect("frame inside file");
            let want: Vec<&Json> = if kind == "Message" {
                vec![&f["record"]]
            } else {
                f["entries"]
                    .as_array()
                    .expect("entries")
                    .iter()
                    .map(|e| &e["record"])
                    .collect()
            };
            let got = records(frame, kind);
            assert!(got.len() >= want.len(), "{file}: {} records", got.len());
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                if manifest_specific(w) {
                    continue;
                }
                let mut out = Vec::new();
                write_json(g, &mut out).expect("vector records transcode");
                let ours: Json = serde_json::from_slice(&out).expect("JSON");
                assert_eq!(&ours, w, "{file} frame at {off} record {i}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} records compared");
}
