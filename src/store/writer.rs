//! Writes chunks into one database file: schema on demand, one transaction per chunk.
//!
//! A table starts with the fixed columns ([`FIXED_COLUMNS`]) and grows a column the
//! first time a record key appears (`ALTER TABLE ADD COLUMN`, typed by that first
//! value). Rows carry their chunk's id and entry index under a unique constraint, and
//! a chunk already present is skipped as a whole, so a chunk re-delivered after a
//! crash or a lost answer is stored once.

use super::names::quote_ident;
use super::record::{Cell, cells};
use crate::msgpack::entries;
use crate::output::ChunkId;
use rusqlite::{Connection, TransactionBehavior, params};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Event time in whole seconds (Treasure Data's `time`).
pub const TIME: &str = "time";
/// The EventTime's nanoseconds within the second.
pub const TIME_NANOS: &str = "time_nanos";
/// The chunk's id folded to 64 bits ([`chunk_key`]).
pub const CHUNK: &str = "_chunk";
/// The entry's index within its chunk.
pub const INDEX: &str = "_idx";
/// Keys that found no column of their own (over [`MAX_COLUMNS`], or names over
/// [`MAX_COLUMN_NAME`] bytes), as one JSON object per row.
pub const EXTRA: &str = "_extra";

/// Columns every table has, in order.
pub const FIXED_COLUMNS: [&str; 4] = [TIME, TIME_NANOS, CHUNK, INDEX];

/// Names a record key may not take as they are (compared ignoring ASCII case, as
/// SQLite does): the store's own columns, and SQLite's rowid aliases, which a column
/// of that name would shadow. Such a key gets `_` appended until it is free.
pub const RESERVED_COLUMNS: [&str; 8] = [
    TIME, TIME_NANOS, CHUNK, INDEX, EXTRA, "rowid", "oid", "_rowid_",
];

/// Most record-key columns a table gets (SQLite's own limit is 2000 columns).
pub const MAX_COLUMNS: usize = 1000;

/// Longest record key, in bytes, that gets a column of its own.
pub const MAX_COLUMN_NAME: usize = 255;

/// Page cache of a writer connection, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Bytes of a database file a writer maps into memory.
const WRITER_MMAP_BYTES: i64 = 256 << 20;

/// WAL pages between automatic checkpoints (64 MiB of 4 KiB pages).
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// Most rows bound into one multi-row INSERT.
const ROWS_PER_INSERT: usize = 64;

/// SQLite's default bound-parameter limit.
const MAX_PARAMS: usize = 32766;

/// Most distinct record keys remembered per table before the memo is reset.
const MAX_KEY_MEMO: usize = 4096;

/// What a successful chunk write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows inserted (0 for a duplicate).
    pub rows: u64,
    /// True when the chunk was already stored and nothing was written.
    pub duplicate: bool,
    /// Columns added by this chunk.
    pub columns_added: u32,
}

/// Why a chunk was not stored; the output turns it into retry or dead letter.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Bad records or a broken database file: retrying cannot help.
    #[error("{0}")]
    Permanent(String),
    /// Busy, full or failing disk: try again later.
    #[error("{0}")]
    Retryable(String),
}

/// The chunk id as the `_chunk` column's integer: both halves mixed, so ids whose
/// randomness sits in either half (ours, or Fluentd's time-prefixed ones) stay distinct.
pub fn chunk_key(id: ChunkId) -> i64 {
    let (a, b) = id.0.split_at(8);
    let a = u64::from_be_bytes(a.try_into().unwrap_or_default());
    let b = u64::from_be_bytes(b.try_into().unwrap_or_default());
    (a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64
}

/// Opens (creating) a database file for writing: WAL, `synchronous=NORMAL`.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Inserts touch the table's and both indexes' rightmost pages: a cache big enough
    // to keep them, and reads through mmap, avoid a read() per page miss.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", WRITER_MMAP_BYTES)?;
    // Checkpoint less often: pages rewritten by every chunk (index roots, the last
    // leaf) are then copied back once per checkpoint instead of once per 1000 pages.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// One database's write connection and what it knows of its tables' columns.
pub struct DbWriter {
    conn: Connection,
    tables: HashMap<String, Schema>,
}

impl std::fmt::Debug for DbWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbWriter")
            .field("tables", &self.tables.len())
            .finish()
    }
}

/// A table's columns as the writer knows them.
#[derive(Debug, Default)]
struct Schema {
    /// Every column, fixed ones included, in table order.
    columns: Vec<String>,
    /// ASCII-lowercased column name → index (SQLite compares names that way).
    lower: HashMap<String, usize>,
    /// Record key as sent → column index, None = goes to [`EXTRA`].
    keys: HashMap<String, Option<usize>>,
}

