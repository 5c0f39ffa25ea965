//! A forward-protocol client: used by `tidepool cat`, the examples, load tools and the
//! tests, so all of them speak the protocol the way real senders do.
//!
//! [`ForwardClient::connect`] dials TCP (TCP_NODELAY), optionally TLS with a pinned CA,
//! and, when a shared key is set, runs the client side of the handshake. Frames are
//! built by [`encode_frame`] in any of the four modes and sent with
//! [`ForwardClient::send_frame`], which waits for the `{"ack": chunk}` reply when the
//! frame asked for one. [`cat`] is fluent-cat: JSON lines in, acked Forward frames out.

mod cat;
mod encode;
mod handshake;
mod reply;
mod tls;

pub use cat::{CatOptions, CatSummary, cat, json_to_msgpack};
pub use encode::{Event, Frame, Mode, Record, encode_frame, new_chunk_id};
pub use handshake::{Credentials, ServerHelo, build_ping, check_pong, parse_helo};
pub use reply::ReplyReader;
pub use tls::{ClientTls, client_config, server_name};

use anyhow::{Context, anyhow, bail};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `host:port` to dial.
    pub addr: String,
    /// TLS, when set.
    pub tls: Option<ClientTls>,
    /// Run the shared-key handshake with this key; None = the server has no `security`.
    pub shared_key: Option<String>,
    /// Hostname sent in PING (must differ from the server's).
    pub self_hostname: String,
    /// Username for servers with `user_auth`.
    pub username: Option<String>,
    /// Password for servers with `user_auth`.
    pub password: Option<String>,
    /// Bound on each step: connect, TLS, each write, each reply (HELO, PONG, ack).
    pub timeout: Duration,
}

impl ClientOptions {
    /// Plain TCP to `addr`, no handshake, 30 s timeout, this host's name as hostname.
    pub fn new(addr: impl Into<String>) -> Self {
        ClientOptions {
            addr: addr.into(),
            tls: None,
            shared_key: None,
            self_hostname: default_hostname(),
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// This host's name, for PING: `$HOSTNAME`, `/etc/hostname`, or `tidepool-client`.
fn default_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tidepool-client".to_string())
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open forward connection, past TLS and the handshake.
pub struct ForwardClient {
    stream: Stream,
    replies: ReplyReader,
    timeout: Duration,
    addr: String,
    keepalive: bool,
}

impl ForwardClient {
    /// Dials `opts.addr`, runs TLS and (with a shared key) the handshake. Errors name
    /// the address and the step that failed; a refused handshake carries the server's
    /// reason (e.g. `shared_key mismatch`).
    pub async fn connect(opts: &ClientOptions) -> anyhow::Result<ForwardClient> {
        let addr = &opts.addr;
        let tcp = within(opts.timeout, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)
            .with_context(|| format!("setting TCP_NODELAY on the connection to {addr}"))?;
        let stream = match &opts.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let config = client_config(tls)?;
                let name = server_name(tls, addr)?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let tls_stream = within(opts.timeout, connector.connect(name, tcp))
                    .await
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                Stream::Tls(Box::new(tls_stream))
            }
        };
        let mut client = ForwardClient {
            stream,
            replies: ReplyReader::default(),
            timeout: opts.timeout,
            addr: addr.clone(),
            keepalive: true,
        };
        if let Some(key) = &opts.shared_key {
            let creds = Credentials {
                self_hostname: &opts.self_hostname,
                shared_key: key,
                username: opts.username.as_deref(),
                password: opts.password.as_deref(),
            };
            client
                .handshake(&creds)
                .await
                .with_context(|| format!("forward handshake with {addr}"))?;
        }
        Ok(client)
    }

    async fn handshake(&mut self, creds: &Credentials<'_>) -> anyhow::Result<()> {
        let helo = parse_helo(&self.read_reply().await?)?;
        let (ping, salt) = build_ping(&helo, creds);
        self.send_raw(&ping).await?;
        check_pong(&self.read_reply().await?, &helo, &salt, creds)?;
        self.keepalive = helo.keepalive;
        Ok(())
    }

    /// Whether the server's HELO promised to keep the connection after a frame (true
    /// when there was no handshake: Fluentd's default).
    pub fn keepalive(&self) -> bool {
        self.keepalive
    }

    /// Encodes and sends one frame; with `ack`, waits for the matching ack.
    pub async fn send(
        &mut self,
        mode: Mode,
        tag: &str,
        events: &[Event],
        ack: bool,
    ) -> anyhow::Result<()> {
        let frame = encode_frame(mode, tag, events, ack)?;
        self.send_frame(&frame).await
    }

    /// Writes `frame` in one call and, when it carries a chunk, waits for its ack.
    pub async fn send_frame(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.send_raw(&frame.bytes).await?;
        if let Some(chunk) = &frame.chunk {
            self.expect_ack(chunk).await?;
        }
        Ok(())
    }

    /// Reads the next reply and checks it is `{"ack": chunk}`; a different chunk, another
    /// reply, EOF or the timeout is an error. Lets callers pipeline several frames before
    /// collecting their acks in order.
    pub async fn expect_ack(&mut self, chunk: &str) -> anyhow::Result<()> {
        let reply = self
            .read_reply()
            .await
            .with_context(|| format!("waiting for the ack of chunk {chunk:?}"))?;
        let got = reply
            .as_map()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.first())
            .filter(|(k, _)| k.as_str() == Some("ack"))
            .map(|(_, v)| v)
            .ok_or_else(|| {
                anyhow!(
                    "expected {{\"ack\": {chunk:?}}} from {}, got {}",
                    self.addr,
                    reply::brief(&reply)
                )
            })?;
        if got.as_slice() != Some(chunk.as_bytes()) {
            bail!(
                "ack mismatch from {}: sent chunk {chunk:?}, got {}",
                self.addr,
                reply::brief(got)
            );
        }
        Ok(())
    }

    /// Writes bytes as they are, in one call, then flushes (so TLS records go out).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let addr = &self.addr;
        let stream = &mut self.stream;
        within(self.timeout, async move {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .with_context(|| format!("writing {} bytes to {addr}", bytes.len()))
    }

    /// Reads the next MessagePack reply (HELO, PONG, ack), however it is split.
    pub async fn read_reply(&mut self) -> anyhow::Result<rmpv::Value> {
        let addr = &self.addr;
        match tokio::time::timeout(self.timeout, self.replies.read(&mut self.stream)).await {
            Ok(r) => r.with_context(|| format!("reading a reply from {addr}")),
            Err(_) => bail!("no reply from {addr} within {:?}", self.timeout),
        }
    }

    /// Half-closes: the server sees EOF after the frames written so far (TLS sends
    /// close_notify), while replies can still be read.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        within(self.timeout, self.stream.shutdown())
            .await
            .with_context(|| format!("closing the connection to {}", self.addr))
    }
}

/// Runs an IO future under `timeout`, turning expiry into an error naming the bound.
async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = std::io::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => bail!("timed out after {timeout:?}"),
    }
}

#[cfg(test)]
mod tests;
