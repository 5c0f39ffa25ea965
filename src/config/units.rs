//! Sizes and durations written the way Fluentd operators write them.
//!
//! Sizes: a bare integer is bytes; `k`/`m`/`g`/`t` (any case, optionally followed by
//! `iB`) are powers of 1024, `KB`/`MB`/`GB`/`TB` are powers of 1000, as in
//! `"8MiB"`, `"8 MiB"`, `"8m"`, `"32MB"`. Durations: a bare number is seconds;
//! `ms`, `s`, `m`, `h`, `d`, `w` and their words (`"5 weeks"`, `"2 days"`).
//! Fractions are accepted (`"1.5s"`, `"0.5GiB"`); negative values are not.

use std::time::Duration;

/// Splits `"8 MiB"` into `("8", "MiB")`, trimming spaces around both.
fn split_number(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    (number, unit.trim())
}

/// A non-negative number written with digits and at most one `.`.
enum Number {
    Whole(u64),
    Fraction(f64),
}

fn parse_number(number: &str) -> Option<Number> {
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    if number.contains('.') {
        number
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Number::Fraction)
    } else {
        number.parse::<u64>().ok().map(Number::Whole)
    }
}

/// Bytes in one `unit` of a size, or None for an unknown unit.
fn size_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    let m = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" | "ki" => 1 << 10,
        "m" | "mib" | "mi" => 1 << 20,
        "g" | "gib" | "gi" => 1 << 30,
        "t" | "tib" | "ti" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    Some(m)
}

/// What a size should look like, for error messages.
pub const SIZE_EXPECTED: &str =
    "a size such as \"8MiB\", \"512k\", \"32MB\" or an integer number of bytes";

/// What a duration should look like, for error messages.
pub const DURATION_EXPECTED: &str = "a duration such as \"500ms\", \"5s\", \"1m\", \"72h\", \"5 weeks\" or an integer number of seconds";

/// Parses a size string into bytes; the error says what was wrong with `text`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text);
    let bad = || format!("bad size \"{text}\" (expected {SIZE_EXPECTED})");
    let multiplier = size_multiplier(unit).ok_or_else(bad)?;
    match parse_number(number).ok_or_else(bad)? {
        Number::Whole(n) => n
            .checked_mul(multiplier)
            .ok_or_else(|| format!("size \"{text}\" is too large")),
        Number::Fraction(f) => {
            let bytes = f * multiplier as f64;
            // u64::MAX as f64 rounds up to 2^64, so compare with `<`.
            if bytes < u64::MAX as f64 {
                Ok(bytes as u64)
            } else {
                Err(format!("size \"{text}\" is too large"))
            }
        }
    }
}

/// Nanoseconds in one `unit` of a duration, or None for an unknown unit.
fn duration_nanos(unit: &str) -> Option<u128> {
    const SEC: u128 = 1_000_000_000;
    let unit = unit.to_ascii_lowercase();
    let n = match unit.as_str() {
        "ns" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "microsecond" | "microseconds" => 1_000,
        "ms" | "millisecond" | "milliseconds" => 1_000_000,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => SEC,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * SEC,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600 * SEC,
        "d" | "day" | "days" => 86_400 * SEC,
        "w" | "week" | "weeks" => 7 * 86_400 * SEC,
        _ => return None,
    };
    Some(n)
}

/// Parses a duration string; the error says what was wrong with `text`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text);
    let bad = || format!("bad duration \"{text}\" (expected {DURATION_EXPECTED})");
    let unit_nanos = duration_nanos(unit).ok_or_else(bad)?;
    let too_large = || format!("duration \"{text}\" is too large");
    let nanos: u128 = match parse_number(number).ok_or_else(bad)? {
        Number::Whole(n) => u128::from(n)
            .checked_mul(unit_nanos)
            .ok_or_else(too_large)?,
        Number::Fraction(f) => {
            let nanos = f * unit_nanos as f64;
            if nanos < u64::MAX as f64 {
                nanos as u128
            } else {
                return Err(too_large());
            }
        }
    };
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it fits.
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, sub))
}

/// A bare TOML number used as a duration: seconds, possibly fractional.
pub fn seconds(value: f64) -> Result<Duration, String> {
    if value < 0.0 {
        return Err(format!("duration {value} is negative"));
    }
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("bad duration {value} (expected {DURATION_EXPECTED})"))
}
