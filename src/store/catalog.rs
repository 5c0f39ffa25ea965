//! What the store holds: databases, their tables, columns, row counts, time ranges.

use super::names::{MAX_DATABASE_NAME, is_valid_name, quote_ident};
use super::query::{QueryError, existing_db, open_read_only};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One database file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DatabaseInfo {
    /// The database name (the file name without `.sqlite`).
    pub name: String,
    /// Size of the file in bytes (without its WAL).
    pub size_bytes: u64,
}

/// One table of a database.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TableInfo {
    /// The table name.
    pub name: String,
    /// Rows it holds.
    pub rows: u64,
    /// Its columns, in table order.
    pub columns: Vec<ColumnInfo>,
    /// Smallest `time` (unix seconds), None when empty.
    pub min_time: Option<i64>,
    /// Largest `time` (unix seconds), None when empty.
    pub max_time: Option<i64>,
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ColumnInfo {
    /// The column name.
    pub name: String,
    /// The declared type (INTEGER, REAL, TEXT, BLOB, or empty).
    #[serde(rename = "type")]
    pub decl_type: String,
}

/// Names of the databases in `dir`, sorted; empty when the directory does not exist.
pub fn database_names(dir: &Path) -> Vec<String> {
    databases(dir).into_iter().map(|d| d.name).collect()
}

/// The databases in `dir`, sorted by name.
pub fn databases(dir: &Path) -> Vec<DatabaseInfo> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<DatabaseInfo> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".sqlite")?.to_string();
            let meta = e.metadata().ok()?;
            (meta.is_file() && is_valid_name(&name, MAX_DATABASE_NAME)).then_some(DatabaseInfo {
                name,
                size_bytes: meta.len(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The user tables of `conn`'s database, sorted: SQLite's own and the store's
/// (named with a `#`, which no normalized name has) left out.
pub fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND instr(name, '#') = 0 ORDER BY name",
    )?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    names.collect()
}

/// The columns of `table`, in table order.
pub fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ColumnInfo>> {
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1)")?;
    let cols = stmt.query_map([table], |r| {
        Ok(ColumnInfo {
            name: r.get(0)?,
            decl_type: r.get(1)?,
        })
    })?;
    cols.collect()
}

/// Every table of database `db` with rows, columns and time range; counting rows of
/// huge tables is interrupted after `timeout`.
pub fn tables(dir: &Path, db: &str, timeout: Duration) -> Result<Vec<TableInfo>, QueryError> {
    let path = existing_db(dir, db)?;
    let mut conn = open_read_only(&path, Arc::new(Mutex::new(None)))
        .map_err(|e| QueryError::Io(format!("cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + timeout;
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline))
        .map_err(|e| QueryError::Io(e.to_string()))?;
    let sql_err = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => QueryError::Interrupted(timeout),
        _ => QueryError::Sql(e.to_string()),
    };
    let mut out = Vec::new();
    for name in table_names(&conn).map_err(sql_err)? {
        let columns = columns(&conn, &name).map_err(sql_err)?;
        let has_time = columns.iter().any(|c| c.name == super::writer::TIME);
        let qt = quote_ident(&name);
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {qt}"), [], |r| r.get(0))
            .map_err(sql_err)?;
        let (min_time, max_time) = if has_time {
            // Two queries so each uses the time index (min/max together would scan).
            let min = conn
                .query_row(&format!("SELECT min(\"time\") FROM {qt}"), [], |r| r.get(0))
                .map_err(sql_err)?;
            let max = conn
                .query_row(&format!("SELECT max(\"time\") FROM {qt}"), [], |r| r.get(0))
                .map_err(sql_err)?;
            (min, max)
        } else {
            (None, None)
        };
        out.push(TableInfo {
            name,
            rows: u64::try_from(rows).unwrap_or_default(),
            columns,
            min_time,
            max_time,
        });
    }
    Ok(out)
}
