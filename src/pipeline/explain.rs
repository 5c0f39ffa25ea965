//! `tidepool route TAG [--record JSON]`: where an event would go and what it would
//! look like on the way, computed from the config alone (no IO, nothing started).
//!
//! Operators use it to check an edit before `tidepool reload`: which filters apply
//! in order, which `[[match]]` wins and why each earlier one did not, which outputs
//! get the event, and with a record, the record after each filter and as each
//! output would receive it.

use crate::config::{Config, OutputConfig};
use crate::event::EventTime;
use crate::output::json::{Injected, write_json, write_json_injected};
use crate::pipeline::filter::{FilterChain, Verdict};
use std::fmt;

/// One filter the event meets.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterStep {
    /// `[[filter]]` index (1-based).
    pub index: usize,
    /// Line of its `[[filter]]` header.
    pub line: usize,
    /// Its type.
    pub kind: &'static str,
    /// Its tag pattern as written.
    pub pattern: String,
    /// The tag the event had when it reached the filter.
    pub tag: String,
    /// With a record: what the filter did (`kept`, `dropped`, `re-tagged to X`).
    pub outcome: Option<String>,
    /// With a record: the record after the filter, as JSON.
    pub record: Option<String>,
}

/// One `[[match]]` considered, in file order, up to the winner.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchStep {
    /// `[[match]]` index (1-based).
    pub index: usize,
    /// Its pattern as written.
    pub pattern: String,
    /// Whether it matches the tag (only the last one considered can).
    pub matched: bool,
}

/// One output of the winning match.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputStep {
    /// The `[output.NAME]` name.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// With a record: what the output receives (its JSON, or its stdout line).
    pub receives: Option<String>,
}

/// Where one event goes, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The tag asked about.
    pub tag: String,
    /// The record given, as JSON.
    pub input: Option<String>,
    /// Filters met, in order (re-tags included when a record is given).
    pub filters: Vec<FilterStep>,
    /// The tag after the filters (differs after a `rewrite_tag`).
    pub final_tag: String,
    /// The event was dropped by a filter (nothing is routed).
    pub dropped: bool,
    /// Matches considered, the winner last.
    pub matches: Vec<MatchStep>,
    /// Whether the last match considered wins (false = no match: unmatched).
    pub matched: bool,
    /// Outputs of the winner.
    pub outputs: Vec<OutputStep>,
}

/// Explains where an event with `tag` (and `record`, if given) goes under `config`.
pub fn explain(config: &Config, tag: &str, record: Option<serde_json::Value>) -> Explanation {
    let chain = FilterChain::build(config);
    explain_with(config, &chain, tag, record, EventTime::now())
}

/// [`explain`] with a given chain (its hostname) and event time, for exact tests.
pub fn explain_with(
    config: &Config,
    chain: &FilterChain,
    tag: &str,
    record: Option<serde_json::Value>,
    time: EventTime,
) -> Explanation {
    let pattern_of = |index: usize| {
        config
            .filters
            .iter()
            .find(|f| f.index == index)
            .map(|f| f.pattern.as_str().to_string())
            .unwrap_or_default()
    };
    let mut filters = Vec::new();
    let mut final_tag = tag.to_string();
    let mut dropped = false;
    let mut final_record = None;
    let input = record.as_ref().map(|r| r.to_string());
    match &record {
        None => {
            for f in chain.filters().iter().filter(|f| f.pattern.matches(tag)) {
                filters.push(FilterStep {
                    index: f.index,
                    line: f.line,
                    kind: f.kind(),
                    pattern: f.pattern.as_str().to_string(),
                    tag: tag.to_string(),
                    outcome: None,
                    record: None,
                });
            }
        }
        Some(value) => {
            let mut entry = vec![0x92];
            time.encode(&mut entry);
            crate::pipeline::filter::record::json_to_msgpack(value, &mut entry);
            let (steps, t, rec) = chain.trace(tag, &entry);
            for s in steps {
                let outcome = match &s.verdict {
                    Verdict::Keep => "kept".to_string(),
                    Verdict::Drop => "dropped".to_string(),
                    Verdict::Retag { tag, keep: false } => format!("re-tagged to {tag}"),
                    Verdict::Retag { tag, keep: true } => {
                        format!("copied to {tag} (the original goes on as {})", s.tag)
                    }
                };
                filters.push(FilterStep {
                    index: s.index,
                    line: s.line,
                    kind: s.kind,
                    pattern: pattern_of(s.index),
                    tag: s.tag.clone(),
                    outcome: Some(outcome),
                    record: (s.verdict != Verdict::Drop).then(|| json(&s.record)),
                });
            }
            final_tag = t;
            dropped = rec.is_none();
            final_record = rec;
        }
    }
    let mut matches = Vec::new();
    let mut matched = false;
    let mut outputs = Vec::new();
    if !dropped {
        for m in &config.matches {
            let hit = m.pattern.matches(&final_tag);
            matches.push(MatchStep {
                index: m.index,
                pattern: m.pattern.as_str().to_string(),
                matched: hit,
            });
            if hit {
                matched = true;
                for name in &m.outputs {
                    let def = config.outputs.get(name);
                    outputs.push(OutputStep {
                        name: name.clone(),
                        kind: def.map_or("undefined".to_string(), |d| kind_name(&d.kind)),
                        receives: final_record
                            .as_deref()
                            .map(|r| receives(def.map(|d| &d.kind), &final_tag, time, r)),
                    });
                }
                break;
            }
        }
    }
    Explanation {
        tag: tag.to_string(),
        input,
        filters,
        final_tag,
        dropped,
        matches,
        matched,
        outputs,
    }
}

