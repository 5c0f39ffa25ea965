//! Accepts forward connections: allow-list, connection limit, socket options, then one
//! task per connection so a slow or stuck client never stalls another.

use super::conn::{self, ConnContext};
use crate::metrics::InputMetrics;
use socket2::{SockRef, TcpKeepalive};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts until `stop_accepting` fires (shutdown, or a reload that removed or moved
/// this listener). Each connection takes the context current when it was accepted, so a
/// reload's new TLS certificates, keys and shared keys apply to new connections while
/// open ones keep theirs; connections end with `shutdown`, not with the listener.
/// Connection tasks are tracked so shutdown can wait for them.
pub async fn serve(
    listener: TcpListener,
    mut contexts: watch::Receiver<Arc<ConnContext>>,
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
            // A reload changed the limit: count from here on (open connections keep
            // their slot in the old count until they close).
            limit = ctx.config.max_connections;
            slots = Arc::new(Semaphore::new(limit));
        }
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: say which limit, keep listening.
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
        configure(&tcp, &ctx);
        InputMetrics::add(&ctx.metrics.connections_accepted, 1);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            conn::run(tcp, peer, ctx, shutdown).await;
            drop(permit);
        });
    }
}

fn allowed(ctx: &ConnContext, peer: SocketAddr) -> bool {
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

/// No Nagle delay on acks; TCP keepalive so idle device links survive NAT.
fn configure(tcp: &TcpStream, ctx: &ConnContext) {
    let _ = tcp.set_nodelay(true);
    if let Some(idle) = ctx.config.tcp_keepalive {
        let ka = TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(10));
        if let Err(e) = SockRef::from(tcp).set_tcp_keepalive(&ka) {
            tracing::debug!("cannot set TCP keepalive: {e}");
        }
    }
}
