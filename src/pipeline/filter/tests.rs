//! Each filter on Fluentd's documented examples and templates' edge cases, the
//! untouched fast path; re-tags, sampling and robustness in `routing`; config
//! errors, warnings and `route`'s explanation in `config`.

use super::record::json_to_msgpack;
use super::*;
use crate::config::Config;
use serde_json::{Value, json};

const HOST: &str = "db001.internal.example.com";
const T0: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 5,
};

fn config(text: &str) -> Config {
    match Config::parse(text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("config should parse:\n{e}\n{text}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, "t.toml") {
        Ok(_) => panic!("config should not parse:\n{text}"),
        Err(e) => e.0,
    }
}

fn chain(filters: &str) -> FilterChain {
    let text = format!(
        "{filters}\n[output.s]\ntype = \"null\"\n[[match]]\npattern = \"**\"\noutputs = [\"s\"]\n"
    );
    FilterChain::with_hostname(&config(&text), HOST)
}

fn batch(tag: &str, records: &[Value]) -> Batch {
    let mut entries = Vec::new();
    for r in records {
        entries.push(0x92);
        T0.encode(&mut entries);
        json_to_msgpack(r, &mut entries);
    }
    Batch {
        tag: tag.to_string(),
        entries: Bytes::from(entries),
        count: records.len() as u32,
        signal: Signal::Logs,
    }
}

fn records(b: &Batch) -> Vec<Value> {
    let got: Vec<Value> = entries(&b.entries)
        .map(|e| {
            let e = e.expect("entry");
            let mut out = Vec::new();
            crate::output::json::write_json(e.record, &mut out).expect("json");
            serde_json::from_slice(&out).expect("valid json")
        })
        .collect();
    assert_eq!(got.len(), b.count as usize, "count matches the entries");
    got
}

/// Runs one batch; returns every resulting batch as (tag, records).
fn run(c: &FilterChain, tag: &str, input: &[Value]) -> (Vec<(String, Vec<Value>)>, Applied) {
    let mut applied = c.apply_at(batch(tag, input), Instant::now());
    let out = applied
        .batches
        .drain(..)
        .map(|b| (b.tag.clone(), records(&b)))
        .collect();
    (out, applied)
}

fn one(c: &FilterChain, tag: &str, input: Value) -> Value {
    let (mut out, _) = run(c, tag, &[input]);
    assert_eq!(out.len(), 1, "{out:?}");
    let (_, mut recs) = out.remove(0);
    assert_eq!(recs.len(), 1);
    recs.remove(0)
}

// ---- the fast path -------------------------------------------------------------

#[test]
fn unmatched_tag_returns_the_identical_bytes() {
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"td.**\"\nrecord = { a = \"b\" }\n",
    );
    let b = batch("other.tag", &[json!({"x": 1}), json!({"y": 2})]);
    let (ptr, len) = (b.entries.as_ptr(), b.entries.len());
    let applied = c.apply(b);
    assert_eq!(applied.batches.len(), 1);
    let out = &applied.batches[0];
    assert_eq!((out.entries.as_ptr(), out.entries.len()), (ptr, len));
    assert_eq!(out.tag, "other.tag");
    assert_eq!(out.count, 2);
    // The filter never saw the batch.
    assert_eq!(c.filters()[0].stats.snapshot(), Counts::default());
}

#[test]
fn a_filter_that_changes_nothing_keeps_the_bytes_too() {
    let c = chain(
        "[[filter]]\ntype = \"grep\"\npattern = \"**\"\nregexp = [{ key = \"m\", pattern = \"a\" }]\n",
    );
    let b = batch("t", &[json!({"m": "a"}), json!({"m": "ab"})]);
    let ptr = b.entries.as_ptr();
    let applied = c.apply(b);
    assert_eq!(applied.batches[0].entries.as_ptr(), ptr);
    assert_eq!(c.filters()[0].stats.snapshot().matched, 2);
}

#[test]
fn signals_other_than_logs_pass_untouched() {
    let c = chain("[[filter]]\ntype = \"sample\"\npattern = \"**\"\nrate = 1000\n");
    let mut b = batch("t", &[json!({"m": 1}), json!({"m": 2})]);
    b.signal = Signal::Other(1);
    let ptr = b.entries.as_ptr();
    let applied = c.apply(b);
    assert_eq!(applied.batches[0].entries.as_ptr(), ptr);
    assert_eq!(applied.dropped, 0);
}

