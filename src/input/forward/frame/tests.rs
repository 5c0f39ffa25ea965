//! Unit and property tests for framing and decoding beyond the captured vectors.

use super::*;
use crate::event::Signal;
use crate::msgpack::entries;
use proptest::prelude::*;
use rmpv::Value;
use std::io::Write;

const ARRIVAL: EventTime = EventTime {
    secs: 1_800_000_000,
    nanos: 7,
};

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap_or_default();
    out
}

fn s(x: &str) -> Value {
    Value::from(x)
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn et(secs: u32, nanos: u32) -> Value {
    let mut d = secs.to_be_bytes().to_vec();
    d.extend(nanos.to_be_bytes());
    Value::Ext(0, d)
}

fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    decode_frame(
        Bytes::copy_from_slice(bytes),
        Encoding::MessagePack,
        ARRIVAL,
        &FrameLimits::default(),
    )
}

fn events(bytes: &[u8]) -> EventFrame {
    match decode(bytes) {
        Ok(Frame::Events(e)) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

/// (time, record) pairs of a batch, records as rmpv values.
fn pairs(ev: &EventFrame) -> Vec<(EventTime, Value)> {
    entries(&ev.batch.entries)
        .map(|e| {
            let e = e.unwrap_or_else(|err| panic!("{err}"));
            let mut r = e.record;
            (
                e.time,
                rmpv::decode::read_value(&mut r).unwrap_or(Value::Nil),
            )
        })
        .collect()
}

fn t(secs: i64, nanos: u32) -> EventTime {
    EventTime { secs, nanos }
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(p).unwrap_or_default();
        out.extend(e.finish().unwrap_or_default());
    }
    out
}

#[test]
fn a_big_forward_frame_in_64k_reads_is_scanned_once() {
    let entry = Value::Array(vec![
        et(1_700_000_000, 1),
        map(&[("message", s("hello world")), ("n", Value::from(7))]),
    ]);
    let entries_v = Value::Array(vec![entry; 40_000]);
    let frame = enc(&Value::Array(vec![s("app.log"), entries_v]));
    assert!(frame.len() > 1 << 20);
    let mut sc = FrameScanner::new(Encoding::MessagePack, FrameLimits::default());
    // After each read the bytes already seen are overwritten with 0xc1 (never valid),
    // except the last few, where a header cut by the read boundary is legitimately
    // read again: a scanner that re-read more would fail.
    let mut buf = Vec::with_capacity(frame.len());
    let mut got = None;
    for piece in frame.chunks(64 * 1024) {
        let keep = buf.len().saturating_sub(32);
        buf[..keep].iter_mut().for_each(|b| *b = 0xc1);
        buf.extend_from_slice(piece);
        if let Some(n) = sc.next_frame(&buf).unwrap_or_else(|e| panic!("{e}")) {
            got = Some(n);
        }
    }
    assert_eq!(got, Some(frame.len()));
    let ev = events(&frame);
    assert_eq!(ev.batch.count, 40_000);
}

#[test]
fn a_declared_body_is_not_looked_at_until_complete() {
    let body: Vec<u8> = enc(&Value::Array(vec![
        Value::from(1),
        map(&[("a", Value::from(1))]),
    ]));
    let mut frame = vec![0x92, 0xa1, b'x', 0xdb];
    frame.extend((body.len() as u32 * 1000).to_be_bytes());
    for _ in 0..1000 {
        frame.extend(&body);
    }
    let mut sc = FrameScanner::new(Encoding::MessagePack, FrameLimits::default());
    assert_eq!(sc.next_frame(&frame[..8]).ok(), Some(None));
    // One byte at a time: the body bytes handed in are garbage and never inspected.
    let mut buf = frame[..8].to_vec();
    for _ in 8..frame.len() - 1 {
        buf.push(0xc1);
        assert_eq!(sc.next_frame(&buf).ok(), Some(None));
    }
    assert_eq!(sc.next_frame(&frame).ok(), Some(Some(frame.len())));
    assert_eq!(events(&frame).batch.count, 1000);
}

#[test]
fn scanner_state_resets_after_each_frame() {
    let a = enc(&Value::Array(vec![
        s("t"),
        Value::from(5),
        map(&[("a", Value::from(1))]),
    ]));
    let mut stream = vec![0xc0];
    stream.extend(&a);
    stream.extend(&a);
    let mut sc = FrameScanner::new(Encoding::MessagePack, FrameLimits::default());
    let mut buf = stream.clone();
    let mut lens = Vec::new();
    while let Ok(Some(n)) = sc.next_frame(&buf) {
        lens.push(n);
        buf.drain(..n);
    }
    assert_eq!(lens, vec![1, a.len(), a.len()]);
    assert!(sc.at_boundary(&buf));
    assert!(matches!(decode(&[0xc0]), Ok(Frame::Heartbeat)));
}

#[test]
fn message_mode_replaces_zero_and_nil_time_and_refuses_nil_record() {
    let rec = map(&[("k", s("v"))]);
    for time in [Value::from(0), Value::Nil, Value::F64(0.5), et(0, 9)] {
        let ev = events(&enc(&Value::Array(vec![
            s("a.b"),
            time.clone(),
            rec.clone(),
        ])));
        assert_eq!(pairs(&ev), vec![(ARRIVAL, rec.clone())], "time {time:?}");
    }
    let ev = events(&enc(&Value::Array(vec![
        s("a.b"),
        Value::from(-1),
        rec.clone(),
    ])));
    assert_eq!(pairs(&ev), vec![(t(-1, 0), rec.clone())]);
    let nil = decode(&enc(&Value::Array(vec![
        s("a.b"),
        Value::from(5),
        Value::Nil,
    ])));
    assert!(matches!(nil, Err(DecodeError::NilRecord)), "{nil:?}");
    // A record is copied byte for byte: a map16 with 1 pair stays a map16.
    let frame = [&[0x93, 0xa1, b'x', 0x05, 0xde, 0, 1, 0xa1, b'k', 0x01][..]].concat();
    let ev = events(&frame);
    assert_eq!(
        &ev.batch.entries[..],
        &[0x92, 0x05, 0xde, 0, 1, 0xa1, b'k', 0x01]
    );
}

#[test]
fn forward_mode_skips_nil_records_and_keeps_metadata() {
    let meta = map(&[("m", Value::from(1))]);
    let entries_v = Value::Array(vec![
        Value::Array(vec![Value::from(3), Value::Nil]),
        Value::Array(vec![
            Value::Array(vec![Value::from(0), meta.clone()]),
            s("r"),
        ]),
        Value::Array(vec![Value::Array(vec![et(9, 9), meta.clone()]), s("q")]),
    ]);
    let ev = events(&enc(&Value::Array(vec![
        s("a"),
        entries_v,
        map(&[("size", Value::from(3))]),
    ])));
    assert_eq!((ev.batch.count, ev.skipped), (2, 1));
    let all: Vec<_> = entries(&ev.batch.entries)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].time, ARRIVAL);
    assert_eq!(all[0].metadata, Some(&enc(&meta)[..]));
    assert_eq!(all[1].time, t(9, 9));
    assert_eq!(all[1].record, &enc(&s("q"))[..]);
}

