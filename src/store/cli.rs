//! `tidepool query` and `tidepool store purge`, as functions the CLI calls: they work
//! on the store files directly (or on the PostgreSQL server a `backend = "postgres"`
//! store output names), so they need no running daemon.

use super::names::DEFAULT_DATABASE;
use super::query::{Limits, QueryResult};
use crate::config::PgTlsConfig;
use std::path::Path;
use std::time::Duration;

/// How `tidepool query` prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QueryFormat {
    /// Aligned columns with a header, like a SQL console.
    #[default]
    Table,
    /// `{"columns": [...], "rows": [[...]], "truncated": false}`.
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

/// Runs one read-only statement against `<data_dir>/store/<db>.sqlite` (database
/// `default` when `db` is None) and renders the answer.
pub fn run_query(
    data_dir: &Path,
    db: Option<&str>,
    sql: &str,
    format: QueryFormat,
) -> anyhow::Result<String> {
    let dir = super::store_dir(data_dir);
    let db = db.unwrap_or(DEFAULT_DATABASE);
    let result = super::query::run(&dir, db, sql, Limits::default())?;
    render(&result, format)
}

/// Runs one read-only statement on the PostgreSQL store at `url` (its certificate
/// checked as the output's `tls` says; database `default` when `db` is None) and
/// renders the answer.
pub async fn run_query_postgres(
    url: &str,
    tls: Option<&PgTlsConfig>,
    db: Option<&str>,
    sql: &str,
    format: QueryFormat,
) -> anyhow::Result<String> {
    let store = super::postgres::PgStore::with_tls(url, tls)?;
    let db = db.unwrap_or(DEFAULT_DATABASE);
    let result = store.query(db, sql, Limits::default()).await?;
    render(&result, format)
}

/// Renders a query's answer as `tidepool query` prints it.
pub fn render(result: &QueryResult, format: QueryFormat) -> anyhow::Result<String> {
    Ok(match format {
        QueryFormat::Table => render_table(result),
        QueryFormat::Json => {
            let mut s = serde_json::to_string(result)?;
            s.push('\n');
            s
        }
        QueryFormat::Csv => render_csv(result),
    })
}

/// Deletes rows older than `retention` from every database of the PostgreSQL store
/// at `url` (checked as `tls` says); returns a one-line summary.
pub async fn purge_postgres(
    url: &str,
    tls: Option<&PgTlsConfig>,
    retention: Duration,
) -> anyhow::Result<String> {
    let store = super::postgres::PgStore::with_tls(url, tls)?;
    let r = store
        .purge(
            super::retention::cutoff(retention),
            super::retention::PURGE_BATCH,
        )
        .await?;
    Ok(summary(&r, retention))
}

fn summary(r: &super::retention::PurgeReport, retention: Duration) -> String {
    format!(
        "purged {} rows older than {}s from {} tables in {} databases\n",
        r.rows,
        retention.as_secs(),
        r.tables,
        r.databases
    )
}

/// Deletes rows older than `retention` from every database under `data_dir`; returns
/// a one-line summary.
pub fn purge(data_dir: &Path, retention: Duration) -> anyhow::Result<String> {
    let dir = super::store_dir(data_dir);
    let r = super::retention::purge_dir(&dir, retention)?;
    Ok(summary(&r, retention))
}

/// A value as a cell of text: strings bare, null empty, the rest as JSON.
fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Aligned columns separated by ` | `, a rule under the header, and a row count.
pub fn render_table(r: &QueryResult) -> String {
    let texts: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| cell_text(v).replace(['\n', '\r'], " "))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
    for row in &texts {
        for (w, t) in widths.iter_mut().zip(row) {
            *w = (*w).max(t.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let mut s = parts.join(" | ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut r.columns.iter().map(String::as_str));
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.push('\n');
    for row in &texts {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    let n = r.rows.len();
    out.push_str(&format!(
        "({n} row{}{})\n",
        if n == 1 { "" } else { "s" },
        if r.truncated {
            ", truncated at the row limit"
        } else {
            ""
        }
    ));
    out
}

/// CSV with a header line; fields with `,`, `"`, CR or LF are quoted.
pub fn render_csv(r: &QueryResult) -> String {
    fn field(s: &str, out: &mut String) {
        if s.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&s.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(s);
        }
    }
    let mut out = String::new();
    for (i, c) in r.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(c, &mut out);
    }
    out.push_str("\r\n");
    for row in &r.rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&cell_text(v), &mut out);
        }
        out.push_str("\r\n");
    }
    out
}
