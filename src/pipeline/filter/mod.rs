//! The filter pipeline: `[[filter]]` sections applied in file order to the events
//! whose tag they match, as Fluentd does.
//!
//! A batch whose tag no filter matches is returned as it came, same `Bytes`, never
//! decoded: routes without filters keep the zero-copy path. Otherwise each event
//! runs through the matching filters in order; its record is split into top-level
//! pairs only when a filter reads it (`sample` never does), and the batch is
//! re-encoded only if some event changed, was dropped or was re-tagged. A
//! `rewrite_tag` sends events to a new tag; those form new batches that run the
//! chain again from the top, at most [`MAX_REWRITES`] times.
//!
//! No IO here: the hostname is given to [`FilterChain::with_hostname`] (or read once
//! by [`FilterChain::build`]) and the clock is an argument of [`FilterChain::apply_at`].

pub mod grep;
pub mod parser;
pub mod record;
pub mod record_transformer;
pub mod rewrite_tag;
pub mod sample;
pub mod template;
#[cfg(test)]
mod tests;

use crate::config::{Config, FilterKind};
use crate::event::{Batch, EventTime, Signal};
use crate::msgpack::{Entry, entries};
use crate::pipeline::pattern::TagPattern;
use bytes::Bytes;
use record::{Pairs, time_bytes, write_entry};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use template::TagCx;

/// How many times one event may be re-tagged; a further `rewrite_tag` leaves it
/// under its current tag and counts a loop.
pub const MAX_REWRITES: usize = 4;

/// One compiled filter: a closed set of kinds.
#[derive(Debug)]
pub enum Filter {
    /// `record_transformer`.
    RecordTransformer(record_transformer::RecordTransformer),
    /// `grep`.
    Grep(grep::Grep),
    /// `parser`.
    Parser(parser::Parser),
    /// `rewrite_tag`.
    RewriteTag(rewrite_tag::RewriteTag),
    /// `sample`.
    Sample(sample::Sample),
    /// `throttle`.
    Throttle(sample::Throttle),
}

impl Filter {
    /// Compiles one checked filter config.
    pub fn new(kind: &FilterKind) -> Filter {
        match kind {
            FilterKind::RecordTransformer(c) => {
                Filter::RecordTransformer(record_transformer::RecordTransformer::new(c.clone()))
            }
            FilterKind::Grep(c) => Filter::Grep(grep::Grep::new(c.clone())),
            FilterKind::Parser(c) => Filter::Parser(parser::Parser::new(c.clone())),
            FilterKind::RewriteTag(c) => {
                Filter::RewriteTag(rewrite_tag::RewriteTag::new(c.clone()))
            }
            FilterKind::Sample { rate } => Filter::Sample(sample::Sample::new(*rate)),
            FilterKind::Throttle(c) => Filter::Throttle(sample::Throttle::new(c.clone())),
        }
    }
}

/// What one filter decided for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (possibly changed).
    Keep,
    /// Drop it.
    Drop,
    /// Send it to `tag` (from the top of the chain); with `keep`, a copy also goes on
    /// under the current tag.
    Retag {
        /// The new tag.
        tag: String,
        /// Keep the event under its current tag too.
        keep: bool,
    },
}

/// One event on its way through the filters: the time bytes as received and the
/// record, split into pairs the first time a filter needs them.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event time (for `${time}`).
    pub time: EventTime,
    time_raw: &'a [u8],
    raw: &'a [u8],
    record: &'a [u8],
    pairs: Option<Pairs<'a>>,
    split_tried: bool,
    spare: Vec<record::Pair<'a>>,
    /// Set by a filter that changed the record: the entry is re-encoded.
    pub changed: bool,
}

impl<'a> Event<'a> {
    /// An event from a walked entry.
    pub fn new(entry: Entry<'a>) -> Self {
        Event::with_spare(entry, Vec::new())
    }

    /// An event that will split its record into `spare`'s allocation.
    pub fn with_spare(entry: Entry<'a>, spare: Vec<record::Pair<'a>>) -> Self {
        Event {
            spare,
            time: entry.time,
            time_raw: time_bytes(entry.raw, entry.record),
            raw: entry.raw,
            record: entry.record,
            pairs: None,
            split_tried: false,
            changed: false,
        }
    }

