//! Writes one chunk into a PostgreSQL table: schema on demand, then one transaction
//! holding the chunk's ledger row and its rows (one `COPY ... FROM STDIN`).
//!
//! A new record key becomes a column (`ADD COLUMN IF NOT EXISTS`, typed by its
//! first non-null value) before the transaction, so concurrent aggregators adding
//! the same column both succeed; the types are then read back from the server, so
//! a value that does not fit the column another aggregator made goes to `_extra`
//! instead of failing the chunk.

use super::conn::{MAX_IDENT, classify, ddl, ident, pg_name, qualified};
use super::text::{ColType, cell_json, copy_cell, decl_type};
use super::{LEDGER, PgStore};
use crate::msgpack::entries;
use crate::output::ChunkId;
use crate::store::record::{Cell, cells};
use crate::store::writer::{EXTRA, MAX_COLUMNS, RESERVED_COLUMNS, TIME, TIME_NANOS, chunk_key};
use crate::store::{WriteError, WriteOutcome};
use bytes::Bytes;
use futures_util::SinkExt as _;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use tokio_postgres::Client;

/// PostgreSQL's system columns: a user column cannot take these names.
pub const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// Bytes per COPY data message.
const COPY_PIECE: usize = 1 << 20;

/// One decoded entry.
struct Row<'a> {
    secs: i64,
    nanos: u32,
    cells: Vec<(Cow<'a, str>, Cell<'a>)>,
}

