//! The accept loop behind the HTTP API: plain TCP or TLS, with the limits a port
//! reachable from other machines needs.
//!
//! `axum::serve` has no TLS, no cap on connections and no timer, so a client that
//! sends half a request header holds its connection forever. Here every connection
//! gets a TLS handshake deadline, a header-read deadline (hyper's, driven by tokio's
//! timer) and one of `max_connections` permits; on shutdown, requests in flight finish
//! within a grace period.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Limits of one HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Time a client has to send a whole request header (also between keep-alive
    /// requests once it starts one): slowloris clients are closed after it.
    pub header_read_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long requests in flight may run on after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` (through `tls` when given) until `shutdown` is
/// cancelled, then lets requests in flight finish for up to the grace period.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut refused_logged = false;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("HTTP API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(
                    %peer,
                    "HTTP API: {} connections open, refusing more until some close",
                    limits.max_connections
                );
                refused_logged = true;
            }
            continue;
        };
        refused_logged = false;
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => serve_connection(tcp, peer, app, limits, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, limits, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTP API: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTP API: TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "HTTP API: requests still running after {:?} of shutdown were cut off",
            limits.shutdown_grace
        );
    }
}

/// One HTTP/1.1 connection, keep-alive included.
async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    app: Router,
    limits: ServeLimits,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, "HTTP API: connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: ServeLimits) -> (SocketAddr, CancellationToken) {
        let app = Router::new().route("/ok", axum::routing::get(|| async { "fine" }));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let stop = CancellationToken::new();
        tokio::spawn(serve_router(listener, app, None, limits, stop.clone()));
        (addr, stop)
    }

    /// Everything the server sends until it closes (a cap only a broken server hits).
    async fn read_to_close(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
        assert!(r.is_ok(), "the server never closed the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get_ok(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        read_to_close(&mut s).await
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_header_is_closed_while_others_are_served() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (addr, stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        slow.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(get_ok(addr).await.ends_with("fine"));
        let reply = read_to_close(&mut slow).await;
        assert!(!reply.contains("fine"), "{reply}");
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_the_rest_still_served() {
        let limits = ServeLimits {
            max_connections: 1,
            ..ServeLimits::default()
        };
        let (addr, stop) = start(limits).await;
        let mut first = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Once the first holds the only permit, a second is closed unanswered.
        first
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut head = [0u8; 12];
        first
            .read_exact(&mut head)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&head, b"HTTP/1.1 200");
        assert_eq!(get_ok(addr).await, "");
        drop(first);
        // With the permit back, requests are served again.
        let reply = loop {
            let r = get_ok(addr).await;
            if !r.is_empty() {
                break r;
            }
            tokio::task::yield_now().await;
        };
        assert!(reply.ends_with("fine"), "{reply}");
        stop.cancel();
    }
}
