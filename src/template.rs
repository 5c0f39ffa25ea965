//! `${name}` / `${name_parts[N]}` templates: the file output's path, the store's
//! database and table names, the MQTT input's tag. One parser, so every template
//! accepts and refuses the same text and says so in the same words.

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Text kept as written.
    Lit(String),
    /// `${name}`: the whole value (a tag, a topic).
    Whole,
    /// `${name_parts[N]}`: one part; a negative N counts from the end, as Fluentd's
    /// `tag_parts` does.
    Part(i64),
}

/// Parses `text` whose placeholders are `${name}` and `${name_parts[N]}`. The error
/// names the bad placeholder and the accepted ones. An empty text gives no segments;
/// callers that need something say so in their own words.
pub fn parse(text: &str, name: &str) -> Result<Vec<Segment>, String> {
    let parts_prefix = format!("{name}_parts[");
    let mut segments = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("${") {
        let (lit, after) = rest.split_at(open);
        if !lit.is_empty() {
            segments.push(Segment::Lit(lit.to_string()));
        }
        let body_and_rest = after.get(2..).unwrap_or_default();
        let close = body_and_rest
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder at {after:?}; close it with }}"))?;
        let (body, tail) = body_and_rest.split_at(close);
        let segment = if body == name {
            Segment::Whole
        } else {
            body.strip_prefix(parts_prefix.as_str())
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.trim().parse::<i64>().ok())
                .map(Segment::Part)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder ${{{body}}}; use ${{{name}}} or ${{{name}_parts[N]}}"
                    )
                })?
        };
        segments.push(segment);
        rest = tail.get(1..).unwrap_or_default();
    }
    if !rest.is_empty() {
        segments.push(Segment::Lit(rest.to_string()));
    }
    Ok(segments)
}

/// Part `i` of `parts` (negative counts from the end), None when there is no such part.
pub fn part<'a>(parts: &[&'a str], i: i64) -> Option<&'a str> {
    let n = i64::try_from(parts.len()).unwrap_or(i64::MAX);
    let idx = if i < 0 { n.saturating_add(i) } else { i };
    usize::try_from(idx)
        .ok()
        .and_then(|i| parts.get(i))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_whole_and_parts() {
        assert_eq!(
            parse("out/${tag}-${tag_parts[-1]}.log", "tag"),
            Ok(vec![
                Segment::Lit("out/".into()),
                Segment::Whole,
                Segment::Lit("-".into()),
                Segment::Part(-1),
                Segment::Lit(".log".into()),
            ])
        );
        assert_eq!(parse("", "topic"), Ok(vec![]));
    }

    #[test]
    fn bad_placeholders_name_the_accepted_ones() {
        assert_eq!(
            parse("${tag_part[1]}", "tag"),
            Err("unknown placeholder ${tag_part[1]}; use ${tag} or ${tag_parts[N]}".into())
        );
        assert_eq!(
            parse("${topic", "topic"),
            Err("unterminated placeholder at \"${topic\"; close it with }".into())
        );
        assert!(parse("${tag}", "topic").is_err());
    }

    #[test]
    fn parts_count_from_either_end() {
        let parts = ["td", "db", "table"];
        assert_eq!(part(&parts, 0), Some("td"));
        assert_eq!(part(&parts, -1), Some("table"));
        assert_eq!(part(&parts, 3), None);
        assert_eq!(part(&parts, -4), None);
        assert_eq!(part(&parts, i64::MIN), None);
    }
}
