//! The wire format of the three calls the td output makes, and what each answer means,
//! as pure functions (reference, sections 2, 3 and 7); `client.rs` does the IO.

use std::time::{SystemTime, UNIX_EPOCH};

/// `User-Agent` of every request: names tidepool and its version (reference, section 2).
pub const USER_AGENT: &str = concat!("tidepool/", env!("CARGO_PKG_VERSION"));

/// `Content-Type` of an import body, as td-client-ruby sends it (reference, section 2).
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// Content type of a create call's empty form body (reference, section 2, observed wire).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Escapes one path segment as td-client-ruby's `e` does: every byte outside
/// `A-Z a-z 0-9 - _ ! ~ * ' ( )` becomes `%XX`, the dot included (reference, section 2).
/// Valid names and hex ids come out unchanged.
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `PUT` path of an idempotent import: the unique id lets the server drop a repeat of
/// a request whose answer was lost (reference, section 2, "unique_id and idempotency").
pub fn import_path(db: &str, table: &str, unique_id: &str) -> String {
    format!(
        "/v3/table/import_with_id/{}/{}/{}/msgpack.gz",
        escape(db),
        escape(table),
        escape(unique_id)
    )
}

/// `POST` path that creates a database (reference, section 3).
pub fn create_database_path(db: &str) -> String {
    format!("/v3/database/create/{}", escape(db))
}

/// `POST` path that creates a log table (reference, section 3).
pub fn create_table_path(db: &str, table: &str) -> String {
    format!("/v3/table/create/{}/{}/log", escape(db), escape(table))
}

/// The `Date` header in the RFC 2822 form td-client-ruby sends
/// (`Wed, 25 Nov 2026 12:49:44 +0000`; reference, section 2).
pub fn date_header(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = crate::event::civil_from_days(days);
    let weekday = DAYS
        .get(days.rem_euclid(7) as usize)
        .copied()
        .unwrap_or("Thu");
    let month = MONTHS
        .get((m as usize).saturating_sub(1))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} +0000",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// What an answer to an import means (reference, section 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportAnswer {
    /// 2xx: stored (after the `md5_hex` check).
    Stored,
    /// 404: the table or database is missing.
    NotFound,
    /// 429, 5xx: try again later with backoff.
    Retry,
    /// Any other status: no retry can fix it.
    Reject,
}

/// Classifies an import answer's status.
pub fn classify_import(status: u16) -> ImportAnswer {
    match status {
        200..=299 => ImportAnswer::Stored,
        404 => ImportAnswer::NotFound,
        429 | 500..=599 => ImportAnswer::Retry,
        _ => ImportAnswer::Reject,
    }
}

/// What an answer to a create call means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateAnswer {
    /// 2xx, or 409 "already exists" (another worker or an operator was first: the
    /// reference's section 3 pitfall, treated as success on both creates).
    Exists,
    /// 404: for a table, the database is missing.
    NotFound,
    /// 429, 5xx: try again later with backoff.
    Retry,
    /// Any other status (400 bad name, 401, 403).
    Reject,
}

/// Classifies a create answer's status.
pub fn classify_create(status: u16) -> CreateAnswer {
    match status {
        200..=299 | 409 => CreateAnswer::Exists,
        404 => CreateAnswer::NotFound,
        429 | 500..=599 => CreateAnswer::Retry,
        _ => CreateAnswer::Reject,
    }
}

/// The `md5_hex` of an import answer when it is a non-empty JSON string; Go's client
/// compares it with the uploaded bytes' MD5 (reference, section 2). None when absent
/// or when the answer is not JSON (then there is nothing to compare).
pub fn answer_md5(answer: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let md5 = value.get("md5_hex")?.as_str()?;
    (!md5.is_empty()).then(|| md5.to_ascii_lowercase())
}

/// Longest part of an answer body quoted in an error message.
pub const QUOTED_BODY: usize = 512;

/// An answer body for a message: lossy UTF-8, cut at [`QUOTED_BODY`] bytes, on one line.
pub fn quote_body(body: &[u8]) -> String {
    let cut = body.get(..QUOTED_BODY).unwrap_or(body);
    let mut text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > QUOTED_BODY {
        text.push_str("...");
    }
    text.trim().to_string()
}