#[test]
fn packed_mode_passes_the_body_through_without_copying() {
    let body = [
        enc(&Value::Array(vec![
            Value::from(0),
            map(&[("a", Value::from(1))]),
        ])),
        enc(&Value::Array(vec![Value::F64(2.5), Value::from(1)])),
        vec![0xdd, 0, 0, 0, 2, 0xc7, 8, 0, 0, 0, 0, 3, 0, 0, 0, 4, 0x80],
    ]
    .concat();
    let frame = Bytes::from(enc(&Value::Array(vec![
        s("p"),
        Value::Binary(body.clone()),
        map(&[
            ("size", Value::from(3)),
            ("chunk", s("c1")),
            ("compressed", s("text")),
            ("x", Value::Nil),
        ]),
    ])));
    let Ok(Frame::Events(ev)) = decode_frame(
        frame.clone(),
        Encoding::MessagePack,
        ARRIVAL,
        &FrameLimits::default(),
    ) else {
        panic!("packed frame refused")
    };
    assert_eq!(&ev.batch.entries[..], &body[..]);
    // Zero copy: the entries point into the frame's own memory.
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(range.contains(&(ev.batch.entries.as_ptr() as usize)));
    assert_eq!(ev.chunk.as_deref(), Some(&b"c1"[..]));
    let times: Vec<_> = pairs(&ev).into_iter().map(|p| p.0).collect();
    assert_eq!(times, vec![t(0, 0), t(2, 500_000_000), t(3, 4)]);
}