impl Schema {
    fn user_columns(&self) -> usize {
        self.columns
            .iter()
            .filter(|c| !FIXED_COLUMNS.contains(&c.as_str()) && c.as_str() != EXTRA)
            .count()
    }

    fn push(&mut self, name: String) -> usize {
        let i = self.columns.len();
        self.lower.insert(name.to_ascii_lowercase(), i);
        self.columns.push(name);
        i
    }
}

/// One decoded entry.
struct Row<'a> {
    secs: i64,
    nanos: u32,
    cells: Vec<(Cow<'a, str>, Cell<'a>)>,
}

impl DbWriter {
    /// A writer over an open connection.
    pub fn new(conn: Connection) -> Self {
        DbWriter {
            conn,
            tables: HashMap::new(),
        }
    }

    /// The connection, for maintenance that must not race writes (retention).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Stores every entry of a chunk in `table` in one transaction.
    pub fn write_chunk(
        &mut self,
        table: &str,
        id: ChunkId,
        entry_bytes: &[u8],
    ) -> Result<WriteOutcome, WriteError> {
        let mut rows = Vec::new();
        for (i, entry) in entries(entry_bytes).enumerate() {
            let bad = |e: crate::msgpack::ScanError| {
                WriteError::Permanent(format!("chunk {id}: entry {i} cannot be read: {e}"))
            };
            let entry = entry.map_err(bad)?;
            let mut row = Row {
                secs: entry.time.secs,
                nanos: entry.time.nanos,
                cells: Vec::new(),
            };
            cells(entry.record, &mut row.cells).map_err(bad)?;
            rows.push(row);
        }
        let result = self.write_rows(table, id, &rows);
        if result.is_err() {
            // The transaction rolled back: columns added in it are gone again.
            self.tables.remove(table);
        }
        result.map_err(|e| classify(e, table, id))
    }

    fn write_rows(
        &mut self,
        table: &str,
        id: ChunkId,
        rows: &[Row<'_>],
    ) -> rusqlite::Result<WriteOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !self.tables.contains_key(table) {
            let schema = load_schema(&tx, table)?;
            self.tables.insert(table.to_string(), schema);
        }
        let Some(schema) = self.tables.get_mut(table) else {
            return Ok(WriteOutcome::default());
        };
        let qt = quote_ident(table);
        let chunk = chunk_key(id);
        let seen: Option<i64> = tx
            .prepare_cached(&format!(
                "SELECT 1 FROM {qt} WHERE \"{CHUNK}\" = ?1 LIMIT 1"
            ))?
            .query_row(params![chunk], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        if seen.is_some() {
            tx.commit()?;
            return Ok(WriteOutcome {
                duplicate: true,
                ..WriteOutcome::default()
            });
        }

        // Column index (in the table) of each cell, in row order; None = extra.
        let mut outcome = WriteOutcome::default();
        let mut placement: Vec<Option<usize>> = Vec::new();
        // Table column index → position among this chunk's insert columns.
        let mut position: Vec<Option<usize>> = Vec::new();
        let mut used: Vec<usize> = Vec::new();
        let mut any_extra = false;
        for row in rows {
            for (key, cell) in &row.cells {
                let col = column_for(&tx, &qt, schema, key, cell, &mut outcome)?;
                if let Some(c) = col {
                    if position.len() <= c {
                        position.resize(c + 1, None);
                    }
                    if position.get(c).copied().flatten().is_none() {
                        if let Some(p) = position.get_mut(c) {
                            *p = Some(used.len());
                        }
                        used.push(c);
                    }
                } else {
                    any_extra = true;
                }
                placement.push(col);
            }
        }
        if any_extra && !schema.lower.contains_key(EXTRA) {
            tx.execute_batch(&format!(
                "ALTER TABLE {qt} ADD COLUMN {} TEXT",
                quote_ident(EXTRA)
            ))?;
            schema.push(EXTRA.to_string());
        }

        let mut names: Vec<&str> = FIXED_COLUMNS.to_vec();
        names.extend(
            used.iter()
                .filter_map(|&c| schema.columns.get(c).map(String::as_str)),
        );
        if any_extra {
            names.push(EXTRA);
        }
        let width = names.len();
        let per_insert = (MAX_PARAMS / width).clamp(1, ROWS_PER_INSERT);
        let columns = names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Vec<_>>()
            .join(",");
        let tuple = format!("({})", vec!["?"; width].join(","));
        let sql_for = |n: usize| {
            format!(
                "INSERT OR IGNORE INTO {qt} ({columns}) VALUES {}",
                vec![tuple.as_str(); n].join(",")
            )
        };

        let mut slots: Vec<Option<&Cell<'_>>> = vec![None; width];
        let mut extras: Vec<(&str, &Cell<'_>)> = Vec::new();
        let mut cell_at = 0usize;
        let mut index = 0usize;
        let extra_slot = width - 1;
        while index < rows.len() {
            let n = per_insert.min(rows.len() - index);
            let mut stmt = tx.prepare_cached(&sql_for(n))?;
            for (k, row) in rows.iter().enumerate().skip(index).take(n) {
                slots.iter_mut().for_each(|s| *s = None);
                extras.clear();
                for (key, cell) in &row.cells {
                    match placement.get(cell_at).copied().flatten() {
                        Some(c) => {
                            if let Some(p) = position.get(c).copied().flatten()
                                && let Some(s) = slots.get_mut(FIXED_COLUMNS.len() + p)
                            {
                                *s = Some(cell);
                            }
                        }
                        None => extras.push((key, cell)),
                    }
                    cell_at += 1;
                }
                let base = (k - index) * width;
                stmt.raw_bind_parameter(base + 1, row.secs)?;
                stmt.raw_bind_parameter(base + 2, row.nanos)?;
                stmt.raw_bind_parameter(base + 3, chunk)?;
                stmt.raw_bind_parameter(base + 4, i64::try_from(k).unwrap_or(i64::MAX))?;
                for (j, slot) in slots.iter().enumerate().skip(FIXED_COLUMNS.len()) {
                    if any_extra && j == extra_slot {
                        let json = (!extras.is_empty()).then(|| extras_json(&extras));
                        stmt.raw_bind_parameter(base + j + 1, json)?;
                    } else {
                        stmt.raw_bind_parameter(base + j + 1, slot.unwrap_or(&Cell::Null))?;
                    }
                }
            }
            let inserted = stmt.raw_execute()?;
            outcome.rows += inserted as u64;
            index += n;
        }
        tx.commit()?;
        Ok(outcome)
    }
}

/// The column a record key goes to, adding it when new; None = [`EXTRA`].
fn column_for(
    tx: &Connection,
    qt: &str,
    schema: &mut Schema,
    key: &str,
    first: &Cell<'_>,
    outcome: &mut WriteOutcome,
) -> rusqlite::Result<Option<usize>> {
    if let Some(c) = schema.keys.get(key) {
        return Ok(*c);
    }
    if key.len() > MAX_COLUMN_NAME {
        return Ok(None);
    }
    let mut name = key.to_string();
    while RESERVED_COLUMNS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&name))
    {
        name.push('_');
    }
    let col = match schema.lower.get(&name.to_ascii_lowercase()) {
        Some(&i) => Some(i),
        None if schema.user_columns() >= MAX_COLUMNS || name.is_empty() => None,
        None => {
            let decl = first.decl_type();
            tx.execute_batch(&format!(
                "ALTER TABLE {qt} ADD COLUMN {} {decl}",
                quote_ident(&name)
            ))?;
            outcome.columns_added += 1;
            Some(schema.push(name))
        }
    };
    if schema.keys.len() >= MAX_KEY_MEMO {
        schema.keys.clear();
    }
    schema.keys.insert(key.to_string(), col);
    Ok(col)
}

