//! Fluentd tag patterns: `a.b`, `*`, `**`, `{a,b}`, several separated by spaces.
//!
//! OWNER: config helper. STUB.

/// A compiled tag pattern.
#[derive(Clone, Debug)]
pub struct TagPattern {
    source: String,
}

/// A pattern that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad tag pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

impl TagPattern {
    /// Compiles a pattern.
    pub fn parse(pattern: &str) -> Result<TagPattern, PatternError> {
        Ok(TagPattern {
            source: pattern.to_string(),
        })
    }

    /// Whether `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        self.source == "**" || self.source == tag
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}
