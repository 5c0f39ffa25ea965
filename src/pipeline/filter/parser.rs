//! `parser`: parses a string field as JSON, `key=value` pairs or a regex with named
//! captures, and merges the result into (or replaces) the record.

use super::record::{Pairs, Val, json_object_pairs, str_body, str_value};
use super::{Counts, Event, Verdict};
use crate::config::{ParseFormat, ParserConfig};
use crate::msgpack::write;

/// A compiled `parser`.
#[derive(Debug)]
pub struct Parser {
    config: ParserConfig,
}

impl Parser {
    /// Wraps a checked config.
    pub fn new(config: ParserConfig) -> Self {
        Parser { config }
    }

    /// Parses one event's field. On failure (missing key, not a string, no match)
    /// the record is kept as it was and the failure counted.
    pub fn apply(&self, ev: &mut Event<'_>, counts: &mut Counts) -> Verdict {
        let Some(pairs) = ev.pairs_mut() else {
            counts.non_map += 1;
            return Verdict::Keep;
        };
        let c = &self.config;
        let parsed = pairs
            .get(&c.key_name)
            .and_then(str_body)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| parse(&c.format, s));
        let Some(parsed) = parsed else {
            counts.failed += 1;
            return Verdict::Keep;
        };
        let mut out = if c.reserve_data {
            let mut kept = std::mem::take(pairs);
            if c.remove_key_name_field {
                kept.remove(&c.key_name);
            }
            kept
        } else {
            Pairs::default()
        };
        match &c.hash_value_field {
            Some(field) => {
                let mut map = Vec::new();
                write::container(&mut map, parsed.len(), true);
                for (k, v) in &parsed {
                    write::str(&mut map, k);
                    map.extend_from_slice(v);
                }
                out.set(field, Val::Owned(map));
            }
            None => {
                for (k, v) in parsed {
                    out.set(&k, Val::Owned(v));
                }
            }
        }
        *pairs = out;
        ev.changed = true;
        Verdict::Keep
    }
}

/// Parses `s`; None when it does not parse (or yields no keys).
pub fn parse(format: &ParseFormat, s: &str) -> Option<Vec<(String, Vec<u8>)>> {
    match format {
        ParseFormat::Json => json_object_pairs(s),
        ParseFormat::KeyValue {
            delimiter,
            separator,
        } => key_values(s, delimiter, separator),
        ParseFormat::Regexp(re) => {
            let caps = re.captures(s)?;
            let pairs: Vec<(String, Vec<u8>)> = re
                .capture_names()
                .flatten()
                .filter_map(|name| Some((name.to_string(), str_value(caps.name(name)?.as_str()))))
                .collect();
            (!pairs.is_empty()).then_some(pairs)
        }
    }
}

/// `k=v k2="v 2"`: pairs split on `delimiter` outside double quotes (a single space
/// means any run of whitespace), keys and values split at the first `separator`,
/// quoted values unquoted (`\"` and `\\` unescaped). Tokens without a separator are
/// skipped; None when no pair is found.
fn key_values(s: &str, delimiter: &str, separator: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for token in tokens(s, delimiter) {
        let Some((k, v)) = token.split_once(separator) else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() {
            continue;
        }
        let v = unquote(v.trim());
        match out.iter_mut().find(|(old, _)| old == k) {
            Some(slot) => slot.1 = str_value(&v),
            None => out.push((k.to_string(), str_value(&v))),
        }
    }
    (!out.is_empty()).then_some(out)
}

fn tokens<'s>(s: &'s str, delimiter: &str) -> Vec<&'s str> {
    let whitespace = delimiter == " ";
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut i = 0;
    while let Some(c) = s.get(i..).and_then(|r| r.chars().next()) {
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quotes {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            let at_delim = if whitespace {
                c.is_whitespace()
            } else {
                s.get(i..).is_some_and(|r| r.starts_with(delimiter))
            };
            if at_delim {
                if let Some(t) = s.get(start..i).filter(|t| !t.trim().is_empty()) {
                    out.push(t);
                }
                let step = if whitespace {
                    c.len_utf8()
                } else {
                    delimiter.len()
                };
                i += step;
                start = i;
                continue;
            }
        }
        i += c.len_utf8();
    }
    if let Some(t) = s.get(start..).filter(|t| !t.trim().is_empty()) {
        out.push(t);
    }
    out
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}