#[test]
fn time_bytes_are_kept_exactly() {
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nrecord = { k = \"v\" }\n",
    );
    // Integer time, float time, and Fluent Bit's [time, {metadata}] form.
    let times: [&[u8]; 3] = [
        &[0xce, 0x65, 0x53, 0xf1, 0x00],
        &[0xcb, 0x41, 0xd9, 0x54, 0xfc, 0x40, 0x00, 0x00, 0x00],
        &[
            0x92, 0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 1, 0x81, 0xa1, b'm', 0x01,
        ],
    ];
    let mut entries_in = Vec::new();
    for t in times {
        entries_in.push(0x92);
        entries_in.extend_from_slice(t);
        json_to_msgpack(&json!({"a": 1}), &mut entries_in);
    }
    let b = Batch {
        tag: "t".into(),
        entries: Bytes::from(entries_in),
        count: 3,
        signal: Signal::Logs,
    };
    let out = c.apply(b).batches.remove(0);
    let got: Vec<Vec<u8>> = entries(&out.entries)
        .map(|e| {
            let e = e.expect("entry");
            time_bytes(e.raw, e.record).to_vec()
        })
        .collect();
    assert_eq!(got, times.map(<[u8]>::to_vec));
    assert_eq!(records(&out), vec![json!({"a": 1, "k": "v"}); 3]);
}

// ---- record_transformer ----------------------------------------------------------

#[test]
fn record_transformer_fluentd_examples() {
    // docs.fluentd.org filter/record_transformer, first example.
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"foo.bar\"\nrecord = { hostname = \"${hostname}\", tag = \"${tag}\" }\n",
    );
    assert_eq!(
        one(&c, "foo.bar", json!({"message": "hello world!"})),
        json!({"message": "hello world!", "hostname": HOST, "tag": "foo.bar"})
    );
    // Modifying an existing field.
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"foo.bar\"\nrecord = { message = \"yay, ${record[\\\"message\\\"]}\" }\n",
    );
    assert_eq!(
        one(&c, "foo.bar", json!({"message": "hello world!"})),
        json!({"message": "yay, hello world!"})
    );
    // The second tag part as a field.
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"web.*\"\nrecord = { service_name = \"${tag_parts[1]}\" }\n",
    );
    assert_eq!(
        one(&c, "web.auth", json!({"user_id": 1, "status": "ok"})),
        json!({"user_id": 1, "status": "ok", "service_name": "auth"})
    );
}

#[test]
fn tag_placeholders_with_negative_and_out_of_range_indices() {
    let c = chain(
        r#"[[filter]]
type = "record_transformer"
pattern = "**"
record = { p0 = "${tag_parts[0]}", pl = "${tag_parts[-1]}", p9 = "<${tag_parts[9]}>", m9 = "<${tag_parts[-9]}>", pre1 = "${tag_prefix[1]}", prel = "${tag_prefix[-1]}", pre2 = "${tag_prefix[-2]}", suf1 = "${tag_suffix[1]}", sufl = "${tag_suffix[-1]}", mixed = "$5 ${tag}$" }
"#,
    );
    assert_eq!(
        one(&c, "debug.my.app", json!({})),
        json!({
            "p0": "debug", "pl": "app", "p9": "<>", "m9": "<>",
            "pre1": "debug.my", "prel": "debug.my.app", "pre2": "debug.my",
            "suf1": "my.app", "sufl": "app", "mixed": "$5 debug.my.app$"
        })
    );
}

#[test]
fn record_placeholders_keep_types_alone_and_stringify_inside_text() {
    let c = chain(
        r#"[[filter]]
type = "record_transformer"
pattern = "**"
record = { n2 = '${record["n"]}', nested = '${record["a"]["b"]}', missing = '${record["nope"]}', text = 'n=${record["n"]} f=${record["f"]} a=${record["a"]} none=${record["nope"]}', when = "${time}", int = 7, yes = true }
"#,
    );
    assert_eq!(
        one(&c, "t", json!({"n": 10, "f": 1.5, "a": {"b": [1, "x"]}})),
        json!({
            "n": 10, "f": 1.5, "a": {"b": [1, "x"]},
            "n2": 10, "nested": [1, "x"], "missing": null,
            "text": "n=10 f=1.5 a={\"b\":[1,\"x\"]} none=",
            "when": "2023-11-14 22:13:20 +0000", "int": 7, "yes": true
        })
    );
}