#[test]
fn compressed_bodies_inflate_member_by_member() {
    let e1 = enc(&Value::Array(vec![Value::from(1), s("a")]));
    let e2 = enc(&Value::Array(vec![Value::from(2), s("b")]));
    let frame = enc(&Value::Array(vec![
        s("z"),
        Value::Binary(gzip(&[&e1, &e2])),
        map(&[("compressed", s("gzip")), ("size", Value::from(2))]),
    ]));
    let ev = events(&frame);
    assert_eq!(ev.batch.entries.to_vec(), [e1.clone(), e2.clone()].concat());
    // Exactly at the limit passes; one byte less fails.
    let exact = FrameLimits {
        max_decompressed_bytes: e1.len() + e2.len(),
        ..FrameLimits::default()
    };
    let f = || Bytes::from(frame.clone());
    assert!(decode_frame(f(), Encoding::MessagePack, ARRIVAL, &exact).is_ok());
    let under = FrameLimits {
        max_decompressed_bytes: e1.len() + e2.len() - 1,
        ..exact
    };
    let e = decode_frame(f(), Encoding::MessagePack, ARRIVAL, &under);
    assert!(matches!(e, Err(DecodeError::Inflated { .. })), "{e:?}");
    let empty = enc(&Value::Array(vec![
        s("z"),
        Value::Binary(vec![]),
        map(&[("compressed", s("gzip"))]),
    ]));
    assert!(matches!(decode(&empty), Err(DecodeError::Gzip { .. })));
}

#[test]
fn options_are_checked() {
    let msg = |opts: Value| {
        enc(&Value::Array(vec![
            s("t"),
            Value::from(1),
            Value::from(2),
            opts,
        ]))
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            map(&[("size", Value::from(2))]),
            "option \"size\" is 2 but the frame holds 1 entries",
        ),
        (map(&[("size", s("1"))]), "option \"size\" is a string"),
        (
            map(&[("chunk", Value::from(1))]),
            "option \"chunk\" is an integer, expected a string",
        ),
        (map(&[("compressed", s("zstd"))]), "\"zstd\""),
        (
            map(&[("fluent_signal", Value::from(300))]),
            "fluent_signal\" is 300",
        ),
        (Value::Array(vec![]), "options are an array"),
    ];
    for (opts, want) in cases {
        let e = decode(&msg(opts.clone()))
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "{opts:?}: {e:?} lacks {want:?}");
    }
    // Unknown keys, non-string keys: ignored.
    let opts = Value::Map(vec![
        (Value::from(1), Value::from(2)),
        (s("metadata"), map(&[])),
    ]);
    assert_eq!(events(&msg(opts)).batch.count, 1);
}

