//! Retention: delete rows whose `time` is older than a cutoff, in bounded batches.
//!
//! Each batch is its own short transaction taken under the database's writer lock,
//! so chunk writes and queries get their turn between batches however much is old.

use super::names::quote_ident;
use super::writer::{LEDGER, TIME, open_writer};
use super::{Store, catalog, lock};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Rows deleted per transaction.
pub const PURGE_BATCH: usize = 10_000;

/// How often a store output purges (besides `tidepool store purge`).
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Databases looked at.
    pub databases: usize,
    /// Tables looked at.
    pub tables: usize,
    /// Rows deleted.
    pub rows: u64,
}

/// The `time` below which rows are older than `retention`, now.
pub fn cutoff(retention: Duration) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    i64::try_from(now.saturating_sub(retention.as_secs())).unwrap_or(i64::MAX)
}

/// Deletes up to `batch` rows of `table` with `time < cutoff`; returns how many.
pub fn purge_batch(
    conn: &Connection,
    table: &str,
    cutoff: i64,
    batch: usize,
) -> rusqlite::Result<u64> {
    let qt = quote_ident(table);
    let n = conn.execute(
        &format!(
            "DELETE FROM {qt} WHERE rowid IN (SELECT rowid FROM {qt} WHERE \"{TIME}\" < ?1 LIMIT ?2)"
        ),
        rusqlite::params![cutoff, i64::try_from(batch).unwrap_or(i64::MAX)],
    )?;
    Ok(n as u64)
}

/// The ledger keeps a chunk's id at least this long, whatever the retention: long
/// enough for any buffer to have redelivered a chunk whose answer was lost.
pub const LEDGER_MIN_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Forgets ledger rows (ids of stored chunks) older than both `cutoff` and
/// [`LEDGER_MIN_KEEP`], up to `batch` of them; returns how many.
pub fn purge_ledger(conn: &Connection, cutoff: i64, batch: usize) -> rusqlite::Result<u64> {
    let cutoff = cutoff.min(self::cutoff(LEDGER_MIN_KEEP));
    let ql = quote_ident(LEDGER);
    let exists: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [LEDGER],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !exists {
        return Ok(0);
    }
    let n = conn.execute(
        &format!(
            "DELETE FROM {ql} WHERE chunk IN (SELECT chunk FROM {ql} WHERE stored_at < ?1 LIMIT ?2)"
        ),
        rusqlite::params![cutoff, i64::try_from(batch).unwrap_or(i64::MAX)],
    )?;
    Ok(n as u64)
}

/// Tables of `conn` that have a `time` column (the ones the store made).
fn timed_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for t in catalog::table_names(conn)? {
        if catalog::columns(conn, &t)?.iter().any(|c| c.name == TIME) {
            out.push(t);
        }
    }
    Ok(out)
}

impl Store {
    /// Deletes every row older than `cutoff` (unix seconds) in every database, in
    /// batches of `batch` rows between which writers get the lock back.
    pub fn purge(&self, cutoff: i64, batch: usize) -> anyhow::Result<PurgeReport> {
        let mut report = PurgeReport::default();
        for db in catalog::database_names(self.dir()) {
            let writer = self
                .writer(&db)
                .map_err(|e| anyhow::anyhow!("database {db}: {e}"))?;
            report.databases += 1;
            let tables = timed_tables(lock(&writer).conn())
                .map_err(|e| anyhow::anyhow!("database {db}: listing tables: {e}"))?;
            for table in tables {
                report.tables += 1;
                loop {
                    let n = purge_batch(lock(&writer).conn(), &table, cutoff, batch.max(1))
                        .map_err(|e| anyhow::anyhow!("database {db}, table {table}: {e}"))?;
                    report.rows += n;
                    self.stats().rows_purged.fetch_add(n, Ordering::Relaxed);
                    if n < batch.max(1) as u64 {
                        break;
                    }
                }
            }
            while purge_ledger(lock(&writer).conn(), cutoff, batch.max(1))
                .map_err(|e| anyhow::anyhow!("database {db}, chunk ledger: {e}"))?
                >= batch.max(1) as u64
            {}
        }
        Ok(report)
    }
}

/// Purges the store in `dir` with connections of its own (`tidepool store purge`
/// while the daemon may be stopped; with it running, SQLite's locking serializes).
pub fn purge_dir(dir: &Path, retention: Duration) -> anyhow::Result<PurgeReport> {
    let cutoff = cutoff(retention);
    let mut report = PurgeReport::default();
    for db in catalog::database_names(dir) {
        let Some(path) = super::db_path(dir, &db) else {
            continue;
        };
        let conn = open_writer(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        report.databases += 1;
        for table in timed_tables(&conn).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
            report.tables += 1;
            loop {
                let n = purge_batch(&conn, &table, cutoff, PURGE_BATCH)
                    .map_err(|e| anyhow::anyhow!("{}, table {table}: {e}", path.display()))?;
                report.rows += n;
                if n < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        while purge_ledger(&conn, cutoff, PURGE_BATCH)
            .map_err(|e| anyhow::anyhow!("{}, chunk ledger: {e}", path.display()))?
            >= PURGE_BATCH as u64
        {}
    }
    Ok(report)
}
