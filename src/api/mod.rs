//! The HTTP API: records and SQL over the local store, daemon status and metrics.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /healthz` | `ok` (never needs the token) |
//! | `GET /api/status` | the daemon's monitor_agent-like JSON plus the store's counters |
//! | `GET /metrics` | Prometheus text: the daemon's metrics plus the store's |
//! | `GET /api/databases` | `{"databases": [{"name", "size_bytes"}]}` |
//! | `GET /api/tables?database=` | `{"database", "tables": [{"name", "rows", "columns", "min_time", "max_time"}]}` |
//! | `GET /api/records?database=&table=&limit=&created_in_days=&created_in_sec=&<column>=<value>` | `{"records": [...]}`, newest first |
//! | `GET /api/query?database=&sql=`, `POST /api/query {"database", "sql"}` | `{"columns", "rows", "truncated"}`, or CSV with `Accept: text/csv` |
//!
//! When the store output writes to PostgreSQL (`backend = "postgres"`), the store
//! endpoints read that server ([`StoreView::postgres`]) with the same answers; a reload
//! that changes the store outputs changes what they read ([`ApiState::stores`]).
//!
//! Every error is JSON, `{"error": "...", "parameter": "..."}`, where `parameter`
//! names the query parameter or body field at fault. With a token configured, every
//! endpoint but `/healthz` requires `Authorization: Bearer <token>`.

pub mod client;
mod handlers;
pub mod server;
#[cfg(test)]
mod tests;

use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::query::Limits;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Queries (SQL or records) running at once; more wait, so a burst of heavy queries
/// cannot take every core from ingest.
pub const MAX_CONCURRENT_QUERIES: usize = 4;

/// The store the records, SQL, databases and tables endpoints read: the first store
/// output's, so what the API answers is what that output writes.
#[derive(Clone, Debug)]
pub struct StoreView {
    /// The SQLite store (the default store directory when no store output uses one).
    pub store: Store,
    /// When the store output writes to PostgreSQL: read it instead of `store`.
    pub postgres: Option<PgStore>,
}

/// What the handlers share: the store view, the daemon's callbacks, the token.
#[derive(Clone)]
pub struct ApiState {
    /// The store the endpoints read; the daemon swaps it when a reload changes the
    /// store outputs (a new PostgreSQL URL or TLS settings, another backend).
    pub stores: Arc<std::sync::RwLock<StoreView>>,
    /// The daemon's status, monitor_agent-like JSON (per input and output).
    pub status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// The daemon's metrics in Prometheus text format.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Bearer token required by every endpoint but `/healthz`, when set; a reload
    /// that changes it applies to the next request (rotation without a restart).
    pub token: Arc<std::sync::RwLock<Option<String>>>,
    /// Row cap and time limit of SQL queries and records reads.
    pub limits: Limits,
    /// Bounds concurrent queries to [`MAX_CONCURRENT_QUERIES`].
    pub permits: Arc<Semaphore>,
    /// `POST /api/reload`: re-reads the config and applies it; None = not offered.
    pub reload: Option<ReloadHook>,
}

/// Reloads the daemon's config; resolves to what happened, or why it was refused
/// (the running config then stays).
pub type ReloadHook = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

impl From<Store> for StoreView {
    fn from(store: Store) -> Self {
        StoreView {
            store,
            postgres: None,
        }
    }
}

impl ApiState {
    /// State reading `view` (a SQLite [`Store`] converts into one), with default
    /// limits and no token; the lead fills the callbacks.
    pub fn new(
        view: impl Into<StoreView>,
        status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
        metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Self {
        let view = view.into();
        ApiState {
            stores: Arc::new(std::sync::RwLock::new(view)),
            status,
            metrics,
            token: Arc::new(std::sync::RwLock::new(None)),
            limits: Limits::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)),
            reload: None,
        }
    }

    /// The store to read for one request (a cheap clone: both handles are shared).
    pub fn view(&self) -> StoreView {
        self.stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The bearer token requests must carry now, if any.
    pub fn required_token(&self) -> Option<String> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the store counters of the store the endpoints read.
    pub fn with_stats<R>(&self, f: impl FnOnce(&crate::store::Stats) -> R) -> R {
        let view = self.view();
        match &view.postgres {
            Some(pg) => f(pg.stats()),
            None => f(view.store.stats()),
        }
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("stores", &self.view())
            .field("token", &self.required_token().map(|_| "<set>"))
            .field("limits", &self.limits)
            .finish()
    }
}

/// Serves the API over plain HTTP on `listener` with the default limits until
/// `shutdown` is cancelled, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(
        listener,
        state,
        None,
        server::ServeLimits::default(),
        shutdown,
    )
    .await;
    Ok(())
}

/// Serves the API on `listener`, through `tls` when given (`[api] tls`), with
/// `limits` on connections, handshakes and header reads.
pub async fn serve_with(
    listener: TcpListener,
    state: ApiState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: server::ServeLimits,
    shutdown: CancellationToken,
) {
    server::serve_router(listener, router(state), tls, limits, shutdown).await;
}

/// The routes, with the token check on all but `/healthz`.
pub fn router(state: ApiState) -> Router {
    let guarded = Router::new()
        .route("/api/status", get(handlers::status))
        .route("/metrics", get(handlers::metrics))
        .route("/api/databases", get(handlers::databases))
        .route("/api/tables", get(handlers::tables))
        .route("/api/records", get(handlers::records))
        .route(
            "/api/query",
            get(handlers::query_get).post(handlers::query_post),
        )
        .route("/api/reload", axum::routing::post(reload))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .merge(guarded)
        .fallback(handlers::not_found)
        .with_state(state)
}

/// `POST /api/reload`: 200 `{"reloaded": true}`, or 400 with the config's errors
/// (the running config stays), or 404 when the daemon offers no reload.
async fn reload(State(state): State<ApiState>) -> Response {
    let Some(hook) = &state.reload else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "reload is not available here"})),
        )
            .into_response();
    };
    match hook().await {
        Ok(()) => axum::Json(serde_json::json!({"reloaded": true})).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"reloaded": false, "error": e})),
        )
            .into_response(),
    }
}

/// Refuses a request without the configured bearer token (401, JSON).
async fn auth(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(token) = state.required_token() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization",
            "wrong bearer token",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization",
            "missing; send `Authorization: Bearer <token>` (the [api] token)",
        )
        .into_response(),
    }
}

/// Compares without an early exit, so timing does not reveal a token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error answer: a status and `{"error", "parameter"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    parameter: Option<String>,
    message: String,
}

impl ApiError {
    /// An error about `parameter`.
    pub fn new(status: StatusCode, parameter: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            parameter: Some(parameter.to_string()),
            message: message.into(),
        }
    }

    /// An error about no parameter in particular (the server's own failure).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            parameter: None,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(p) = self.parameter {
            body["parameter"] = p.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}
