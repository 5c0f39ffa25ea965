//! Each filter on Fluentd's documented examples, templates' edge cases, the
//! untouched fast path, re-tag loops, `route`'s explanation, config errors and
//! warnings.

use super::record::json_to_msgpack;
use super::*;
use crate::config::Config;
use serde_json::{Value, json};
use std::time::Duration;

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

// ---- rewrite_tag -----------------------------------------------------------------

const REWRITE: &str = r#"[[filter]]
type = "rewrite_tag"
pattern = "td.apache.access"
rules = [
  { key = "path", pattern = '\.(gif|jpe?g|png|pdf|zip)$', tag = "clear" },
  { key = "status", pattern = "^200$", tag = "clear", invert = true },
  { key = "domain", pattern = '^maps\.example\.com$', tag = "site.ExampleMaps" },
  { key = "domain", pattern = '^(mail)\.(example)\.com$', tag = "site.$2$1" },
  { key = "domain", pattern = ".+", tag = "site.unmatched.${tag_parts[1]}" },
]
"#;

#[test]
fn rewrite_tag_fluentd_example_first_rule_wins() {
    let c = chain(REWRITE);
    let input = [
        json!({"path": "/a.png", "status": "200", "domain": "maps.example.com"}),
        json!({"path": "/", "status": "500", "domain": "maps.example.com"}),
        json!({"path": "/", "status": "200", "domain": "maps.example.com"}),
        json!({"path": "/", "status": "200", "domain": "mail.example.com"}),
        json!({"path": "/", "status": "200", "domain": "other.org"}),
        json!({"path": "/", "status": "200"}),
    ];
    let (out, _) = run(&c, "td.apache.access", &input);
    let tags: Vec<(&str, usize)> = out.iter().map(|(t, r)| (t.as_str(), r.len())).collect();
    assert_eq!(
        tags,
        [
            ("td.apache.access", 1),
            ("clear", 2),
            ("site.ExampleMaps", 1),
            ("site.examplemail", 1),
            ("site.unmatched.apache", 1),
        ]
    );
    // No rule applies to the record without a domain: it keeps its tag.
    assert_eq!(out[0].1, vec![input[5].clone()]);
    assert_eq!(c.filters()[0].stats.snapshot().retagged, 5);
}

#[test]
fn rewritten_events_run_the_chain_again_from_the_top() {
    let c = chain(
        r#"[[filter]]
type = "record_transformer"
pattern = "alert.**"
record = { routed = "${tag}" }
[[filter]]
type = "rewrite_tag"
pattern = "app.*"
rules = [{ key = "level", pattern = "^(error|fatal)$", tag = "alert.$1.${tag_parts[1]}" }]
[[filter]]
type = "record_transformer"
pattern = "app.*"
record = { seen_by_app_chain = true }
"#,
    );
    let (out, _) = run(
        &c,
        "app.web",
        &[json!({"level": "info"}), json!({"level": "error"})],
    );
    assert_eq!(
        out,
        vec![
            (
                "app.web".to_string(),
                vec![json!({"level": "info", "seen_by_app_chain": true})]
            ),
            (
                "alert.error.web".to_string(),
                vec![json!({"level": "error", "routed": "alert.error.web"})]
            ),
        ]
    );
}

#[test]
fn keep_copies_and_drop_unmatched() {
    let c = chain(
        "[[filter]]\ntype = \"rewrite_tag\"\npattern = \"a\"\ndrop_unmatched = true\nrules = [{ key = \"k\", pattern = \"x\", tag = \"b\", keep = true }]\n",
    );
    let (out, applied) = run(&c, "a", &[json!({"k": "x"}), json!({"k": "y"})]);
    assert_eq!(
        out,
        vec![
            ("a".to_string(), vec![json!({"k": "x"})]),
            ("b".to_string(), vec![json!({"k": "x"})])
        ]
    );
    assert_eq!(applied.dropped, 1);
}

