//! Treasure Data's postback API (reference `treasure-data.md`, section 8): the path,
//! the write key, and `td_record_time`; pure functions.

use crate::event::EventTime;

/// Where postback requests go: `POST /postback/v3/event/<db>/<table>`.
pub const PREFIX: &str = "/postback/v3/event/";

/// How far back TD honours `td_record_time`; older values get the receive time.
pub const RECORD_TIME_PAST: i64 = 7 * 24 * 3600;

/// How far ahead TD honours `td_record_time`; later values get the receive time.
pub const RECORD_TIME_FUTURE: i64 = 3 * 24 * 3600;

/// The database and table of a postback path (the part after [`PREFIX`]); the error
/// says what is wrong with them, for a 400.
pub fn parse_path(rest: &str) -> Result<(&str, &str), String> {
    let mut parts = rest.split('/');
    let (Some(db), Some(table), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "bad postback path \"{PREFIX}{rest}\" (expected {PREFIX}<database>/<table>)"
        ));
    };
    check_name("database", db)?;
    check_name("table", table)?;
    Ok((db, table))
}

/// TD's name rule: 3 to 255 characters of `a-z`, `0-9` and `_`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad {what} name \"{}\" (expected 3 to 255 characters of a-z, 0-9 and _)",
            name.escape_default()
        ))
    }
}

/// Where a request put its write key, in TD's order of precedence: the
/// `X-TD-Write-Key` header, then `Authorization: TD1 <key>`, then the `td_write_key`
/// query parameter.
pub fn write_key<'a>(
    header: Option<&'a str>,
    authorization: Option<&'a str>,
    query_key: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(k) = header.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(k);
    }
    if let Some(auth) = authorization {
        let auth = auth.trim();
        if let Some((scheme, key)) = auth.split_once(' ')
            && scheme.eq_ignore_ascii_case("TD1")
            && !key.trim().is_empty()
        {
            return Some(key.trim());
        }
    }
    query_key.filter(|k| !k.is_empty())
}

/// The outcome of checking a key against the configured ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Accepted (or no keys are configured).
    Ok,
    /// Keys are configured and the request has none: 401.
    Missing,
    /// The request's key is not one of them: 403.
    Wrong,
}

/// Checks `given` against `keys` in time independent of where they differ; an empty
/// `keys` accepts everything.
pub fn check_key(keys: &[String], given: Option<&str>) -> KeyCheck {
    if keys.is_empty() {
        return KeyCheck::Ok;
    }
    let Some(given) = given else {
        return KeyCheck::Missing;
    };
    let mut found = false;
    for k in keys {
        found |= constant_time_eq(k.as_bytes(), given.as_bytes());
    }
    if found { KeyCheck::Ok } else { KeyCheck::Wrong }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The event time for a `td_record_time` value: its whole seconds when it is a number
/// (or numeric string) within TD's window around `received`, else `received`.
pub fn record_time(value: Option<f64>, received: EventTime) -> EventTime {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return received;
    };
    let secs = v.floor();
    let lo = (received.secs - RECORD_TIME_PAST) as f64;
    let hi = (received.secs + RECORD_TIME_FUTURE) as f64;
    if secs < lo || secs > hi {
        return received;
    }
    EventTime {
        secs: secs as i64,
        nanos: 0,
    }
}