fn kind_name(kind: &OutputConfig) -> String {
    let debug = format!("{kind:?}");
    let name = debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default();
    // `TreasureData` -> `treasure_data`, as written in configs.
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The record as an output would receive it: file outputs inject `time_key` and
/// `tag_key`, stdout prints its line, the others get the record.
fn receives(kind: Option<&OutputConfig>, tag: &str, time: EventTime, record: &[u8]) -> String {
    let mut out = Vec::new();
    let ok = match kind {
        Some(OutputConfig::File(f)) => {
            let mut fields = Vec::new();
            if let Some(k) = &f.time_key {
                fields.push((k.as_str(), Injected::Time(time)));
            }
            if let Some(k) = &f.tag_key {
                fields.push((k.as_str(), Injected::Str(tag)));
            }
            write_json_injected(record, &fields, &mut out).is_ok()
        }
        Some(OutputConfig::Stdout) => {
            let ok = crate::output::stdout::write_line(time, tag, record, &mut out).is_ok();
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            ok
        }
        _ => write_json(record, &mut out).is_ok(),
    };
    if ok {
        String::from_utf8_lossy(&out).into_owned()
    } else {
        "(the record cannot be rendered as JSON)".to_string()
    }
}

fn json(record: &[u8]) -> String {
    let mut out = Vec::new();
    match write_json(record, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("(not renderable: {e})"),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tag: {}", self.tag)?;
        if let Some(input) = &self.input {
            writeln!(f, "record: {input}")?;
        }
        if self.filters.is_empty() {
            writeln!(f, "filters: none apply (the events pass untouched)")?;
        } else {
            writeln!(f, "filters, in order:")?;
            for s in &self.filters {
                write!(
                    f,
                    "  [[filter]] #{} (line {}, {}, pattern \"{}\")",
                    s.index, s.line, s.kind, s.pattern
                )?;
                if s.tag != self.tag {
                    write!(f, " on tag {}", s.tag)?;
                }
                match &s.outcome {
                    Some(o) => writeln!(f, ": {o}")?,
                    None => writeln!(f)?,
                }
                if let Some(r) = &s.record {
                    writeln!(f, "    -> {r}")?;
                }
            }
        }
        if self.dropped {
            return writeln!(f, "result: dropped by a filter; no [[match]] receives it");
        }
        if self.final_tag != self.tag {
            writeln!(f, "routed as: {}", self.final_tag)?;
        }
        if self.matches.is_empty() {
            writeln!(f, "matches: none defined")?;
        } else {
            writeln!(f, "matches:")?;
        }
        for m in &self.matches {
            if m.matched {
                writeln!(
                    f,
                    "  [[match]] #{} \"{}\": matches, wins",
                    m.index, m.pattern
                )?;
            } else {
                writeln!(
                    f,
                    "  [[match]] #{} \"{}\": pattern does not match {}",
                    m.index, m.pattern, self.final_tag
                )?;
            }
        }
        if !self.matched {
            return writeln!(
                f,
                "result: unmatched; the events are counted and dropped (add a [[match]] with pattern = \"**\" to catch them)"
            );
        }
        writeln!(f, "outputs:")?;
        for o in &self.outputs {
            writeln!(f, "  {} ({})", o.name, o.kind)?;
            if let Some(r) = &o.receives {
                writeln!(f, "    receives: {r}")?;
            }
        }
        Ok(())
    }
}
