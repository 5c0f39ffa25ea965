//! Wires config, inputs, router and outputs together, and owns shutdown.
//!
//! Shutdown order: stop accepting → each connection finishes the frame it is on and
//! its pending acks go out → outputs finish → return, all under `shutdown_timeout`.

use crate::config::{Config, SourceConfig};
use crate::input::forward::conn::ConnContext;
use crate::input::forward::frame::FrameLimits;
use crate::input::forward::ratelimit::LogLimiter;
use crate::input::forward::{listener, udp};
use crate::metrics::InputMetrics;
use crate::pipeline::Router;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listening input, as bound.
#[derive(Debug, Clone)]
pub struct BoundSource {
    /// The address actually bound (the real port when the config said 0).
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Its counters.
    pub metrics: Arc<InputMetrics>,
}

/// A started daemon; dropping it does not stop it, call [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    /// Inputs in config order.
    pub sources: Vec<BoundSource>,
    router: watch::Sender<Arc<Router>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    shutdown_timeout: Duration,
}

/// Binds every input and starts serving. Errors name the listener that failed.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let router = Arc::new(Router::build(&config).await?);
    for line in router.describe() {
        tracing::info!("route {line}");
    }
    let (router_tx, router_rx) = watch::channel(router);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut sources = Vec::new();
    for (i, source) in config.sources.iter().enumerate() {
        let SourceConfig::Forward(fwd) = source;
        let n = i + 1;
        let tls = match &fwd.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::server_config(t, &config.server.certs_dir)
                    .with_context(|| format!("source #{n} ({}): TLS setup failed", fwd.listen))?,
            )),
            None => None,
        };
        let tcp = bind_tcp(fwd.listen)
            .with_context(|| format!("source #{n}: cannot listen on {}", fwd.listen))?;
        let addr = tcp.local_addr()?;
        let kind = if tls.is_some() { "tls" } else { "plain" };
        let label = format!("forward {addr} ({kind})");
        let metrics = Arc::new(InputMetrics::default());
        let ctx = Arc::new(ConnContext {
            label,
            config: fwd.clone(),
            limits: FrameLimits {
                max_frame_bytes: fwd.max_message_size,
                max_decompressed_bytes: fwd.max_decompressed_size,
                max_depth: fwd.max_depth,
            },
            tls,
            router: router_rx.clone(),
            metrics: metrics.clone(),
            log_limiter: LogLimiter::default(),
        });
        if fwd.udp_heartbeat {
            let sock = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("source #{n}: cannot bind UDP heartbeat on {addr}"))?;
            tracker.spawn(udp::serve(sock, shutdown.clone()));
        }
        tracker.spawn(listener::serve(tcp, ctx, shutdown.clone(), tracker.clone()));
        let auth = if fwd.security.is_some() {
            ", shared key required"
        } else {
            ""
        };
        tracing::info!("source #{n} (forward, {kind}{auth}) listening on {addr}");
        sources.push(BoundSource {
            addr,
            tls: kind == "tls",
            metrics,
        });
    }
    Ok(Running {
        sources,
        router: router_tx,
        shutdown,
        tracker,
        shutdown_timeout: config.server.shutdown_timeout,
    })
}

/// A listener with a deep accept backlog, so bursts of device connections are queued
/// by the kernel rather than refused.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

impl Running {
    /// The current routing snapshot.
    pub fn router(&self) -> Arc<Router> {
        self.router.borrow().clone()
    }

    /// Stops accepting, lets connections finish their current frame and pending acks,
    /// then stops the buffers (commit, queue, one last flush), all within
    /// `shutdown_timeout`; whatever is not flushed stays on disk.
    pub async fn shutdown(self) {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown_timeout ({:?}) reached with connections still open",
                self.shutdown_timeout
            );
        }
        let left = self.shutdown_timeout.saturating_sub(started.elapsed());
        self.router().shutdown(left).await;
    }
}

/// Runs until `signal` resolves, then shuts down gracefully.
pub async fn run(
    config: Config,
    signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = start(config).await?;
    signal.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
