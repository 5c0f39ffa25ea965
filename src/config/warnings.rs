//! Warnings about a config that is valid but probably not what was meant: a
//! `[[match]]` no event can reach because an earlier one takes all its tags, and a
//! `[[filter]]` whose events no `[[match]]` takes (nor a later `rewrite_tag`
//! re-tags).
//!
//! Shadowing is reported only when it is certain (an earlier `**`, the same
//! pattern, a literal tag the earlier pattern matches, or a `prefix.**` covering a
//! pattern that starts with that literal prefix). An unreachable filter is found by
//! trying sample tags of the filter's and each match's patterns on both, so a
//! warning there names a tag as evidence only when none of them overlap.

use super::{Config, FilterKind};
use crate::pipeline::pattern::TagPattern;

/// Human-readable warnings, `origin[:line]: what`, in file order.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, later) in config.matches.iter().enumerate() {
        let earlier = config.matches.get(..i).unwrap_or_default();
        if let Some(by) = earlier.iter().find(|e| shadows(&e.pattern, &later.pattern)) {
            out.push(format!(
                "{}: [[match]] #{} (pattern \"{}\") never receives events: the earlier [[match]] #{} (pattern \"{}\") matches every tag it matches (the first matching [[match]] wins)",
                config.origin,
                later.index,
                later.pattern.as_str(),
                by.index,
                by.pattern.as_str()
            ));
        }
    }
    for (i, f) in config.filters.iter().enumerate() {
        // A rewrite_tag on unmatched tags is the usual way to route them.
        if matches!(f.kind, FilterKind::RewriteTag(_)) {
            continue;
        }
        // A later rewrite_tag on the same tags carries this filter's work to a new tag.
        let later = config.filters.get(i + 1..).unwrap_or_default();
        let reachable = config
            .matches
            .iter()
            .any(|m| overlaps(&f.pattern, &m.pattern))
            || later.iter().any(|r| {
                matches!(r.kind, FilterKind::RewriteTag(_)) && overlaps(&f.pattern, &r.pattern)
            });
        if !reachable {
            out.push(format!(
                "{}:{}: [[filter]] #{} (pattern \"{}\") is useless: no [[match]] takes the tags it applies to, so its events are unmatched and dropped",
                config.origin,
                f.line,
                f.index,
                f.pattern.as_str()
            ));
        }
    }
    out
}

/// Whether `a` certainly matches every tag `b` matches.
pub fn shadows(a: &TagPattern, b: &TagPattern) -> bool {
    // Alternatives of `a`, braces expanded where that is simple.
    let a_alts: Vec<String> = a
        .as_str()
        .split_whitespace()
        .flat_map(|alt| expand_braces(alt).unwrap_or_else(|| vec![alt.to_string()]))
        .collect();
    b.as_str()
        .split_whitespace()
        .all(|alt| expand_braces(alt).is_some_and(|xs| xs.iter().all(|x| covered(a, &a_alts, x))))
}

/// Whether every tag the brace-free pattern `x` matches is matched by `a`.
fn covered(a: &TagPattern, a_alts: &[String], x: &str) -> bool {
    if x.contains('\\') {
        return false;
    }
    if !x.contains('*') {
        return a.matches(x);
    }
    a_alts.iter().any(|p| {
        p == "**"
            || p == x
            || p.strip_suffix(".**").is_some_and(|prefix| {
                is_literal(prefix) && x.starts_with(prefix) && x[prefix.len()..].starts_with('.')
            })
    })
}

fn is_literal(p: &str) -> bool {
    !p.is_empty() && !p.contains(['*', '{', '}', ',', '\\'])
}

/// `a.{b,c}.d` into `a.b.d`, `a.c.d`; None for nesting or escapes (not decided).
fn expand_braces(p: &str) -> Option<Vec<String>> {
    let Some(open) = p.find('{') else {
        return Some(vec![p.to_string()]);
    };
    let close = open + p.get(open..)?.find('}')?;
    let inner = p.get(open + 1..close)?;
    if inner.contains('{') || p.contains('\\') {
        return None;
    }
    let (head, tail) = (p.get(..open)?, p.get(close + 1..)?);
    let mut out = Vec::new();
    for choice in inner.split(',') {
        for rest in expand_braces(tail)? {
            out.push(format!("{head}{choice}{rest}"));
            if out.len() > 256 {
                return None;
            }
        }
    }
    Some(out)
}

/// Whether some tag is matched by both patterns, judged on sample tags of each.
pub fn overlaps(a: &TagPattern, b: &TagPattern) -> bool {
    samples(a)
        .iter()
        .chain(samples(b).iter())
        .any(|t| a.matches(t) && b.matches(t))
}

/// Tags a pattern matches: each wildcard replaced by a few fillers.
fn samples(p: &TagPattern) -> Vec<String> {
    let mut out = Vec::new();
    for alt in p.as_str().split_whitespace() {
        for x in expand_braces(alt).unwrap_or_default() {
            let x = x.replace('\\', "");
            for (any, one) in [("x", "x"), ("x.x", "x"), ("", "x")] {
                let t = x.replace("**", any).replace('*', one);
                let t = t.trim_matches('.').replace("..", ".");
                if !t.is_empty() {
                    out.push(t);
                }
            }
        }
    }
    out
}
