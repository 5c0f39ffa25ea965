//! `type = "td"`: Treasure Data's streaming import, as fluent-plugin-td does it, so an
//! operator replacing Fluentd changes nothing on Treasure Data's side
//! (`/work/shared/reference/treasure-data.md`, cited as "reference").
//!
//! One chunk is one import call: the chunk key is the normalized `db.table`
//! ([`TdOutput::chunk_key`]), the body is built from the entry bytes ([`body`]), and
//! the chunk's persisted id is the import's `unique_id`, so a resend after a lost
//! answer, a retry or a restart is dropped by the server rather than stored twice.
//!
//! - `config.rs`: the checked settings and the redacting [`ApiKey`].
//! - `normalize.rs`: tag → `(database, table)`, and the strict check of fixed names.
//! - `body.rs`: rows (map header rewrite + `time`), gzip, MD5.
//! - `request.rs`: paths, headers and what each status means; pure.
//! - `client.rs`: the reqwest client and the three calls.
//! - `mock.rs`: a mock Treasure Data API on a real socket, public so daemon-level
//!   tests in `tests/it/` can use it too (it is small and has no extra dependency).
//!
//! Config, next to its fluent-plugin-td equivalent:
//!
//! ```toml
//! [output.td]                          # <match td.*.*> @type tdlog
//! type = "td"
//! apikey = "${TD_API_KEY}"             #   apikey "#{ENV['TD_API_KEY']}"
//! region = "us"                        #   endpoint / api_endpoint (us, jp, eu01, ap02, ap03)
//! # endpoint = "api-import.treasuredata.com"   import host (bare host = https)
//! # api_endpoint = "api.treasuredata.com"      REST host, for creates
//! auto_create_table = true             #   auto_create_table true
//! # database = "db" / table = "tbl"    #   fixed destination; both or neither
//! # tls_verify = true, ca_file = "ca.pem", http_proxy = "http://proxy:3128"
//! # connect_timeout = "30s", request_timeout = "300s"
//! # non_map = "wrap"                   # or "drop" (fluent-plugin-td drops silently)
//! # gzip_level = 1
//! buffer = { flush_interval = "60s" }  #   <buffer> flush_interval 300s (32 MiB, 8096 records)
//! ```
//!
//! Behaviour the reference marks UNCONFIRMED, taken on the safe side: names are cut at
//! 255 characters (the server may allow 256); every import carries `Date`, a
//! tidepool `User-Agent` and `Content-Type: application/octet-stream` in case the
//! server requires them; an import whose answer carries an `md5_hex` that does not
//! match the body is retried (same id) rather than trusted; a chunk whose rows were
//! all dropped makes no request.

pub mod body;
pub mod client;
pub mod config;
pub mod mock;
pub mod normalize;
pub mod request;
#[cfg(test)]
mod tests;

pub use config::{ApiKey, NonMap, TdOutputConfig};