#[test]
fn remove_keep_rename_and_renew() {
    let c = chain(
        r#"[[filter]]
type = "record_transformer"
pattern = "**"
rename_keys = { msg = "message", lvl = "level" }
remove_keys = ["secret", "level"]
record = { copied = '${record["msg"]}' }
"#,
    );
    assert_eq!(
        one(
            &c,
            "t",
            json!({"msg": "hi", "lvl": "info", "secret": "x", "other": 1})
        ),
        json!({"message": "hi", "other": 1, "copied": "hi"})
    );
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nkeep_keys = \"a,c\"\nrecord = { d = \"${tag}\" }\n",
    );
    assert_eq!(
        one(&c, "t", json!({"a": 1, "b": 2, "c": 3})),
        json!({"a": 1, "c": 3, "d": "t"})
    );
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nrenew_record = true\nrecord = { only = 1 }\n",
    );
    assert_eq!(one(&c, "t", json!({"a": 1})), json!({"only": 1}));
    // Renaming onto an existing key replaces it, once.
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nrename_keys = { a = \"b\" }\n",
    );
    assert_eq!(one(&c, "t", json!({"a": 1, "b": 2})), json!({"b": 1}));
}

#[test]
fn non_map_records_pass_unchanged_and_are_counted() {
    let c = chain(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nrecord = { a = \"b\" }\n",
    );
    let (out, _) = run(&c, "t", &[json!("just a string"), json!({"x": 1})]);
    assert_eq!(
        out[0].1,
        vec![json!("just a string"), json!({"x": 1, "a": "b"})]
    );
    let s = c.filters()[0].stats.snapshot();
    assert_eq!((s.matched, s.non_map), (2, 1));
}

// ---- grep ------------------------------------------------------------------------

#[test]
fn grep_fluentd_example() {
    let c = chain(
        r#"[[filter]]
type = "grep"
pattern = "foo.bar"
regexp = [{ key = "message", pattern = "/cool/" }, { key = "hostname", pattern = '^web\d+\.example\.com$' }]
exclude = [{ key = "message", pattern = "uncool" }]
"#,
    );
    let kept = [
        json!({"message": "It's cool outside today", "hostname": "web001.example.com"}),
        json!({"message": "That's not cool", "hostname": "web1337.example.com"}),
    ];
    let dropped = [
        json!({"message": "I am cool but you are uncool", "hostname": "db001.example.com"}),
        json!({"hostname": "web001.example.com"}),
        json!({"message": "It's cool outside today"}),
    ];
    let input: Vec<Value> = dropped.iter().chain(&kept).cloned().collect();
    let (out, applied) = run(&c, "foo.bar", &input);
    assert_eq!(out, vec![("foo.bar".to_string(), kept.to_vec())]);
    assert_eq!(applied.dropped, 3);
    let s = c.filters()[0].stats.snapshot();
    assert_eq!((s.matched, s.dropped), (5, 3));
}

#[test]
fn grep_slashes_and_case_insensitive_flag() {
    let c = chain(
        "[[filter]]\ntype = \"grep\"\npattern = \"**\"\nregexp = [{ key = \"m\", pattern = \"/^COOL/i\" }]\n",
    );
    let (out, _) = run(
        &c,
        "t",
        &[
            json!({"m": "cool!"}),
            json!({"m": "not cool"}),
            json!({"m": "/^COOL/i"}),
        ],
    );
    assert_eq!(out[0].1, vec![json!({"m": "cool!"})]);
}

#[test]
fn grep_and_or_groups() {
    // <or> of regexps: kept when any matches.
    let c = chain(
        r#"[[filter]]
type = "grep"
pattern = "**"
or = { regexp = [{ key = "price", pattern = '[1-9]\d*' }, { key = "item_name", pattern = "^book_" }] }
"#,
    );
    let (out, _) = run(
        &c,
        "t",
        &[
            json!({"price": 0, "item_name": "pen"}),
            json!({"price": 5, "item_name": "pen"}),
            json!({"price": 0, "item_name": "book_a"}),
        ],
    );
    assert_eq!(
        out[0].1,
        vec![
            json!({"price": 5, "item_name": "pen"}),
            json!({"price": 0, "item_name": "book_a"})
        ]
    );
    // <and> of excludes: dropped only when all match.
    let c = chain(
        r#"[[filter]]
type = "grep"
pattern = "**"
and = { exclude = [{ key = "level", pattern = "^debug$" }, { key = "$.k8s.ns", pattern = "^kube-" }] }
"#,
    );
    let (out, _) = run(
        &c,
        "t",
        &[
            json!({"level": "debug", "k8s": {"ns": "kube-system"}}),
            json!({"level": "debug", "k8s": {"ns": "app"}}),
            json!({"level": "info", "k8s": {"ns": "kube-system"}}),
        ],
    );
    assert_eq!(
        out[0].1,
        vec![
            json!({"level": "debug", "k8s": {"ns": "app"}}),
            json!({"level": "info", "k8s": {"ns": "kube-system"}})
        ]
    );
}

// ---- parser ----------------------------------------------------------------------

#[test]
fn parser_json_reserve_data_and_remove_key_name_field() {
    // docs.fluentd.org filter/parser, reserve_data.
    let input = json!({"key": "value", "log": "{\"user\":1,\"num\":2}"});
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"log\"\nformat = \"json\"\nreserve_data = true\n",
    );
    assert_eq!(
        one(&c, "t", input.clone()),
        json!({"key": "value", "log": "{\"user\":1,\"num\":2}", "user": 1, "num": 2})
    );
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"log\"\nformat = \"json\"\n",
    );
    assert_eq!(one(&c, "t", input.clone()), json!({"user": 1, "num": 2}));
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"log\"\nformat = \"json\"\nreserve_data = true\nremove_key_name_field = true\n",
    );
    assert_eq!(
        one(&c, "t", input.clone()),
        json!({"key": "value", "user": 1, "num": 2})
    );
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"log\"\nformat = \"json\"\nhash_value_field = \"parsed\"\n",
    );
    assert_eq!(
        one(&c, "t", input),
        json!({"parsed": {"user": 1, "num": 2}})
    );
}

