//! One function per endpoint; store work runs on the blocking pool under a permit.

use super::{ApiError, ApiState};
use crate::store::cli::render_csv;
use crate::store::query::{self, QueryError, QueryResult};
use crate::store::records::{self, RecordsError};
use crate::store::{catalog, retention};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query string as pairs, or a 400 saying it cannot be decoded.
fn pairs(params: Params) -> Result<Vec<(String, String)>, ApiError> {
    params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "query string", e.body_text()))
}

/// The single value of `name`, refusing repeats and over-long values.
fn one(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for (k, v) in pairs {
        if k == name {
            if found.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    name,
                    "given more than once",
                ));
            }
            found = Some(v.clone());
        }
    }
    Ok(found)
}

/// A query permit, so at most [`super::MAX_CONCURRENT_QUERIES`] run at once.
async fn permit(state: &ApiState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    state
        .permits
        .acquire()
        .await
        .map_err(|_| ApiError::internal("the API is shutting down"))
}

/// Runs `f` on the blocking pool while holding a query permit.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = state
        .permits
        .acquire()
        .await
        .map_err(|_| ApiError::internal("the API is shutting down"))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("query task failed: {e}")))
}

/// A query error as an answer: the parameter at fault and a fitting status.
fn query_error(state: &ApiState, e: QueryError) -> ApiError {
    state.with_stats(|s| {
        s.queries_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    });
    let text = e.to_string();
    match e {
        QueryError::UnknownDatabase { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "database", text)
        }
        QueryError::Refused(_) => ApiError::new(StatusCode::FORBIDDEN, "sql", text),
        QueryError::Interrupted(_) | QueryError::Sql(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "sql", text)
        }
        QueryError::Io(_) => ApiError::internal(text),
    }
}

fn counted(state: &ApiState) {
    state.with_stats(|s| s.queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Unknown paths: a JSON 404 naming the path.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "path",
        format!(
            "no endpoint {}; try /api/records, /api/query, /api/databases, /api/tables, /api/status, /metrics or /healthz",
            uri.path()
        ),
    )
}

/// `GET /api/status`: the daemon's status with the store's counters under `store`.
pub async fn status(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let mut v = (state.status)();
    let view = state.view();
    let store = match &view.postgres {
        Some(pg) => serde_json::json!({
            "backend": "postgres",
            "server": pg.target(),
            "counters": pg.stats().json(),
        }),
        None => serde_json::json!({
            "dir": view.store.dir().display().to_string(),
            "counters": view.store.stats().json(),
        }),
    };
    match &mut v {
        serde_json::Value::Object(m) => {
            m.insert("store".to_string(), store);
        }
        _ => v = serde_json::json!({ "daemon": v, "store": store }),
    }
    Json(v)
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = (state.metrics)();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&state.with_stats(|s| s.prometheus()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /api/databases`.
pub async fn databases(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let view = state.view();
    if let Some(pg) = &view.postgres {
        let _permit = permit(&state).await?;
        let list = pg
            .databases()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(Json(serde_json::json!({ "databases": list })));
    }
    let dir = view.store.dir().to_path_buf();
    let list = blocking(&state, move || catalog::databases(&dir)).await?;
    Ok(Json(serde_json::json!({ "databases": list })))
}

/// `GET /api/tables?database=`.
pub async fn tables(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = pairs(params)?;
    let db = one(&p, "database")?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "database",
            "missing; e.g. database=test_database",
        )
    })?;
    let view = state.view();
    let list = match &view.postgres {
        Some(pg) => {
            let _permit = permit(&state).await?;
            pg.tables(&db, state.limits).await
        }
        None => {
            let dir = view.store.dir().to_path_buf();
            let name = db.clone();
            let timeout = state.limits.timeout;
            blocking(&state, move || catalog::tables(&dir, &name, timeout)).await?
        }
    };
    let list = list.map_err(|e| match e {
        QueryError::UnknownDatabase { .. } => query_error(&state, e),
        // Nothing the caller sent is at fault: a huge table or a broken file.
        e => ApiError::internal(e.to_string()),
    })?;
    Ok(Json(serde_json::json!({ "database": db, "tables": list })))
}

/// `GET /api/records?...`.
pub async fn records(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = pairs(params)?;
    let now = retention::cutoff(std::time::Duration::ZERO);
    let q = records::parse_params(&p, now)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, &e.parameter, e.message))?;
    let timeout = state.limits.timeout;
    let view = state.view();
    let found = match &view.postgres {
        Some(pg) => {
            let _permit = permit(&state).await?;
            pg.records(&q, timeout).await
        }
        None => {
            let dir = view.store.dir().to_path_buf();
            blocking(&state, move || records::records(&dir, &q, timeout)).await?
        }
    };
    match found {
        Ok(recs) => {
            counted(&state);
            Ok(Json(serde_json::json!({ "records": recs })))
        }
        Err(RecordsError::Param(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            &e.parameter,
            e.message,
        )),
        Err(RecordsError::Query(e)) => Err(query_error(&state, e)),
    }
}

/// The body of `POST /api/query`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// Database name (default `default`).
    pub database: Option<String>,
    /// One read-only SQL statement.
    pub sql: String,
}

/// `GET /api/query?database=&sql=`.
pub async fn query_get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let p = pairs(params)?;
    let sql = one(&p, "sql")?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "sql",
            "missing; e.g. sql=select * from cpu_info",
        )
    })?;
    let db = one(&p, "database")?;
    run_query(state, headers, db, sql).await
}

/// `POST /api/query` with `{"database": "...", "sql": "..."}`.
pub async fn query_post(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<QueryBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "body", e.body_text()))?;
    run_query(state, headers, body.database, body.sql).await
}

async fn run_query(
    state: ApiState,
    headers: HeaderMap,
    db: Option<String>,
    sql: String,
) -> Result<Response, ApiError> {
    let db = db.unwrap_or_else(|| crate::store::names::DEFAULT_DATABASE.to_string());
    let limits = state.limits;
    let view = state.view();
    let result: Result<QueryResult, QueryError> = match &view.postgres {
        Some(pg) => {
            let _permit = permit(&state).await?;
            pg.query(&db, &sql, limits).await
        }
        None => {
            let dir = view.store.dir().to_path_buf();
            blocking(&state, move || query::run(&dir, &db, &sql, limits)).await?
        }
    };
    let result = result.map_err(|e| query_error(&state, e))?;
    counted(&state);
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            render_csv(&result),
        )
            .into_response()
    } else {
        Json(result).into_response()
    })
}
