//! One HTTP request: route it (postback or in_http), check the key, read and decode
//! the body under its limits, store the events, and answer only once they are durable.

use super::body::{self, BodyFailure};
use super::json::{self, Shape};
use super::postback::{self, KeyCheck};
use super::{Entries, HttpContext, TimeRule, fluentd};
use crate::event::{Batch, EventTime, Signal};
use crate::metrics::InputMetrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;

/// What every request is answered with.
pub type Answer = Response<Full<Bytes>>;

/// Which API a request speaks, for the shape of its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// Treasure Data postback: JSON answers, `{}` on success.
    Postback,
    /// Fluentd in_http: text answers, empty on success.
    Fluentd,
}

/// A refused request: status, a short label for the rejection counter, the reason.
struct Refusal {
    status: StatusCode,
    label: &'static str,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, label: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            label,
            reason: reason.into(),
        }
    }
}

impl From<BodyFailure> for Refusal {
    fn from(e: BodyFailure) -> Self {
        let (status, label) = match &e {
            BodyFailure::TooLarge { .. } | BodyFailure::InflatedTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            BodyFailure::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            BodyFailure::Read(_) => (StatusCode::BAD_REQUEST, "read_failed"),
            BodyFailure::Encoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_encoding"),
            BodyFailure::Corrupt { .. } => (StatusCode::BAD_REQUEST, "bad_body"),
        };
        Refusal::new(status, label, e.to_string())
    }
}

/// Answers one request; never fails (every problem is an HTTP answer).
pub async fn handle(req: Request<Incoming>, ctx: &HttpContext, peer: SocketAddr) -> Answer {
    let received = EventTime::now();
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_string);
    let cors = cors_origin(ctx, origin.as_deref());
    let api = if req.uri().path().starts_with(postback::PREFIX) {
        Api::Postback
    } else {
        Api::Fluentd
    };
    let mut answer = match route(req, ctx, api, received, origin.as_deref(), &cors).await {
        Ok(answer) => answer,
        Err(refusal) => {
            ctx.metrics.reject(refusal.label);
            if refusal.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(listener = %ctx.label, %peer, "cannot store a request's events, answered 503: {}", refusal.reason);
            } else {
                ctx.warn(
                    peer,
                    &format!("answered {}: {}", refusal.status.as_u16(), refusal.reason),
                );
            }
            refuse(api, &refusal)
        }
    };
    if let Some(allow) = cors {
        answer
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    }
    answer
}

async fn route(
    req: Request<Incoming>,
    ctx: &HttpContext,
    api: Api,
    received: EventTime,
    origin: Option<&str>,
    cors: &Option<HeaderValue>,
) -> Result<Answer, Refusal> {
    match *req.method() {
        Method::POST => {}
        Method::OPTIONS => return preflight(req.headers(), cors),
        // Load balancers and Azure App Service probe with GET; Fluentd answers 200.
        Method::GET | Method::HEAD => return Ok(plain(StatusCode::OK, "text/plain", "")),
        ref other => {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "bad_method",
                format!("method {other} is not allowed (expected POST)"),
            ));
        }
    }
    if origin.is_some() && !ctx.config.cors_allow_origins.is_empty() && cors.is_none() {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "cors",
            format!(
                "origin {:?} is not in cors_allow_origins",
                origin.unwrap_or_default()
            ),
        ));
    }
    let cfg = &ctx.config;
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let (tag, check) = match api {
        Api::Postback => {
            let rest = path.get(postback::PREFIX.len()..).unwrap_or_default();
            let (db, table) = postback::parse_path(rest)
                .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "bad_path", e))?;
            authorize(ctx, req.headers(), query.as_deref())?;
            (format!("td.{db}.{table}"), None)
        }
        Api::Fluentd => {
            if !cfg.in_http {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "no postback path {path:?} (in_http is off; expected {}<db>/<table>)",
                        postback::PREFIX
                    ),
                ));
            }
            let tag = fluentd::tag_of(&path, cfg.add_tag_prefix.as_deref())
                .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "bad_path", e))?;
            let kind = fluentd::body_kind(header_str(req.headers(), header::CONTENT_TYPE));
            (tag, Some(kind))
        }
    };
    let declared = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let encoding = header_str(req.headers(), header::CONTENT_ENCODING).map(str::to_string);
    let raw = body::read(
        req.into_body(),
        declared,
        cfg.max_body_size,
        cfg.body_timeout,
    )
    .await?;
    InputMetrics::add(&ctx.metrics.bytes, raw.len() as u64);
    let body = body::decode(raw, encoding.as_deref(), cfg.max_decompressed_size)?;
    let entries = match check {
        None => {
            let mut entries = Entries::default();
            json::decode(
                &body,
                Shape::Object,
                TimeRule::TdRecordTime(received),
                cfg.max_depth,
                &mut entries,
            )
            .map(|()| entries)
        }
        Some(kind) => fluentd::decode(query.as_deref(), kind, &body, received, cfg.max_depth),
    }
    .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "bad_body", e.0))?;
    store(ctx, tag, entries).await?;
    Ok(match api {
        Api::Postback => plain(StatusCode::OK, "application/json", "{}"),
        Api::Fluentd => plain(StatusCode::OK, "text/plain", ""),
    })
}