#[test]
fn parser_keeps_json_key_order() {
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"m\"\nformat = \"json\"\n",
    );
    let out = c
        .apply(batch("t", &[json!({"m": "{\"z\":1,\"a\":2,\"z\":3}"})]))
        .batches
        .remove(0);
    let e = entries(&out.entries).next().expect("one").expect("ok");
    let mut j = Vec::new();
    crate::output::json::write_json(e.record, &mut j).expect("json");
    assert_eq!(String::from_utf8_lossy(&j), r#"{"z":3,"a":2}"#);
}

#[test]
fn parser_regexp_apache_example() {
    let c = chain(
        r#"[[filter]]
type = "parser"
pattern = "**"
key_name = "log"
format = "regexp"
expression = '/^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)$/'
"#,
    );
    assert_eq!(
        one(
            &c,
            "t",
            json!({"log": "192.168.0.1 - - [05/Feb/2018:12:00:00 +0900] \"GET / HTTP/1.1\" 200 777"})
        ),
        json!({"host": "192.168.0.1", "user": "-", "time": "05/Feb/2018:12:00:00 +0900", "method": "GET", "path": "/", "code": "200", "size": "777"})
    );
}

#[test]
fn parser_key_value() {
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"m\"\nformat = \"kv\"\nreserve_data = true\n",
    );
    assert_eq!(
        one(
            &c,
            "t",
            json!({"m": "level=info  msg=\"hello \\\"you\\\" there\" junk count=3", "x": 1})
        ),
        json!({"m": "level=info  msg=\"hello \\\"you\\\" there\" junk count=3", "x": 1, "level": "info", "msg": "hello \"you\" there", "count": "3"})
    );
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"m\"\nformat = \"kv\"\ndelimiter = \";\"\nseparator = \":\"\n",
    );
    assert_eq!(
        one(&c, "t", json!({"m": "a:1;b: two"})),
        json!({"a": "1", "b": "two"})
    );
}

#[test]
fn parser_failures_keep_the_record_and_count() {
    let c = chain(
        "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"log\"\nformat = \"json\"\n",
    );
    let input = [
        json!({"log": "not json"}),
        json!({"other": 1}),
        json!({"log": 5}),
        json!({"log": "[1,2]"}),
        json!({"log": "{\"ok\":true}"}),
    ];
    let (out, applied) = run(&c, "t", &input);
    assert_eq!(
        out[0].1,
        vec![
            json!({"log": "not json"}),
            json!({"other": 1}),
            json!({"log": 5}),
            json!({"log": "[1,2]"}),
            json!({"ok": true})
        ]
    );
    assert_eq!(applied.dropped, 0);
    assert_eq!(c.filters()[0].stats.snapshot().failed, 4);
}

#[test]
fn many_set_keys_in_order() {
    let sets: Vec<String> = (0..12)
        .map(|i| format!("k{i:02} = '${{record[\"n\"]}}-{i}'"))
        .collect();
    let c = chain(&format!(
        "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nrecord = {{ {} }}\n",
        sets.join(", ")
    ));
    let mut want = serde_json::Map::new();
    want.insert("n".into(), json!(1));
    for i in 0..12 {
        want.insert(format!("k{i:02}"), json!(format!("1-{i}")));
    }
    assert_eq!(one(&c, "t", json!({"n": 1})), Value::Object(want));
}

#[test]
fn str_value_owned_matches_the_writer_at_every_width() {
    for n in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536] {
        let s = "x".repeat(n);
        let mut want = Vec::new();
        crate::msgpack::write::str(&mut want, &s);
        assert_eq!(record::str_value_owned(s), want, "length {n}");
    }
}

mod config;
mod routing;