/// Creates the table and its indexes if needed and reads its columns. The index is
/// named `<table>#time`: no normalized table name contains `#`, so it cannot clash.
fn load_schema(tx: &Connection, table: &str) -> rusqlite::Result<Schema> {
    let qt = quote_ident(table);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {qt} (\
           \"{TIME}\" INTEGER NOT NULL, \
           \"{TIME_NANOS}\" INTEGER NOT NULL DEFAULT 0, \
           \"{CHUNK}\" INTEGER NOT NULL, \
           \"{INDEX}\" INTEGER NOT NULL, \
           UNIQUE (\"{CHUNK}\", \"{INDEX}\"));\
         CREATE INDEX IF NOT EXISTS {} ON {qt} (\"{TIME}\");",
        quote_ident(&format!("{table}#time"))
    ))?;
    let mut schema = Schema::default();
    let mut stmt = tx.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = stmt.query_map(params![table], |r| r.get::<_, String>(0))?;
    for name in names {
        schema.push(name?);
    }
    Ok(schema)
}

/// The JSON object of a row's keys that found no column.
fn extras_json(extras: &[(&str, &Cell<'_>)]) -> String {
    let mut map = serde_json::Map::new();
    for (k, cell) in extras {
        let v = match cell {
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
        };
        map.insert((*k).to_string(), v);
    }
    serde_json::Value::Object(map).to_string()
}

/// Busy, locked, full and IO errors are retryable; corruption and misuse are not.
fn classify(e: rusqlite::Error, table: &str, id: ChunkId) -> WriteError {
    use rusqlite::ErrorCode as C;
    let text = format!("chunk {id} into table {table:?}: {e}");
    match e.sqlite_error_code() {
        Some(C::NotADatabase | C::DatabaseCorrupt | C::TooBig | C::ConstraintViolation) => {
            WriteError::Permanent(text)
        }
        _ => WriteError::Retryable(text),
    }
}
