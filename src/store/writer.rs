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
/// Column of tables made before the chunk ledger: the chunk's id ([`chunk_key`]).
pub const CHUNK: &str = "_chunk";
/// Column of tables made before the chunk ledger: the entry's index in its chunk.
pub const INDEX: &str = "_idx";
/// The table recording every chunk stored in a database (its [`chunk_key`], table,
/// row count and when). `#` cannot occur in a normalized table name, so no tag can
/// name it, and the catalog hides it.
pub const LEDGER: &str = "#chunks";
/// Keys that found no column of their own (over [`MAX_COLUMNS`], or names over
/// [`MAX_COLUMN_NAME`] bytes), as one JSON object per row.
pub const EXTRA: &str = "_extra";

/// Columns every table has, in order.
pub const FIXED_COLUMNS: [&str; 2] = [TIME, TIME_NANOS];

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
    /// Whether the ledger table is known to exist.
    ledger_ready: bool,
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
    /// A table made before the chunk ledger: it has `_chunk`/`_idx` columns (NOT
    /// NULL, so they are still filled) and may hold chunks the ledger never saw.
    legacy: bool,
}

impl Schema {
    fn user_columns(&self) -> usize {
        self.columns
            .iter()
            .filter(|c| !RESERVED_COLUMNS.contains(&c.as_str()))
            .count()
    }

    fn push(&mut self, name: String) -> usize {
        let i = self.columns.len();
        self.lower.insert(name.to_ascii_lowercase(), i);
        self.columns.push(name);
        i
    }
}

/// A chunk's entries decoded into one flat list of cells, so a 1000-entry chunk
/// costs a handful of allocations, not one per entry. Decoded before the database's
/// lock is taken, so flush workers decode in parallel and serialise only on SQLite.
#[derive(Default)]
pub struct Rows<'a> {
    /// Each entry's seconds and nanoseconds.
    times: Vec<(i64, u32)>,
    /// Where each entry's cells end in `cells`.
    ends: Vec<usize>,
    /// Every entry's cells, in entry order.
    cells: Vec<(Cow<'a, str>, Cell<'a>)>,
}

