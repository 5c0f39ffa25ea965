//! The local records store: one SQLite file per database, one table per table.
//!
//! Files live at `<data_dir>/store/<database>.sqlite`, where `<database>` is always a
//! normalized name ([`names::normalize`]: `a-z0-9_` only), so no tag, parameter or
//! query can name a file outside the store directory. Writers keep one connection per
//! database (WAL, `synchronous=NORMAL`: the buffer keeps a chunk until the commit
//! returns); readers open short-lived read-only connections, so queries run while
//! chunks are written, and against the files of a stopped daemon.

pub mod catalog;
pub mod cli;
pub mod names;
pub mod query;
pub mod record;
pub mod records;
pub mod retention;
#[cfg(test)]
pub(crate) mod tests;
pub mod writer;

use crate::output::ChunkId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
pub use writer::{WriteError, WriteOutcome};

/// Most database files kept open for writing; idle ones are closed beyond this.
pub const MAX_OPEN_DATABASES: usize = 64;

/// The store directory under a data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// A handle on one store directory, cheap to clone and shared by the store output
/// and the HTTP API so both see the same writers and counters.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    writers: Mutex<HashMap<String, Arc<Mutex<writer::DbWriter>>>>,
    stats: Stats,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// Counters of what the store did, for `/metrics` and `/api/status`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Chunks committed.
    pub chunks_written: AtomicU64,
    /// Chunks skipped because they were already stored.
    pub chunks_duplicate: AtomicU64,
    /// Rows inserted.
    pub rows_written: AtomicU64,
    /// Columns added to tables.
    pub columns_added: AtomicU64,
    /// Chunk writes that failed, retryable or not.
    pub write_errors: AtomicU64,
    /// Queries answered (SQL and records).
    pub queries: AtomicU64,
    /// Queries refused (not read-only, bad SQL) or interrupted.
    pub queries_failed: AtomicU64,
    /// Rows deleted by retention.
    pub rows_purged: AtomicU64,
}

impl Stats {
    /// The counters as `(name, help, value)`, names without the `tidepool_store_` prefix.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            (
                "chunks_written_total",
                "Chunks committed to the store",
                g(&self.chunks_written),
            ),
            (
                "chunks_duplicate_total",
                "Re-delivered chunks skipped because they were already stored",
                g(&self.chunks_duplicate),
            ),
            (
                "rows_written_total",
                "Rows inserted into the store",
                g(&self.rows_written),
            ),
            (
                "columns_added_total",
                "Columns added to store tables",
                g(&self.columns_added),
            ),
            (
                "write_errors_total",
                "Chunk writes that failed",
                g(&self.write_errors),
            ),
            ("queries_total", "Queries answered", g(&self.queries)),
            (
                "queries_failed_total",
                "Queries refused, failed or interrupted",
                g(&self.queries_failed),
            ),
            (
                "rows_purged_total",
                "Rows deleted by retention",
                g(&self.rows_purged),
            ),
        ]
    }

    /// The counters in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in self.snapshot() {
            out.push_str(&format!(
                "# HELP tidepool_store_{name} {help}\n# TYPE tidepool_store_{name} counter\ntidepool_store_{name} {value}\n"
            ));
        }
        out
    }

    /// The counters as a JSON object.
    pub fn json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .snapshot()
            .into_iter()
            .map(|(k, _, v)| (k.to_string(), v.into()))
            .collect();
        serde_json::Value::Object(map)
    }
}

impl Store {
    /// A handle on `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> anyhow::Result<Store> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!("cannot create the store directory {}: {e}", dir.display())
        })?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                writers: Mutex::new(HashMap::new()),
                stats: Stats::default(),
            }),
        })
    }

    /// The directory holding the database files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The file of database `db`, which must be a normalized name.
    pub fn db_path(&self, db: &str) -> Option<PathBuf> {
        db_path(&self.inner.dir, db)
    }

    /// Stores one chunk's entries in `db`.`table` (both normalized names); blocking.
    ///
    /// A chunk whose id is already in the table is skipped and reported as duplicate.
    pub fn write_chunk(
        &self,
        db: &str,
        table: &str,
        id: ChunkId,
        entries: &[u8],
    ) -> Result<WriteOutcome, WriteError> {
        let stats = &self.inner.stats;
        let result = writer::Rows::decode(id, entries).and_then(|rows| {
            self.writer(db)
                .and_then(|w| lock(&w).write_decoded(table, id, &rows))
        });
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

    /// The writer of `db`, opened on first use.
    fn writer(&self, db: &str) -> Result<Arc<Mutex<writer::DbWriter>>, WriteError> {
        let mut writers = lock(&self.inner.writers);
        if let Some(w) = writers.get(db) {
            return Ok(Arc::clone(w));
        }
        let path = self.db_path(db).ok_or_else(|| {
            WriteError::Permanent(format!(
                "database name {db:?} is not a normalized name (a-z, 0-9, _; 3 to {} characters)",
                names::MAX_DATABASE_NAME
            ))
        })?;
        if writers.len() >= MAX_OPEN_DATABASES {
            let idle: Vec<String> = writers
                .iter()
                .filter(|(_, w)| Arc::strong_count(w) == 1)
                .map(|(k, _)| k.clone())
                .collect();
            for k in idle {
                writers.remove(&k);
            }
        }
        let conn = writer::open_writer(&path)
            .map_err(|e| WriteError::Retryable(format!("cannot open {}: {e}", path.display())))?;
        let w = Arc::new(Mutex::new(writer::DbWriter::new(conn)));
        writers.insert(db.to_string(), Arc::clone(&w));
        Ok(w)
    }
}

/// `<dir>/<db>.sqlite` for a valid (normalized) database name, else None.
pub fn db_path(dir: &Path, db: &str) -> Option<PathBuf> {
    names::is_valid_name(db, names::MAX_DATABASE_NAME).then(|| dir.join(format!("{db}.sqlite")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
