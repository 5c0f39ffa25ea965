//! Database and table names: where they come from (tag or template), how they are
//! normalized (Treasure Data's rules), and how identifiers are quoted in SQL.
//!
//! Every name that reaches a file path or a statement went through [`normalize`], so
//! it holds only `a-z`, `0-9` and `_`; every identifier in SQL is also written with
//! [`quote_ident`], so even a column named after a hostile record key is inert.

use crate::template::Segment;

/// Shortest name Treasure Data accepts; shorter names are padded with `_`.
pub const MIN_NAME: usize = 3;

/// Longest database name: 255 minus `.sqlite-journal`, so every file SQLite makes for it
/// fits the usual 255-byte name limit. Longer names are cut and end in `__`, as
/// Treasure Data cuts names over its own limit.
pub const MAX_DATABASE_NAME: usize = 240;

/// Longest table name (Treasure Data's limit).
pub const MAX_TABLE_NAME: usize = 255;

/// The database of events whose tag does not name one (`td.<db>.<table>`).
pub const DEFAULT_DATABASE: &str = "default";

/// Normalizes a tag-derived name as Treasure Data's client does: pad to 3 characters
/// with `_`, cut a name over `max` characters to `max - 2` plus `__`, lowercase, and
/// turn every character outside `a-z0-9_` into `_`. None for an empty name.
pub fn normalize(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut chars: Vec<char> = name.chars().collect();
    while chars.len() < MIN_NAME {
        chars.push('_');
    }
    if chars.len() > max {
        chars.truncate(max.saturating_sub(2));
        chars.extend(['_', '_']);
    }
    Some(
        chars
            .into_iter()
            .flat_map(char::to_lowercase)
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

/// True for a name [`normalize`] could have produced: what a query may name as a
/// database, so a request can never point outside the store directory.
pub fn is_valid_name(name: &str, max: usize) -> bool {
    (MIN_NAME..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `"name"` with every `"` doubled: the one way identifiers are written into SQL.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// How an output derives `(database, table)` from a chunk's tag.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Naming {
    /// `database` template (`${tag}`, `${tag_parts[N]}`); None = from the tag.
    pub database: Option<Template>,
    /// `table` template; None = from the tag.
    pub table: Option<Template>,
}

impl Naming {
    /// The normalized `(database, table)` for `tag`.
    ///
    /// Without templates `td.<db>.<table>` names both (the last two parts, as
    /// fluent-plugin-td does, when the tag has 3 or more parts and starts with `td.`);
    /// any other tag goes to database [`DEFAULT_DATABASE`], table = the tag with `.`
    /// turned into `_`. Errors name the tag and what is missing.
    pub fn resolve(&self, tag: &str) -> Result<(String, String), String> {
        let parts: Vec<&str> = tag.split('.').collect();
        let td = parts.len() >= 3 && parts.first() == Some(&"td");
        let (auto_db, auto_table) = if td {
            let n = parts.len();
            (
                parts.get(n - 2).copied().unwrap_or_default().to_string(),
                parts.get(n - 1).copied().unwrap_or_default().to_string(),
            )
        } else {
            (DEFAULT_DATABASE.to_string(), tag.replace('.', "_"))
        };
        let db = match &self.database {
            Some(t) => t.render(tag, &parts)?,
            None => auto_db,
        };
        let table = match &self.table {
            Some(t) => t.render(tag, &parts)?,
            None => auto_table,
        };
        let db = normalize(&db, MAX_DATABASE_NAME)
            .ok_or_else(|| format!("tag {tag:?} gives an empty database name"))?;
        let mut table = normalize(&table, MAX_TABLE_NAME)
            .ok_or_else(|| format!("tag {tag:?} gives an empty table name"))?;
        if table.starts_with("sqlite_") {
            // SQLite reserves these names for itself.
            table.insert(0, '_');
            table.truncate(MAX_TABLE_NAME);
        }
        Ok((db, table))
    }
}

/// A `database` / `table` template: literal text and tag placeholders.
#[derive(Clone, Debug, PartialEq)]
pub struct Template(Vec<Segment>);

impl Template {
    /// Parses `text`; the error names the bad placeholder and the accepted ones.
    pub fn parse(text: &str) -> Result<Template, String> {
        let segments = crate::template::parse(text, "tag")?;
        if segments.is_empty() {
            return Err("empty template; write a name or ${tag_parts[N]}".to_string());
        }
        Ok(Template(segments))
    }

    /// The text for `tag` (not yet normalized); `${tag}` has its `.` turned into `_`.
    fn render(&self, tag: &str, parts: &[&str]) -> Result<String, String> {
        let mut s = String::new();
        for seg in &self.0 {
            match seg {
                Segment::Lit(l) => s.push_str(l),
                Segment::Whole => s.push_str(&tag.replace('.', "_")),
                Segment::Part(i) => {
                    let part = crate::template::part(parts, *i).ok_or_else(|| {
                        format!(
                            "tag {tag:?} has {} parts, so ${{tag_parts[{i}]}} does not exist; \
                             route such tags elsewhere or change the template",
                            parts.len()
                        )
                    })?;
                    s.push_str(part);
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_treasure_data() {
        assert_eq!(normalize("db", 255).as_deref(), Some("db_"));
        assert_eq!(normalize("Test-DB", 255).as_deref(), Some("test_db"));
        assert_eq!(normalize("", 255), None);
        let long = "a".repeat(300);
        let n = normalize(&long, 255).unwrap_or_default();
        assert_eq!(n.len(), 255);
        assert!(n.ends_with("a__"));
        assert_eq!(normalize("../../etc", 255).as_deref(), Some("______etc"));
        assert_eq!(normalize("é", 255).as_deref(), Some("___"));
    }

    #[test]
    fn td_tags_name_database_and_table() {
        let n = Naming::default();
        assert_eq!(
            n.resolve("td.test_database.heap_info"),
            Ok(("test_database".into(), "heap_info".into()))
        );
        assert_eq!(n.resolve("td.db.tb"), Ok(("db_".into(), "tb_".into())));
        assert_eq!(
            n.resolve("td.x.y;drop table"),
            Ok(("x__".into(), "y_drop_table".into()))
        );
        assert_eq!(
            n.resolve("app.web.access"),
            Ok(("default".into(), "app_web_access".into()))
        );
        assert_eq!(
            n.resolve("../../etc"),
            Ok(("default".into(), "______etc".into()))
        );
        assert_eq!(n.resolve("td.foo"), Ok(("default".into(), "td_foo".into())));
    }

    #[test]
    fn templates_pick_tag_parts() {
        let n = Naming {
            database: Some(
                Template::parse("dev_${tag_parts[1]}").unwrap_or_else(|e| panic!("{e}")),
            ),
            table: Some(Template::parse("${tag_parts[-1]}").unwrap_or_else(|e| panic!("{e}"))),
        };
        assert_eq!(
            n.resolve("iot.Kitchen.temp"),
            Ok(("dev_kitchen".into(), "temp".into()))
        );
        assert!(n.resolve("single").is_err());
        assert!(Template::parse("${nope}").is_err());
        assert!(Template::parse("${tag").is_err());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(is_valid_name("test_database", MAX_DATABASE_NAME));
        assert!(!is_valid_name("../etc", MAX_DATABASE_NAME));
        assert!(!is_valid_name("ab", MAX_DATABASE_NAME));
    }
}
