//! Accepts HTTP(S) connections: allow-list, connection limit, TLS under a deadline,
//! then hyper's HTTP/1.1 server (keep-alive, header read timeout) with one task per
//! connection, so a slow client never stalls another.

use super::HttpContext;
use super::request;
use crate::metrics::InputMetrics;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts until `stop_accepting` fires (shutdown, or a reload that removed this
/// listener). Each connection takes the context current when it was accepted, so a
/// reload's new keys, limits and certificates apply to new connections; open ones end
/// with `shutdown` (after their request in flight is answered).
pub async fn serve(
    listener: TcpListener,
    mut contexts: watch::Receiver<Arc<HttpContext>>,
    stop_accepting: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut limit = contexts.borrow().config.max_connections;
    let mut slots = Arc::new(Semaphore::new(limit));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop_accepting.cancelled() => return,
        };
        let ctx = contexts.borrow_and_update().clone();
        if ctx.config.max_connections != limit {
            limit = ctx.config.max_connections;
            slots = Arc::new(Semaphore::new(limit));
        }
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = %ctx.label, "accept failed: {e} (check `ulimit -n` and max_connections = {})", ctx.config.max_connections);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allowed(&ctx, peer) {
            InputMetrics::add(&ctx.metrics.connections_refused, 1);
            ctx.metrics.reject("not_allowed");
            ctx.warn(peer, "refused: address not in the input's allow list");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            InputMetrics::add(&ctx.metrics.connections_refused, 1);
            ctx.metrics.reject("max_connections");
            ctx.warn(
                peer,
                &format!(
                    "refused: max_connections ({}) reached",
                    ctx.config.max_connections
                ),
            );
            continue;
        };
        let _ = tcp.set_nodelay(true);
        InputMetrics::add(&ctx.metrics.connections_accepted, 1);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            InputMetrics::add(&ctx.metrics.connections_open, 1);
            connection(tcp, peer, &ctx, &shutdown).await;
            ctx.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

fn allowed(ctx: &HttpContext, peer: SocketAddr) -> bool {
    let allow = &ctx.config.allow;
    if allow.is_empty() {
        return true;
    }
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(peer.ip()),
        v4 => v4,
    };
    allow.iter().any(|net| net.contains(&ip))
}

/// TLS (when configured) under `handshake_timeout`, then HTTP until the client
/// leaves, a timeout closes it, or shutdown.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &Arc<HttpContext>,
    shutdown: &CancellationToken,
) {
    let Some(acceptor) = &ctx.tls else {
        return http(tcp, peer, ctx, shutdown).await;
    };
    let deadline = ctx.config.handshake_timeout;
    let reason = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => return http(tls, peer, ctx, shutdown).await,
        Ok(Err(e)) => format!("TLS handshake failed: {e}"),
        Err(_) => format!("TLS handshake not finished within {deadline:?}"),
    };
    InputMetrics::add(&ctx.metrics.tls_handshake_failures, 1);
    ctx.metrics.reject("tls_handshake");
    ctx.warn(peer, &format!("closing connection: {reason}"));
}

async fn http<S>(stream: S, peer: SocketAddr, ctx: &Arc<HttpContext>, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = service_ctx.clone();
        async move { Ok::<_, Infallible>(request::handle(req, &ctx, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.config.idle_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = shutdown.cancelled() => None,
    };
    let outcome = match finished {
        Some(r) => r,
        None => {
            // Answer the request in flight (its events are stored first), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = outcome {
        if e.is_timeout() {
            // An idle keep-alive connection and a client dribbling its headers look
            // the same to hyper: both are closed, neither is worth a warn line.
            tracing::debug!(listener = %ctx.label, %peer, "connection closed: no complete request head within idle_timeout ({:?})", ctx.config.idle_timeout);
        } else if e.is_parse() || e.is_parse_too_large() {
            ctx.metrics.reject("bad_http");
            ctx.warn(peer, &format!("closing connection: bad HTTP request: {e}"));
        } else {
            tracing::debug!(listener = %ctx.label, %peer, "connection closed: {e}");
        }
    }
}
