//! The store on PostgreSQL (`backend = "postgres"`), so many aggregators share one
//! store: one schema per database, one table per table, the same columns as the
//! SQLite files (`time`, `time_nanos`, one column per record key, `value`, `_extra`).
//!
//! Idempotence needs no per-row columns: each schema has a ledger table
//! ([`LEDGER`]) whose row for a chunk is inserted in the same transaction as the
//! chunk's rows, so a chunk delivered twice (by this aggregator after a crash, or
//! racing another) is stored once. Connections are TLS as the URL's `sslmode` and
//! the output's `tls` table say (see [`tls`]), kept in a small pool; a broken one
//! is dropped and the next call connects again.

pub mod catalog;
mod conn;
pub mod query;
pub mod records;
pub mod retention;
#[cfg(test)]
mod tests;
mod text;
mod tls;
pub mod writer;

pub use conn::{ident, pg_name};

use super::Stats;
use crate::config::{PgTlsConfig, PgVerify};
use conn::Conn;
use std::sync::{Arc, Mutex};
use tls::PgTls;
use tokio_postgres::config::SslMode;

/// The per-schema table recording which chunks are stored; `#` cannot occur in a
/// normalized table name, so no tag can name it (as in SQLite).
pub const LEDGER: &str = "#chunks";

/// Idle connections kept for reuse; more callers at once open more, closed after.
pub const POOL_SIZE: usize = 4;

/// A handle on one PostgreSQL store, cheap to clone and shared by the store output,
/// the HTTP API and the CLI, so all see the same connections and counters.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: tokio_postgres::Config,
    tls: PgTls,
    target: String,
    idle: Mutex<Vec<Conn>>,
    stats: Stats,
    /// Whether reads can take the `pg_read_all_data` role (see `query::READ_ROLE`),
    /// asked once.
    read_role: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .finish()
    }
}

impl PgStore {
    /// A handle on the server `url` names, with no `tls` table: TLS as the URL's
    /// `sslmode` says (default `prefer`), the server checked against the public CAs.
    /// Nothing connects until the first use.
    pub fn new(url: &str) -> anyhow::Result<PgStore> {
        PgStore::with_tls(url, None)
    }

    /// A handle on the server `url` names, its certificate checked as `tls` says.
    ///
    /// With `tls`, TLS is required (libpq's `verify-ca` / `verify-full` imply it),
    /// and a URL with `sslmode=disable` is refused. Its files are read here, so a bad
    /// one fails the start, reload or `tidepool check`, not the first write; nothing
    /// connects until the first use.
    pub fn with_tls(url: &str, tls: Option<&PgTlsConfig>) -> anyhow::Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("not a PostgreSQL connection URL: {e}"))?;
        if tls.is_some() {
            match config.get_ssl_mode() {
                SslMode::Disable => anyhow::bail!(
                    "the url says sslmode=disable but tls is set: remove sslmode=disable to \
                     connect with TLS, or remove tls"
                ),
                _ => {
                    config.ssl_mode(SslMode::Require);
                }
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("tidepool");
        }
        let target = conn::describe(&config);
        let connector = PgTls::new(tls).map_err(|e| anyhow::anyhow!("{target}: {e:#}"))?;
        match (config.get_ssl_mode(), tls.map(|t| t.verify)) {
            (SslMode::Disable, _) => {}
            (_, Some(PgVerify::None)) => tracing::warn!(
                store = %target,
                "tls.verify = \"none\": the PostgreSQL server's certificate is not checked, \
                 so anyone on the network path can pose as it and read passwords and rows"
            ),
            _ => tracing::debug!(store = %target, "PostgreSQL TLS: {}", connector.describe()),
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                config,
                tls: connector,
                target,
                idle: Mutex::new(Vec::new()),
                stats: Stats::default(),
                read_role: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// Where the store is, without the password: `user@host:port/dbname`.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// An open connection: an idle one that is still alive, or a new one.
    async fn conn(&self) -> Result<Conn, tokio_postgres::Error> {
        loop {
            let idle = super::lock(&self.inner.idle).pop();
            match idle {
                Some(c) if !c.client.is_closed() => return Ok(c),
                Some(_) => continue,
                None => return Conn::open(&self.inner.config, &self.inner.tls).await,
            }
        }
    }

    /// Gives a connection back for reuse, unless it broke or the pool is full.
    fn put(&self, c: Conn) {
        if c.client.is_closed() {
            return;
        }
        let mut idle = super::lock(&self.inner.idle);
        if idle.len() < POOL_SIZE {
            idle.push(c);
        }
    }
}
