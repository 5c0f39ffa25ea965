//! The typed, compiled form of `[[filter]]` sections: patterns and regexes are
//! compiled and templates parsed once, so a bad one is a config error, never a
//! runtime surprise.

use crate::pipeline::pattern::TagPattern;
use std::time::Duration;

/// One `[[filter]]`: which tags it applies to and what it does.
#[derive(Clone, Debug)]
pub struct FilterConfig {
    /// Where it stands in the file (1-based index among filters), for messages.
    pub index: usize,
    /// 1-based line of its `[[filter]]` table, so warnings and `route` can point at it.
    pub line: usize,
    /// The compiled tag pattern(s).
    pub pattern: TagPattern,
    /// What it does.
    pub kind: FilterKind,
}

/// What a filter does (`type = ...`): a closed set, matched exhaustively.
#[derive(Clone, Debug)]
pub enum FilterKind {
    /// `type = "record_transformer"`.
    RecordTransformer(RecordTransformerConfig),
    /// `type = "grep"`.
    Grep(GrepConfig),
    /// `type = "parser"`.
    Parser(ParserConfig),
    /// `type = "rewrite_tag"`.
    RewriteTag(RewriteTagConfig),
    /// `type = "sample"`: keep 1 event in `rate`.
    Sample {
        /// Keep one event out of this many (1 keeps all).
        rate: u64,
    },
    /// `type = "throttle"`.
    Throttle(ThrottleConfig),
}

impl FilterKind {
    /// The `type` name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            FilterKind::RecordTransformer(_) => "record_transformer",
            FilterKind::Grep(_) => "grep",
            FilterKind::Parser(_) => "parser",
            FilterKind::RewriteTag(_) => "rewrite_tag",
            FilterKind::Sample { .. } => "sample",
            FilterKind::Throttle(_) => "throttle",
        }
    }
}

/// A record key, top-level (`message`) or nested (`$.a.b`, `$['a']['b']`),
/// Fluentd's record_accessor syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPath(pub Vec<String>);

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(one),
            parts => write!(f, "$.{}", parts.join(".")),
        }
    }
}

/// One piece of a value template of `record_transformer` or `rewrite_tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// `${tag}`.
    Tag,
    /// `${tag_parts[N]}`: part N (0-based; negative counts from the end).
    TagPart(i64),
    /// `${tag_prefix[N]}`: parts 0..=N joined by dots (negative counts from the end).
    TagPrefix(i64),
    /// `${tag_suffix[N]}`: parts N.. joined by dots (negative counts from the end).
    TagSuffix(i64),
    /// `${hostname}`: this host's name.
    Hostname,
    /// `${time}`: the event time, `YYYY-MM-DD HH:MM:SS +0000`.
    Time,
    /// `${record["a"]["b"]}`: a record value (top-level key, then nested keys).
    Record(Vec<String>),
    /// `$1`..`$9` of `rewrite_tag`: a capture of the rule's regex.
    Capture(usize),
}

/// A parsed template: a value written once in the config and rendered per event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// As written, for messages and `route`.
    pub source: String,
    /// The pieces, in order.
    pub parts: Vec<TemplatePart>,
}

