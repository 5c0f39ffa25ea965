//! Renders `${tag}`-style templates of `record_transformer` values and
//! `rewrite_tag` tags.

use super::record::{Pairs, push_text};
use crate::config::{Template, TemplatePart};
use crate::event::EventTime;

/// What templates may refer to besides the record: the tag (split once per batch)
/// and this host's name.
#[derive(Debug)]
pub struct TagCx<'t> {
    /// The event tag.
    pub tag: &'t str,
    /// Its dot-separated parts.
    pub parts: Vec<&'t str>,
    /// This host's name.
    pub hostname: &'t str,
}

impl<'t> TagCx<'t> {
    /// Splits `tag` once for every template rendered for it.
    pub fn new(tag: &'t str, hostname: &'t str) -> Self {
        TagCx {
            tag,
            parts: tag.split('.').collect(),
            hostname,
        }
    }

    /// Part `n` (negative from the end); None when out of range.
    fn index(&self, n: i64) -> Option<usize> {
        let len = i64::try_from(self.parts.len()).ok()?;
        let i = if n < 0 { len.checked_add(n)? } else { n };
        (0..len)
            .contains(&i)
            .then(|| usize::try_from(i).ok())
            .flatten()
    }

    fn push_joined(&self, range: std::ops::Range<usize>, out: &mut String) {
        for (k, part) in self.parts.get(range).unwrap_or_default().iter().enumerate() {
            if k > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
    }
}

/// Appends the rendering of `t` to `out`. `record` is the record the template reads
/// (`${record[...]}`, a missing key is ""), `captures` a rewrite rule's regex
/// captures (`$N`, a missing group is ""). Out-of-range tag indices render "",
/// as Fluentd's nil does.
pub fn render(
    t: &Template,
    cx: &TagCx<'_>,
    record: Option<&Pairs<'_>>,
    time: EventTime,
    captures: Option<&regex::Captures<'_>>,
    out: &mut String,
) {
    for part in &t.parts {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Tag => out.push_str(cx.tag),
            TemplatePart::TagPart(n) => {
                if let Some(p) = cx.index(*n).and_then(|i| cx.parts.get(i)) {
                    out.push_str(p);
                }
            }
            TemplatePart::TagPrefix(n) => {
                if let Some(i) = cx.index(*n) {
                    cx.push_joined(0..i + 1, out);
                }
            }
            TemplatePart::TagSuffix(n) => {
                if let Some(i) = cx.index(*n) {
                    cx.push_joined(i..cx.parts.len(), out);
                }
            }
            TemplatePart::Hostname => out.push_str(cx.hostname),
            TemplatePart::Time => push_time(time, out),
            TemplatePart::Record(path) => {
                push_text(record.and_then(|r| r.lookup(path)), out);
            }
            TemplatePart::Capture(n) => {
                if let Some(m) = captures.and_then(|c| c.get(*n)) {
                    out.push_str(m.as_str());
                }
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS +0000` (UTC), the form of Ruby's `Time#to_s` that
/// Fluentd's `${time}` renders.
pub fn push_time(time: EventTime, out: &mut String) {
    let mut buf = Vec::with_capacity(40);
    crate::output::stdout::write_time_utc(time, &mut buf);
    // `YYYY-MM-DD HH:MM:SS.nnnnnnnnn +0000`: drop the fraction.
    let s = String::from_utf8_lossy(&buf);
    match (s.find('.'), s.rfind(' ')) {
        (Some(dot), Some(space)) if dot < space => {
            out.push_str(s.get(..dot).unwrap_or_default());
            out.push_str(s.get(space..).unwrap_or_default());
        }
        _ => out.push_str(&s),
    }
}