#[test]
fn non_log_signals_count_objects() {
    let objs = [
        enc(&map(&[("meta", Value::from(1))])),
        enc(&Value::Array(vec![Value::from(1)])),
        vec![0x05],
    ]
    .concat();
    let frame = enc(&Value::Array(vec![
        s("m"),
        Value::Binary(objs.clone()),
        map(&[("fluent_signal", Value::from(1))]),
    ]));
    let ev = events(&frame);
    assert_eq!((ev.batch.count, ev.batch.signal), (3, Signal::Other(1)));
    assert_eq!(&ev.batch.entries[..], &objs[..]);
    let bad = enc(&Value::Array(vec![
        s("m"),
        Value::Binary(vec![0x92, 1]),
        map(&[("fluent_signal", Value::from(2))]),
    ]));
    assert!(matches!(
        decode(&bad),
        Err(DecodeError::Payload { index: 0, .. })
    ));
}

#[test]
fn frame_shapes_are_checked() {
    let rec = map(&[]);
    let cases: Vec<(Value, &str)> = vec![
        (Value::from(5), "frame is an integer"),
        (Value::Array(vec![s("t")]), "has 1 elements"),
        (
            Value::Array(vec![s("t"), Value::from(1)]),
            "Message mode takes 3 or 4",
        ),
        (
            Value::Array(vec![
                s("t"),
                Value::from(1),
                rec.clone(),
                map(&[]),
                Value::Nil,
            ]),
            "Message mode",
        ),
        (
            Value::Array(vec![s("t"), Value::Array(vec![]), map(&[]), Value::Nil]),
            "Forward mode",
        ),
        (
            Value::Array(vec![Value::Binary(vec![0xff]), Value::from(1), rec.clone()]),
            "tag is not valid UTF-8",
        ),
        (Value::Array(vec![s("t"), s("1"), rec.clone()]), "entry 0"),
        (
            Value::Array(vec![s("t"), Value::Boolean(true), rec.clone()]),
            "time is a boolean",
        ),
        (
            Value::Array(vec![s("t"), Value::Ext(5, vec![0; 8]), rec.clone()]),
            "unknown type",
        ),
        (
            Value::Array(vec![s("t"), Value::Array(vec![Value::from(1)])]),
            "entry 0: entry is an integer",
        ),
        (
            Value::Array(vec![
                s("t"),
                Value::Array(vec![Value::Array(vec![
                    Value::from(1),
                    rec.clone(),
                    rec.clone(),
                ])]),
            ]),
            "length is not 2",
        ),
    ];
    for (v, want) in cases {
        let e = decode(&enc(&v))
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "{v}: {e:?} lacks {want:?}");
    }
    let mut two = enc(&Value::Array(vec![s("t"), Value::from(1), rec.clone()]));
    two.push(0xc0);
    assert!(matches!(
        decode(&two),
        Err(DecodeError::Trailing { extra: 1, .. })
    ));
    let e = decode(&[0xc0, 0xc0]);
    assert!(matches!(e, Err(DecodeError::Trailing { .. })));
    assert_eq!(e.err().and_then(|e| e.offset()), Some(1));
    let e = decode(&[0x93, 0xa1, b't', 0x01, 0x91, 0xc1]).err();
    assert_eq!(e.as_ref().and_then(DecodeError::offset), Some(5), "{e:?}");
    // A bin tag holding UTF-8 is accepted, as Fluentd does.
    let ev = events(&enc(&Value::Array(vec![
        Value::Binary(b"bin.tag".to_vec()),
        Value::from(1),
        rec,
    ])));
    assert_eq!(ev.batch.tag, "bin.tag");
}

#[test]
fn record_depth_is_limited_in_every_mode() {
    let limits = FrameLimits {
        max_depth: 3,
        ..FrameLimits::default()
    };
    let nest = |d: usize| (0..d).fold(Value::from(1), |v, _| Value::Array(vec![v]));
    let run = |frame: Value| {
        decode_frame(
            Bytes::from(enc(&frame)),
            Encoding::MessagePack,
            ARRIVAL,
            &limits,
        )
    };
    for (d, ok) in [(3, true), (4, false)] {
        let msg = Value::Array(vec![s("t"), Value::from(1), nest(d)]);
        let fwd = Value::Array(vec![
            s("t"),
            Value::Array(vec![Value::Array(vec![Value::from(1), nest(d)])]),
        ]);
        let packed = Value::Array(vec![
            s("t"),
            Value::Binary(enc(&Value::Array(vec![Value::from(1), nest(d)]))),
        ]);
        for f in [msg, fwd, packed] {
            assert_eq!(run(f.clone()).is_ok(), ok, "depth {d}: {f}");
        }
    }
}

