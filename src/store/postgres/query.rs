//! Read-only SQL against one database (schema), bounded in rows and time.
//!
//! The statement runs in a `READ ONLY` transaction whose `search_path` is the
//! database's schema (so `select * from cpu_info` works as written), with
//! `statement_timeout` set to the time limit and a client-side cancel as a second
//! stop. Only one `SELECT` / `WITH` / `VALUES` / `TABLE` statement is accepted: it
//! must prepare as a single statement and is read through a cursor, which refuses
//! data-modifying statements, so rows past the cap are never sent.

use super::PgStore;
use super::conn::Conn;
use super::conn::{describe_error, ident, pg_name};
use super::text::text_json;
use crate::store::query::{Limits, MAX_RESULT_BYTES, QueryError, QueryResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// PostgreSQL's predefined role (14 and later) that may read every table and nothing
/// else: no server files (`pg_read_file`), no signalling other sessions. Reads that
/// can take it do, so a store whose writer connects as a superuser still cannot be
/// used through `/api/query` to read files or stop backends.
pub const READ_ROLE: &str = "pg_read_all_data";

/// Rows fetched from the cursor per round trip.
const FETCH_BATCH: usize = 1000;

/// Slack past the time limit before the client cancels a statement itself.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl PgStore {
    /// Runs one read-only statement on database `db`.
    pub async fn query(
        &self,
        db: &str,
        sql: &str,
        limits: Limits,
    ) -> Result<QueryResult, QueryError> {
        self.query_inner(db, sql, limits).await
    }

    async fn query_inner(
        &self,
        db: &str,
        sql: &str,
        limits: Limits,
    ) -> Result<QueryResult, QueryError> {
        check_statement(sql)?;
        let conn = self.begin_read(db, limits).await?;
        let out = tokio::time::timeout(
            limits.timeout + CANCEL_GRACE,
            run(&conn.client, sql, limits),
        )
        .await;
        self.end_read(conn, out, limits)
            .await
            .map_err(|e| with_limit(e, limits))
    }

    /// A connection inside a read-only transaction on `db`'s schema with the time
    /// limit set; [`PgStore::end_read`] ends it.
    pub(super) async fn begin_read(&self, db: &str, limits: Limits) -> Result<Conn, QueryError> {
        let conn = self.conn().await.map_err(|e| {
            QueryError::Io(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target(),
                describe_error(&e)
            ))
        })?;
        let names = self
            .database_names_on(&conn.client)
            .await
            .map_err(|e| QueryError::Io(describe_error(&e)))?;
        let valid = crate::store::names::is_valid_name(db, crate::store::names::MAX_DATABASE_NAME);
        if !valid || !names.iter().any(|n| *n == pg_name(db)) {
            self.put(conn);
            return Err(QueryError::UnknownDatabase {
                name: db.to_string(),
                known: names.join(", "),
            });
        }
        let mut setup = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL search_path = {}",
            limits.timeout.as_millis().max(1),
            ident(db)
        );
        if self.can_take_read_role(&conn.client).await {
            setup.push_str(&format!("; SET LOCAL ROLE {READ_ROLE}"));
        }
        conn.client.batch_execute(&setup).await.map_err(sql_error)?;
        Ok(conn)
    }

    /// Whether this connection's role may `SET ROLE` to [`READ_ROLE`] (a superuser
    /// or a member): asked once per store; false on servers without the role.
    async fn can_take_read_role(&self, client: &Client) -> bool {
        *self
            .inner
            .read_role
            .get_or_init(|| async {
                let ask = format!(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READ_ROLE}') \
                     THEN pg_has_role('{READ_ROLE}', 'MEMBER') ELSE false END"
                );
                let can = match client.query_one(ask.as_str(), &[]).await {
                    Ok(row) => row.try_get::<_, bool>(0).unwrap_or(false),
                    Err(_) => false,
                };
                if !can {
                    tracing::warn!(
                        store = %self.target(),
                        "reads run with the writer's own privileges ({READ_ROLE} cannot be taken): \
                         connect as a role that is not a superuser, or grant it {READ_ROLE}"
                    );
                }
                can
            })
            .await
    }

    /// Ends a read begun by [`PgStore::begin_read`]: past the time limit the
    /// statement is cancelled and the connection dropped; otherwise the transaction
    /// is rolled back, the session reset, and the connection reused.
    pub(super) async fn end_read<T, E: From<QueryError>>(
        &self,
        conn: Conn,
        out: Result<Result<T, E>, tokio::time::error::Elapsed>,
        limits: Limits,
    ) -> Result<T, E> {
        let out = match out {
            Ok(r) => r,
            Err(_) => {
                let _ = conn.client.cancel_token().cancel_query(NoTls).await;
                return Err(QueryError::Interrupted(limits.timeout).into());
            }
        };
        // DISCARD ALL drops what a query may have left on the session (session-level
        // settings, advisory locks, temp tables) before the connection is reused.
        if conn.client.batch_execute("ROLLBACK").await.is_ok()
            && conn.client.batch_execute("DISCARD ALL").await.is_ok()
        {
            self.put(conn);
        }
        out
    }
}

