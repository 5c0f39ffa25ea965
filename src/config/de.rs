//! Typed deserialization that reports every problem, not just the first.
//!
//! serde stops at the first error. [`typed`] therefore retries: it finds the key
//! or value the error points at (by span), records the problem with its key path,
//! removes that entry from a scratch copy, and deserializes again, until the copy
//! deserializes or the error is about the table itself (a missing key).

use super::env::{self, Lookup};
use super::error::Problems;
use serde::de::DeserializeOwned;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeValue, ValueDeserializer};

/// A parsed TOML value with its place in the text.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// One step of a key path inside the value being deserialized.
#[derive(Clone, Debug)]
enum Step {
    /// A key of a table.
    Key(String),
    /// An element of an array: its index now (in the scratch copy) and in the file.
    Index { now: usize, written: usize },
}

/// Elements already removed from arrays of the scratch copy, by array span start,
/// so later paths still name elements by their index in the file.
#[derive(Default)]
struct Removed(Vec<(usize, Vec<usize>)>);

impl Removed {
    fn written(&self, array: usize, now: usize) -> usize {
        let mut index = now;
        if let Some((_, gone)) = self.0.iter().find(|(a, _)| *a == array) {
            for &g in gone {
                if g <= index {
                    index += 1;
                }
            }
        }
        index
    }

    fn remove(&mut self, array: usize, written: usize) {
        match self.0.iter_mut().find(|(a, _)| *a == array) {
            Some((_, gone)) => {
                gone.push(written);
                gone.sort_unstable();
            }
            None => self.0.push((array, vec![written])),
        }
    }
}

/// Where an error points: the path to the entry, whether at its key (an unknown
/// key) or its value, and the span of the array holding the last element, if any.
struct Hit {
    steps: Vec<Step>,
    at_key: bool,
    array: Option<usize>,
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The deepest entry of `value` whose key or value span holds `span`. Children
/// are searched even when their parent's span does not hold it: the span of a
/// table opened by a header (`[source.security]`) is only the header.
fn locate(
    value: &DeValue<'_>,
    span: &Range<usize>,
    removed: &Removed,
    array_start: usize,
) -> Option<Hit> {
    match value {
        DeValue::Table(table) => {
            for (key, child) in table.iter() {
                let here = || Step::Key(key.get_ref().to_string());
                if contains(&key.span(), span) {
                    return Some(Hit {
                        steps: vec![here()],
                        at_key: true,
                        array: None,
                    });
                }
                if let Some(hit) = within(here(), child, span, removed, None) {
                    return Some(hit);
                }
            }
            None
        }
        DeValue::Array(array) => {
            for (now, child) in array.iter().enumerate() {
                let written = removed.written(array_start, now);
                let here = Step::Index { now, written };
                if let Some(hit) = within(here, child, span, removed, Some(array_start)) {
                    return Some(hit);
                }
            }
            None
        }
        _ => None,
    }
}

/// `span` inside `child` (reached by `here`): deeper if possible, else `child`
/// itself when its span holds it.
fn within(
    here: Step,
    child: &Value<'_>,
    span: &Range<usize>,
    removed: &Removed,
    array: Option<usize>,
) -> Option<Hit> {
    if let Some(mut hit) = locate(child.get_ref(), span, removed, child.span().start) {
        hit.steps.insert(0, here);
        return Some(hit);
    }
    contains(&child.span(), span).then(|| Hit {
        steps: vec![here],
        at_key: false,
        array,
    })
}

/// Removes the entry at `steps` from `value`; true when something was removed.
fn remove(value: &mut DeValue<'_>, steps: &[Step]) -> bool {
    let Some((first, rest)) = steps.split_first() else {
        return false;
    };
    match (value, first) {
        (DeValue::Table(table), Step::Key(name)) => {
            let key = table.keys().find(|k| k.get_ref() == name).cloned();
            let Some(key) = key else { return false };
            if rest.is_empty() {
                table.remove(&key).is_some()
            } else {
                table
                    .get_mut(&key)
                    .is_some_and(|child| remove(child.get_mut(), rest))
            }
        }
        (DeValue::Array(array), Step::Index { now, .. }) => {
            if rest.is_empty() {
                if *now >= array.len() {
                    return false;
                }
                let old = std::mem::replace(array, DeArray::new());
                for (i, v) in old.into_iter().enumerate() {
                    if i != *now {
                        array.push(v);
                    }
                }
                true
            } else {
                array
                    .get_mut(*now)
                    .is_some_and(|child| remove(child.get_mut(), rest))
            }
        }
        _ => false,
    }
}

/// Renders a key path: `base.key[2].other` (array indices 1-based, as counted in the file).
fn render(base: &str, steps: &[Step]) -> String {
    let mut path = base.to_string();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Step::Index { written, .. } => {
                path.push_str(&format!("[{}]", written + 1));
            }
        }
    }
    path
}

/// The backticked names after "expected" in serde's unknown-field message.
fn expected_names(message: &str) -> Vec<&str> {
    let Some((_, expected)) = message.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, name)| name)
        .collect()
}