#[test]
fn acks_use_the_shortest_header() {
    for (n, head) in [
        (0, vec![0xa0]),
        (31, vec![0xbf]),
        (32, vec![0xd9, 32]),
        (256, vec![0xda, 1, 0]),
        (65536, vec![0xdb, 0, 1, 0, 0]),
    ] {
        let chunk = vec![b'c'; n];
        let ack = encode_ack(&chunk, Encoding::MessagePack);
        assert_eq!(
            ack,
            [&[0x81, 0xa3, b'a', b'c', b'k'][..], &head, &chunk].concat()
        );
        let v = rmpv::decode::read_value(&mut &ack[..]).unwrap_or(Value::Nil);
        assert_eq!(v, map(&[("ack", s(&String::from_utf8_lossy(&chunk)))]));
    }
    assert_eq!(
        encode_ack(b"a\"b\n", Encoding::Json),
        b"{\"ack\":\"a\\\"b\\n\"}".to_vec()
    );
}

fn json_frames(text: &str) -> (Vec<Result<Frame, DecodeError>>, usize) {
    let limits = FrameLimits::default();
    let mut sc = FrameScanner::new(Encoding::Json, limits);
    let mut buf = text.as_bytes().to_vec();
    let mut out = Vec::new();
    loop {
        match sc.next_frame(&buf) {
            Ok(Some(n)) => {
                let f: Vec<u8> = buf.drain(..n).collect();
                out.push(decode_frame(
                    Bytes::from(f),
                    Encoding::Json,
                    ARRIVAL,
                    &limits,
                ));
            }
            Ok(None) => break,
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    let left = if sc.at_boundary(&buf) { 0 } else { buf.len() };
    (out, left)
}

#[test]
fn json_frames_are_found_and_converted() {
    let text = "[\"a.b\", 0, {\"s\": \"]}\\\"[{\", \"n\": -3, \"f\": 1.5, \"u\": 18446744073709551615}, {\"chunk\": \"c\"}]\n \
                [\"a.b\", [[1700000000, {\"x\": [true, null]}], [1.25, null]]]\n";
    let (frames, left) = json_frames(text);
    assert_eq!(left, 0);
    let evs: Vec<EventFrame> = frames
        .into_iter()
        .map(|f| match f {
            Ok(Frame::Events(e)) => e,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].chunk.as_deref(), Some(&b"c"[..]));
    let rec = map(&[
        ("s", s("]}\"[{")),
        ("n", Value::from(-3)),
        ("f", Value::F64(1.5)),
        ("u", Value::from(u64::MAX)),
    ]);
    let got = pairs(&evs[0]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, ARRIVAL);
    // Keys keep the client's order.
    assert_eq!(got[0].1, rec);
    assert_eq!((evs[1].batch.count, evs[1].skipped), (1, 1));
    assert_eq!(
        pairs(&evs[1]),
        vec![(
            t(1_700_000_000, 0),
            map(&[("x", Value::Array(vec![Value::Boolean(true), Value::Nil]))])
        )]
    );
}

#[test]
fn json_errors() {
    for (text, want) in [
        ("[\"t\", \"packed\"]", "PackedForward is MessagePack only"),
        ("{\"tag\": 1}", "frame is an object"),
        ("[\"t\", 1, {}] x", "starts with byte 0x78"),
        ("[\"t\", 1, null]", "record is nil"),
        ("[\"t\", \"1\" ]", "PackedForward"),
        ("[\"t\", [1], {}]", "entry 0"),
        ("[1, 1, {}]", "tag is a number"),
        ("[\"t\", 1, {}, {\"compressed\": \"gzip\"}]", "\"gzip\""),
        ("[\"t\", 1 2]", "not valid JSON"),
    ] {
        let (frames, _) = json_frames(text);
        let e = frames
            .into_iter()
            .find_map(Result::err)
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "{text}: {e:?} lacks {want:?}");
    }
    let small = FrameLimits {
        max_frame_bytes: 16,
        ..FrameLimits::default()
    };
    let mut sc = FrameScanner::new(Encoding::Json, small);
    assert!(matches!(
        sc.next_frame(b"[\"tag.that.is.long\""),
        Err(DecodeError::JsonTooLarge { .. })
    ));
    let mut sc = FrameScanner::new(Encoding::Json, FrameLimits::default());
    assert!(matches!(
        sc.next_frame(&[b'['; 100]),
        Err(DecodeError::JsonTooDeep { .. })
    ));
}

fn arb_record() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        "[a-z\\]\\[\"]{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,5}", inner), 0..6).prop_map(|kv| Value::Map(
                kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
            )),
        ]
    })
}

fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    let entry =
        (0u32..u32::MAX, arb_record()).prop_map(|(t, r)| Value::Array(vec![Value::from(t), r]));
    let entries_v = proptest::collection::vec(entry, 0..8);
    (entries_v, 0..3u8, arb_record()).prop_map(|(es, mode, rec)| {
        let rec = Value::Array(vec![rec]);
        let v = match mode {
            0 => Value::Array(vec![s("t.f"), Value::Array(es)]),
            1 => Value::Array(vec![
                s("t.p"),
                Value::Binary(es.iter().flat_map(enc).collect()),
            ]),
            _ => Value::Array(vec![s("t.m"), Value::from(3), rec]),
        };
        enc(&v)
    })
}

/// Frame lengths and decoded entries, or the first error's text.
fn run_stream(data: &[u8], cuts: &[usize]) -> Vec<Result<(usize, Vec<u8>), String>> {
    let limits = FrameLimits::default();
    let mut sc = FrameScanner::new(Encoding::MessagePack, limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let cut = cut.max(start);
        buf.extend_from_slice(&data[start..cut]);
        start = cut;
        loop {
            match sc.next_frame(&buf) {
                Ok(Some(n)) => {
                    let f: Vec<u8> = buf.drain(..n).collect();
                    out.push(
                        match decode_frame(Bytes::from(f), Encoding::MessagePack, ARRIVAL, &limits)
                        {
                            Ok(Frame::Events(e)) => Ok((n, e.batch.entries.to_vec())),
                            Ok(Frame::Heartbeat) => Ok((n, vec![])),
                            Err(e) => Err(e.to_string()),
                        },
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), json in any::<bool>()) {
        let enc = if json { Encoding::Json } else { Encoding::MessagePack };
        let limits = FrameLimits { max_frame_bytes: 256, max_decompressed_bytes: 1024, max_depth: 8 };
        let mut sc = FrameScanner::new(enc, limits);
        let mut buf = bytes.clone();
        while let Ok(Some(n)) = sc.next_frame(&buf) {
            let f: Vec<u8> = buf.drain(..n.min(buf.len())).collect();
            let _ = decode_frame(Bytes::from(f), enc, ARRIVAL, &limits);
        }
        let _ = decode_frame(Bytes::from(bytes.clone()), enc, ARRIVAL, &limits);
        let _ = entries(&bytes).count();
    }

    #[test]
    fn splitting_a_stream_anywhere_gives_the_same_frames(
        frames in proptest::collection::vec(arb_frame(), 1..4),
        splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let data: Vec<u8> = frames.concat();
        let whole = run_stream(&data, &[]);
        prop_assert_eq!(whole.len(), frames.len());
        for (w, f) in whole.iter().zip(&frames) {
            prop_assert!(matches!(w, Ok((n, _)) if *n == f.len()), "{:?}", w);
        }
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(run_stream(&data, &cuts), whole);
    }
}