/// The server's "canceling statement due to statement timeout" names the limit.
pub(super) fn with_limit(e: QueryError, limits: Limits) -> QueryError {
    match e {
        QueryError::Interrupted(_) => QueryError::Interrupted(limits.timeout),
        other => other,
    }
}

/// Refuses what is not a query before anything reaches the server: statements
/// other than `SELECT`, `WITH`, `VALUES`, `TABLE` (the read-only transaction and
/// the cursor refuse writes again).
pub(super) fn check_statement(sql: &str) -> Result<(), QueryError> {
    let first = first_word(sql).to_ascii_lowercase();
    if ["select", "with", "values", "table"].contains(&first.as_str()) {
        Ok(())
    } else if first.is_empty() {
        Err(QueryError::Sql(
            "empty statement; send one SELECT".to_string(),
        ))
    } else {
        Err(QueryError::Refused(format!(
            "{} statements are not allowed: queries are read-only (SELECT, WITH, VALUES or TABLE only)",
            first.to_ascii_uppercase()
        )))
    }
}

/// The first keyword, past whitespace, comments and opening parentheses.
pub(super) fn first_word(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        let t = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = t.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = t.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            let end = t
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(t.len());
            return t.get(..end).unwrap_or_default();
        }
    }
}

/// Prepares the statement (one statement only), opens a cursor on it and fetches
/// up to the row cap, in text, converted by the statement's column types.
async fn run(client: &Client, sql: &str, limits: Limits) -> Result<QueryResult, QueryError> {
    let stmt = client.prepare(sql).await.map_err(|e| {
        if describe_error(&e).contains("multiple commands") {
            QueryError::Refused("more than one statement; send one statement per query".into())
        } else {
            sql_error(e)
        }
    })?;
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let types: Vec<_> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let body = sql.trim_end().trim_end_matches(';');
    client
        .execute(
            &format!("DECLARE tidepool_query NO SCROLL CURSOR FOR {body}\n"),
            &[],
        )
        .await
        .map_err(|e| match e.code() {
            // "DECLARE CURSOR must not contain data-modifying statements in WITH".
            Some(c) if *c == SqlState::FEATURE_NOT_SUPPORTED => {
                QueryError::Refused(format!("{}: queries are read-only", describe_error(&e)))
            }
            _ => sql_error(e),
        })?;
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut truncated = false;
    'fetch: loop {
        let want = FETCH_BATCH.min(limits.max_rows + 1 - rows.len().min(limits.max_rows));
        let messages = client
            .simple_query(&format!("FETCH FORWARD {want} FROM tidepool_query"))
            .await
            .map_err(sql_error)?;
        let mut got = 0;
        for m in messages {
            let SimpleQueryMessage::Row(r) = m else {
                continue;
            };
            got += 1;
            if rows.len() >= limits.max_rows || bytes > MAX_RESULT_BYTES {
                truncated = true;
                break 'fetch;
            }
            let mut out = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                let text = r.try_get(i).map_err(sql_error)?;
                bytes = bytes.saturating_add(text.map_or(8, str::len));
                out.push(text_json(text, ty));
            }
            rows.push(out);
        }
        if got < want {
            break;
        }
    }
    Ok(QueryResult {
        columns,
        rows,
        truncated,
    })
}

/// A server error as a query error: cancelled → interrupted, writes → refused.
pub(super) fn sql_error(e: tokio_postgres::Error) -> QueryError {
    let text = describe_error(&e);
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => {
            QueryError::Interrupted(std::time::Duration::ZERO)
        }
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
            QueryError::Refused(format!("{text}: queries are read-only"))
        }
        Some(_) => QueryError::Sql(text),
        None => QueryError::Io(text),
    }
}