#[test]
fn rewrite_loops_stop_and_keep_the_events() {
    let c = chain(
        r#"[[filter]]
type = "rewrite_tag"
pattern = "ping pong"
rules = [{ key = "k", pattern = ".", tag = "${tag}" }]
[[filter]]
type = "rewrite_tag"
pattern = "a"
rules = [{ key = "k", pattern = ".", tag = "b" }]
[[filter]]
type = "rewrite_tag"
pattern = "b"
rules = [{ key = "k", pattern = ".", tag = "a" }]
"#,
    );
    let (out, applied) = run(&c, "a", &[json!({"k": 1}), json!({"k": 2})]);
    // a -> b -> a -> b -> a, then the fifth re-tag is refused: the events stay as `a`.
    assert_eq!(
        out,
        vec![("a".to_string(), vec![json!({"k": 1}), json!({"k": 2})])]
    );
    assert_eq!(applied.loops_stopped, 2);
    // A rule re-tagging to the same tag stops too.
    let (out, applied) = run(&c, "ping", &[json!({"k": 1})]);
    assert_eq!(out, vec![("ping".to_string(), vec![json!({"k": 1})])]);
    assert_eq!(applied.loops_stopped, 1);
}

// ---- sample / throttle -----------------------------------------------------------

#[test]
fn sample_keeps_one_in_n_across_batches() {
    let c = chain("[[filter]]\ntype = \"sample\"\npattern = \"**\"\nrate = 3\n");
    let input: Vec<Value> = (0..7).map(|i| json!({"i": i})).collect();
    let (out, applied) = run(&c, "t", &input);
    assert_eq!(
        out[0].1,
        vec![json!({"i": 0}), json!({"i": 3}), json!({"i": 6})]
    );
    assert_eq!(applied.dropped, 4);
    let (out, _) = run(&c, "t", &input[..3]);
    // The count goes on: events 7 and 8 are dropped, 9 kept.
    assert_eq!(out[0].1, vec![json!({"i": 2})]);
}

#[test]
fn throttle_per_window_and_group() {
    let c = chain(
        "[[filter]]\ntype = \"throttle\"\npattern = \"**\"\nrate_limit = 2\ninterval = \"10s\"\ngroup_key = \"dev\"\n",
    );
    let t0 = Instant::now();
    let input = [
        json!({"dev": "a", "n": 1}),
        json!({"dev": "a", "n": 2}),
        json!({"dev": "a", "n": 3}),
        json!({"dev": "b", "n": 4}),
    ];
    let out = c.apply_at(batch("t", &input), t0);
    assert_eq!(
        records(&out.batches[0]),
        vec![input[0].clone(), input[1].clone(), input[3].clone()]
    );
    assert_eq!(out.dropped, 1);
    // Same window: group a is spent, b has one left.
    let out = c.apply_at(batch("t", &input), t0 + Duration::from_secs(9));
    assert_eq!(records(&out.batches[0]), vec![input[3].clone()]);
    // Next window: budgets reset.
    let out = c.apply_at(batch("t", &input), t0 + Duration::from_secs(10));
    assert_eq!(out.batches[0].count, 3);
    assert_eq!(c.filters()[0].stats.snapshot().dropped, 1 + 3 + 1);
}

// ---- config ------------------------------------------------------------------------