impl PgStore {
    /// Stores one chunk's entries in `db`.`table` (both normalized names).
    ///
    /// A chunk whose id is already in the schema's ledger is skipped and reported as
    /// duplicate. `Permanent` for records that cannot be read or values the server
    /// refuses; `Retryable` when the server is unreachable, busy or shutting down
    /// (the next call connects again).
    pub async fn write_chunk(
        &self,
        db: &str,
        table: &str,
        id: ChunkId,
        entries: &[u8],
    ) -> Result<WriteOutcome, WriteError> {
        let result = self.write_inner(db, table, id, entries).await;
        let stats = self.stats();
        match &result {
            Ok(o) if o.duplicate => {
                stats.chunks_duplicate.fetch_add(1, Ordering::Relaxed);
            }
            Ok(o) => {
                stats.chunks_written.fetch_add(1, Ordering::Relaxed);
                stats.rows_written.fetch_add(o.rows, Ordering::Relaxed);
                stats
                    .columns_added
                    .fetch_add(u64::from(o.columns_added), Ordering::Relaxed);
            }
            Err(_) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn write_inner(
        &self,
        db: &str,
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
        let mut conn = self.conn().await.map_err(|e| {
            classify(
                &e,
                &format!(
                    "chunk {id}: cannot connect to PostgreSQL at {}",
                    self.target()
                ),
            )
        })?;
        let key = (db.to_string(), table.to_string());
        let result = write_rows(&mut conn.client, &mut conn.tables, &key, id, &rows).await;
        if result.is_err() {
            conn.tables.remove(&key);
        }
        self.put(conn);
        result.map_err(|e| classify(&e, &format!("chunk {id} into {db}.{table}")))
    }
}

/// Columns of one table: name → `information_schema` data type.
type Columns = HashMap<String, String>;

async fn write_rows(
    client: &mut Client,
    known: &mut HashMap<(String, String), Columns>,
    key: &(String, String),
    id: ChunkId,
    rows: &[Row<'_>],
) -> Result<WriteOutcome, tokio_postgres::Error> {
    let (db, table) = (key.0.as_str(), key.1.as_str());
    let qt = qualified(db, table);
    let mut columns = match known.remove(key) {
        Some(c) => c,
        None => {
            ensure_table(client, db, table).await?;
            load_columns(client, db, table).await?
        }
    };
    let mut outcome = WriteOutcome::default();

    // Where each record key goes (None = _extra), and the columns to add.
    let mut placement: HashMap<&str, Option<String>> = HashMap::new();
    let mut added: Vec<(String, &'static str)> = Vec::new();
    let user_columns = columns
        .keys()
        .filter(|c| ![TIME, TIME_NANOS, EXTRA].contains(&c.as_str()))
        .count();
    for row in rows {
        for (k, cell) in &row.cells {
            let k: &str = k.as_ref();
            if placement.contains_key(k) {
                continue;
            }
            let Some(name) = column_name(k) else {
                placement.insert(k, None);
                continue;
            };
            let existing = columns
                .keys()
                .chain(added.iter().map(|(n, _)| n))
                .find(|c| **c == name)
                .or_else(|| {
                    columns
                        .keys()
                        .chain(added.iter().map(|(n, _)| n))
                        .find(|c| c.eq_ignore_ascii_case(&name))
                })
                .cloned();
            if let Some(c) = existing {
                placement.insert(k, Some(c));
            } else if user_columns + added.len() >= MAX_COLUMNS {
                placement.insert(k, None);
            } else if let Some(decl) = decl_type(cell) {
                added.push((name.clone(), decl));
                placement.insert(k, Some(name));
            }
            // A null with no column yet: nothing to store, and no type to give one.
        }
    }
    if !added.is_empty() {
        let adds: Vec<String> = added
            .iter()
            .map(|(n, t)| format!("ADD COLUMN IF NOT EXISTS {} {t}", ident(n)))
            .collect();
        ddl(client, &format!("ALTER TABLE {qt} {}", adds.join(", "))).await?;
        outcome.columns_added = u32::try_from(added.len()).unwrap_or(u32::MAX);
        // Another aggregator may have added one first, with another type.
        columns = load_columns(client, db, table).await?;
    }

    // The chunk's columns in first-use order, and each row's fields.
    let mut used: Vec<&str> = Vec::new();
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    for name in placement.values().flatten() {
        if !slot_of.contains_key(name.as_str()) {
            slot_of.insert(name.as_str(), used.len());
            used.push(name.as_str());
        }
    }
    let types: Vec<ColType> = used
        .iter()
        .map(|n| ColType::of(columns.get(*n).map_or("", String::as_str)))
        .collect();
    let mut body: Vec<u8> = Vec::new();
    let mut ends: Vec<(usize, Option<String>)> = Vec::with_capacity(rows.len());
    // Per column of the chunk: the record key and cell of the current row.
    let mut slots: Vec<Option<(&str, &Cell<'_>)>> = vec![None; used.len()];
    for row in rows {
        slots.iter_mut().for_each(|s| *s = None);
        let mut extras = serde_json::Map::new();
        for (k, cell) in &row.cells {
            let k: &str = k.as_ref();
            let slot = placement
                .get(k)
                .and_then(|p| p.as_deref())
                .and_then(|n| slot_of.get(n).copied());
            match slot.and_then(|s| slots.get_mut(s)) {
                Some(s) => *s = Some((k, cell)),
                None if matches!(cell, Cell::Null) && !placement.contains_key(k) => {}
                None => {
                    extras.insert(k.to_string(), cell_json(cell));
                }
            }
        }
        let _ = write!(body, "{}\t{}", row.secs, row.nanos);
        for (slot, t) in slots.iter().zip(&types) {
            body.push(b'\t');
            let at = body.len();
            let (key, cell) = slot.unwrap_or(("", &Cell::Null));
            if !copy_cell(&mut body, cell, *t) {
                // A value of another type than its column keeps its key in _extra.
                body.truncate(at);
                body.extend_from_slice(b"\\N");
                extras.insert(key.to_string(), cell_json(cell));
            }
        }
        let extra = (!extras.is_empty()).then(|| serde_json::Value::Object(extras).to_string());
        ends.push((body.len(), extra));
    }
    let any_extra = ends.iter().any(|(_, e)| e.is_some());
    if any_extra && !columns.contains_key(EXTRA) {
        ddl(
            client,
            &format!(
                "ALTER TABLE {qt} ADD COLUMN IF NOT EXISTS {} text",
                ident(EXTRA)
            ),
        )
        .await?;
        columns.insert(EXTRA.to_string(), "text".to_string());
    }
    let mut data: Vec<u8> = Vec::with_capacity(body.len() + rows.len() * 4);
    let mut start = 0;
    for (end, extra) in &ends {
        data.extend_from_slice(body.get(start..*end).unwrap_or_default());
        if any_extra {
            data.push(b'\t');
            match extra {
                Some(e) => super::text::copy_text(&mut data, e),
                None => data.extend_from_slice(b"\\N"),
            }
        }
        data.push(b'\n');
        start = *end;
    }
    drop(body);

    let mut names: Vec<String> = vec![ident(TIME), ident(TIME_NANOS)];
    names.extend(used.iter().map(|n| ident(n)));
    if any_extra {
        names.push(ident(EXTRA));
    }
    let copy = format!("COPY {qt} ({}) FROM STDIN", names.join(", "));
    let ledger = format!(
        "INSERT INTO {} (\"chunk\", \"tbl\", \"rows\", \"stored_at\") VALUES ({}, '{}', {}, {}) ON CONFLICT (\"chunk\") DO NOTHING",
        qualified(db, LEDGER),
        chunk_key(id),
        table.replace('\'', "''"),
        rows.len(),
        crate::store::retention::cutoff(std::time::Duration::ZERO),
    );
    let tx = client.transaction().await?;
    let fresh = tx
        .simple_query(&ledger)
        .await?
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(n) if *n > 0));
    if !fresh {
        tx.rollback().await?;
        known.insert(key.clone(), columns);
        return Ok(WriteOutcome {
            duplicate: true,
            ..WriteOutcome::default()
        });
    }
    let sink = tx.copy_in(&copy).await?;
    let mut sink = std::pin::pin!(sink);
    let data = Bytes::from(data);
    let mut at = 0;
    while at < data.len() {
        let end = (at + COPY_PIECE).min(data.len());
        sink.feed(data.slice(at..end)).await?;
        at = end;
    }
    outcome.rows = sink.as_mut().finish().await?;
    tx.commit().await?;
    known.insert(key.clone(), columns);
    Ok(outcome)
}

/// The column a record key gets: reserved names (the store's own, SQLite's and
/// PostgreSQL's system columns, ignoring case) take a `_` suffix; None (→ `_extra`)
/// for keys that are empty, hold NUL, or do not fit an identifier.
pub(super) fn column_name(key: &str) -> Option<String> {
    if key.is_empty() || key.contains('\0') {
        return None;
    }
    let mut name = key.to_string();
    while RESERVED_COLUMNS
        .iter()
        .chain(SYSTEM_COLUMNS.iter())
        .any(|r| r.eq_ignore_ascii_case(&name))
    {
        name.push('_');
    }
    (name.len() <= MAX_IDENT).then_some(name)
}

/// Creates the schema, its ledger, the table and its time index when missing. When
/// table and ledger exist nothing is created, so an aggregator whose user may not
/// create schemas works on ones an administrator made.
async fn ensure_table(client: &Client, db: &str, table: &str) -> Result<(), tokio_postgres::Error> {
    let s = ident(db);
    let qt = qualified(db, table);
    let exists = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[&qt, &qualified(db, LEDGER)],
        )
        .await?
        .try_get::<_, bool>(0)?;
    if exists {
        return Ok(());
    }
    ddl(
        client,
        &format!(
            "CREATE SCHEMA IF NOT EXISTS {s};\
             CREATE TABLE IF NOT EXISTS {} (\"chunk\" bigint PRIMARY KEY, \"tbl\" text NOT NULL, \
               \"rows\" bigint NOT NULL, \"stored_at\" bigint NOT NULL);\
             CREATE TABLE IF NOT EXISTS {qt} (\"{TIME}\" bigint NOT NULL, \
               \"{TIME_NANOS}\" integer NOT NULL DEFAULT 0);\
             CREATE INDEX IF NOT EXISTS {} ON {qt} (\"{TIME}\");",
            qualified(db, LEDGER),
            ident(&format!("{table}#time")),
        ),
    )
    .await
}

/// The columns of `db`.`table` as the server has them.
pub(super) async fn load_columns(
    client: &Client,
    db: &str,
    table: &str,
) -> Result<Columns, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            &[&pg_name(db), &pg_name(table)],
        )
        .await?;
    let mut out = Columns::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let ty: String = r.try_get(1)?;
        out.insert(name, ty);
    }
    Ok(out)
}