    /// The record's pairs, split on first use; None when the record is not a map.
    pub fn pairs_mut(&mut self) -> Option<&mut Pairs<'a>> {
        if !self.split_tried {
            self.split_tried = true;
            self.pairs = Pairs::split_into(self.record, std::mem::take(&mut self.spare));
        }
        self.pairs.as_mut()
    }

    /// Appends the entry: the original bytes when unchanged, else `[time, record]`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match (&self.pairs, self.changed) {
            (Some(pairs), true) => write_entry(out, self.time_raw, |o| pairs.write(o)),
            _ => out.extend_from_slice(self.raw),
        }
    }

    /// The pairs' allocation, for the next event.
    pub fn recycle(self) -> Vec<record::Pair<'a>> {
        match self.pairs {
            Some(p) => p.0,
            None => self.spare,
        }
    }

    /// The record's MessagePack bytes as they are now.
    pub fn record_bytes(&self) -> Vec<u8> {
        match (&self.pairs, self.changed) {
            (Some(pairs), true) => {
                let mut out = Vec::new();
                pairs.write(&mut out);
                out
            }
            _ => self.record.to_vec(),
        }
    }
}

/// Per-batch counts of one filter, added to its [`FilterStats`] once per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events that reached the filter.
    pub matched: u64,
    /// Events it dropped.
    pub dropped: u64,
    /// Parse failures (`parser`) or unusable new tags (`rewrite_tag`); the event is kept.
    pub failed: u64,
    /// Records that are not maps, passed through unchanged.
    pub non_map: u64,
    /// Events sent to another tag.
    pub retagged: u64,
    /// Re-tags refused by the loop limit.
    pub loops: u64,
}

/// Counters of one filter since the chain was built; read by the API and metrics.
#[derive(Debug, Default)]
pub struct FilterStats {
    matched: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    non_map: AtomicU64,
    retagged: AtomicU64,
    loops: AtomicU64,
}

