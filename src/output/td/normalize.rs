//! Database and table names: tag routing with Treasure Data's normalization, and the
//! strict check for names fixed in the config (reference, section 4).

/// Shortest valid name (reference, section 4: `validate_name`).
pub const MIN_NAME: usize = 3;
/// Longest valid name; the server may allow 256 (UNCONFIRMED), so 255 is the safe side.
pub const MAX_NAME: usize = 255;

/// Normalizes a tag part exactly as td-client-ruby's `normalize_database_name` does
/// (used for tables too): pad to 3 characters with `_`, cut a name over 255
/// characters to its first 253 plus `__`, lowercase, then every character outside
/// `a-z0-9_` becomes `_`. Lengths count characters, as Ruby's do. None for an empty part.
pub fn normalize(part: &str) -> Option<String> {
    if part.is_empty() {
        return None;
    }
    let len = part.chars().count();
    let mut name: String = if len > MAX_NAME {
        let mut s: String = part.chars().take(MAX_NAME - 2).collect();
        s.push_str("__");
        s
    } else {
        part.to_string()
    };
    for _ in len..MIN_NAME {
        name.push('_');
    }
    Some(
        name.to_lowercase()
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '_' => c,
                _ => '_',
            })
            .collect(),
    )
}

/// The `(database, table)` of a tag: its last two dot-separated parts, normalized
/// (`td.Test-DB.x` gives `test_db` / `x__`). An error naming the tag when it has fewer
/// than two parts or one of them is empty: such a chunk can never be imported.
pub fn destination(tag: &str) -> Result<(String, String), String> {
    let mut parts = tag.rsplit('.');
    let (Some(table), Some(db)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "tag \"{tag}\" has fewer than two dot-separated parts; the td output imports \
             <anything>.<database>.<table> tags (e.g. td.test_database.cpu_info), or set \
             database and table in its config"
        ));
    };
    match (normalize(db), normalize(table)) {
        (Some(db), Some(table)) => Ok((db, table)),
        _ => Err(format!(
            "tag \"{tag}\" has an empty database or table part; the td output imports \
             <anything>.<database>.<table> tags (e.g. td.test_database.cpu_info)"
        )),
    }
}

/// Checks a name written in the config: 3 to 255 characters of `a-z`, `0-9` and `_`
/// (reference, section 4: fixed names are validated, not normalized).
pub fn validate(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if (MIN_NAME..=MAX_NAME).contains(&len) && chars_ok {
        Ok(())
    } else {
        Err(format!(
            "bad name \"{name}\" (expected {MIN_NAME} to {MAX_NAME} characters of a-z, 0-9 and _, e.g. \"test_database\")"
        ))
    }
}