impl<'a> Rows<'a> {
    /// Decodes every entry of a chunk; a bad entry is a permanent error.
    pub fn decode(id: ChunkId, entry_bytes: &'a [u8]) -> Result<Rows<'a>, WriteError> {
        let mut rows = Rows::default();
        let mut one = Vec::new();
        for (i, entry) in entries(entry_bytes).enumerate() {
            let bad = |e: crate::msgpack::ScanError| {
                WriteError::Permanent(format!("chunk {id}: entry {i} cannot be read: {e}"))
            };
            let entry = entry.map_err(bad)?;
            cells(entry.record, &mut one).map_err(bad)?;
            rows.cells.append(&mut one);
            rows.times.push((entry.time.secs, entry.time.nanos));
            rows.ends.push(rows.cells.len());
        }
        Ok(rows)
    }

    fn len(&self) -> usize {
        self.times.len()
    }

    /// The cells of entry `i` and the index of its first cell in `cells`.
    fn entry(&self, i: usize) -> (usize, &[(Cow<'a, str>, Cell<'a>)]) {
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        (start, self.cells.get(start..end).unwrap_or_default())
    }
}

impl DbWriter {
    /// A writer over an open connection.
    pub fn new(conn: Connection) -> Self {
        DbWriter {
            conn,
            tables: HashMap::new(),
            ledger_ready: false,
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
        let rows = Rows::decode(id, entry_bytes)?;
        self.write_decoded(table, id, &rows)
    }

    /// Stores a chunk's decoded entries in `table` in one transaction.
    pub fn write_decoded(
        &mut self,
        table: &str,
        id: ChunkId,
        rows: &Rows<'_>,
    ) -> Result<WriteOutcome, WriteError> {
        let result = self.write_rows(table, id, rows);
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
        rows: &Rows<'_>,
    ) -> rusqlite::Result<WriteOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !self.ledger_ready {
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                   chunk INTEGER PRIMARY KEY, tbl TEXT NOT NULL, \
                   rows INTEGER NOT NULL, stored_at INTEGER NOT NULL)",
                quote_ident(LEDGER)
            ))?;
        }
        if !self.tables.contains_key(table) {
            let schema = load_schema(&tx, table)?;
            self.tables.insert(table.to_string(), schema);
        }
        let Some(schema) = self.tables.get_mut(table) else {
            return Ok(WriteOutcome::default());
        };
        let qt = quote_ident(table);
        let chunk = chunk_key(id);
        let fresh = tx
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO {} (chunk, tbl, rows, stored_at) VALUES (?1, ?2, ?3, ?4)",
                quote_ident(LEDGER)
            ))?
            .execute(params![chunk, table, rows.len() as i64, unix_now()])?;
        if fresh == 0 || (schema.legacy && legacy_has_chunk(&tx, &qt, chunk)?) {
            tx.commit()?;
            self.ledger_ready = true;
            return Ok(WriteOutcome {
                duplicate: true,
                ..WriteOutcome::default()
            });
        }

        // Column index (in the table) of each cell, in cell order; None = extra.
        let mut outcome = WriteOutcome::default();
        let mut placement: Vec<Option<usize>> = Vec::with_capacity(rows.cells.len());
        // Table column index → position among this chunk's insert columns.
        let mut position: Vec<Option<usize>> = Vec::new();
        let mut used: Vec<usize> = Vec::new();
        let mut any_extra = false;
        for (key, cell) in &rows.cells {
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
        if any_extra && !schema.lower.contains_key(EXTRA) {
            tx.execute_batch(&format!(
                "ALTER TABLE {qt} ADD COLUMN {} TEXT",
                quote_ident(EXTRA)
            ))?;
            schema.push(EXTRA.to_string());
        }

        let fixed: &[&str] = if schema.legacy {
            &[TIME, TIME_NANOS, CHUNK, INDEX]
        } else {
            &[TIME, TIME_NANOS]
        };
        let mut names: Vec<&str> = fixed.to_vec();
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
                "INSERT INTO {qt} ({columns}) VALUES {}",
                vec![tuple.as_str(); n].join(",")
            )
        };

        let mut slots: Vec<Option<&Cell<'_>>> = vec![None; width];
        let mut extras: Vec<(&str, &Cell<'_>)> = Vec::new();
        let extra_slot = width - 1;
        let mut index = 0usize;
        while index < rows.len() {
            let n = per_insert.min(rows.len() - index);
            let mut stmt = tx.prepare_cached(&sql_for(n))?;
            for k in index..index + n {
                slots.iter_mut().for_each(|s| *s = None);
                extras.clear();
                let (first, cells) = rows.entry(k);
                for (j, (key, cell)) in cells.iter().enumerate() {
                    match placement.get(first + j).copied().flatten() {
                        Some(c) => {
                            if let Some(p) = position.get(c).copied().flatten()
                                && let Some(s) = slots.get_mut(fixed.len() + p)
                            {
                                *s = Some(cell);
                            }
                        }
                        None => extras.push((key, cell)),
                    }
                }
                let (secs, nanos) = rows.times.get(k).copied().unwrap_or_default();
                let base = (k - index) * width;
                stmt.raw_bind_parameter(base + 1, secs)?;
                stmt.raw_bind_parameter(base + 2, nanos)?;
                if schema.legacy {
                    stmt.raw_bind_parameter(base + 3, chunk)?;
                    stmt.raw_bind_parameter(base + 4, i64::try_from(k).unwrap_or(i64::MAX))?;
                }
                for (j, slot) in slots.iter().enumerate().skip(fixed.len()) {
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
        self.ledger_ready = true;
        Ok(outcome)
    }
}

/// Whether a table made before the chunk ledger already holds rows of `chunk`.
fn legacy_has_chunk(tx: &Connection, qt: &str, chunk: i64) -> rusqlite::Result<bool> {
    let found = tx
        .prepare_cached(&format!(
            "SELECT 1 FROM {qt} WHERE \"{CHUNK}\" = ?1 LIMIT 1"
        ))?
        .query_row(params![chunk], |_| Ok(()));
    match found {
        Ok(()) => Ok(true),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Seconds since the epoch, for the ledger's `stored_at`.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

/// Creates the table and its time index if needed and reads its columns. The index
/// is named `<table>#time`: no normalized table name contains `#`, so it cannot clash.
fn load_schema(tx: &Connection, table: &str) -> rusqlite::Result<Schema> {
    let qt = quote_ident(table);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {qt} (\
           \"{TIME}\" INTEGER NOT NULL, \
           \"{TIME_NANOS}\" INTEGER NOT NULL DEFAULT 0);\
         CREATE INDEX IF NOT EXISTS {} ON {qt} (\"{TIME}\");",
        quote_ident(&format!("{table}#time"))
    ))?;
    let mut schema = Schema::default();
    let mut stmt = tx.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = stmt.query_map(params![table], |r| r.get::<_, String>(0))?;
    for name in names {
        schema.push(name?);
    }
    schema.legacy = schema.lower.contains_key(CHUNK) && schema.lower.contains_key(INDEX);
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