#[test]
fn filter_config_errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[[filter]]\ntype = \"grep\"\npattern = \"**\"\nregexp = [{ key = \"m\", pattern = \"a(b\" }]\n",
            "t.toml:4:34: filter[1].regexp[1].pattern: bad regex \"a(b\": unclosed group",
        ),
        (
            "[[filter]]\ntype = \"grepp\"\npattern = \"**\"\n",
            "t.toml:2:8: filter[1].type: unknown filter type \"grepp\" (expected one of: record_transformer, grep, parser, rewrite_tag, sample, throttle)",
        ),
        (
            "[[filter]]\ntype = \"sample\"\npattern = \"**\"\nrate = 2\nrat = 3\n",
            "t.toml:5:1: filter[1].rat: unknown key `rat` in [[filter]] #1 (did you mean `rate`?), expected one of: type, pattern, rate",
        ),
        (
            "[[filter]]\ntype = \"record_transformer\"\npattern = \"**\"\nrecord = { a = \"${tags}\" }\n",
            "t.toml:4:16: filter[1].record.a: unknown placeholder `${tags}` (expected one of: ${tag}, ${tag_parts[N]}, ${tag_prefix[N]}, ${tag_suffix[N]}, ${hostname}, ${time}, ${record[\"key\"]})",
        ),
        (
            "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"m\"\nformat = \"xml\"\n",
            "t.toml:5:10: filter[1].format: unknown format \"xml\" (expected one of: json, kv, regexp)",
        ),
        (
            "[[filter]]\ntype = \"parser\"\npattern = \"**\"\nkey_name = \"m\"\nformat = \"regexp\"\nexpression = \"^.*$\"\n",
            "t.toml:6:14: filter[1].expression: regex has no named captures (expected e.g. \"^(?<host>\\\\S+) (?<message>.*)$\")",
        ),
        (
            "[[filter]]\ntype = \"throttle\"\npattern = \"a.{b\"\nrate_limit = 0\n",
            "t.toml:3:11: filter[1].pattern: bad tag pattern 'a.{b': in `a.{b`: `{` without `}` (no spaces inside `{a,b}`)",
        ),
        (
            "[[filter]]\ntype = \"rewrite_tag\"\npattern = \"**\"\nrules = [{ key = \"$.a.\", pattern = \"x\", tag = \"n.${record[\\\"k\\\"]}\" }]\n",
            "t.toml:4:18: filter[1].rules[1].key: bad record key \"$.a.\": empty part (expected `name`, `$.a.b` or `$['a']['b']`)",
        ),
        (
            "[filter]\ntype = \"grep\"\n",
            "t.toml:1:1: filter: write `[[filter]]` (an array of tables), not `[filter]` or `filter = ...`",
        ),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert_eq!(
            got.first().map(String::as_str),
            Some(*want),
            "{text}\n{got:#?}"
        );
    }
    // All problems at once, in file order.
    let got = errors(
        "[[filter]]\ntype = \"throttle\"\npattern = \"**\"\nrate_limit = 0\ninterval = \"0s\"\n[[filter]]\ntype = \"rewrite_tag\"\npattern = \"**\"\nrules = [{ key = \"k\", pattern = \"x\", tag = \"n.${record[\\\"k\\\"]}\" }]\n",
    );
    assert_eq!(
        got,
        [
            "t.toml:4:14: filter[1].rate_limit: 0 is out of range (expected 1 to 1099511627776)",
            "t.toml:5:12: filter[1].interval: must be above 0 (expected e.g. \"1s\")",
            "t.toml:9:44: filter[2].rules[1].tag: a new tag may use $1-style captures, ${tag}, ${tag_parts[N]}, ${tag_prefix[N]}, ${tag_suffix[N]} and ${hostname} only",
        ]
    );
}

#[test]
fn filters_keep_file_order_and_lines() {
    let c = config(
        "[[filter]]\ntype = \"sample\"\npattern = \"a\"\nrate = 2\n\n[[filter]]\ntype = \"grep\"\npattern = \"b\"\nexclude = [{ key = \"k\", pattern = \"x\" }]\n",
    );
    let got: Vec<(usize, usize, &str)> = c
        .filters
        .iter()
        .map(|f| (f.index, f.line, f.kind.name()))
        .collect();
    assert_eq!(got, [(1, 1, "sample"), (2, 6, "grep")]);
}

#[test]
fn warnings_for_shadowed_matches_and_unreachable_filters() {
    let c = config(
        r#"[output.a]
type = "null"
[[filter]]
type = "sample"
pattern = "td.*.*"
rate = 2
[[filter]]
type = "sample"
pattern = "debug.**"
rate = 2
[[filter]]
type = "rewrite_tag"
pattern = "raw.**"
rules = [{ key = "k", pattern = "x", tag = "td.a.b" }]
[[match]]
pattern = "td.**"
outputs = ["a"]
[[match]]
pattern = "td.*.heap_info td.x"
outputs = ["a"]
[[match]]
pattern = "{td,other}.*"
outputs = ["a"]
[[match]]
pattern = "other.*"
outputs = ["a"]
"#,
    );
    assert_eq!(
        crate::config::warnings(&c),
        [
            "t.toml: [[match]] #2 (pattern \"td.*.heap_info td.x\") never receives events: the earlier [[match]] #1 (pattern \"td.**\") matches every tag it matches (the first matching [[match]] wins)",
            "t.toml: [[match]] #4 (pattern \"other.*\") never receives events: the earlier [[match]] #3 (pattern \"{td,other}.*\") matches every tag it matches (the first matching [[match]] wins)",
            "t.toml:7: [[filter]] #2 (pattern \"debug.**\") is useless: no [[match]] takes the tags it applies to, so its events are unmatched and dropped",
        ]
    );
    // Overlapping but not covering: no warning.
    let c = config(
        "[output.a]\ntype = \"null\"\n[[match]]\npattern = \"a.*\"\noutputs = [\"a\"]\n[[match]]\npattern = \"a.**\"\noutputs = [\"a\"]\n",
    );
    assert!(crate::config::warnings(&c).is_empty());
}

