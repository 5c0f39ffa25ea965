//! `rewrite_tag`: re-tags events by rules on record values; a re-tagged event runs
//! through the filters again from the top under its new tag.

use super::record::text;
use super::template::{TagCx, render};
use super::{Counts, Event, MAX_REWRITES, Verdict};
use crate::config::RewriteTagConfig;

/// A compiled `rewrite_tag`.
#[derive(Debug)]
pub struct RewriteTag {
    config: RewriteTagConfig,
}

impl RewriteTag {
    /// Wraps a checked config.
    pub fn new(config: RewriteTagConfig) -> Self {
        RewriteTag { config }
    }

    /// Finds the first rule that applies (Fluentd's rules: an empty or missing value
    /// never matches a non-inverted rule) and returns the new tag. Events no rule
    /// applies to keep their tag unless `drop_unmatched`. An event already re-tagged
    /// `MAX_REWRITES` times keeps its tag (counted in `loops`), so rules that re-tag
    /// in a cycle cannot loop forever.
    pub fn apply(
        &self,
        ev: &mut Event<'_>,
        cx: &TagCx<'_>,
        depth: usize,
        counts: &mut Counts,
    ) -> Verdict {
        let time = ev.time;
        let Some(pairs) = ev.pairs_mut() else {
            counts.non_map += 1;
            return Verdict::Keep;
        };
        for rule in &self.config.rules {
            let value = text(pairs.lookup(&rule.key.0));
            if value.is_empty() && !rule.invert {
                continue;
            }
            let caps = rule.pattern.captures(&value);
            if caps.is_some() == rule.invert {
                continue;
            }
            let mut tag = String::new();
            render(&rule.tag, cx, None, time, caps.as_ref(), &mut tag);
            if !valid_tag(&tag) {
                counts.failed += 1;
                return Verdict::Keep;
            }
            if depth >= MAX_REWRITES {
                counts.loops += 1;
                return Verdict::Keep;
            }
            return Verdict::Retag {
                tag,
                keep: rule.keep,
            };
        }
        if self.config.drop_unmatched {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }
}

/// A usable tag: non-empty dot-separated parts without whitespace or control
/// characters, at most 1024 bytes.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 1024
        && !tag.chars().any(|c| c.is_whitespace() || c.is_control())
        && tag.split('.').all(|p| !p.is_empty())
}
