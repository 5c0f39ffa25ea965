//! One forward connection: TLS and the shared-key handshake under one deadline, then
//! frames in, batches to the router, acks out.
//!
//! Reading and acking run as two halves joined in the connection's task: the reader
//! decodes and routes frame after frame while the writer sends acks in order, so a
//! client with several chunks in flight is never serialised behind one commit.

use super::frame::{DecodeError, Encoding, EventFrame, Frame, FrameLimits, FrameScanner};
use super::handshake::{Helo, answer_ping};
use super::ratelimit::LogLimiter;
use super::{enrich, frame};
use crate::config::ForwardConfig;
use crate::event::EventTime;
use crate::metrics::InputMetrics;
use crate::pipeline::Router;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A byte stream a connection runs over: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Acks a connection may owe before it stops reading: bounds memory per connection
/// and turns a client that never reads its acks into TCP backpressure.
const MAX_PENDING_ACKS: usize = 256;

/// Bytes a frame in progress must gain per `idle_timeout`: `idle_timeout` alone counts
/// silence, so a client sending a byte now and then (slowloris) would hold its
/// connection and buffer for ever; real clients, even on slow links, send far more.
const MIN_FRAME_PROGRESS: usize = 1024;

/// Largest PING accepted during the handshake; real ones are under 300 bytes.
const MAX_PING_BYTES: usize = 64 << 10;

/// Everything a connection task needs, shared by all connections of one listener.
pub struct ConnContext {
    /// Listener label for logs, e.g. `forward 0.0.0.0:24228 (tls)`.
    pub label: String,
    /// The input's config.
    pub config: ForwardConfig,
    /// Frame limits derived from the config.
    pub limits: FrameLimits,
    /// TLS, when the input has it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The current routing snapshot; reload replaces it.
    pub router: watch::Receiver<Arc<Router>>,
    /// Counters.
    pub metrics: Arc<InputMetrics>,
    /// Rate limit for warn lines about this listener's clients.
    pub log_limiter: LogLimiter,
    /// Reverse-DNS answers for `source_hostname_key`, so device churn does not cost
    /// one lookup per connection.
    pub hostnames: super::hostname::HostnameCache,
}

impl std::fmt::Debug for ConnContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnContext")
            .field("label", &self.label)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnContext {
    /// Logs one warn line about a client, rate-limited per listener.
    pub fn warn(&self, peer: SocketAddr, reason: &str) {
        self.log_limiter.warn(&self.label, peer, reason);
    }
}

/// Who sent a frame, for the keys `source_address_key` / `source_hostname_key` add.
#[derive(Clone, Copy)]
struct Source<'a> {
    peer: SocketAddr,
    hostname: Option<&'a str>,
}

/// An ack owed to the client, written once its batch is durable.
struct PendingAck {
    delivery: crate::pipeline::Delivery,
    ack: Vec<u8>,
}

/// Why a connection ended early.
#[derive(Debug)]
enum Closed {
    /// The client sent something we refuse; logged at warn and counted.
    Rejected { label: &'static str, reason: String },
    /// Normal end or a transport error not worth a warn line.
    Quiet(String),
}

/// Runs one accepted TCP connection to its end. Never panics on client input; every
/// early close is logged with the peer and the reason.
pub async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ConnContext>,
    shutdown: CancellationToken,
) {
    InputMetrics::add(&ctx.metrics.connections_open, 1);
    tracing::debug!(listener = %ctx.label, %peer, "connection accepted");
    let outcome = run_inner(tcp, peer, &ctx, &shutdown).await;
    ctx.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    match outcome {
        Ok(()) => tracing::debug!(listener = %ctx.label, %peer, "connection closed"),
        Err(Closed::Quiet(why)) => {
            tracing::debug!(listener = %ctx.label, %peer, "connection closed: {why}")
        }
        Err(Closed::Rejected { label, reason }) => {
            ctx.metrics.reject(label);
            ctx.warn(peer, &format!("closing connection: {reason}"));
        }
    }
}