// ---- explain ---------------------------------------------------------------------

#[test]
fn explain_a_three_match_config() {
    let c = config(
        r#"[output.store]
type = "file"
path = "/tmp/x/${tag}.jsonl"
tag_key = "tag"
[output.screen]
type = "stdout"
[output.trash]
type = "null"
[[filter]]
type = "record_transformer"
pattern = "td.**"
record = { host = "${hostname}", db = "${tag_parts[1]}" }
[[filter]]
type = "grep"
pattern = "debug.**"
regexp = [{ key = "m", pattern = "x" }]
[[match]]
pattern = "debug.**"
outputs = ["trash"]
[[match]]
pattern = "td.*.cpu"
outputs = ["screen"]
[[match]]
pattern = "td.*.*"
outputs = ["store", "screen"]
"#,
    );
    let chain = FilterChain::with_hostname(&c, "h1");
    let e = crate::pipeline::explain::explain_with(
        &c,
        &chain,
        "td.test_database.heap_info",
        Some(json!({"used": 12})),
        T0,
    );
    assert_eq!(
        e.to_string(),
        r#"tag: td.test_database.heap_info
record: {"used":12}
filters, in order:
  [[filter]] #1 (line 9, record_transformer, pattern "td.**"): kept
    -> {"used":12,"host":"h1","db":"test_database"}
matches:
  [[match]] #1 "debug.**": pattern does not match td.test_database.heap_info
  [[match]] #2 "td.*.cpu": pattern does not match td.test_database.heap_info
  [[match]] #3 "td.*.*": matches, wins
outputs:
  store (file)
    receives: {"tag":"td.test_database.heap_info","used":12,"host":"h1","db":"test_database"}
  screen (stdout)
    receives: 2023-11-14 22:13:20.000000005 +0000 td.test_database.heap_info: {"used":12,"host":"h1","db":"test_database"}
"#
    );
    // Without a record; dropped by a filter; unmatched.
    let e = crate::pipeline::explain::explain_with(&c, &chain, "td.db.cpu", None, T0);
    assert_eq!(
        e.to_string(),
        "tag: td.db.cpu\nfilters, in order:\n  [[filter]] #1 (line 9, record_transformer, pattern \"td.**\")\nmatches:\n  [[match]] #1 \"debug.**\": pattern does not match td.db.cpu\n  [[match]] #2 \"td.*.cpu\": matches, wins\noutputs:\n  screen (stdout)\n"
    );
    let e =
        crate::pipeline::explain::explain_with(&c, &chain, "debug.a", Some(json!({"m": "y"})), T0);
    assert!(e.dropped);
    assert!(e.to_string().ends_with("  [[filter]] #2 (line 13, grep, pattern \"debug.**\"): dropped\nresult: dropped by a filter; no [[match]] receives it\n"), "{e}");
    let e = crate::pipeline::explain::explain_with(&c, &chain, "nope", None, T0);
    assert!(!e.matched);
    assert!(e.to_string().contains("filters: none apply"), "{e}");
    assert!(e.to_string().ends_with("result: unmatched; the events are counted and dropped (add a [[match]] with pattern = \"**\" to catch them)\n"), "{e}");
}

