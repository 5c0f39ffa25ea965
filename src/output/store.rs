//! `type = "store"`: each chunk becomes rows of the local records store.
//!
//! The chunk key is the tag; it names the database and table ([`Naming`]). The SQLite
//! work runs on the blocking pool, one transaction per chunk; on PostgreSQL
//! (`backend = "postgres"`) one transaction per chunk too, with a COPY. Either way the
//! chunk's id makes a re-delivery a no-op. With a retention set, a task purges old
//! rows at start and then hourly for as long as the output lives.

use super::{Chunk, OutputError};
use crate::config::{StoreBackendConfig, StoreOutputConfig};
use crate::store::names::{Naming, Template};
use crate::store::postgres::PgStore;
use crate::store::retention::{PURGE_BATCH, PURGE_EVERY, PurgeReport, cutoff};
use crate::store::{Store, WriteError};
use std::time::Duration;

/// Where a store output writes.
#[derive(Clone, Debug)]
pub enum StoreBackend {
    /// SQLite files in a directory.
    Sqlite(Store),
    /// A PostgreSQL server.
    Postgres(PgStore),
}

/// Writes chunks into a [`Store`] (or a [`PgStore`]) and keeps its retention.
#[derive(Debug)]
pub struct StoreOutput {
    name: String,
    backend: StoreBackend,
    naming: Naming,
    retention: Option<Duration>,
    purger: Option<tokio::task::AbortHandle>,
}

impl StoreOutput {
    /// Opens (creating) the store directory; starts the hourly purge when a retention
    /// is set and a Tokio runtime is running.
    pub fn new(name: &str, config: &StoreOutputConfig) -> anyhow::Result<Self> {
        let template = |t: &Option<String>| {
            t.as_deref()
                .map(Template::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("output {name}: {e}"))
        };
        let naming = Naming {
            database: template(&config.database)?,
            table: template(&config.table)?,
        };
        let backend = match &config.backend {
            StoreBackendConfig::Sqlite => StoreBackend::Sqlite(
                Store::open(&config.dir).map_err(|e| anyhow::anyhow!("output {name}: {e}"))?,
            ),
            StoreBackendConfig::Postgres { url, tls } => StoreBackend::Postgres(
                PgStore::with_tls(url, tls.as_ref())
                    .map_err(|e| anyhow::anyhow!("output {name}: {e:#}"))?,
            ),
        };
        let purger = match (config.retention, tokio::runtime::Handle::try_current()) {
            (Some(retention), Ok(rt)) => {
                let store = backend.clone();
                let name = name.to_string();
                Some(
                    rt.spawn(async move {
                        loop {
                            match purge(&store, retention).await {
                                Ok(r) if r.rows > 0 => tracing::info!(
                                    output = %name, rows = r.rows, tables = r.tables,
                                    "retention purged old rows"
                                ),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(output = %name, "retention purge failed: {e:#}")
                                }
                            }
                            tokio::time::sleep(PURGE_EVERY).await;
                        }
                    })
                    .abort_handle(),
                )
            }
            _ => None,
        };
        Ok(StoreOutput {
            name: name.to_string(),
            backend,
            naming,
            retention: config.retention,
            purger,
        })
    }

    /// The SQLite store it writes to, for the HTTP API (same writers, same
    /// counters); None on PostgreSQL.
    pub fn store(&self) -> Option<&Store> {
        match &self.backend {
            StoreBackend::Sqlite(s) => Some(s),
            StoreBackend::Postgres(_) => None,
        }
    }

    /// Where it writes, for the HTTP API and the CLI.
    pub fn backend(&self) -> &StoreBackend {
        &self.backend
    }

    /// Purges rows older than the retention now (`tidepool store purge` with the
    /// daemon running); a no-op report without a retention.
    pub async fn purge_now(&self) -> anyhow::Result<PurgeReport> {
        match self.retention {
            Some(r) => purge(&self.backend, r).await,
            None => Ok(PurgeReport::default()),
        }
    }

    /// Stores one chunk in the table its key (tag) names.
    ///
    /// `Permanent` for a tag that names no table or records that cannot be read;
    /// `Retryable` for a busy, full or failing disk.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let (db, table) = self
            .naming
            .resolve(&chunk.key)
            .map_err(|e| OutputError::Permanent(format!("output {}: {e}", self.name)))?;
        if chunk.records == 0 && chunk.entries.is_empty() {
            return Ok(());
        }
        let id = chunk.id;
        let done = match &self.backend {
            StoreBackend::Sqlite(store) => {
                let store = store.clone();
                let entries = chunk.entries.clone();
                tokio::task::spawn_blocking(move || store.write_chunk(&db, &table, id, &entries))
                    .await
                    .map_err(|e| format!("chunk {id}: writer task failed: {e}"))
            }
            StoreBackend::Postgres(pg) => Ok(pg.write_chunk(&db, &table, id, &chunk.entries).await),
        };
        match done {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(WriteError::Permanent(e))) => {
                Err(OutputError::Permanent(format!("output {}: {e}", self.name)))
            }
            Ok(Err(WriteError::Retryable(e))) => {
                Err(OutputError::Retryable(format!("output {}: {e}", self.name)))
            }
            Err(e) => Err(OutputError::Retryable(format!("output {}: {e}", self.name))),
        }
    }
}