/// serde's wording, made to read like the rest of tidepool's messages.
fn reword(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    let message = match message.find("expected struct ") {
        // `expected struct TlsRaw`: the raw type's name means nothing to an operator.
        Some(at) => format!("{}expected a table", message.get(..at).unwrap_or_default()),
        None => message.to_string(),
    };
    message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
}

/// Deserializes `value` (the table at key path `path`, described as `section` in
/// messages such as "[[source]] #1") into `T`, recording every problem found.
///
/// Returns `T` when the value deserializes once bad entries are removed (so later
/// checks can still run), and None when a required key is missing or bad.
pub(crate) fn typed<T: DeserializeOwned>(
    value: &Value<'_>,
    path: &str,
    section: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    let mut scratch = value.clone();
    let mut removed = Removed::default();
    // (table path, key) pairs already reported: a key removed for a bad value, or
    // one an unknown key was probably meant to be. A "missing key" error for them
    // would only repeat the first.
    let mut reported: Vec<(String, String)> = Vec::new();
    // Each round removes one entry, so this bounds the loop.
    let mut rounds = count_entries(value.get_ref()).saturating_add(2);
    while rounds > 0 {
        rounds -= 1;
        let error = match T::deserialize(ValueDeserializer::from(scratch.clone())) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let span = error.span().unwrap_or_else(|| value.span());
        let message = error.message();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'));
        let already = |table: &str| {
            missing.is_some_and(|name| reported.iter().any(|(t, k)| t == table && k == name))
        };
        let Some(hit) = locate(scratch.get_ref(), &span, &removed, scratch.span().start) else {
            // About the table itself: a missing key, or a type mismatch of the whole.
            if !already(path) {
                problems.at(span, path, reword(message));
            }
            return None;
        };
        let full = render(path, &hit.steps);
        let parent = render(path, hit.steps.split_last().map_or(&[], |(_, p)| p));
        if hit.at_key {
            let place = if parent == path {
                section.to_string()
            } else {
                format!("`{parent}`")
            };
            let key = match hit.steps.last() {
                Some(Step::Key(k)) => k.as_str(),
                _ => "",
            };
            let names = expected_names(message);
            let expected = if names.is_empty() {
                "no keys here".to_string()
            } else {
                format!("one of: {}", names.join(", "))
            };
            let hint = match closest(key, &names) {
                Some(name) => {
                    reported.push((parent.clone(), name.to_string()));
                    format!(" (did you mean `{name}`?)")
                }
                None => String::new(),
            };
            problems.at(
                span,
                &full,
                format!("unknown key `{key}` in {place}{hint}, expected {expected}"),
            );
        } else if !already(&full) {
            problems.at(span, &full, reword(message));
        }
        if let (Some(array), Some(Step::Index { written, .. })) = (hit.array, hit.steps.last()) {
            removed.remove(array, *written);
        }
        if let Some(Step::Key(k)) = hit.steps.last() {
            reported.push((parent, k.clone()));
        }
        if !remove(scratch.get_mut(), &hit.steps) {
            return None;
        }
    }
    None
}

/// The expected name `key` is most likely a typo of: a few edits away (one per
/// three characters, at least one).
fn closest<'n>(key: &str, names: &[&'n str]) -> Option<&'n str> {
    let limit = (key.chars().count() / 3).max(1);
    names
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Edit distance counting a swap of neighbours as one edit (optimal string
/// alignment), over characters: `listne` is one edit from `listen`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // d[i * width + j]: distance between a[..i] and b[..j].
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[at(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[at(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[at(i - 1, j)] + 1)
                .min(d[at(i, j - 1)] + 1)
                .min(d[at(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[at(i - 2, j - 2)] + 1);
            }
            d[at(i, j)] = best;
        }
    }
    d[at(a.len(), b.len())]
}

fn count_entries(value: &DeValue<'_>) -> usize {
    match value {
        DeValue::Table(t) => t
            .iter()
            .map(|(_, v)| 1usize.saturating_add(count_entries(v.get_ref())))
            .fold(0usize, usize::saturating_add),
        DeValue::Array(a) => a
            .iter()
            .map(|v| 1usize.saturating_add(count_entries(v.get_ref())))
            .fold(0usize, usize::saturating_add),
        _ => 0,
    }
}

/// Replaces `${ENV}` in every string value of `value`, recording each unset
/// variable at the string that names it.
pub(crate) fn substitute_env(
    value: &mut Value<'_>,
    path: &str,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match env::substitute(s, env) {
            Ok(new) => {
                if new != **s {
                    *s = new.into();
                }
            }
            Err(missing) => {
                for name in missing {
                    problems.at(
                        span.clone(),
                        path,
                        format!(
                            "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
                        ),
                    );
                }
            }
        },
        DeValue::Table(table) => {
            for (key, child) in table.iter_mut() {
                let child_path = if path.is_empty() {
                    key.get_ref().to_string()
                } else {
                    format!("{path}.{}", key.get_ref())
                };
                substitute_env(child, &child_path, env, problems);
            }
        }
        DeValue::Array(array) => {
            for (i, child) in array.iter_mut().enumerate() {
                let child_path = format!("{path}[{}]", i + 1);
                substitute_env(child, &child_path, env, problems);
            }
        }
        _ => {}
    }
}