#[test]
fn explain_follows_a_rewrite() {
    let text = format!(
        "{REWRITE}[output.s]\ntype = \"null\"\n[[match]]\npattern = \"site.**\"\noutputs = [\"s\"]\n"
    );
    let c = config(&text);
    let chain = FilterChain::with_hostname(&c, "h");
    let e = crate::pipeline::explain::explain_with(
        &c,
        &chain,
        "td.apache.access",
        Some(json!({"path": "/", "status": "200", "domain": "mail.example.com"})),
        T0,
    );
    assert_eq!(e.final_tag, "site.examplemail");
    assert_eq!(e.filters.len(), 1);
    assert_eq!(
        e.filters[0].outcome.as_deref(),
        Some("re-tagged to site.examplemail")
    );
    assert!(e.matched);
    assert_eq!(
        e.outputs[0].receives.as_deref(),
        Some(r#"{"domain":"mail.example.com","path":"/","status":"200"}"#)
    );
}

#[test]
fn shipped_filters_example_resolves_and_routes() {
    let text = include_str!("../../../conf/examples/filters.toml");
    let c = config(text);
    let kinds: Vec<&str> = c.filters.iter().map(|f| f.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "parser",
            "parser",
            "grep",
            "rewrite_tag",
            "record_transformer",
            "sample",
            "throttle"
        ]
    );
    assert_eq!(crate::config::warnings(&c), Vec::<String>::new());
    let chain = FilterChain::with_hostname(&c, "agg1");
    assert_eq!(
        one(
            &chain,
            "td.test_database.heap_info",
            json!({"heap_free": 1200, "debug": 1})
        ),
        json!({"heap_free_bytes": 1200, "aggregator": "agg1", "database": "test_database", "table": "heap_info", "schema": 2})
    );
    assert_eq!(
        one(
            &chain,
            "mqtt.sensors",
            json!({"topic": "s/1", "message": "{\"t\":21.5}"})
        ),
        json!({"topic": "s/1", "t": 21.5})
    );
    let (out, applied) = run(
        &chain,
        "app.api",
        &[
            json!({"level": "debug"}),
            json!({"level": "error", "http": {"path": "/x"}}),
            json!({"level": "warn", "http": {"path": "/healthz"}}),
        ],
    );
    let error = json!({"level": "error", "http": {"path": "/x"}});
    assert_eq!(
        out,
        vec![
            ("app.api".to_string(), vec![error.clone()]),
            ("alert.error.api".to_string(), vec![error])
        ]
    );
    assert_eq!(applied.dropped, 2);
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

// ---- robustness ------------------------------------------------------------------

#[test]
fn the_chain_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<FilterChain>();
}

const EVERYTHING: &str = r#"[[filter]]
type = "parser"
pattern = "**"
key_name = "m"
format = "json"
reserve_data = true
[[filter]]
type = "parser"
pattern = "**"
key_name = "kv"
format = "kv"
reserve_data = true
[[filter]]
type = "record_transformer"
pattern = "**"
rename_keys = { a = "b" }
record = { t = "${tag_parts[-1]}.${tag_prefix[0]}", c = '${record["m"]}', d = '<${record["a"]["b"]}>' }
remove_keys = ["z"]
[[filter]]
type = "grep"
pattern = "**"
exclude = [{ key = "$.b.c", pattern = "^x" }]
[[filter]]
type = "rewrite_tag"
pattern = "**"
rules = [{ key = "r", pattern = "^([a-z]{1,3})$", tag = "r.$1", keep = true }, { key = "q", pattern = ".", tag = "q.${tag}" }]
[[filter]]
type = "throttle"
pattern = "**"
rate_limit = 1000000
group_key = "$.g.h"
"#;

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z=\" {}:,x\\\\]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[abcgmqrz]{1,2}|kv|m|q|r|g", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn any_records_through_every_filter_stay_valid(
        records in proptest::collection::vec(json_value(), 1..8),
        tag in "[a-z]{1,3}(\\.[a-z]{1,3}){0,3}",
    ) {
        let c = chain(EVERYTHING);
        let input = records.len() as u64;
        let applied = c.apply_at(batch(&tag, &records), Instant::now());
        let mut total = 0u64;
        for b in &applied.batches {
            // Every batch walks cleanly and its count is right.
            let n = entries(&b.entries).map(|e| e.map(|_| ())).collect::<Result<Vec<()>, _>>();
            let n = n.map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}")))?;
            proptest::prop_assert_eq!(n.len(), b.count as usize);
            total += u64::from(b.count);
        }
        // Copies (`keep`) can only add events; drops are counted.
        proptest::prop_assert!(total + applied.dropped >= input);
        proptest::prop_assert_eq!(applied.malformed, 0);
    }
}

#[test]
fn a_batch_that_does_not_walk_passes_unfiltered() {
    let c = chain("[[filter]]\ntype = \"sample\"\npattern = \"**\"\nrate = 2\n");
    let mut b = batch("t", &[json!({"a": 1}), json!({"a": 2}), json!({"a": 3})]);
    let mut bytes = b.entries.to_vec();
    bytes.extend_from_slice(&[0x92, 0xc1]);
    b.entries = Bytes::from(bytes);
    let ptr = b.entries.as_ptr();
    let applied = c.apply(b);
    assert_eq!(applied.malformed, 1);
    assert_eq!(applied.dropped, 0);
    assert_eq!(applied.batches[0].entries.as_ptr(), ptr);
}
