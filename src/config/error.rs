//! Collects every problem in a config with its place, then reports them together.

use super::ConfigError;
use std::fmt::Display;
use std::ops::Range;

/// Problems found so far in one config text; each keeps its byte offset so the
/// report lists them in file order with `line:col`.
pub(crate) struct Problems<'a> {
    origin: &'a str,
    text: &'a str,
    found: Vec<(usize, String)>,
}

impl<'a> Problems<'a> {
    /// Starts an empty report for `text`, named `origin` in messages.
    pub(crate) fn new(origin: &'a str, text: &'a str) -> Self {
        Problems {
            origin,
            text,
            found: Vec::new(),
        }
    }

    /// Records `message` about `path` (a dotted key path, may be empty) at `span`.
    pub(crate) fn at(&mut self, span: Range<usize>, path: &str, message: impl Display) {
        let (line, col) = line_col(self.text, span.start);
        let text = if path.is_empty() {
            format!("{}:{line}:{col}: {message}", self.origin)
        } else {
            format!("{}:{line}:{col}: {path}: {message}", self.origin)
        };
        self.found.push((span.start, text));
    }

    /// The config text the spans point into.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The report, in file order, or `Ok(value)` when nothing was found.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(value) if self.found.is_empty() => Ok(value),
            _ => {
                let mut found = self.found;
                found.sort_by_key(|(offset, _)| *offset);
                let mut messages: Vec<String> = found.into_iter().map(|(_, m)| m).collect();
                messages.dedup();
                if messages.is_empty() {
                    messages.push(format!("{}: config is not usable", self.origin));
                }
                Err(ConfigError(messages))
            }
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`; an offset
/// past the end or inside a character is clamped rather than trusted.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let before = text.get(..end).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}
