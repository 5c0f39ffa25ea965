//! `${NAME}` and `${NAME:-default}` substitution in config strings.
//!
//! Only names written like environment variables (`[A-Z_][A-Z0-9_]*`) are
//! substituted, so runtime templates such as `${tag}`, `${tag_parts[1]}` or
//! `${hostname}` in a file output's path pass through untouched. `$${` writes a
//! literal `${`. Substitution happens on the string as written, before sizes and
//! durations are parsed, so `chunk_limit_size = "${CHUNK:-8MiB}"` works.

/// Looks a variable up; `None` when unset. Injected so tests need not touch the
/// process environment.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment; a value that is not UTF-8 counts as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Whether `name` is written like an environment variable.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_uppercase() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Substitutes every `${NAME}` / `${NAME:-default}` in `text`.
///
/// `${NAME:-default}` uses the default when NAME is unset or empty, as a shell does.
/// Returns the names of unset variables that have no default as the error, so all
/// of them are reported at once.
pub fn substitute(text: &str, env: Lookup<'_>) -> Result<String, Vec<String>> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let (before, from_dollar) = rest.split_at(at);
        out.push_str(before);
        if let Some(after) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body_and_rest) = from_dollar.strip_prefix("${") else {
            out.push('$');
            rest = from_dollar.strip_prefix('$').unwrap_or_default();
            continue;
        };
        let Some((body, after)) = body_and_rest.split_once('}') else {
            out.push_str(from_dollar);
            rest = "";
            break;
        };
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_env_name(name) {
            // A runtime template such as `${tag}`: keep it as written.
            out.push_str("${");
            out.push_str(body);
            out.push('}');
        } else {
            match (env(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => missing.push(name.to_string()),
            }
        }
        rest = after;
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}
