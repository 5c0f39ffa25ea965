//! `record_transformer`: set keys from templates, rename, keep and remove keys.

use super::record::{Pairs, Val, str_value, str_value_owned};
use super::template::{TagCx, render};
use super::{Counts, Event, Verdict};
use crate::config::{RecordTransformerConfig, SetValue, TemplatePart};
use crate::msgpack::write;

/// A compiled `record_transformer`.
#[derive(Debug)]
pub struct RecordTransformer {
    config: RecordTransformerConfig,
}

/// Set values kept on the stack while a record is transformed.
const INLINE: usize = 8;

/// What is the same for every event of a batch: the set keys, encoded, and the
/// values that do not depend on the event, rendered.
#[derive(Debug, Default)]
pub struct Prepared {
    keys: Vec<Vec<u8>>,
    values: Vec<Option<Vec<u8>>>,
}

impl RecordTransformer {
    /// Wraps a checked config.
    pub fn new(config: RecordTransformerConfig) -> Self {
        RecordTransformer { config }
    }

    /// Encodes the keys and renders every set value that does not depend on the event.
    pub fn prepare(&self, cx: &TagCx<'_>) -> Prepared {
        let keys = self
            .config
            .record
            .iter()
            .map(|(k, _)| str_value(k))
            .collect();
        let values = self
            .config
            .record
            .iter()
            .map(|(_, set)| {
                let mut out = Vec::new();
                match set {
                    SetValue::Int(i) => write::int(&mut out, *i),
                    SetValue::Float(f) => write::f64(&mut out, *f),
                    SetValue::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
                    SetValue::Template(t) if !t.per_event() => {
                        let mut s = String::new();
                        render(t, cx, None, Default::default(), None, &mut s);
                        return Some(str_value(&s));
                    }
                    SetValue::Template(_) => return None,
                }
                Some(out)
            })
            .collect();
        Prepared { keys, values }
    }

    /// Transforms one event; records that are not maps pass unchanged (counted).
    pub fn apply<'a>(
        &self,
        prepared: &'a Prepared,
        ev: &mut Event<'a>,
        cx: &TagCx<'_>,
        counts: &mut Counts,
    ) -> Verdict {
        let time = ev.time;
        let Some(pairs) = ev.pairs_mut() else {
            counts.non_map += 1;
            return Verdict::Keep;
        };
        // Values first: templates read the record as it reached this filter. Up to
        // INLINE of them live on the stack (no allocation per event).
        let n = self.config.record.len();
        let mut inline: [Option<Val<'a>>; INLINE] = Default::default();
        let mut heap: Vec<Option<Val<'a>>> = Vec::new();
        if n > INLINE {
            heap.resize(n, None);
        }
        let values: &mut [Option<Val<'a>>] = if n > INLINE { &mut heap } else { &mut inline };
        for (((_, set), pre), slot) in self
            .config
            .record
            .iter()
            .zip(&prepared.values)
            .zip(values.iter_mut())
        {
            let v = match (pre, set) {
                (Some(bytes), _) => Val::Raw(bytes),
                (None, SetValue::Template(t)) => match t.parts.as_slice() {
                    // A template that is exactly one record value copies it with its type.
                    [TemplatePart::Record(path)] => Val::Owned(
                        pairs
                            .lookup(path)
                            .map_or_else(|| vec![0xc0], <[u8]>::to_vec),
                    ),
                    _ => {
                        let mut s = String::with_capacity(32);
                        render(t, cx, Some(pairs), time, None, &mut s);
                        Val::Owned(str_value_owned(s))
                    }
                },
                (None, _) => Val::Owned(vec![0xc0]),
            };
            *slot = Some(v);
        }
        let c = &self.config;
        for (old, new) in &c.rename_keys {
            rename(pairs, old, new);
        }
        if c.renew_record || !c.keep_keys.is_empty() {
            pairs.0.retain(|p| c.keep_keys.iter().any(|k| p.key.is(k)));
        }
        for (((key, _), encoded), v) in c.record.iter().zip(&prepared.keys).zip(values.iter_mut()) {
            if let Some(v) = v.take() {
                pairs.set_encoded(key, encoded, v);
            }
        }
        for key in &c.remove_keys {
            pairs.remove(key);
        }
        ev.changed = true;
        Verdict::Keep
    }
}

/// Renames `old` to `new`; an existing `new` is replaced. Nothing when `old` is absent.
fn rename<'a>(pairs: &mut Pairs<'a>, old: &str, new: &str) {
    if old == new || pairs.get(old).is_none() {
        return;
    }
    pairs.remove(new);
    for p in pairs.0.iter_mut() {
        if p.key.is(old) {
            p.key = super::record::Key::Name(std::borrow::Cow::Owned(new.to_string()));
        }
    }
}
