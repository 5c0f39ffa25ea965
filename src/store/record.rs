//! One entry's record as cells: top-level keys with SQL-ready values.
//!
//! Reads the MessagePack map in place (no value tree): scalars become SQL scalars,
//! strings borrow the record bytes, nested arrays and maps become JSON text through
//! the output transcoder. A record that is not a map becomes one `value` cell of JSON.

use crate::msgpack::ScanError;
use crate::msgpack::head::{Cursor, Head};
use crate::output::json::write_json;
use std::borrow::Cow;

/// Column that receives a non-map record as JSON.
pub const VALUE_COLUMN: &str = "value";

/// One SQL value from a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    /// nil.
    Null,
    /// Integers and booleans (0/1).
    Int(i64),
    /// Floats.
    Real(f64),
    /// Strings (invalid UTF-8 replaced), integers above `i64::MAX` as decimal text.
    Text(Cow<'a, str>),
    /// Binary.
    Blob(&'a [u8]),
    /// Arrays, maps and extensions as JSON text.
    Json(String),
}

impl Cell<'_> {
    /// The declared column type a first value of this kind gives a new column.
    pub fn decl_type(&self) -> &'static str {
        match self {
            Cell::Null => "",
            Cell::Int(_) => "INTEGER",
            Cell::Real(_) => "REAL",
            Cell::Text(_) | Cell::Json(_) => "TEXT",
            Cell::Blob(_) => "BLOB",
        }
    }
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(i) => ValueRef::Integer(*i),
            Cell::Real(f) => ValueRef::Real(*f),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::Blob(b) => ValueRef::Blob(b),
            Cell::Json(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// A record's cells in the record's key order; a key `time` is dropped because the
/// event time fills that column (as Treasure Data overwrites it).
pub fn cells<'a>(
    record: &'a [u8],
    out: &mut Vec<(Cow<'a, str>, Cell<'a>)>,
) -> Result<(), ScanError> {
    out.clear();
    let mut cur = Cursor::new(record);
    let pairs = match cur.head()? {
        Head::Map(n) => n,
        _ => {
            let mut json = Vec::new();
            write_json(record, &mut json)?;
            out.push((
                Cow::Borrowed(VALUE_COLUMN),
                Cell::Json(String::from_utf8_lossy(&json).into_owned()),
            ));
            return Ok(());
        }
    };
    for _ in 0..pairs {
        let key = key(&mut cur)?;
        let cell = value(&mut cur)?;
        if key != "time" {
            out.push((key, cell));
        }
    }
    Ok(())
}

/// A map key as text: strings as they are, anything else as its JSON text.
fn key<'a>(cur: &mut Cursor<'a>) -> Result<Cow<'a, str>, ScanError> {
    let start = cur.pos;
    let mut peek = *cur;
    if let Head::Str(len) = peek.head()? {
        let body = peek.body(len)?;
        *cur = peek;
        return Ok(String::from_utf8_lossy(body));
    }
    cur.skip()?;
    let mut json = Vec::new();
    write_json(cur.buf.get(start..cur.pos).unwrap_or_default(), &mut json)?;
    Ok(Cow::Owned(String::from_utf8_lossy(&json).into_owned()))
}

/// One value as a cell.
fn value<'a>(cur: &mut Cursor<'a>) -> Result<Cell<'a>, ScanError> {
    let start = cur.pos;
    let mut peek = *cur;
    let cell = match peek.head()? {
        Head::Nil => Cell::Null,
        Head::Bool(b) => Cell::Int(i64::from(b)),
        Head::UInt(u) => match i64::try_from(u) {
            Ok(i) => Cell::Int(i),
            Err(_) => Cell::Text(Cow::Owned(u.to_string())),
        },
        Head::Int(i) => Cell::Int(i),
        Head::Float(f) => Cell::Real(f),
        Head::Str(len) => Cell::Text(String::from_utf8_lossy(peek.body(len)?)),
        Head::Bin(len) => Cell::Blob(peek.body(len)?),
        Head::Ext { .. } | Head::Array(_) | Head::Map(_) => {
            cur.skip()?;
            let mut json = Vec::new();
            write_json(cur.buf.get(start..cur.pos).unwrap_or_default(), &mut json)?;
            return Ok(Cell::Json(String::from_utf8_lossy(&json).into_owned()));
        }
    };
    *cur = peek;
    Ok(cell)
}
