//! Filters: `[[filter]]` tables, dispatched on `type`, with their regexes compiled
//! and templates parsed here so a mistake is reported with its place.

use super::Resolver;
use crate::config::de::{Value, typed};
use crate::config::error::line_col;
use crate::config::raw::{self, Scalar};
use crate::config::*;
use toml::Spanned;

const FILTER_TYPES: &str = "record_transformer, grep, parser, rewrite_tag, sample, throttle";
const PARSE_FORMATS: &str = "json, kv, regexp";

/// Most events a throttle group may be allowed per interval (keeps counters sane).
const MAX_RATE: u64 = 1 << 40;

impl Resolver<'_, '_, '_> {
    /// All `[[filter]]` tables, in file order.
    pub(super) fn filters(&mut self, value: Option<&Value<'_>>) -> Option<Vec<FilterConfig>> {
        let Some(value) = value else {
            return Some(Vec::new());
        };
        let items = self.array_of_tables(value, "filter")?;
        let mut ok = true;
        let mut filters = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let n = i + 1;
            let path = format!("filter[{n}]");
            let section = format!("[[filter]] #{n}");
            let Some(kind) = self.type_of(item, &path, &section, FILTER_TYPES) else {
                ok = false;
                continue;
            };
            let line = line_col(self.problems.text(), item.span().start).0;
            let built = match kind.as_str() {
                "record_transformer" => self.record_transformer(item, &path, &section),
                "grep" => self.grep(item, &path, &section),
                "parser" => self.parser(item, &path, &section),
                "rewrite_tag" => self.rewrite_tag(item, &path, &section),
                "sample" => self.sample(item, &path, &section),
                "throttle" => self.throttle(item, &path, &section),
                other => {
                    let span = self.type_span(item);
                    self.at(
                        span,
                        &format!("{path}.type"),
                        format!(
                            "unknown filter type \"{other}\" (expected one of: {FILTER_TYPES})"
                        ),
                    );
                    None
                }
            };
            match built {
                Some((pattern, kind)) => filters.push(FilterConfig {
                    index: n,
                    line,
                    pattern,
                    kind,
                }),
                None => ok = false,
            }
        }
        ok.then_some(filters)
    }

    /// A filter's tag pattern.
    fn filter_pattern(&mut self, v: &Spanned<String>, path: &str) -> Option<TagPattern> {
        TagPattern::parse(v.get_ref())
            .map_err(|e| self.at(v.span(), &format!("{path}.pattern"), e))
            .ok()
    }

    /// A regex; Fluentd's `/.../` delimiters are accepted (with a trailing `i` for
    /// case-insensitive matching).
    fn regex(&mut self, v: &Spanned<String>, path: &str) -> Option<regex::Regex> {
        let written = v.get_ref();
        let source = match written.strip_prefix('/') {
            Some(rest) if rest.ends_with("/i") && rest.len() >= 2 => {
                format!("(?i){}", rest.get(..rest.len() - 2).unwrap_or_default())
            }
            Some(rest) if rest.ends_with('/') && !rest.is_empty() => {
                rest.get(..rest.len() - 1).unwrap_or_default().to_string()
            }
            _ => written.clone(),
        };
        regex::RegexBuilder::new(&source)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                let reason = e.to_string();
                let reason = reason.lines().last().unwrap_or("invalid").trim();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                self.at(v.span(), path, format!("bad regex \"{written}\": {reason}"))
            })
            .ok()
    }

    fn key_path(&mut self, v: &Spanned<String>, path: &str) -> Option<KeyPath> {
        KeyPath::parse(v.get_ref())
            .map_err(|e| self.at(v.span(), path, e))
            .ok()
    }

    fn template(&mut self, v: &Spanned<String>, path: &str, captures: bool) -> Option<Template> {
        Template::parse(v.get_ref(), captures)
            .map_err(|e| self.at(v.span(), path, e))
            .ok()
    }

    /// Key names from `"a,b"` or `["a", "b"]`.
    fn key_names(&mut self, v: Option<&Spanned<raw::Names>>, path: &str) -> Option<Vec<String>> {
        let Some(v) = v else { return Some(Vec::new()) };
        let names: Vec<String> = v
            .get_ref()
            .0
            .iter()
            .flat_map(|n| n.split(','))
            .map(|n| n.trim().to_string())
            .collect();
        if names.iter().any(String::is_empty) {
            self.at(
                v.span(),
                path,
                "empty key name (expected names such as [\"a\", \"b\"])",
            );
            return None;
        }
        Some(names)
    }

    fn record_transformer(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<(TagPattern, FilterKind)> {
        let raw: raw::RecordTransformerRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let pattern = self.filter_pattern(&raw.pattern, path);
        let mut record = Vec::new();
        // TOML tables come back sorted by key; apply them in the order written.
        let mut written: Vec<_> = raw
            .record
            .iter()
            .flat_map(|r| r.get_ref().0.iter())
            .collect();
        written.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in written {
            let kpath = format!("{path}.record.{}", key.get_ref());
            if key.get_ref().is_empty() {
                self.at(key.span(), &kpath, "empty key name");
                ok = false;
                continue;
            }
            let set = match value.get_ref() {
                Scalar::Str(s) => {
                    let t = Spanned::new(value.span(), s.clone());
                    self.template(&t, &kpath, false).map(SetValue::Template)
                }
                Scalar::Int(i) => Some(SetValue::Int(*i)),
                Scalar::Float(f) => Some(SetValue::Float(*f)),
                Scalar::Bool(b) => Some(SetValue::Bool(*b)),
            };
            match set {
                Some(set) => record.push((key.get_ref().clone(), set)),
                None => ok = false,
            }
        }
        let remove_keys = self.key_names(raw.remove_keys.as_ref(), &format!("{path}.remove_keys"));
        let keep_keys = self.key_names(raw.keep_keys.as_ref(), &format!("{path}.keep_keys"));
        let mut rename_keys = Vec::new();
        let mut renames: Vec<_> = raw
            .rename_keys
            .iter()
            .flat_map(|r| r.get_ref().0.iter())
            .collect();
        renames.sort_by_key(|(k, _)| k.span().start);
        for (old, new) in renames {
            if old.get_ref().is_empty() || new.get_ref().is_empty() {
                self.at(
                    new.span(),
                    &format!("{path}.rename_keys.{}", old.get_ref()),
                    "empty key name (expected rename_keys = { old = \"new\" })",
                );
                ok = false;
                continue;
            }
            rename_keys.push((old.get_ref().clone(), new.get_ref().clone()));
        }
        let config = RecordTransformerConfig {
            record,
            remove_keys: remove_keys?,
            keep_keys: keep_keys?,
            renew_record: raw.renew_record.unwrap_or(false),
            rename_keys,
        };
        (ok).then_some((pattern?, FilterKind::RecordTransformer(config)))
    }

    fn grep_rules(
        &mut self,
        rules: Option<&Vec<Spanned<raw::GrepRuleRaw>>>,
        path: &str,
        ok: &mut bool,
    ) -> Vec<GrepRule> {
        let mut out = Vec::new();
        for (i, rule) in rules.into_iter().flatten().enumerate() {
            let rpath = format!("{path}[{}]", i + 1);
            let rule = rule.get_ref();
            let key = self.key_path(&rule.key, &format!("{rpath}.key"));
            let pattern = self.regex(&rule.pattern, &format!("{rpath}.pattern"));
            match (key, pattern) {
                (Some(key), Some(pattern)) => out.push(GrepRule { key, pattern }),
                _ => *ok = false,
            }
        }
        out
    }

    fn grep(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<(TagPattern, FilterKind)> {
        let raw: raw::GrepRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let pattern = self.filter_pattern(&raw.pattern, path);
        let mut config = GrepConfig {
            regexp_and: self.grep_rules(raw.regexp.as_ref(), &format!("{path}.regexp"), &mut ok),
            exclude_or: self.grep_rules(raw.exclude.as_ref(), &format!("{path}.exclude"), &mut ok),
            ..GrepConfig::default()
        };
        if let Some(and) = &raw.and_group {
            let and = and.get_ref();
            let more = self.grep_rules(and.regexp.as_ref(), &format!("{path}.and.regexp"), &mut ok);
            config.regexp_and.extend(more);
            config.exclude_and = self.grep_rules(
                and.exclude.as_ref(),
                &format!("{path}.and.exclude"),
                &mut ok,
            );
        }
        if let Some(or) = &raw.or_group {
            let or = or.get_ref();
            config.regexp_or =
                self.grep_rules(or.regexp.as_ref(), &format!("{path}.or.regexp"), &mut ok);
            let more = self.grep_rules(or.exclude.as_ref(), &format!("{path}.or.exclude"), &mut ok);
            config.exclude_or.extend(more);
        }
        let empty = config.regexp_and.is_empty()
            && config.regexp_or.is_empty()
            && config.exclude_and.is_empty()
            && config.exclude_or.is_empty();
        if empty && ok {
            self.at(
                item.span(),
                path,
                "grep has no rules (expected regexp = [{ key = \"message\", pattern = \"...\" }] or exclude = [...])",
            );
            ok = false;
        }
        ok.then_some((pattern?, FilterKind::Grep(config)))
    }

    fn parser(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<(TagPattern, FilterKind)> {
        let raw: raw::ParserRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let pattern = self.filter_pattern(&raw.pattern, path);
        let key_name = self.non_empty(&raw.key_name, &format!("{path}.key_name"));
        let misplaced = |r: &mut Self, v: &Option<Spanned<String>>, key: &str, fmt: &str| {
            if let Some(v) = v {
                r.at(
                    v.span(),
                    &format!("{path}.{key}"),
                    format!("`{key}` applies only to format = \"{fmt}\""),
                );
                false
            } else {
                true
            }
        };
        let format = match raw.format.get_ref().as_str() {
            "json" => {
                ok &= misplaced(self, &raw.expression, "expression", "regexp");
                ok &= misplaced(self, &raw.delimiter, "delimiter", "kv");
                ok &= misplaced(self, &raw.separator, "separator", "kv");
                Some(ParseFormat::Json)
            }
            "kv" => {
                ok &= misplaced(self, &raw.expression, "expression", "regexp");
                let delimiter = raw.delimiter.as_ref().map_or(Some(" ".to_string()), |d| {
                    self.non_empty_raw(d, &format!("{path}.delimiter"))
                });
                let separator = raw.separator.as_ref().map_or(Some("=".to_string()), |d| {
                    self.non_empty_raw(d, &format!("{path}.separator"))
                });
                match (delimiter, separator) {
                    (Some(delimiter), Some(separator)) => Some(ParseFormat::KeyValue {
                        delimiter,
                        separator,
                    }),
                    _ => None,
                }
            }
            "regexp" => {
                ok &= misplaced(self, &raw.delimiter, "delimiter", "kv");
                ok &= misplaced(self, &raw.separator, "separator", "kv");
                match &raw.expression {
                    Some(e) => {
                        let re = self.regex(e, &format!("{path}.expression"));
                        if let Some(r) = &re
                            && r.capture_names().flatten().next().is_none()
                        {
                            self.at(
                                e.span(),
                                &format!("{path}.expression"),
                                "regex has no named captures (expected e.g. \"^(?<host>\\\\S+) (?<message>.*)$\")",
                            );
                            ok = false;
                        }
                        re.map(ParseFormat::Regexp)
                    }
                    None => {
                        self.at(
                            raw.format.span(),
                            &format!("{path}.expression"),
                            "format = \"regexp\" needs `expression` (a regex with named captures such as (?<host>\\S+))",
                        );
                        None
                    }
                }
            }
            other => {
                self.at(
                    raw.format.span(),
                    &format!("{path}.format"),
                    format!("unknown format \"{other}\" (expected one of: {PARSE_FORMATS})"),
                );
                None
            }
        };
        let hash_value_field = match &raw.hash_value_field {
            Some(v) => {
                let f = self.non_empty(v, &format!("{path}.hash_value_field"));
                ok &= f.is_some();
                f
            }
            None => None,
        };
        let reserve_data = raw.reserve_data.unwrap_or(false);
        let config = ParserConfig {
            key_name: key_name?,
            format: format?,
            reserve_data,
            remove_key_name_field: raw.remove_key_name_field.unwrap_or(false),
            hash_value_field,
        };
        ok.then_some((pattern?, FilterKind::Parser(config)))
    }

    /// A separator string that may be blank (`" "`) but not empty.
    fn non_empty_raw(&mut self, v: &Spanned<String>, path: &str) -> Option<String> {
        if v.get_ref().is_empty() {
            self.at(
                v.span(),
                path,
                "empty value (expected at least one character)",
            );
            None
        } else {
            Some(v.get_ref().clone())
        }
    }

    fn rewrite_tag(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<(TagPattern, FilterKind)> {
        let raw: raw::RewriteTagRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let pattern = self.filter_pattern(&raw.pattern, path);
        if raw.rules.get_ref().is_empty() {
            self.at(
                raw.rules.span(),
                &format!("{path}.rules"),
                "no rules (expected rules = [{ key = \"...\", pattern = \"...\", tag = \"...\" }])",
            );
            ok = false;
        }
        let mut rules = Vec::new();
        for (i, rule) in raw.rules.get_ref().iter().enumerate() {
            let rpath = format!("{path}.rules[{}]", i + 1);
            let rule = rule.get_ref();
            let key = self.key_path(&rule.key, &format!("{rpath}.key"));
            let re = self.regex(&rule.pattern, &format!("{rpath}.pattern"));
            let tag = self.template(&rule.tag, &format!("{rpath}.tag"), true);
            if let Some(t) = &tag
                && t.parts
                    .iter()
                    .any(|p| matches!(p, TemplatePart::Record(_) | TemplatePart::Time))
            {
                self.at(
                    rule.tag.span(),
                    &format!("{rpath}.tag"),
                    "a new tag may use $1-style captures, ${tag}, ${tag_parts[N]}, ${tag_prefix[N]}, ${tag_suffix[N]} and ${hostname} only",
                );
                ok = false;
            }
            match (key, re, tag) {
                (Some(key), Some(pattern), Some(tag)) => rules.push(RewriteRule {
                    key,
                    pattern,
                    tag,
                    invert: rule.invert.unwrap_or(false),
                    keep: rule.keep.unwrap_or(false),
                }),
                _ => ok = false,
            }
        }
        let config = RewriteTagConfig {
            rules,
            drop_unmatched: raw.drop_unmatched.unwrap_or(false),
        };
        ok.then_some((pattern?, FilterKind::RewriteTag(config)))
    }

    fn sample(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<(TagPattern, FilterKind)> {
        let raw: raw::SampleRaw = typed(item, path, section, self.problems)?;
        let pattern = self.filter_pattern(&raw.pattern, path);
        let rate = self.count::<u64>(Some(&raw.rate), &format!("{path}.rate"), 1, 1, MAX_RATE);
        Some((pattern?, FilterKind::Sample { rate: rate? }))
    }

    fn throttle(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<(TagPattern, FilterKind)> {
        let raw: raw::ThrottleRaw = typed(item, path, section, self.problems)?;
        let pattern = self.filter_pattern(&raw.pattern, path);
        let rate_limit = self.count::<u64>(
            Some(&raw.rate_limit),
            &format!("{path}.rate_limit"),
            1,
            1,
            MAX_RATE,
        );
        let ipath = format!("{path}.interval");
        let interval = self.duration(raw.interval.as_ref(), &ipath, Duration::from_secs(1));
        let interval = match interval {
            Some(d) if d.is_zero() => {
                let span = raw.interval.as_ref().map_or(0..0, |v| v.span());
                self.at(span, &ipath, "must be above 0 (expected e.g. \"1s\")");
                None
            }
            other => other,
        };
        let group_key = match &raw.group_key {
            Some(k) => Some(self.key_path(k, &format!("{path}.group_key"))?),
            None => None,
        };
        let config = ThrottleConfig {
            rate_limit: rate_limit?,
            interval: interval?,
            group_key,
        };
        Some((pattern?, FilterKind::Throttle(config)))
    }
}