impl FilterStats {
    fn add(&self, c: &Counts) {
        for (a, n) in [
            (&self.matched, c.matched),
            (&self.dropped, c.dropped),
            (&self.failed, c.failed),
            (&self.non_map, c.non_map),
            (&self.retagged, c.retagged),
            (&self.loops, c.loops),
        ] {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Counts {
        Counts {
            matched: self.matched.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            non_map: self.non_map.load(Ordering::Relaxed),
            retagged: self.retagged.load(Ordering::Relaxed),
            loops: self.loops.load(Ordering::Relaxed),
        }
    }
}

/// One `[[filter]]` in the chain.
#[derive(Debug)]
pub struct ChainEntry {
    /// 1-based index among `[[filter]]` sections.
    pub index: usize,
    /// Line of its `[[filter]]` header.
    pub line: usize,
    /// The tags it applies to.
    pub pattern: TagPattern,
    /// What it does.
    pub filter: Filter,
    /// Its counters.
    pub stats: FilterStats,
    kind: &'static str,
}

impl ChainEntry {
    /// The filter's `type` name.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// The compiled filters of a config, in file order. Shared by every connection
/// (`apply` takes `&self`); rebuilt on reload.
#[derive(Debug)]
pub struct FilterChain {
    filters: Vec<ChainEntry>,
    hostname: String,
}

/// What became of a batch: the batches to route (its own tag first, then re-tagged
/// ones) and what was dropped on the way.
#[derive(Debug, Default)]
pub struct Applied {
    /// Batches to route, each with its (possibly new) tag; empty when every event
    /// was dropped.
    pub batches: Vec<Batch>,
    /// Events dropped by `grep`, `sample`, `throttle` or `rewrite_tag`'s `drop_unmatched`.
    pub dropped: u64,
    /// Re-tags refused by the loop limit (those events kept their tag).
    pub loops_stopped: u64,
    /// Batches whose entries could not be walked: passed on unfiltered (should not
    /// happen: inputs validate entries).
    pub malformed: u64,
}

/// One step of an event's way through the chain, for `tidepool route`.
#[derive(Debug, Clone)]
pub struct TraceStep {
    /// The tag the event had when it reached the filter.
    pub tag: String,
    /// `[[filter]]` index.
    pub index: usize,
    /// Line of the filter.
    pub line: usize,
    /// Its type.
    pub kind: &'static str,
    /// What it decided.
    pub verdict: Verdict,
    /// The record after the filter (MessagePack), when kept.
    pub record: Vec<u8>,
}

impl FilterChain {
    /// Compiles the filters of `config`, reading this host's name once for `${hostname}`.
    pub fn build(config: &Config) -> FilterChain {
        FilterChain::with_hostname(config, &local_hostname())
    }

    /// Compiles the filters of `config` with a given `${hostname}`.
    pub fn with_hostname(config: &Config, hostname: &str) -> FilterChain {
        let filters = config
            .filters
            .iter()
            .map(|f| ChainEntry {
                index: f.index,
                line: f.line,
                pattern: f.pattern.clone(),
                filter: Filter::new(&f.kind),
                stats: FilterStats::default(),
                kind: f.kind.name(),
            })
            .collect();
        FilterChain {
            filters,
            hostname: hostname.to_string(),
        }
    }

    /// The filters, in file order, with their counters.
    pub fn filters(&self) -> &[ChainEntry] {
        &self.filters
    }

    /// True when the config has no filters: every batch passes untouched.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether any filter applies to `tag` (false = the batch passes untouched).
    pub fn applies_to(&self, tag: &str) -> bool {
        self.filters.iter().any(|f| f.pattern.matches(tag))
    }

    /// Runs a batch through the filters, now.
    pub fn apply(&self, batch: Batch) -> Applied {
        self.apply_at(batch, Instant::now())
    }

    /// Runs a batch through the filters at `now` (the throttle's clock).
    pub fn apply_at(&self, batch: Batch, now: Instant) -> Applied {
        let mut applied = Applied::default();
        let mut queue = VecDeque::from([(batch, 0usize)]);
        while let Some((batch, depth)) = queue.pop_front() {
            if batch.signal != Signal::Logs || !self.applies_to(&batch.tag) {
                applied.batches.push(batch);
                continue;
            }
            let (own, retagged) = self.run(batch, depth, now, &mut applied);
            applied.batches.extend(own);
            queue.extend(retagged.into_iter().map(|b| (b, depth + 1)));
        }
        applied
    }

    /// One batch through the filters matching its tag: the batch to keep (None when
    /// every event left) and the re-tagged batches.
    fn run(
        &self,
        batch: Batch,
        depth: usize,
        now: Instant,
        applied: &mut Applied,
    ) -> (Option<Batch>, Vec<Batch>) {
        let active: Vec<&ChainEntry> = self
            .filters
            .iter()
            .filter(|f| f.pattern.matches(&batch.tag))
            .collect();
        let tag = batch.tag.clone();
        let cx = TagCx::new(&tag, &self.hostname);
        let prepared: Vec<record_transformer::Prepared> = active
            .iter()
            .map(|f| match &f.filter {
                Filter::RecordTransformer(rt) => rt.prepare(&cx),
                _ => record_transformer::Prepared::default(),
            })
            .collect();
        let mut counts = vec![Counts::default(); active.len()];
        let mut out =
            Vec::with_capacity(batch.entries.len().saturating_add(batch.entries.len() / 2));
        let mut kept: u32 = 0;
        let mut changed = false;
        let mut retagged: Vec<(String, Vec<u8>, u32)> = Vec::new();
        let mut malformed = false;
        let mut dropped = 0u64;
        let mut spare = Vec::new();
        for entry in entries(&batch.entries) {
            let Ok(entry) = entry else {
                malformed = true;
                break;
            };
            let mut ev = Event::with_spare(entry, std::mem::take(&mut spare));
            let mut stays = true;
            for ((f, pre), c) in active.iter().zip(&prepared).zip(counts.iter_mut()) {
                c.matched += 1;
                match step(f, pre, &mut ev, &cx, depth, now, c) {
                    Verdict::Keep => {}
                    Verdict::Drop => {
                        c.dropped += 1;
                        dropped += 1;
                        stays = false;
                        break;
                    }
                    Verdict::Retag { tag, keep } => {
                        c.retagged += 1;
                        let slot = match retagged.iter().position(|(t, _, _)| *t == tag) {
                            Some(i) => i,
                            None => {
                                retagged.push((tag, Vec::new(), 0));
                                retagged.len() - 1
                            }
                        };
                        if let Some((_, buf, n)) = retagged.get_mut(slot) {
                            ev.write(buf);
                            *n = n.saturating_add(1);
                        }
                        if !keep {
                            stays = false;
                            break;
                        }
                    }
                }
            }
            changed |= ev.changed || !stays;
            if stays {
                ev.write(&mut out);
                kept = kept.saturating_add(1);
            }
            spare = ev.recycle();
        }
        if malformed {
            applied.malformed += 1;
            return (Some(batch), Vec::new());
        }
        applied.dropped += dropped;
        for (f, c) in active.iter().zip(&counts) {
            f.stats.add(c);
            applied.loops_stopped += c.loops;
        }
        let others = retagged
            .into_iter()
            .map(|(tag, buf, count)| Batch {
                tag,
                entries: Bytes::from(buf),
                count,
                signal: Signal::Logs,
            })
            .collect();
        let own = if !changed {
            Some(batch)
        } else if kept == 0 {
            None
        } else {
            Some(Batch {
                tag: batch.tag,
                entries: Bytes::from(out),
                count: kept,
                signal: batch.signal,
            })
        };
        (own, others)
    }

    /// Follows one event (`entry`: `[time, record]` bytes) through the chain, from
    /// the top under `tag`, re-tags included: every filter it meets, in order.
    /// Returns the steps, the final tag, and the final record (None when dropped).
    /// A `keep` re-tag is followed under its new tag.
    pub fn trace(&self, tag: &str, entry: &[u8]) -> (Vec<TraceStep>, String, Option<Vec<u8>>) {
        let now = Instant::now();
        let mut steps = Vec::new();
        let mut tag = tag.to_string();
        let mut bytes = entry.to_vec();
        let mut depth = 0;
        loop {
            let cx_tag = tag.clone();
            let cx = TagCx::new(&cx_tag, &self.hostname);
            let mut moved = None;
            for f in self.filters.iter().filter(|f| f.pattern.matches(&cx_tag)) {
                let pre = match &f.filter {
                    Filter::RecordTransformer(rt) => rt.prepare(&cx),
                    _ => record_transformer::Prepared::default(),
                };
                let (verdict, next, record) = {
                    let Some(Ok(e)) = entries(&bytes).next() else {
                        return (steps, tag, None);
                    };
                    let mut ev = Event::new(e);
                    let v = step(f, &pre, &mut ev, &cx, depth, now, &mut Counts::default());
                    let mut next = Vec::new();
                    ev.write(&mut next);
                    (v, next, ev.record_bytes())
                };
                bytes = next;
                steps.push(TraceStep {
                    tag: cx_tag.clone(),
                    index: f.index,
                    line: f.line,
                    kind: f.kind,
                    verdict: verdict.clone(),
                    record,
                });
                match verdict {
                    Verdict::Keep => {}
                    Verdict::Drop => return (steps, tag, None),
                    Verdict::Retag { tag: new, .. } => {
                        moved = Some(new);
                        break;
                    }
                }
            }
            match moved {
                Some(new) => {
                    tag = new;
                    depth += 1;
                }
                None => break,
            }
        }
        let record = entries(&bytes)
            .next()
            .and_then(Result::ok)
            .map(|e| e.record.to_vec());
        (steps, tag, record)
    }
}

/// Runs one filter on one event.
fn step<'a>(
    f: &ChainEntry,
    pre: &'a record_transformer::Prepared,
    ev: &mut Event<'a>,
    cx: &TagCx<'_>,
    depth: usize,
    now: Instant,
    c: &mut Counts,
) -> Verdict {
    match &f.filter {
        Filter::RecordTransformer(rt) => rt.apply(pre, ev, cx, c),
        Filter::Grep(g) => g.apply(ev, c),
        Filter::Parser(p) => p.apply(ev, c),
        Filter::RewriteTag(r) => r.apply(ev, cx, depth, c),
        Filter::Sample(s) => s.apply(),
        Filter::Throttle(t) => t.apply(ev, cx.tag, now, c),
    }
}

/// This host's name for `${hostname}`: `$HOSTNAME`, else the kernel's, else "localhost".
pub fn local_hostname() -> String {
    if let Ok(h) = std::env::var("HOSTNAME")
        && !h.trim().is_empty()
    {
        return h.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