async fn run_inner(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &ConnContext,
    shutdown: &CancellationToken,
) -> Result<(), Closed> {
    let deadline = ctx.config.handshake_timeout;
    let setup = tokio::time::timeout(deadline, setup(tcp, peer, ctx)).await;
    let (stream, buf) = match setup {
        Ok(r) => r?,
        Err(_) => {
            return Err(Closed::Rejected {
                label: "handshake_timeout",
                reason: format!("handshake not finished within {deadline:?}"),
            });
        }
    };
    serve(stream, buf, peer, ctx, shutdown).await
}

/// TLS, then the forward handshake when `security` is set. Bytes the client sent
/// right after its PING are returned so no frame is lost.
async fn setup(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &ConnContext,
) -> Result<(Box<dyn Stream>, BytesMut), Closed> {
    let mut stream: Box<dyn Stream> = match &ctx.tls {
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(s) => Box::new(s),
            Err(e) => {
                InputMetrics::add(&ctx.metrics.tls_handshake_failures, 1);
                return Err(Closed::Rejected {
                    label: "tls_handshake",
                    reason: format!("TLS handshake failed: {e}"),
                });
            }
        },
        None => Box::new(tcp),
    };
    let mut buf = BytesMut::with_capacity(4096);
    if let Some(security) = &ctx.config.security {
        let helo = Helo::new(!ctx.config.deny_keepalive);
        write_once(&mut stream, &helo.encode()).await?;
        let limits = FrameLimits {
            max_frame_bytes: MAX_PING_BYTES,
            ..ctx.limits
        };
        let mut scanner = FrameScanner::new(Encoding::MessagePack, limits);
        let ping = loop {
            match scanner.next_frame(&buf) {
                Ok(Some(n)) => break buf.split_to(n).freeze(),
                Ok(None) => {}
                Err(e) => {
                    // Not even MessagePack: answer like Fluentd, then close.
                    let outcome = answer_ping(&[], &helo, security, peer.ip());
                    let _ = write_once(&mut stream, &outcome.pong).await;
                    InputMetrics::add(&ctx.metrics.auth_failures, 1);
                    return Err(Closed::Rejected {
                        label: "handshake",
                        reason: format!("invalid PING: {e}"),
                    });
                }
            }
            read_more(&mut stream, &mut buf).await?;
            if buf.is_empty() {
                return Err(Closed::Quiet("closed before PING".into()));
            }
        };
        let outcome = answer_ping(&ping, &helo, security, peer.ip());
        write_once(&mut stream, &outcome.pong).await?;
        if let Err(reason) = outcome.result {
            InputMetrics::add(&ctx.metrics.auth_failures, 1);
            let host = outcome.client_hostname.as_deref().unwrap_or("?");
            return Err(Closed::Rejected {
                label: "auth",
                reason: format!(
                    "authentication failed: {reason} (client hostname \"{host}\"); check that security.shared_key (and users) match on both sides"
                ),
            });
        }
    }
    Ok((stream, buf))
}