/// A value `record_transformer` sets: a template for strings, else the TOML value
/// with its type (`count = 1` sets an integer).
#[derive(Clone, Debug, PartialEq)]
pub enum SetValue {
    /// A string template. A template that is exactly one `${record[...]}`
    /// copies that value with its type, as Fluentd does.
    Template(Template),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// `type = "record_transformer"`. Applied in this order: `rename_keys`, then
/// `keep_keys` / `renew_record`, then `record` (templates read the record as it
/// arrived at this filter), then `remove_keys`.
#[derive(Clone, Debug, Default)]
pub struct RecordTransformerConfig {
    /// Keys to set, in file order, each with its value.
    pub record: Vec<(String, SetValue)>,
    /// Keys removed last.
    pub remove_keys: Vec<String>,
    /// When not empty, only these keys of the incoming record are kept.
    pub keep_keys: Vec<String>,
    /// Start from an empty record (plus `keep_keys`), like Fluentd's `renew_record`.
    pub renew_record: bool,
    /// `old -> new` key renames, in file order.
    pub rename_keys: Vec<(String, String)>,
}

/// One `{ key, pattern }` condition of `grep`.
#[derive(Clone, Debug)]
pub struct GrepRule {
    /// The record key tested.
    pub key: KeyPath,
    /// Tested against the value as a string (a missing key is the empty string).
    pub pattern: regex::Regex,
}

/// `type = "grep"`, with Fluentd's semantics: an event is kept when every
/// `regexp` and `and.regexp` rule matches, at least one `or.regexp` rule matches
/// (when there are any), no `exclude` / `or.exclude` rule matches, and not all
/// `and.exclude` rules match (when there are any).
#[derive(Clone, Debug, Default)]
pub struct GrepConfig {
    /// Must all match (top-level `regexp` and `and.regexp`).
    pub regexp_and: Vec<GrepRule>,
    /// At least one must match (`or.regexp`).
    pub regexp_or: Vec<GrepRule>,
    /// Excluded when all match (`and.exclude`).
    pub exclude_and: Vec<GrepRule>,
    /// Excluded when any matches (top-level `exclude` and `or.exclude`).
    pub exclude_or: Vec<GrepRule>,
}

/// How `parser` reads its field.
#[derive(Clone, Debug)]
pub enum ParseFormat {
    /// A JSON object.
    Json,
    /// `key=value` pairs (values may be double-quoted).
    KeyValue {
        /// Between pairs (default: any run of whitespace when `" "`).
        delimiter: String,
        /// Between a key and its value (default `=`).
        separator: String,
    },
    /// A regex whose named captures become the keys.
    Regexp(regex::Regex),
}

/// `type = "parser"`. Unlike Fluentd, the event time is never taken from the
/// parsed data: a parsed `time` key stays a record key and the event keeps the
/// time it arrived with.
#[derive(Clone, Debug)]
pub struct ParserConfig {
    /// The top-level string field to parse.
    pub key_name: String,
    /// How to parse it.
    pub format: ParseFormat,
    /// Keep the record's other keys (parsed keys win on a clash).
    pub reserve_data: bool,
    /// With `reserve_data`, drop `key_name` itself.
    pub remove_key_name_field: bool,
    /// Put the parsed keys under this key instead of at the top level.
    pub hash_value_field: Option<String>,
}

/// One rule of `rewrite_tag`.
#[derive(Clone, Debug)]
pub struct RewriteRule {
    /// The record key tested.
    pub key: KeyPath,
    /// Tested against the value as a string.
    pub pattern: regex::Regex,
    /// The new tag: `$1`-style captures, `${tag}`, `${tag_parts[N]}`, ...
    pub tag: Template,
    /// The rule applies when the pattern does NOT match.
    pub invert: bool,
    /// Also keep the event under its current tag (a copy goes to the new one).
    pub keep: bool,
}

/// `type = "rewrite_tag"`: the first matching rule re-tags an event, which then
/// runs through the filters from the top under its new tag.
#[derive(Clone, Debug)]
pub struct RewriteTagConfig {
    /// In file order; the first that applies wins.
    pub rules: Vec<RewriteRule>,
    /// Drop events no rule applies to (Fluentd's plugin does); default false keeps
    /// them under their tag.
    pub drop_unmatched: bool,
}

/// `type = "throttle"`: at most `rate_limit` events per `interval` per group.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Events let through per group per interval.
    pub rate_limit: u64,
    /// The window length.
    pub interval: Duration,
    /// Groups are tags, or (tag, value of this key) when set.
    pub group_key: Option<KeyPath>,
}

const PLACEHOLDERS: &str = "${tag}, ${tag_parts[N]}, ${tag_prefix[N]}, ${tag_suffix[N]}, ${hostname}, ${time}, ${record[\"key\"]}";

