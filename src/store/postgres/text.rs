//! Values both ways in PostgreSQL's text format: record cells into `COPY ... FROM
//! STDIN` rows, and query answers (text, typed by the statement's columns) into the
//! JSON values the SQLite store answers.

use crate::store::record::Cell;
use std::io::Write as _;
use tokio_postgres::types::Type;

/// What a column holds, as far as writing cells into it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// `bigint`, `integer`, `smallint`.
    Int,
    /// `double precision`, `real`, `numeric`.
    Float,
    /// `boolean` (a column someone made by hand).
    Bool,
    /// `text`, `character varying`.
    Text,
    /// Anything else: cells go to `_extra` rather than fail the chunk.
    Other,
}

impl ColType {
    /// The kind of an `information_schema.columns.data_type`.
    pub fn of(data_type: &str) -> ColType {
        match data_type {
            "bigint" | "integer" | "smallint" => ColType::Int,
            "double precision" | "real" | "numeric" => ColType::Float,
            "boolean" => ColType::Bool,
            "text" | "character varying" => ColType::Text,
            _ => ColType::Other,
        }
    }
}

/// The type a new column gets from its first value; None for null (the column waits
/// for a value that says what it is).
pub fn decl_type(cell: &Cell<'_>) -> Option<&'static str> {
    match cell {
        Cell::Null => None,
        Cell::Int(_) => Some("bigint"),
        Cell::Real(_) => Some("double precision"),
        Cell::Text(_) | Cell::Json(_) | Cell::Blob(_) => Some("text"),
    }
}

/// Appends `cell` as one COPY text field for a column of type `t`; false (nothing
/// written) when the value does not fit the column, so it goes to `_extra`.
pub fn copy_cell(buf: &mut Vec<u8>, cell: &Cell<'_>, t: ColType) -> bool {
    match (cell, t) {
        (Cell::Null, _) => buf.extend_from_slice(b"\\N"),
        (Cell::Int(i), ColType::Int | ColType::Float) => {
            let _ = write!(buf, "{i}");
        }
        (Cell::Int(i @ (0 | 1)), ColType::Bool) => {
            buf.push(if *i == 1 { b't' } else { b'f' });
        }
        (Cell::Real(f), ColType::Int) => {
            // An integral float fits; 2^63 itself does not (the cast would saturate).
            if f.fract() != 0.0 || !f.is_finite() || f.abs() >= 9.223_372_036_854_775e18 {
                return false;
            }
            let _ = write!(buf, "{}", *f as i64);
        }
        (Cell::Real(f), ColType::Float) => {
            if f.is_nan() {
                buf.extend_from_slice(b"NaN");
            } else if f.is_infinite() {
                buf.extend_from_slice(if *f > 0.0 { b"Infinity" } else { b"-Infinity" });
            } else {
                let _ = write!(buf, "{f:?}");
            }
        }
        (Cell::Int(i), ColType::Text) => {
            let _ = write!(buf, "{i}");
        }
        (Cell::Real(f), ColType::Text) => {
            let _ = write!(buf, "{f}");
        }
        (Cell::Text(s), ColType::Text) => copy_text(buf, s),
        (Cell::Json(s), ColType::Text) => copy_text(buf, s),
        (Cell::Blob(b), ColType::Text) => {
            use base64::Engine as _;
            copy_text(buf, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        _ => return false,
    }
    true
}

/// Appends `s` escaped for COPY's text format; NUL, which no PostgreSQL text may
/// hold, becomes U+FFFD.
pub fn copy_text(buf: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            0 => buf.extend_from_slice("\u{FFFD}".as_bytes()),
            b => buf.push(b),
        }
    }
}

/// A cell as JSON, for `_extra` (blobs as base64, as the SQLite store has them).
pub fn cell_json(cell: &Cell<'_>) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Int(i) => (*i).into(),
        Cell::Real(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_default(),
        Cell::Text(s) => serde_json::Value::String(s.to_string()),
        Cell::Blob(b) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b).into()
        }
        Cell::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.clone().into()),
    }
}

/// A value in the server's text output as JSON, by its column's type: integers and
/// floats as numbers (a `numeric` holding an integer, as `sum()` answers, as an
/// integer), booleans as true/false, json as JSON, bytea as base64, the rest as text.
pub fn text_json(text: Option<&str>, ty: &Type) -> serde_json::Value {
    let Some(text) = text else {
        return serde_json::Value::Null;
    };
    let number = |t: &str| -> serde_json::Value {
        if let Ok(i) = t.parse::<i64>() {
            return i.into();
        }
        match t.parse::<f64>() {
            Ok(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or_default(),
            Err(_) => t.into(),
        }
    };
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => number(text),
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => number(text),
        Type::BOOL => match text {
            "t" => true.into(),
            "f" => false.into(),
            other => other.into(),
        },
        Type::JSON | Type::JSONB => serde_json::from_str(text).unwrap_or_else(|_| text.into()),
        Type::BYTEA => match text.strip_prefix("\\x").and_then(|h| hex::decode(h).ok()) {
            Some(bytes) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into()
            }
            None => text.into(),
        },
        _ => text.into(),
    }
}
