//! Topic → tag: `/` becomes `.`, each part cleaned so any topic gives a valid tag,
//! under an optional prefix and template.
//!
//! MQTT topics may hold almost anything (spaces, dots, empty levels, `$SYS`); tags are
//! dot-separated parts that tag patterns match part by part. So every part keeps only
//! letters, digits, `_` and `-` (anything else becomes `_`, a `.` inside a topic level
//! included, so one level never turns into two parts), and empty parts are dropped.

use crate::template::Segment;

/// A `tag = "..."` template of an MQTT source: literal text, `${topic}` (the topic's
/// levels as tag parts) and `${topic_parts[N]}` (one level; negative N counts from the
/// end, as Fluentd's `tag_parts`).
#[derive(Clone, Debug, PartialEq)]
pub struct TopicTemplate(Vec<Segment>);

impl TopicTemplate {
    /// Parses `text`; the error names the bad placeholder and the accepted ones.
    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        let segments = crate::template::parse(text, "topic")?;
        if segments.is_empty() {
            return Err("empty tag template; write a tag or ${topic}".to_string());
        }
        Ok(TopicTemplate(segments))
    }

    /// The raw text for `topic`, before cleaning: `${topic}` gives the levels joined by
    /// `.`, a missing `${topic_parts[N]}` gives nothing.
    fn render(&self, topic: &str, out: &mut String) {
        let levels: Vec<&str> = topic.split('/').collect();
        for seg in &self.0 {
            match seg {
                Segment::Lit(l) => out.push_str(l),
                Segment::Whole => push_levels(topic, out),
                Segment::Part(i) => {
                    if let Some(level) = crate::template::part(&levels, *i) {
                        push_clean(level, out);
                    }
                }
            }
        }
    }
}

/// How one MQTT source names its events.
#[derive(Clone, Debug, PartialEq)]
pub struct TagRule {
    prefix: Option<String>,
    template: Option<TopicTemplate>,
}

/// The tag of a topic that leaves nothing after cleaning (e.g. `/`) and has no prefix.
const FALLBACK_TAG: &str = "mqtt";

impl TagRule {
    /// `prefix` (already a valid tag) goes in front; `template` replaces `${topic}`.
    pub fn new(prefix: Option<String>, template: Option<TopicTemplate>) -> Self {
        TagRule { prefix, template }
    }

    /// The tag for `topic`: never empty, no empty parts, no characters outside
    /// letters, digits, `_`, `-` and the `.` separators.
    pub fn tag(&self, topic: &str) -> String {
        let mut raw = String::with_capacity(topic.len() + 16);
        match &self.template {
            Some(t) => t.render(topic, &mut raw),
            None => push_levels(topic, &mut raw),
        }
        let mut tag = String::with_capacity(raw.len() + 8);
        if let Some(p) = &self.prefix {
            tag.push_str(p);
        }
        for part in raw.split('.') {
            let start = tag.len();
            if start > 0 {
                tag.push('.');
            }
            let before = tag.len();
            push_clean(part, &mut tag);
            if tag.len() == before {
                tag.truncate(start); // an empty part: drop it and its separator
            }
        }
        if tag.is_empty() {
            tag.push_str(FALLBACK_TAG);
        }
        tag
    }
}

/// Appends the topic's levels, cleaned, joined by `.` (empty levels give empty parts
/// that [`TagRule::tag`] drops).
fn push_levels(topic: &str, out: &mut String) {
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_clean(level, out);
    }
}

/// Appends `text` with every character that may not stand in a tag part turned into `_`.
fn push_clean(text: &str, out: &mut String) {
    out.extend(text.chars().map(|c| {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: Option<&str>, template: Option<&str>) -> TagRule {
        TagRule::new(
            prefix.map(str::to_string),
            template.map(|t| TopicTemplate::parse(t).unwrap_or_else(|e| panic!("{e}"))),
        )
    }

    #[test]
    fn slashes_become_dots_under_the_prefix() {
        let r = rule(Some("mqtt"), None);
        assert_eq!(r.tag("devices/d1/telemetry"), "mqtt.devices.d1.telemetry");
        assert_eq!(
            rule(None, None).tag("td/test_database/cpu_info"),
            "td.test_database.cpu_info"
        );
    }

    #[test]
    fn every_topic_gives_a_valid_tag() {
        let r = rule(Some("mqtt"), None);
        assert_eq!(r.tag("/a//b/"), "mqtt.a.b");
        assert_eq!(r.tag("v1.2/x y"), "mqtt.v1_2.x_y");
        assert_eq!(r.tag("$SYS/broker/load"), "mqtt._SYS.broker.load");
        assert_eq!(r.tag("温度/室"), "mqtt.温度.室");
        assert_eq!(r.tag("/"), "mqtt");
        assert_eq!(rule(None, None).tag("/"), FALLBACK_TAG);
        assert_eq!(rule(None, None).tag(""), FALLBACK_TAG);
        for topic in ["a/b", "..", "/./", "a/\u{0}/b", "*/**", "{a,b}"] {
            let tag = rule(Some("p"), None).tag(topic);
            assert!(
                !tag.is_empty() && !tag.contains("..") && !tag.ends_with('.'),
                "{tag}"
            );
            assert!(
                tag.chars()
                    .all(|c| c.is_alphanumeric() || "_-.".contains(c)),
                "{tag}"
            );
        }
    }

    #[test]
    fn templates_pick_levels() {
        let r = rule(None, Some("iot.${topic_parts[1]}.${topic_parts[-1]}"));
        assert_eq!(r.tag("devices/d1/telemetry"), "iot.d1.telemetry");
        // A missing level gives nothing rather than an error: the tag stays valid.
        assert_eq!(r.tag("solo"), "iot.solo");
        assert_eq!(
            rule(Some("x"), Some("${topic}.raw")).tag("a/b"),
            "x.a.b.raw"
        );
        assert_eq!(
            rule(None, Some("a.${topic_parts[0]}")).tag("x.y/z"),
            "a.x_y"
        );
    }

    #[test]
    fn template_errors_name_the_placeholder() {
        let e = TopicTemplate::parse("${tag}").err().unwrap_or_default();
        assert!(
            e.contains("${tag}") && e.contains("${topic_parts[N]}"),
            "{e}"
        );
        assert!(TopicTemplate::parse("${topic").is_err());
        assert!(TopicTemplate::parse("").is_err());
        assert!(TopicTemplate::parse("${topic_parts[x]}").is_err());
    }
}
