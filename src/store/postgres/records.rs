//! `/api/records` on PostgreSQL: the same checked parameters
//! ([`crate::store::records::parse_params`]) and the same answer as on SQLite.
//!
//! Filter values are bound as parameters of their column's type; a value that
//! cannot be of that type matches nothing (as SQLite's comparison would).

use super::PgStore;
use super::catalog::{columns, table_names};
use super::conn::{ident, qualified};
use super::query::sql_error;
use crate::store::query::{Limits, QueryError};
use crate::store::records::{ParamError, RecordsError, RecordsQuery};
use crate::store::writer::{EXTRA, TIME, TIME_NANOS};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

/// One answer record: column → value.
type Record = serde_json::Map<String, serde_json::Value>;

impl PgStore {
    /// The newest matching records of `q.table`, each an object of its non-null
    /// columns (`time_nanos` left out, `_extra` keys merged back).
    pub async fn records(
        &self,
        q: &RecordsQuery,
        timeout: Duration,
    ) -> Result<Vec<Record>, RecordsError> {
        let limits = Limits {
            max_rows: q.limit,
            timeout,
        };
        let conn = match self.begin_read(&q.database, limits).await {
            Ok(c) => c,
            Err(QueryError::UnknownDatabase { name, known }) => {
                return Err(param(
                    "database",
                    format!("unknown database {name:?} (databases: {known})"),
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let out = tokio::time::timeout(timeout, read(&conn.client, q)).await;
        self.end_read(conn, out, limits).await.map_err(|e| match e {
            RecordsError::Query(q) => RecordsError::Query(super::query::with_limit(q, limits)),
            other => other,
        })
    }
}

fn param(parameter: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.to_string(),
        message: message.into(),
    }
}

/// The store's bookkeeping columns, left out of records.
fn is_internal(name: &str) -> bool {
    name == TIME_NANOS || name == EXTRA
}

async fn read(client: &Client, q: &RecordsQuery) -> Result<Vec<Record>, RecordsError> {
    let tables = table_names(client, &q.database).await?;
    let table = super::pg_name(&q.table);
    if !tables.contains(&table) {
        return Err(RecordsError::Param(param(
            "table",
            format!(
                "unknown table {:?} in database {:?} (tables: {})",
                q.table,
                q.database,
                tables.join(", ")
            ),
        )));
    }
    let cols = columns(client, &q.database, &q.table).await?;
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    if let Some(since) = q.since {
        args.push(Box::new(since));
        clauses.push(format!("\"{TIME}\" >= ${}", args.len()));
    }
    for (key, value) in &q.filters {
        let col = cols
            .iter()
            .find(|c| c.name == *key && !is_internal(&c.name))
            .or_else(|| {
                cols.iter()
                    .find(|c| c.name.eq_ignore_ascii_case(key) && !is_internal(&c.name))
            })
            .ok_or_else(|| {
                let names: Vec<&str> = cols
                    .iter()
                    .filter(|c| !is_internal(&c.name))
                    .map(|c| c.name.as_str())
                    .collect();
                RecordsError::Param(param(
                    key,
                    format!(
                        "not a column of table {:?} (columns: {})",
                        q.table,
                        names.join(", ")
                    ),
                ))
            })?;
        let qc = ident(&col.name);
        let v = value.trim();
        let clause = match col.decl_type.as_str() {
            "bigint" | "integer" | "smallint" => match v.parse::<i64>().ok().or_else(|| {
                v.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            }) {
                Some(i) => {
                    args.push(Box::new(i));
                    format!("{qc} = ${}::bigint", args.len())
                }
                None => "FALSE".to_string(),
            },
            "double precision" | "real" | "numeric" => match v.parse::<f64>() {
                Ok(f) => {
                    args.push(Box::new(f));
                    format!("{qc} = ${}::double precision", args.len())
                }
                Err(_) => "FALSE".to_string(),
            },
            _ => {
                args.push(Box::new(value.clone()));
                format!("{qc}::text = ${}::text", args.len())
            }
        };
        clauses.push(clause);
    }
    // Values of types this reader does not decode come as text.
    let select: Vec<String> = cols
        .iter()
        .map(|c| match c.decl_type.as_str() {
            "bigint" | "integer" | "smallint" | "double precision" | "real" | "boolean"
            | "text" => ident(&c.name),
            _ => format!("{0}::text AS {0}", ident(&c.name)),
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        select.join(", "),
        qualified(&q.database, &q.table)
    );
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(
        " ORDER BY \"{TIME}\" DESC, ctid DESC LIMIT {}",
        q.limit
    ));
    let params: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&sql, &params).await.map_err(sql_error)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut rec = Record::new();
        for (i, c) in row.columns().iter().enumerate() {
            let name = c.name();
            if name == TIME_NANOS {
                continue;
            }
            let v = value(&row, i, c.type_()).map_err(sql_error)?;
            if name == EXTRA {
                if let serde_json::Value::String(s) = v
                    && let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&s)
                {
                    for (k, val) in m {
                        rec.entry(k).or_insert(val);
                    }
                }
            } else if !v.is_null() {
                rec.insert(name.to_string(), v);
            }
        }
        out.push(rec);
    }
    Ok(out)
}

/// Column `i` of `row` as JSON, by its type.
fn value(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> Result<serde_json::Value, tokio_postgres::Error> {
    let num = |f: Option<f64>| {
        f.and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .unwrap_or_default()
    };
    Ok(match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.into(),
        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.into(),
        Type::INT2 => row.try_get::<_, Option<i16>>(i)?.into(),
        Type::FLOAT8 => num(row.try_get::<_, Option<f64>>(i)?),
        Type::FLOAT4 => num(row.try_get::<_, Option<f32>>(i)?.map(f64::from)),
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.into(),
        _ => row.try_get::<_, Option<String>>(i)?.into(),
    })
}
