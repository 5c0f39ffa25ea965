//! `rewrite_tag`, `sample`, `throttle`, and any record through every filter.

use super::*;
use serde_json::{Value, json};
use std::time::Duration;

// ---- rewrite_tag -----------------------------------------------------------------

pub(super) const REWRITE: &str = r#"[[filter]]
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
fn unusable_new_tags_keep_the_event_and_count() {
    let c = chain(
        "[[filter]]\ntype = \"rewrite_tag\"\npattern = \"**\"\nrules = [{ key = \"k\", pattern = \"^(.*)$\", tag = \"n.$1\" }]\n",
    );
    let input = [json!({"k": "a b"}), json!({"k": "x.."}), json!({"k": "ok"})];
    let (out, _) = run(&c, "t", &input);
    assert_eq!(
        out,
        vec![
            ("t".to_string(), input[..2].to_vec()),
            ("n.ok".to_string(), vec![input[2].clone()])
        ]
    );
    assert_eq!(c.filters()[0].stats.snapshot().failed, 2);
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