/// Checks the postback write key; the failure counts as an auth failure.
fn authorize(ctx: &HttpContext, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
    let query_key = query.and_then(|q| {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "td_write_key")
            .map(|(_, v)| v)
    });
    let decoded = query_key
        .map(|v| String::from_utf8_lossy(&fluentd::percent_decode(v.as_bytes())).into_owned());
    let key = postback::write_key(
        header_str(headers, "x-td-write-key"),
        header_str(headers, header::AUTHORIZATION),
        decoded.as_deref(),
    );
    match postback::check_key(&ctx.config.write_keys, key) {
        KeyCheck::Ok => Ok(()),
        KeyCheck::Missing => {
            InputMetrics::add(&ctx.metrics.auth_failures, 1);
            Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "auth",
                "missing write key (send X-TD-Write-Key, Authorization: TD1 <key> or ?td_write_key=)",
            ))
        }
        KeyCheck::Wrong => {
            InputMetrics::add(&ctx.metrics.auth_failures, 1);
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "auth",
                "write key not accepted (not one of this source's write_keys)",
            ))
        }
    }
}

/// Routes the events and waits until every output has them durably.
async fn store(ctx: &HttpContext, tag: String, entries: Entries) -> Result<(), Refusal> {
    InputMetrics::add(&ctx.metrics.frames, 1);
    if entries.count == 0 {
        return Ok(());
    }
    let count = u64::from(entries.count);
    let batch = Batch {
        tag,
        entries: Bytes::from(entries.bytes),
        count: entries.count,
        signal: Signal::Logs,
    };
    let router = ctx.router.borrow().clone();
    let unavailable = |e: crate::pipeline::EmitError| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "emit_failed",
            format!("{e}; nothing stored, retry later"),
        )
    };
    let (_, delivery) = router.emit(batch).await.map_err(unavailable)?;
    delivery.wait().await.map_err(unavailable)?;
    InputMetrics::add(&ctx.metrics.events, count);
    InputMetrics::add(&ctx.metrics.acks, 1);
    Ok(())
}

/// The `Access-Control-Allow-Origin` value for `origin`, when CORS allows it.
fn cors_origin(ctx: &HttpContext, origin: Option<&str>) -> Option<HeaderValue> {
    let allowed = &ctx.config.cors_allow_origins;
    if allowed.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = origin?;
    allowed
        .iter()
        .any(|o| o == origin)
        .then(|| HeaderValue::from_str(origin).ok())
        .flatten()
}

/// A CORS preflight: allowed for POST from an allowed origin, else 403 (as Fluentd).
fn preflight(headers: &HeaderMap, cors: &Option<HeaderValue>) -> Result<Answer, Refusal> {
    let method = header_str(headers, header::ACCESS_CONTROL_REQUEST_METHOD);
    if cors.is_none() || method != Some("POST") {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "cors",
            "CORS preflight refused (CORS is off, the origin is not allowed, or the method is not POST)",
        ));
    }
    let mut a = plain(StatusCode::OK, "text/plain", "");
    let h = a.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    if let Some(req_headers) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req_headers.clone());
    }
    Ok(a)
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn plain(status: StatusCode, content_type: &'static str, body: &'static str) -> Answer {
    let mut a = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *a.status_mut() = status;
    a.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    a
}

/// The answer to a refused request: JSON `{"error": ...}` for postback, Fluentd's
/// `400 Bad Request\n<reason>\n` text otherwise; the connection closes after it.
fn refuse(api: Api, r: &Refusal) -> Answer {
    let (ct, text) = match api {
        Api::Postback => (
            "application/json",
            serde_json::json!({ "error": r.reason }).to_string(),
        ),
        Api::Fluentd => (
            "text/plain",
            format!(
                "{} {}\n{}\n",
                r.status.as_u16(),
                r.status.canonical_reason().unwrap_or(""),
                r.reason
            ),
        ),
    };
    let mut a = Response::new(Full::new(Bytes::from(text)));
    *a.status_mut() = r.status;
    let h = a.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    // The body may be unread (refused before or while reading it): start afresh.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if r.status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    a
}