use super::{Chunk, OutputError};
use body::Body;
use client::{Answer, TdClient};
use request::{CreateAnswer, ImportAnswer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Times one flush attempt re-sends the body after creating a missing table; the
/// reference's plugin loops without a cap (section 3), which can spin forever on a
/// server that keeps answering 404.
pub const MAX_RESENDS: u32 = 2;

/// Row buffers larger than this are not kept for reuse, so one huge chunk does not pin
/// its memory for the life of the daemon.
const MAX_POOLED: usize = 64 << 20;

/// Row buffers kept for reuse; flush workers beyond this allocate.
const POOL_SIZE: usize = 8;

/// Counters of one td output, for the metrics API and tests.
#[derive(Debug, Default)]
pub struct TdStats {
    /// Chunks the server confirmed (2xx, MD5 matching when given).
    pub imports: AtomicU64,
    /// Rows in those chunks.
    pub rows: AtomicU64,
    /// Non-map records imported as `{"time", "value"}`.
    pub wrapped: AtomicU64,
    /// Non-map records skipped (`non_map = "drop"`).
    pub dropped: AtomicU64,
    /// Compressed bytes confirmed.
    pub bytes: AtomicU64,
    /// Databases and tables this output created (or found created: 409).
    pub creates: AtomicU64,
}

/// Uploads chunks to Treasure Data; cheap to share between flush workers, which run
/// their uploads (and gzip, on the blocking pool) in parallel.
#[derive(Debug)]
pub struct TdOutput {
    name: String,
    client: TdClient,
    destination: Option<(String, String)>,
    auto_create_table: bool,
    non_map: NonMap,
    gzip_level: u32,
    /// Reused uncompressed-row buffers; a std mutex, held only to push or pop.
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    stats: Arc<TdStats>,
    /// Set once the first wrapped or dropped record was logged, so the log says it once.
    non_map_logged: Arc<AtomicBool>,
}

impl TdOutput {
    /// Builds the output named `name`: the HTTP client (TLS, CA file, proxy) is ready,
    /// no request is made yet (a missing table is created on the first 404).
    pub fn new(name: &str, config: &TdOutputConfig) -> anyhow::Result<Self> {
        let client = TdClient::new(config).map_err(|e| anyhow::anyhow!("output {name}: {e:#}"))?;
        if !config.tls_verify {
            tracing::warn!(
                output = name,
                "tls_verify = false: the Treasure Data server certificate is not checked"
            );
        }
        Ok(TdOutput {
            name: name.to_string(),
            client,
            destination: config.destination.clone(),
            auto_create_table: config.auto_create_table,
            non_map: config.non_map,
            gzip_level: config.gzip_level,
            pool: Arc::new(Mutex::new(Vec::new())),
            stats: Arc::new(TdStats::default()),
            non_map_logged: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The chunk key of `tag`: the normalized `db.table` (or the fixed destination), so
    /// one chunk is one import call. A tag that yields no destination keeps its own
    /// name as key; [`TdOutput::write`] then fails it as `Permanent`.
    pub fn chunk_key(&self, tag: &str) -> String {
        if let Some((db, table)) = &self.destination {
            return format!("{db}.{table}");
        }
        match normalize::destination(tag) {
            Ok((db, table)) => format!("{db}.{table}"),
            Err(_) => tag.to_string(),
        }
    }

    /// Imports one chunk with its id as `unique_id`.
    ///
    /// `Permanent` (dead letter): no destination in the key, unreadable entries, a row
    /// over 512 keys, a 4xx other than 404/429, a 404 with `auto_create_table` off.
    /// `Retryable`: 429, 5xx, transport errors, an MD5 mismatch, a 404 that persists
    /// after [`MAX_RESENDS`] creates.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let result = self.write_inner(chunk).await;
        if let Err(OutputError::Permanent(msg)) = &result {
            tracing::warn!(output = %self.name, chunk = %chunk.id, key = %chunk.key, "{msg}");
        }
        result
    }

    async fn write_inner(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let (db, table) = match &self.destination {
            Some(d) => d.clone(),
            None => normalize::destination(&chunk.key).map_err(|e| self.permanent(e))?,
        };
        let body = self.build_body(chunk).await?;
        self.log_non_map(chunk, &body);
        if body.counts.rows == 0 {
            let dropped = body.counts.dropped;
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::debug!(output = %self.name, chunk = %chunk.id, "no importable rows, nothing sent");
            return Ok(());
        }
        self.upload(&db, &table, &chunk.id.hex(), &body).await?;
        let s = &self.stats;
        s.imports.fetch_add(1, Ordering::Relaxed);
        s.rows.fetch_add(body.counts.rows, Ordering::Relaxed);
        s.wrapped.fetch_add(body.counts.wrapped, Ordering::Relaxed);
        s.dropped.fetch_add(body.counts.dropped, Ordering::Relaxed);
        s.bytes.fetch_add(body.gz.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Builds the body on the blocking pool (gzip is CPU work that must not stall the
    /// ingest tasks), reusing a pooled row buffer.
    async fn build_body(&self, chunk: &Chunk) -> Result<Body, OutputError> {
        let entries = chunk.entries.clone();
        let (non_map, level, pool) = (self.non_map, self.gzip_level, self.pool.clone());
        let built = tokio::task::spawn_blocking(move || {
            let mut rows = pool
                .lock()
                .ok()
                .and_then(|mut p| p.pop())
                .unwrap_or_default();
            let body = body::build(&entries, non_map, level, &mut rows);
            if rows.capacity() <= MAX_POOLED
                && let Ok(mut p) = pool.lock()
                && p.len() < POOL_SIZE
            {
                p.push(rows);
            }
            body
        })
        .await
        .map_err(|e| self.retryable(format!("building the import body failed: {e}")))?;
        built.map_err(|e| self.permanent(e))
    }

    /// Sends the body; on 404 creates what is missing and sends it again, at most
    /// [`MAX_RESENDS`] times (reference, section 3).
    async fn upload(
        &self,
        db: &str,
        table: &str,
        id: &str,
        body: &Body,
    ) -> Result<(), OutputError> {
        let mut resends = 0;
        loop {
            let (call, answer) = self
                .client
                .import(db, table, id, body)
                .await
                .map_err(|e| self.named(e))?;
            match request::classify_import(answer.status) {
                ImportAnswer::Stored => return self.check_md5(&call, &answer, body),
                ImportAnswer::Retry => return Err(self.retryable(self.describe(&call, &answer))),
                ImportAnswer::Reject => return Err(self.permanent(self.describe(&call, &answer))),
                ImportAnswer::NotFound if !self.auto_create_table => {
                    return Err(self.permanent(format!(
                        "{}; auto_create_table is off: create {db}.{table} or set auto_create_table = true",
                        self.describe(&call, &answer)
                    )));
                }
                ImportAnswer::NotFound if resends >= MAX_RESENDS => {
                    return Err(self.retryable(format!(
                        "{} after creating {db}.{table} {MAX_RESENDS} times; retrying later",
                        self.describe(&call, &answer)
                    )));
                }
                ImportAnswer::NotFound => {
                    self.create(db, table).await?;
                    resends += 1;
                }
            }
        }
    }

    /// Creates the table, and the database first when the table create says 404; a
    /// 409 from either means it exists, which is all that is needed.
    async fn create(&self, db: &str, table: &str) -> Result<(), OutputError> {
        let (call, answer) = self
            .client
            .create_table(db, table)
            .await
            .map_err(|e| self.named(e))?;
        match request::classify_create(answer.status) {
            CreateAnswer::Exists => {
                self.created(&call, &answer);
                return Ok(());
            }
            CreateAnswer::NotFound => {}
            other => return Err(self.create_failed(other, &call, &answer)),
        }
        let (call, answer) = self
            .client
            .create_database(db)
            .await
            .map_err(|e| self.named(e))?;
        match request::classify_create(answer.status) {
            CreateAnswer::Exists => self.created(&call, &answer),
            other => return Err(self.create_failed(other, &call, &answer)),
        }
        let (call, answer) = self
            .client
            .create_table(db, table)
            .await
            .map_err(|e| self.named(e))?;
        match request::classify_create(answer.status) {
            CreateAnswer::Exists => {
                self.created(&call, &answer);
                Ok(())
            }
            // The new database may not be visible yet: try again later.
            CreateAnswer::NotFound => Err(self.retryable(format!(
                "{} right after creating database {db}",
                self.describe(&call, &answer)
            ))),
            other => Err(self.create_failed(other, &call, &answer)),
        }
    }

    fn created(&self, call: &str, answer: &Answer) {
        self.stats.creates.fetch_add(1, Ordering::Relaxed);
        tracing::info!(output = %self.name, status = answer.status, "{call}: created (or already there)");
    }

    fn create_failed(&self, kind: CreateAnswer, call: &str, answer: &Answer) -> OutputError {
        let text = self.describe(call, answer);
        match kind {
            CreateAnswer::Retry => self.retryable(text),
            _ => self.permanent(text),
        }
    }

    /// A 2xx is trusted only when its `md5_hex` (if any) is the body's MD5.
    fn check_md5(&self, call: &str, answer: &Answer, body: &Body) -> Result<(), OutputError> {
        match request::answer_md5(&answer.body) {
            Some(md5) if md5 != body.md5_hex => Err(self.retryable(format!(
                "{call}: answered {} with md5_hex {md5}, but the body's MD5 is {}; resending with the same id",
                answer.status, body.md5_hex
            ))),
            _ => Ok(()),
        }
    }

    /// Logs the first wrapped or dropped non-map record of this output.
    fn log_non_map(&self, chunk: &Chunk, body: &Body) {
        let c = body.counts;
        if c.dropped > 0 {
            tracing::warn!(output = %self.name, chunk = %chunk.id, key = %chunk.key, dropped = c.dropped,
                "non-map records dropped (non_map = \"drop\"); set non_map = \"wrap\" to import them as {{\"value\": ...}}");
        } else if c.wrapped > 0 && !self.non_map_logged.swap(true, Ordering::Relaxed) {
            tracing::info!(output = %self.name, key = %chunk.key, wrapped = c.wrapped,
                "non-map records are imported as {{\"time\": t, \"value\": record}} (non_map = \"wrap\"); counted in td stats, logged once");
        }
    }

    /// `CALL: answered STATUS: BODY`, with the API key redacted.
    fn describe(&self, call: &str, answer: &Answer) -> String {
        self.client.redact(&format!(
            "{call}: answered {}: {}",
            answer.status,
            request::quote_body(&answer.body)
        ))
    }

    /// The same error, its message prefixed with this output's name.
    fn named(&self, e: OutputError) -> OutputError {
        match e {
            OutputError::Retryable(m) => self.retryable(m),
            OutputError::Permanent(m) => self.permanent(m),
        }
    }

    fn permanent(&self, msg: String) -> OutputError {
        OutputError::Permanent(format!(
            "output {}: {}",
            self.name,
            self.client.redact(&msg)
        ))
    }

    fn retryable(&self, msg: String) -> OutputError {
        OutputError::Retryable(format!(
            "output {}: {}",
            self.name,
            self.client.redact(&msg)
        ))
    }

    /// This output's counters.
    pub fn stats(&self) -> &TdStats {
        &self.stats
    }
}