async fn write_once(stream: &mut Box<dyn Stream>, bytes: &[u8]) -> Result<(), Closed> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| Closed::Quiet(format!("write failed: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| Closed::Quiet(format!("flush failed: {e}")))
}

/// Reads whatever is available, growing the buffer for big frames but keeping idle
/// connections small. A read of 0 bytes leaves `buf` unchanged (EOF).
async fn read_more<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<usize, Closed> {
    let want = if buf.len() >= 16 << 10 {
        256 << 10
    } else {
        8 << 10
    };
    if buf.capacity() - buf.len() < want / 2 {
        buf.reserve(want);
    }
    rd.read_buf(buf)
        .await
        .map_err(|e| Closed::Quiet(format!("read failed: {e}")))
}

/// The transport phase: frames in, acks out, until EOF, error, idle timeout or shutdown.
async fn serve(
    stream: Box<dyn Stream>,
    buf: BytesMut,
    peer: SocketAddr,
    ctx: &ConnContext,
    shutdown: &CancellationToken,
) -> Result<(), Closed> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (ack_tx, mut ack_rx) = mpsc::channel::<PendingAck>(MAX_PENDING_ACKS);
    let reader = async move {
        let r = read_frames(&mut rd, buf, peer, ctx, shutdown, &ack_tx).await;
        drop(ack_tx);
        r
    };
    let writer = async {
        let metrics = &ctx.metrics;
        while let Some(first) = ack_rx.recv().await {
            let mut out = Vec::new();
            let mut next = Some(first);
            // Acks go out in order, each after its batch is durable; acks that are
            // already due are coalesced into one write.
            while let Some(p) = next.take() {
                if let Err(e) = p.delivery.wait().await {
                    return Err(Closed::Rejected {
                        label: "emit_failed",
                        reason: format!("{e}; no ack sent, the client will resend"),
                    });
                }
                out.extend_from_slice(&p.ack);
                InputMetrics::add(&metrics.acks, 1);
                next = ack_rx.try_recv().ok();
            }
            if let Err(e) = wr.write_all(&out).await {
                return Err(Closed::Quiet(format!("ack write failed: {e}")));
            }
            if let Err(e) = wr.flush().await {
                return Err(Closed::Quiet(format!("ack flush failed: {e}")));
            }
        }
        let _ = wr.shutdown().await;
        Ok(())
    };
    // A writer that fails (a batch not stored, e.g. the disk is full) ends the
    // connection at once: waiting for the reader would leave the client hanging on an
    // ack that never comes until it gives up on its own.
    tokio::pin!(reader, writer);
    tokio::select! {
        r = &mut reader => {
            let w = writer.await;
            r.and(w)
        }
        w = &mut writer => match w {
            Err(e) => Err(e),
            Ok(()) => reader.await,
        },
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    rd: &mut R,
    mut buf: BytesMut,
    peer: SocketAddr,
    ctx: &ConnContext,
    shutdown: &CancellationToken,
    acks: &mpsc::Sender<PendingAck>,
) -> Result<(), Closed> {
    // Looked up once per connection, and only when the config asks for it.
    let hostname = match ctx.config.source_hostname_key {
        Some(_) => Some(ctx.hostnames.resolve(peer.ip()).await),
        None => None,
    };
    // Decided by the connection's first byte (reference section 1): `{` or `[` means JSON.
    let mut scanner: Option<(FrameScanner, Encoding)> = None;
    let mut frames_seen = 0u64;
    // When the frame now in progress was last checked for progress, and its size then.
    let mut progress: Option<(tokio::time::Instant, usize)> = None;
    loop {
        // Take every complete frame already buffered.
        while let Some(&first) = buf.first() {
            let (sc, encoding) = scanner.get_or_insert_with(|| {
                let enc = if first == b'{' || first == b'[' {
                    Encoding::Json
                } else {
                    Encoding::MessagePack
                };
                (FrameScanner::new(enc, ctx.limits), enc)
            });
            match sc.next_frame(&buf) {
                Ok(Some(n)) => {
                    progress = None;
                    let frame = buf.split_to(n).freeze();
                    frames_seen += 1;
                    let source = Source {
                        peer,
                        hostname: hostname.as_deref(),
                    };
                    handle_frame(frame, *encoding, frames_seen, source, ctx, acks).await?;
                    if ctx.config.deny_keepalive && buf.is_empty() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(reject_decode(e, frames_seen + 1)),
            }
        }
        if ctx.config.deny_keepalive && frames_seen > 0 && buf.is_empty() {
            return Ok(());
        }
        if buf.is_empty() && buf.capacity() > (1 << 20) {
            // A big frame has gone through; give its memory back while idle.
            buf = BytesMut::with_capacity(8 << 10);
        }
        if buf.is_empty() {
            progress = None;
        } else if progress.is_none() {
            progress = Some((tokio::time::Instant::now(), buf.len()));
        }
        let idle = ctx.config.idle_timeout;
        let n = tokio::select! {
            r = tokio::time::timeout(idle, read_more(rd, &mut buf)) => match r {
                Ok(r) => r?,
                Err(_) => return Err(Closed::Quiet(format!("idle for {idle:?}"))),
            },
            _ = shutdown.cancelled() => return Err(Closed::Quiet("shutting down".into())),
        };
        if n == 0 {
            let clean =
                buf.is_empty() || scanner.as_ref().is_some_and(|(sc, _)| sc.at_boundary(&buf));
            if clean {
                return Ok(());
            }
            return Err(Closed::Rejected {
                label: "truncated",
                reason: format!(
                    "client closed the connection in the middle of a frame ({} bytes buffered, no ack sent)",
                    buf.len()
                ),
            });
        }
        InputMetrics::add(&ctx.metrics.bytes, n as u64);
        if let Some((since, size)) = progress
            && since.elapsed() >= idle
        {
            let gained = buf.len().saturating_sub(size);
            if gained < MIN_FRAME_PROGRESS {
                return Err(Closed::Rejected {
                    label: "slow_frame",
                    reason: format!(
                        "a frame in progress gained only {gained} bytes in {:?} (at least {MIN_FRAME_PROGRESS} per idle_timeout expected); closing a client that dribbles",
                        since.elapsed()
                    ),
                });
            }
            progress = Some((tokio::time::Instant::now(), buf.len()));
        }
    }
}

fn reject_decode(e: DecodeError, frame_no: u64) -> Closed {
    Closed::Rejected {
        label: "bad_frame",
        reason: format!("bad frame #{frame_no}: {e}"),
    }
}

async fn handle_frame(
    frame: Bytes,
    encoding: Encoding,
    frame_no: u64,
    source: Source<'_>,
    ctx: &ConnContext,
    acks: &mpsc::Sender<PendingAck>,
) -> Result<(), Closed> {
    let decoded = frame::decode_frame(frame, encoding, EventTime::now(), &ctx.limits)
        .map_err(|e| reject_decode(e, frame_no))?;
    let EventFrame {
        mut batch, chunk, ..
    } = match decoded {
        Frame::Heartbeat => return Ok(()),
        Frame::Events(ev) => ev,
    };
    if let Some(tag) = &ctx.config.tag {
        batch.tag.clone_from(tag);
    }
    if let Some(prefix) = &ctx.config.add_tag_prefix {
        batch.tag = format!("{prefix}.{}", batch.tag);
    }
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(key) = &ctx.config.source_address_key {
        extra.push((key, source.peer.ip().to_string()));
    }
    if let (Some(key), Some(name)) = (&ctx.config.source_hostname_key, source.hostname) {
        extra.push((key, name.to_string()));
    }
    if !extra.is_empty() && batch.signal == crate::event::Signal::Logs {
        batch.entries = enrich::add_keys(&batch.entries, &extra).map_err(|e| Closed::Rejected {
            label: "bad_entries",
            reason: format!("cannot add source keys: {e}"),
        })?;
    }
    let count = u64::from(batch.count);
    let router = ctx.router.borrow().clone();
    let delivery = match router.emit(batch).await {
        Ok((routed, delivery)) => {
            if routed == crate::pipeline::Routed::SignalDiscarded {
                InputMetrics::add(&ctx.metrics.signals_discarded, count);
            }
            delivery
        }
        Err(e) => {
            return Err(Closed::Rejected {
                label: "emit_failed",
                reason: format!("{e}; no ack sent, the client will resend"),
            });
        }
    };
    InputMetrics::add(&ctx.metrics.frames, 1);
    InputMetrics::add(&ctx.metrics.events, count);
    if let Some(chunk) = chunk {
        let ack = frame::encode_ack(&chunk, encoding);
        if acks.send(PendingAck { delivery, ack }).await.is_err() {
            return Err(Closed::Quiet("ack writer gone".into()));
        }
    }
    Ok(())
}
