//! `/api/records`: the newest records of one table, filtered by age and by column
//! equality, as the telemetrics-backend collector answers them.
//!
//! Parameters are checked before anything is opened; every rejection names the
//! parameter and says why, so the API can answer a 400 the caller can act on.

use super::names::quote_ident;
use super::query::{QueryError, existing_db, json_value, open_read_only};
use super::writer::{CHUNK, EXTRA, INDEX, TIME, TIME_NANOS};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default and largest `limit`.
pub const MAX_LIMIT: usize = 10_000;

/// Longest filter value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// Parameters that are not column filters.
const RESERVED: [&str; 5] = [
    "database",
    "table",
    "limit",
    "created_in_days",
    "created_in_sec",
];

/// A checked `/api/records` request.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordsQuery {
    /// Database name (default `default`).
    pub database: String,
    /// Table name (required).
    pub table: String,
    /// Rows at most, 1..=[`MAX_LIMIT`] (larger values are capped).
    pub limit: usize,
    /// Only rows with `time >=` this (unix seconds).
    pub since: Option<i64>,
    /// `column = value` filters, in request order.
    pub filters: Vec<(String, String)>,
}

/// A parameter that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("parameter {parameter}: {message}")]
pub struct ParamError {
    /// The query parameter at fault.
    pub parameter: String,
    /// What is wrong with it.
    pub message: String,
}

fn param_error(parameter: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.to_string(),
        message: message.into(),
    }
}

/// Why `/api/records` gave no records.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The request names something that does not exist or is malformed (400).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The database could not be read (500), or the read was interrupted.
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// Checks the query parameters; `now` is the current unix time in seconds.
pub fn parse_params(params: &[(String, String)], now: i64) -> Result<RecordsQuery, ParamError> {
    let mut q = RecordsQuery {
        database: super::names::DEFAULT_DATABASE.to_string(),
        table: String::new(),
        limit: MAX_LIMIT,
        since: None,
        filters: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        if value.len() > MAX_VALUE_LEN {
            return Err(param_error(
                key,
                format!(
                    "value is {} bytes, over the {MAX_VALUE_LEN}-byte limit",
                    value.len()
                ),
            ));
        }
        if RESERVED.contains(&key.as_str()) {
            if seen.contains(&key.as_str()) {
                return Err(param_error(key, "given more than once"));
            }
            seen.push(key);
        }
        let window = |unit: i64| -> Result<i64, ParamError> {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| param_error(key, format!("{value:?} is not an integer")))?;
            if n < 0 {
                return Err(param_error(key, format!("{n} is negative")));
            }
            let secs = n
                .checked_mul(unit)
                .ok_or_else(|| param_error(key, format!("{n} is too large")))?;
            Ok(now.saturating_sub(secs))
        };
        match key.as_str() {
            "database" => q.database = value.clone(),
            "table" => q.table = value.clone(),
            "limit" => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| param_error(key, format!("{value:?} is not an integer")))?;
                if n < 1 {
                    return Err(param_error(key, format!("{n} is below 1")));
                }
                q.limit = usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
            }
            "created_in_days" => {
                let t = window(86_400)?;
                q.since = Some(q.since.map_or(t, |s| s.max(t)));
            }
            "created_in_sec" => {
                let t = window(1)?;
                q.since = Some(q.since.map_or(t, |s| s.max(t)));
            }
            _ => q.filters.push((key.clone(), value.clone())),
        }
    }
    if q.table.is_empty() {
        return Err(param_error(
            "table",
            "missing; name the table, e.g. table=heap_info",
        ));
    }
    Ok(q)
}

/// The newest matching records of `q.table`, each an object of its non-null columns
/// (the store's own columns left out).
pub fn records(
    dir: &Path,
    q: &RecordsQuery,
    timeout: Duration,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, RecordsError> {
    let path = match existing_db(dir, &q.database) {
        Ok(p) => p,
        Err(QueryError::UnknownDatabase { name, known }) => {
            return Err(param_error(
                "database",
                format!("unknown database {name:?} (databases: {known})"),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let mut conn = open_read_only(&path, Arc::new(Mutex::new(None)))
        .map_err(|e| QueryError::Io(format!("cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + timeout;
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline))
        .map_err(|e| QueryError::Io(e.to_string()))?;
    let sql_err = |e: rusqlite::Error| -> RecordsError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => {
                QueryError::Interrupted(timeout).into()
            }
            _ => QueryError::Sql(e.to_string()).into(),
        }
    };
    let tables = super::catalog::table_names(&conn).map_err(sql_err)?;
    if !tables.contains(&q.table) {
        return Err(param_error(
            "table",
            format!(
                "unknown table {:?} in database {:?} (tables: {})",
                q.table,
                q.database,
                tables.join(", ")
            ),
        )
        .into());
    }
    let columns = super::catalog::columns(&conn, &q.table).map_err(sql_err)?;
    let mut sql = format!("SELECT * FROM {}", quote_ident(&q.table));
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    if let Some(since) = q.since {
        args.push(since.into());
        clauses.push(format!("\"{TIME}\" >= ?{}", args.len()));
    }
    for (key, value) in &q.filters {
        let col = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(key) && !is_internal(&c.name))
            .ok_or_else(|| {
                param_error(
                    key,
                    format!(
                        "not a column of table {:?} (columns: {})",
                        q.table,
                        columns
                            .iter()
                            .filter(|c| !is_internal(&c.name))
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        args.push(value.clone().into());
        clauses.push(format!("{} = ?{}", quote_ident(&col.name), args.len()));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(
        " ORDER BY \"{TIME}\" DESC, rowid DESC LIMIT ?{}",
        args.len()
    ));
    let mut stmt = conn.prepare(&sql).map_err(sql_err)?;
    let names: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args.iter()))
        .map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err)? {
        let mut rec = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            if is_internal(name) && name != EXTRA {
                continue;
            }
            let v = json_value(row.get_ref(i).map_err(sql_err)?);
            if name == EXTRA {
                // Keys that found no column of their own rejoin their record.
                if let serde_json::Value::String(s) = v
                    && let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&s)
                {
                    for (k, val) in m {
                        rec.entry(k).or_insert(val);
                    }
                }
            } else if !v.is_null() {
                rec.insert(name.clone(), v);
            }
        }
        out.push(rec);
    }
    Ok(out)
}

/// The store's bookkeeping columns, left out of records.
fn is_internal(name: &str) -> bool {
    [TIME_NANOS, CHUNK, INDEX, EXTRA].contains(&name)
}