impl Drop for StoreOutput {
    fn drop(&mut self) {
        if let Some(p) = &self.purger {
            p.abort();
        }
    }
}

/// One purge: on the blocking pool for SQLite, over the network for PostgreSQL.
async fn purge(backend: &StoreBackend, retention: Duration) -> anyhow::Result<PurgeReport> {
    match backend {
        StoreBackend::Sqlite(store) => {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.purge(cutoff(retention), PURGE_BATCH))
                .await
                .map_err(|e| anyhow::anyhow!("purge task failed: {e}"))?
        }
        StoreBackend::Postgres(pg) => pg.purge(cutoff(retention), PURGE_BATCH).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::output::{ChunkId, Output};

    fn entry(out: &mut Vec<u8>, secs: u32, key: &str, v: i64) {
        out.push(0x92);
        crate::event::EventTime {
            secs: i64::from(secs),
            nanos: 0,
        }
        .encode(out);
        let rec = rmpv::Value::Map(vec![(key.into(), v.into())]);
        rmpv::encode::write_value(out, &rec).unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn chunks_land_in_the_table_their_tag_names_once() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = format!(
            "[server]\ndata_dir = {:?}\n[output.s]\ntype = \"store\"\nretention = \"5 weeks\"\n[[match]]\npattern = \"**\"\noutputs = [\"s\"]\n",
            tmp.path().display().to_string()
        );
        let config = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let def = &config.outputs["s"];
        let out = Output::build("s", &def.kind, tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        // Recent times: the retention purge that starts with the output keeps them.
        let now = u32::try_from(crate::event::EventTime::now().secs).unwrap_or(u32::MAX);
        let mut bytes = Vec::new();
        entry(&mut bytes, now, "current_size", 5);
        entry(&mut bytes, now, "current_size", 6);
        let chunk = Chunk {
            key: "td.test_database.heap_info".into(),
            id: ChunkId([7; 16]),
            entries: bytes.into(),
            records: 2,
        };
        out.write(&chunk).await.unwrap_or_else(|e| panic!("{e}"));
        out.write(&chunk).await.unwrap_or_else(|e| panic!("{e}"));
        let text = crate::store::cli::run_query(
            tmp.path(),
            Some("test_database"),
            "select count(*) as n, sum(current_size) as s from heap_info",
            crate::store::cli::QueryFormat::Csv,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "n,s\r\n2,11\r\n");
        let store = out.as_store().and_then(|s| s.store().cloned());
        let stats = store.map(|s| s.stats().json()).unwrap_or_default();
        assert_eq!(stats["chunks_duplicate_total"], 1);

        let bad = Chunk {
            key: "td.x.".into(),
            ..chunk
        };
        assert!(matches!(
            out.write(&bad).await,
            Err(OutputError::Permanent(_))
        ));
    }
}
