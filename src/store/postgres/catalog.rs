//! What a PostgreSQL store holds: the schemas tidepool made (those with a ledger
//! table), their tables, columns, row counts and time ranges, shaped as the SQLite
//! store's [`crate::store::catalog`] answers.

use super::conn::{Conn, describe_error, qualified};
use super::query::sql_error;
use super::{LEDGER, PgStore};
use crate::store::catalog::{ColumnInfo, DatabaseInfo, TableInfo};
use crate::store::query::{Limits, QueryError};
use crate::store::writer::TIME;
use tokio_postgres::Client;

impl PgStore {
    /// Names of the databases (schemas holding a ledger), sorted; connects on its own.
    pub async fn database_names(&self) -> Result<Vec<String>, QueryError> {
        let conn = self.conn_for_read().await?;
        let out = self
            .database_names_on(&conn.client)
            .await
            .map_err(|e| QueryError::Io(describe_error(&e)));
        self.put(conn);
        out
    }

    /// Names of the databases, on an open connection.
    pub(super) async fn database_names_on(
        &self,
        client: &Client,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT table_schema::text FROM information_schema.tables \
                 WHERE table_name = $1 ORDER BY 1",
                &[&LEDGER],
            )
            .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// The databases with their size on disk (tables and indexes), sorted by name.
    pub async fn databases(&self) -> Result<Vec<DatabaseInfo>, QueryError> {
        let conn = self.conn_for_read().await?;
        let rows = conn
            .client
            .query(
                "SELECT n.nspname::text, COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                 FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r' \
                 WHERE n.nspname IN (SELECT table_schema FROM information_schema.tables WHERE table_name = $1) \
                 GROUP BY 1 ORDER BY 1",
                &[&LEDGER],
            )
            .await;
        self.put(conn);
        let rows = rows.map_err(|e| QueryError::Io(describe_error(&e)))?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.try_get(1)?;
                Ok(DatabaseInfo {
                    name: r.try_get(0)?,
                    size_bytes: u64::try_from(size).unwrap_or_default(),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| QueryError::Io(describe_error(&e)))
    }

    /// Every table of database `db` with rows, columns and time range; counting is
    /// stopped after `limits.timeout`.
    pub async fn tables(&self, db: &str, limits: Limits) -> Result<Vec<TableInfo>, QueryError> {
        let conn = self.begin_read(db, limits).await?;
        let out = tokio::time::timeout(limits.timeout, tables_on(&conn.client, db)).await;
        self.end_read(conn, out, limits)
            .await
            .map_err(|e| super::query::with_limit(e, limits))
    }

    /// A connection for catalog reads, or why there is none.
    async fn conn_for_read(&self) -> Result<Conn, QueryError> {
        self.conn().await.map_err(|e| {
            QueryError::Io(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target(),
                describe_error(&e)
            ))
        })
    }
}

/// The tables of schema `db` (ledger left out), sorted by name.
pub(super) async fn table_names(client: &Client, db: &str) -> Result<Vec<String>, QueryError> {
    let rows = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_name <> $2 AND table_type = 'BASE TABLE' ORDER BY 1",
            &[&super::pg_name(db), &LEDGER],
        )
        .await
        .map_err(sql_error)?;
    rows.iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(sql_error)
}

/// The columns of `db`.`table` in table order, types as the server names them.
pub(super) async fn columns(
    client: &Client,
    db: &str,
    table: &str,
) -> Result<Vec<ColumnInfo>, QueryError> {
    let rows = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&super::pg_name(db), &super::pg_name(table)],
        )
        .await
        .map_err(sql_error)?;
    rows.iter()
        .map(|r| {
            Ok(ColumnInfo {
                name: r.try_get(0)?,
                decl_type: r.try_get(1)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(sql_error)
}

async fn tables_on(client: &Client, db: &str) -> Result<Vec<TableInfo>, QueryError> {
    let mut out = Vec::new();
    for name in table_names(client, db).await? {
        let columns = columns(client, db, &name).await?;
        let qt = qualified(db, &name);
        let has_time = columns.iter().any(|c| c.name == TIME);
        let sql = if has_time {
            format!("SELECT count(*), min(\"{TIME}\")::bigint, max(\"{TIME}\")::bigint FROM {qt}")
        } else {
            format!("SELECT count(*), NULL::bigint, NULL::bigint FROM {qt}")
        };
        let row = client.query_one(&sql, &[]).await.map_err(sql_error)?;
        let rows: i64 = row.try_get(0).map_err(sql_error)?;
        out.push(TableInfo {
            name,
            rows: u64::try_from(rows).unwrap_or_default(),
            columns,
            min_time: row.try_get(1).map_err(sql_error)?,
            max_time: row.try_get(2).map_err(sql_error)?,
        });
    }
    Ok(out)
}
