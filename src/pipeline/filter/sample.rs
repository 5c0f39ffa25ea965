//! `sample` (keep 1 event in N) and `throttle` (at most N events per interval per group).

use super::record::text;
use super::{Counts, Event, Verdict};
use crate::config::ThrottleConfig;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A `sample` filter: keeps the first event of every `rate`, across batches.
#[derive(Debug)]
pub struct Sample {
    rate: u64,
    seen: AtomicU64,
}

impl Sample {
    /// Keeps one event in `rate` (at least 1).
    pub fn new(rate: u64) -> Self {
        Sample {
            rate: rate.max(1),
            seen: AtomicU64::new(0),
        }
    }

    /// Keeps or drops one event without reading its record.
    pub fn apply(&self) -> Verdict {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(self.rate) {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }
}

/// Most groups a throttle tracks within one interval; events of further groups share
/// one overflow group, so a flood of distinct values cannot grow memory.
pub const MAX_GROUPS: usize = 10_000;

/// A `throttle` filter: fixed windows of `interval`, a budget of `rate_limit` per group.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    state: Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    start: Option<Instant>,
    used: HashMap<String, u64>,
}

impl Throttle {
    /// Wraps a checked config.
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            state: Mutex::new(Windows {
                start: None,
                used: HashMap::new(),
            }),
        }
    }

    /// Keeps or drops one event arriving at `now`. The group is the tag, plus the value of
    /// `group_key` when set (a record that is not a map groups by tag alone).
    pub fn apply(
        &self,
        ev: &mut Event<'_>,
        tag: &str,
        now: Instant,
        counts: &mut Counts,
    ) -> Verdict {
        let group = match &self.config.group_key {
            None => None,
            Some(key) => match ev.pairs_mut() {
                Some(pairs) => Some(text(pairs.lookup(&key.0)).into_owned()),
                None => {
                    counts.non_map += 1;
                    None
                }
            },
        };
        let Ok(mut w) = self.state.lock() else {
            // A panic elsewhere while holding the lock: let events through rather than lose them.
            return Verdict::Keep;
        };
        let fresh = match w.start {
            Some(start) => now
                .checked_duration_since(start)
                .is_some_and(|d| d >= self.config.interval),
            None => true,
        };
        if fresh {
            w.start = Some(now);
            w.used.clear();
        }
        let mut name = String::with_capacity(tag.len() + 1);
        name.push_str(tag);
        if let Some(g) = group {
            name.push('\0');
            name.push_str(&g);
        }
        if !w.used.contains_key(&name) && w.used.len() >= MAX_GROUPS {
            name = "\0overflow".to_string();
        }
        let used = w.used.entry(name).or_insert(0);
        if *used < self.config.rate_limit {
            *used += 1;
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }
}
