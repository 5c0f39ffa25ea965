//! One connection with what it knows of the tables, identifier quoting, and how
//! server errors are sorted into retryable and permanent.

use super::super::WriteError;
use super::tls::PgTls;
use sha2::Digest as _;
use std::collections::HashMap;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1): longer names are silently cut
/// by the server, so two long names could meet in one table.
pub const MAX_IDENT: usize = 63;

/// Bytes of a long name kept before its hash.
const LONG_PREFIX: usize = 50;

/// An open connection and the columns it has seen per `(schema, table)`.
pub(super) struct Conn {
    /// The client; its connection task runs on the runtime until the client drops.
    pub client: Client,
    /// `(schema, table)` → column name → data type, as read from the server.
    pub tables: HashMap<(String, String), HashMap<String, String>>,
}

impl Conn {
    /// Connects (TLS as `config`'s `sslmode` says, through `tls`) and spawns the
    /// connection task.
    pub async fn open(
        config: &tokio_postgres::Config,
        tls: &PgTls,
    ) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = config.connect(tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection closed: {e}");
            }
        });
        Ok(Conn {
            client,
            tables: HashMap::new(),
        })
    }
}

/// The name a store name has on the server: itself when it fits [`MAX_IDENT`] bytes,
/// else a prefix plus a hash of the whole, so distinct long names stay distinct and
/// every aggregator derives the same one.
pub fn pg_name(name: &str) -> String {
    if name.len() <= MAX_IDENT {
        return name.to_string();
    }
    let mut cut = LONG_PREFIX;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = sha2::Sha256::digest(name.as_bytes());
    format!(
        "{}_{}",
        name.get(..cut).unwrap_or_default(),
        hex::encode(hash.get(..6).unwrap_or_default())
    )
}

/// `name` (after [`pg_name`]) as a quoted identifier: `"` doubled, NUL (which the
/// server refuses in any text) replaced, so no name can end the quoting.
pub fn ident(name: &str) -> String {
    let name = pg_name(name);
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\"\""),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// `user@host:port/dbname` of a config, for messages (never the password).
pub fn describe(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        c.get_user().unwrap_or("?"),
        c.get_dbname().unwrap_or("")
    )
}

/// Whether `e` says an object already exists (a concurrent `IF NOT EXISTS` lost the
/// race on the catalog's unique index): the statement is retried once.
pub fn already_exists(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::DUPLICATE_OBJECT,
            SqlState::DUPLICATE_TABLE,
            SqlState::DUPLICATE_SCHEMA,
            SqlState::DUPLICATE_COLUMN,
        ]
        .contains(c)
    })
}

/// Runs DDL, retrying once when a concurrent aggregator created the same object.
pub async fn ddl(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    match client.batch_execute(sql).await {
        Err(e) if already_exists(&e) => client.batch_execute(sql).await,
        other => other,
    }
}

/// Bad data (data exceptions, integrity, program limits, syntax) is permanent;
/// connection loss, serialization failures, missing privileges, a full disk, a
/// server shutting down are retryable.
pub fn classify(e: &tokio_postgres::Error, what: &str) -> WriteError {
    let text = format!("{what}: {}", describe_error(e));
    let Some(code) = e.code() else {
        return WriteError::Retryable(text);
    };
    let class = code.code().get(..2).unwrap_or_default();
    let retry_anyway = [
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_COLUMN,
        SqlState::INVALID_SCHEMA_NAME,
        SqlState::INSUFFICIENT_PRIVILEGE,
    ];
    if matches!(class, "22" | "23" | "42" | "54") && !retry_anyway.contains(code) {
        WriteError::Permanent(text)
    } else {
        WriteError::Retryable(text)
    }
}

/// The server's message (with detail) when there is one, else the client's with
/// its causes (tokio-postgres's own text is only the kind, e.g. "error performing
/// TLS handshake").
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
    }
}
