//! Read-only SQL against one database file, bounded in rows and time.
//!
//! Three locks keep a query from changing anything: the file is opened read-only,
//! an authorizer allows only reads, functions and read-only pragmas (no ATTACH, no
//! transactions, no writes, no schema changes), and a statement SQLite does not call
//! read-only is refused before it runs. A progress handler interrupts a statement
//! that runs past its time limit; rows past the cap are not read.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default and largest number of rows a query returns.
pub const MAX_ROWS: usize = 10_000;

/// Default time limit of a query.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest string or blob a query may build (`randomblob(1e9)` is refused).
pub const MAX_VALUE_BYTES: i32 = 16 << 20;

/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: i32 = 1 << 20;

/// Answer size (roughly, in bytes of values) past which rows stop being read, as
/// with the row cap: `truncated` is set.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// Pragmas that only read, whatever their argument (`table_info(t)`).
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
    "freelist_count",
    "page_count",
    "data_version",
];

/// Pragmas that read without an argument and change state with one.
const QUERY_ONLY_PRAGMAS: &[&str] = &[
    "user_version",
    "application_id",
    "page_size",
    "encoding",
    "journal_mode",
    "schema_version",
];

/// Bounds of one query.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rows returned at most; more set `truncated`.
    pub max_rows: usize,
    /// The statement is interrupted after this long.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: MAX_ROWS,
            timeout: TIMEOUT,
        }
    }
}

/// A query's answer: column names and rows of JSON values.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryResult {
    /// Column names, in select order.
    pub columns: Vec<String>,
    /// Rows; integers and reals as numbers, text as strings, blobs as base64, NULL as null.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when the row cap cut the answer short.
    pub truncated: bool,
}

/// Why a query gave no answer; the API maps each variant to a status.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No such database file.
    #[error("unknown database {name:?} (databases: {known})")]
    UnknownDatabase {
        /// The name asked for.
        name: String,
        /// The databases that exist, comma-separated.
        known: String,
    },
    /// The statement would write, attach, or change state; or is not one statement.
    #[error("query refused: {0}")]
    Refused(String),
    /// The statement ran past the time limit and was interrupted.
    #[error("query interrupted after {0:?} (time limit); add a WHERE on time or a LIMIT")]
    Interrupted(Duration),
    /// The SQL is wrong (syntax, unknown table or column).
    #[error("{0}")]
    Sql(String),
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(String),
}

/// Opens `path` read-only with the authorizer installed; `denied` receives what the
/// authorizer refused, for the error message.
pub fn open_read_only(
    path: &Path,
    denied: Arc<Mutex<Option<String>>>,
) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        MAX_VALUE_BYTES,
    )?;
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_SQL_LENGTH,
        MAX_SQL_BYTES,
    )?;
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        let verdict = authorize(&ctx.action);
        if let Err(what) = &verdict
            && let Ok(mut d) = denied.lock()
            && d.is_none()
        {
            *d = Some(what.clone());
        }
        if verdict.is_ok() {
            Authorization::Allow
        } else {
            Authorization::Deny
        }
    }))?;
    Ok(conn)
}

/// The read-only policy: Ok to allow, Err naming what is refused.
pub fn authorize(action: &AuthAction<'_>) -> Result<(), String> {
    match action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Ok(()),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            if READ_PRAGMAS.contains(&name.as_str())
                || (pragma_value.is_none() && QUERY_ONLY_PRAGMAS.contains(&name.as_str()))
            {
                Ok(())
            } else {
                Err(format!(
                    "PRAGMA {pragma_name} (only read-only pragmas are allowed)"
                ))
            }
        }
        AuthAction::Attach { filename } => Err(format!("ATTACH of {filename:?}")),
        AuthAction::Detach { .. } => Err("DETACH".to_string()),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Err("transaction control".to_string())
        }
        AuthAction::Insert { table_name } => Err(format!("INSERT into {table_name}")),
        AuthAction::Update { table_name, .. } => Err(format!("UPDATE of {table_name}")),
        AuthAction::Delete { table_name } => Err(format!("DELETE from {table_name}")),
        other => Err(format!("{other:?}")),
    }
}

/// Runs one read-only statement on database `db` in `dir`.
pub fn run(dir: &Path, db: &str, sql: &str, limits: Limits) -> Result<QueryResult, QueryError> {
    let path = existing_db(dir, db)?;
    let denied = Arc::new(Mutex::new(None));
    let mut conn = open_read_only(&path, Arc::clone(&denied))
        .map_err(|e| QueryError::Io(format!("cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + limits.timeout;
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline))
        .map_err(|e| QueryError::Io(e.to_string()))?;
    let fail = |e: rusqlite::Error| -> QueryError {
        if let Some(what) = denied.lock().ok().and_then(|d| d.clone()) {
            return QueryError::Refused(format!("{what} is not allowed: queries are read-only"));
        }
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => {
                QueryError::Interrupted(limits.timeout)
            }
            Some(rusqlite::ErrorCode::ReadOnly) => {
                QueryError::Refused("the statement writes: queries are read-only".to_string())
            }
            _ => match e {
                rusqlite::Error::MultipleStatement => QueryError::Refused(
                    "more than one statement; send one statement per query".to_string(),
                ),
                e => QueryError::Sql(e.to_string()),
            },
        }
    };
    let mut stmt = conn.prepare(sql).map_err(fail)?;
    if !stmt.readonly() {
        return Err(QueryError::Refused(
            "the statement is not read-only: queries are read-only".to_string(),
        ));
    }
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut truncated = false;
    let mut bytes = 0usize;
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next().map_err(fail)? {
        if rows.len() >= limits.max_rows || bytes > MAX_RESULT_BYTES {
            truncated = true;
            break;
        }
        let mut out = Vec::with_capacity(width);
        for i in 0..width {
            let v = row.get_ref(i).map_err(fail)?;
            bytes = bytes.saturating_add(match v {
                ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
                _ => 8,
            });
            out.push(json_value(v));
        }
        rows.push(out);
    }
    Ok(QueryResult {
        columns,
        rows,
        truncated,
    })
}

/// The path of an existing database, or [`QueryError::UnknownDatabase`].
pub fn existing_db(dir: &Path, db: &str) -> Result<std::path::PathBuf, QueryError> {
    match super::db_path(dir, db) {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(QueryError::UnknownDatabase {
            name: db.to_string(),
            known: super::catalog::database_names(dir).join(", "),
        }),
    }
}

/// A SQLite value as JSON: blobs as base64, non-finite reals as null.
pub fn json_value(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or_default(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b).into()
        }
    }
}
