//! The HTTP(S) input: Treasure Data's postback API and Fluentd's in_http, so a device
//! that posts JSON can be re-pointed at tidepool by changing only the host (and its
//! pinned CA).
//!
//! - `POST /postback/v3/event/<db>/<table>` ([`postback`]): one JSON object, a write
//!   key, tag `td.<db>.<table>`, answer `200 {}`.
//! - `POST /<tag>` ([`fluentd`]): JSON, MessagePack, ndjson or form bodies (`json=` /
//!   `msgpack=`), one record or a batch; `time` query parameter or per-record `time`.
//!
//! Every answer that says 200 comes after the events are durable (the router's
//! `Delivery` resolved, as for a forward ack); a failure to store answers 503 so the
//! client retries. `server` owns the sockets (hyper HTTP/1.1, plain or TLS), `request`
//! reads and answers one request, `body` enforces size, time and gzip limits, `json`
//! and `msgpack` turn bodies into `[time, record]` entries without an intermediate
//! value tree.
//!
//! Counters reuse [`InputMetrics`]: `frames` counts requests whose body decoded,
//! `acks` the 200 answers given after storing, `events` the records stored, `bytes`
//! the body bytes as sent, `auth_failures` refused write keys; every refusal is counted
//! under its reason (`auth`, `bad_body`, `bad_path`, `too_large`, `body_timeout`,
//! `emit_failed`, `tls_handshake`, ...), so `/metrics` and `/api/status` show them.

pub mod body;
pub mod fluentd;
pub mod json;
pub mod msgpack;
pub mod postback;
pub mod request;
pub mod server;
#[cfg(test)]
mod tests;

use crate::config::HttpConfig;
use crate::event::EventTime;
use crate::input::forward::ratelimit::LogLimiter;
use crate::metrics::InputMetrics;
use crate::pipeline::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything a connection of one HTTP listener needs; a reload swaps in a new one for
/// new connections.
pub struct HttpContext {
    /// Listener label for logs and metrics, e.g. `http 0.0.0.0:8888 (tls)`.
    pub label: String,
    /// The input's config.
    pub config: HttpConfig,
    /// TLS, when the input has it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The current routing snapshot; reload replaces it.
    pub router: watch::Receiver<Arc<Router>>,
    /// Counters (kept across reloads while the listener stays).
    pub metrics: Arc<InputMetrics>,
    /// Rate limit for warn lines about this listener's clients.
    pub log_limiter: LogLimiter,
}

impl std::fmt::Debug for HttpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpContext")
            .field("label", &self.label)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpContext {
    /// The context of a listener bound to `addr`.
    pub fn new(
        addr: SocketAddr,
        config: HttpConfig,
        tls: Option<tokio_rustls::TlsAcceptor>,
        router: watch::Receiver<Arc<Router>>,
        metrics: Arc<InputMetrics>,
    ) -> Self {
        let kind = if tls.is_some() { "tls" } else { "plain" };
        HttpContext {
            label: format!("http {addr} ({kind})"),
            config,
            tls,
            router,
            metrics,
            log_limiter: LogLimiter::default(),
        }
    }

    /// Logs one warn line about a client, rate-limited per listener.
    pub fn warn(&self, peer: SocketAddr, reason: &str) {
        self.log_limiter.warn(&self.label, peer, reason);
    }
}

/// Records turned into entries: what a request body carries once decoded.
#[derive(Debug, Default)]
pub struct Entries {
    /// Concatenated MessagePack `[time, record]` entries, times as EventTime.
    pub bytes: Vec<u8>,
    /// How many entries `bytes` holds.
    pub count: u32,
}

/// How each record's event time is chosen while it is decoded.
#[derive(Clone, Copy, Debug)]
pub enum TimeRule {
    /// This time for every record; record keys are left alone (a `time` query
    /// parameter, or the receive time of a postback).
    Fixed(EventTime),
    /// Fluentd in_http without a `time` parameter: a record's `time` key (a number)
    /// is removed and becomes its time; without one, the receive time.
    RecordKey(EventTime),
    /// Postback: `td_record_time` (kept in the record) when it is a number or numeric
    /// string within TD's window, else the receive time.
    TdRecordTime(EventTime),
}

/// Why a body is refused; the text goes back to the client in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// The time a float number of seconds stands for (Fluentd's `Time.at(float)`); None
/// for NaN, infinities and values beyond the range of an EventTime.
pub fn time_from_f64(secs: f64) -> Option<EventTime> {
    if !secs.is_finite() || secs.abs() > 1e15 {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round();
    let (whole, nanos) = if nanos >= 1e9 {
        (whole + 1.0, 0.0)
    } else {
        (whole, nanos)
    };
    Some(EventTime {
        secs: whole as i64,
        nanos: nanos as u32,
    })
}
