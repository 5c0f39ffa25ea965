//! `grep`: keep or drop events by regexes on record values, Fluentd's and/or rules.

use super::record::text;
use super::{Counts, Event, Verdict};
use crate::config::{GrepConfig, GrepRule};

/// A compiled `grep`.
#[derive(Debug)]
pub struct Grep {
    config: GrepConfig,
}

impl Grep {
    /// Wraps a checked config.
    pub fn new(config: GrepConfig) -> Self {
        Grep { config }
    }

    /// Keeps or drops one event. A missing key reads as "" (so `regexp` on it fails
    /// unless the pattern matches the empty string), as in Fluentd. A record that is
    /// not a map passes (counted).
    pub fn apply(&self, ev: &mut Event<'_>, counts: &mut Counts) -> Verdict {
        let Some(pairs) = ev.pairs_mut() else {
            counts.non_map += 1;
            return Verdict::Keep;
        };
        let m = |r: &GrepRule| r.pattern.is_match(&text(pairs.lookup(&r.key.0)));
        let c = &self.config;
        let keep = c.regexp_and.iter().all(m)
            && (c.regexp_or.is_empty() || c.regexp_or.iter().any(m))
            && (c.exclude_and.is_empty() || !c.exclude_and.iter().all(m))
            && !c.exclude_or.iter().any(m);
        if keep { Verdict::Keep } else { Verdict::Drop }
    }
}
