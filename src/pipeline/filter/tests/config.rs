//! `[[filter]]` config errors and warnings, the shipped example, and `route`'s explanation.

use super::*;
use serde_json::json;

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
    // A filter whose tags a later rewrite_tag moves somewhere routed is useful.
    let c = config(
        "[output.a]\ntype = \"null\"\n[[filter]]\ntype = \"sample\"\npattern = \"raw.*\"\nrate = 2\n[[filter]]\ntype = \"rewrite_tag\"\npattern = \"raw.**\"\nrules = [{ key = \"k\", pattern = \"x\", tag = \"a\" }]\n[[match]]\npattern = \"a\"\noutputs = [\"a\"]\n",
    );
    assert!(crate::config::warnings(&c).is_empty());
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
        "{}[output.s]\ntype = \"null\"\n[[match]]\npattern = \"site.**\"\noutputs = [\"s\"]\n",
        super::routing::REWRITE
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
    let text = include_str!("../../../../conf/examples/filters.toml");
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
fn template_and_key_path_parsing() {
    use crate::config::{KeyPath, Template, TemplatePart as P};
    let t = Template::parse(
        r#"a ${tag_parts[ -2 ]}${record['x']["y z"]}$ $1 ${hostname}"#,
        false,
    )
    .expect("parses");
    assert_eq!(
        t.parts,
        [
            P::Literal("a ".into()),
            P::TagPart(-2),
            P::Record(vec!["x".into(), "y z".into()]),
            P::Literal("$ $1 ".into()),
            P::Hostname,
        ]
    );
    assert!(t.per_event());
    let t = Template::parse("site.$2$1.${tag_suffix[1]}", true).expect("parses");
    assert_eq!(
        t.parts,
        [
            P::Literal("site.".into()),
            P::Capture(2),
            P::Capture(1),
            P::Literal(".".into()),
            P::TagSuffix(1)
        ]
    );
    for (bad, why) in [
        ("${tag", "without a closing"),
        ("${tag_parts[x]}", "unknown placeholder `${tag_parts[x]}`"),
        ("${record[x]}", "unknown placeholder"),
        ("${record}", "unknown placeholder"),
        ("${message}", "unknown placeholder `${message}`"),
    ] {
        let e = Template::parse(bad, false).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert_eq!(
        KeyPath::parse("a.b").map(|k| k.0),
        Ok(vec!["a.b".to_string()])
    );
    assert_eq!(
        KeyPath::parse("$.a.b").map(|k| k.0),
        Ok(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(
        KeyPath::parse("$['a.b'][\"c\"]").map(|k| k.0),
        Ok(vec!["a.b".to_string(), "c".to_string()])
    );
    assert!(KeyPath::parse("$['a'").is_err());
    assert!(KeyPath::parse("").is_err());
}