impl KeyPath {
    /// Parses `message`, `$.a.b` or `$['a']['b']` (Fluentd's record_accessor).
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let bad = |why: &str| {
            format!("bad record key \"{text}\": {why} (expected `name`, `$.a.b` or `$['a']['b']`)")
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = text.strip_prefix("$.") {
            let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
            if parts.iter().any(String::is_empty) {
                return Err(bad("empty part"));
            }
            return Ok(KeyPath(parts));
        }
        if let Some(rest) = text.strip_prefix('$')
            && rest.starts_with('[')
        {
            let parts = bracket_keys(rest).ok_or_else(|| bad("unbalanced brackets or quotes"))?;
            if parts.is_empty() || parts.iter().any(String::is_empty) {
                return Err(bad("empty part"));
            }
            return Ok(KeyPath(parts));
        }
        Ok(KeyPath(vec![text.to_string()]))
    }
}

/// `["a"]['b']...` into its keys; None when it is not exactly that.
fn bracket_keys(mut rest: &str) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let quote = inner.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let body = inner.get(1..)?;
        let end = body.find(quote)?;
        keys.push(body.get(..end)?.to_string());
        rest = body.get(end + 1..)?.strip_prefix(']')?;
    }
    Some(keys)
}

impl Template {
    /// Parses a template; `$1`-style captures are allowed only when `captures`
    /// (a rewrite_tag rule's new tag).
    pub fn parse(text: &str, captures: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(rest.get(..at).unwrap_or_default());
            let after = rest.get(at + 1..).unwrap_or_default();
            if let Some(body_start) = after.strip_prefix('{') {
                let end = placeholder_end(body_start).ok_or_else(|| {
                    format!(
                        "`${{` without a closing `}}` in \"{text}\" (placeholders: {PLACEHOLDERS})"
                    )
                })?;
                let body = body_start.get(..end).unwrap_or_default();
                let part = placeholder(body).ok_or_else(|| {
                    format!("unknown placeholder `${{{body}}}` (expected one of: {PLACEHOLDERS})")
                })?;
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = body_start.get(end + 1..).unwrap_or_default();
                continue;
            }
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if captures && digits > 0 {
                let n: usize = after
                    .get(..digits)
                    .and_then(|d| d.parse().ok())
                    .filter(|n| *n <= 99)
                    .ok_or_else(|| {
                        format!(
                            "capture `${}` is out of range (at most $99)",
                            after.get(..digits).unwrap_or_default()
                        )
                    })?;
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Capture(n));
                rest = after.get(digits..).unwrap_or_default();
                continue;
            }
            literal.push('$');
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// Whether any part reads the record or the event time (else the rendering is
    /// the same for every event of a tag).
    pub fn per_event(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                TemplatePart::Record(_) | TemplatePart::Time | TemplatePart::Capture(_)
            )
        })
    }
}

/// Index of the `}` closing a placeholder body, skipping quoted strings.
fn placeholder_end(body: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The placeholder named by `body` (the text between `${` and `}`).
fn placeholder(body: &str) -> Option<TemplatePart> {
    let body = body.trim();
    let index = |name: &str| -> Option<i64> {
        body.strip_prefix(name)?
            .strip_prefix('[')?
            .strip_suffix(']')?
            .trim()
            .parse()
            .ok()
    };
    match body {
        "tag" => return Some(TemplatePart::Tag),
        "hostname" => return Some(TemplatePart::Hostname),
        "time" => return Some(TemplatePart::Time),
        _ => {}
    }
    if let Some(n) = index("tag_parts") {
        return Some(TemplatePart::TagPart(n));
    }
    if let Some(n) = index("tag_prefix") {
        return Some(TemplatePart::TagPrefix(n));
    }
    if let Some(n) = index("tag_suffix") {
        return Some(TemplatePart::TagSuffix(n));
    }
    let keys = bracket_keys(body.strip_prefix("record")?)?;
    (!keys.is_empty()).then_some(TemplatePart::Record(keys))
}
