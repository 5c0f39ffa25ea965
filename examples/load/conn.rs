//! Opening a connection the way a sender does (TCP_NODELAY, optional TLS, optional
//! shared-key handshake via `tidepool::client`) and reading `{"ack": chunk}` replies.

use crate::{Io, RunArgs};
use anyhow::{Context, anyhow, bail};
use bytes::BytesMut;
use std::path::PathBuf;
use std::sync::Arc;
use tidepool::client::{ClientTls, Credentials, build_ping, check_pong, parse_helo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What kind of failure, for the errors-by-kind report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// TCP connect failed.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The shared-key handshake failed (refused, or the server proved no key).
    Handshake,
    /// Sending a frame failed.
    Write,
    /// Reading replies failed.
    Read,
    /// The server answered something other than an ack.
    BadReply,
    /// The server closed the connection before acking.
    ClosedBeforeAck,
    /// No ack within `--ack-timeout`.
    AckTimeout,
    /// `load http`: the server answered a status other than 200 (nothing acked).
    Status,
}

/// An error with its kind.
pub struct Failed(pub ErrorKind, pub anyhow::Error);

/// A rustls client config and the name the server's certificate must carry.
pub type ClientTlsConfig = (
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
);

/// TLS trusting `ca` (or anything with `insecure`), built once per run and shared by
/// every connection; the server name comes from `addr`'s host.
pub fn client_tls(
    addr: &str,
    ca: Option<&PathBuf>,
    insecure: bool,
) -> anyhow::Result<ClientTlsConfig> {
    let t = ClientTls {
        ca_file: ca.cloned(),
        insecure,
        ..Default::default()
    };
    Ok((
        tidepool::client::client_config(&t)?,
        tidepool::client::server_name(&t, addr)?,
    ))
}

/// Connection settings built once per run (the TLS config is shared).
pub struct Dialer {
    addr: String,
    tls: Option<ClientTlsConfig>,
    shared_key: Option<String>,
    hostname: String,
    user: Option<(String, String)>,
}

impl Dialer {
    /// Builds the TLS config once, from `--ca` / `--insecure`.
    pub fn new(args: &RunArgs) -> anyhow::Result<Dialer> {
        let tls = if args.ca.is_some() || args.insecure {
            Some(client_tls(&args.addr, args.ca.as_ref(), args.insecure)?)
        } else {
            None
        };
        Ok(Dialer {
            addr: args.addr.clone(),
            tls,
            shared_key: args.shared_key.clone(),
            hostname: args.hostname.clone(),
            user: args.username.clone().zip(args.password.clone()),
        })
    }

    /// A dialer without the forward handshake (`load http`): TCP_NODELAY, then TLS
    /// when `tls` is given.
    pub fn plain(addr: &str, tls: Option<ClientTlsConfig>) -> Dialer {
        Dialer {
            addr: addr.to_string(),
            tls,
            shared_key: None,
            hostname: String::new(),
            user: None,
        }
    }

    /// Dials, runs TLS and the handshake.
    pub async fn open(&self) -> Result<Box<dyn Io>, Failed> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| {
                Failed(
                    ErrorKind::Connect,
                    anyhow!("connecting to {}: {e}", self.addr),
                )
            })?;
        let _ = tcp.set_nodelay(true);
        let mut s: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((cfg, name)) => Box::new(
                tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Failed(ErrorKind::Tls, anyhow!("TLS with {}: {e}", self.addr)))?,
            ),
        };
        if let Some(key) = &self.shared_key {
            let creds = Credentials {
                self_hostname: &self.hostname,
                shared_key: key,
                username: self.user.as_ref().map(|(u, _)| u.as_str()),
                password: self.user.as_ref().map(|(_, p)| p.as_str()),
            };
            handshake(&mut s, &creds)
                .await
                .with_context(|| format!("forward handshake with {}", self.addr))
                .map_err(|e| Failed(ErrorKind::Handshake, e))?;
        }
        Ok(s)
    }
}

async fn read_value(s: &mut Box<dyn Io>, buf: &mut BytesMut) -> anyhow::Result<rmpv::Value> {
    let limits = tidepool::msgpack::Limits {
        max_bytes: 1 << 20,
        max_depth: 16,
    };
    loop {
        if let tidepool::msgpack::Scan::Complete(n) = tidepool::msgpack::scan_value(buf, &limits)? {
            let bytes = buf.split_to(n);
            return Ok(rmpv::decode::read_value(&mut &bytes[..])?);
        }
        if s.read_buf(buf).await? == 0 {
            bail!("the server closed the connection during the handshake");
        }
    }
}

async fn handshake(s: &mut Box<dyn Io>, creds: &Credentials<'_>) -> anyhow::Result<()> {
    let mut buf = BytesMut::with_capacity(512);
    let helo = parse_helo(&read_value(s, &mut buf).await?)?;
    let (ping, salt) = build_ping(&helo, creds);
    s.write_all(&ping).await?;
    check_pong(&read_value(s, &mut buf).await?, &helo, &salt, creds)?;
    Ok(())
}

/// Takes complete `{"ack": chunk}` replies from the front of `buf` and returns each
/// chunk id's message counter (its last 16 hex digits). Anything else from the server is
/// an error naming what it looks like.
pub fn take_acks(buf: &mut BytesMut, out: &mut Vec<u64>) -> anyhow::Result<()> {
    const PREFIX: &[u8] = b"\x81\xa3ack";
    loop {
        let head = &buf[..buf.len().min(PREFIX.len())];
        if head != &PREFIX[..head.len()] {
            if buf.starts_with(b"\x92\xa4HELO") {
                bail!(
                    "the server sent HELO: it expects the shared-key handshake (give --shared-key)"
                );
            }
            bail!(
                "the server sent {} bytes that are not an ack reply, starting {:02x?}",
                buf.len(),
                &buf[..buf.len().min(16)]
            );
        }
        if buf.len() < 6 {
            return Ok(());
        }
        let (hdr, len) = match buf[5] {
            b @ 0xa0..=0xbf => (1, (b & 0x1f) as usize),
            0xd9 if buf.len() >= 7 => (2, buf[6] as usize),
            0xd9 => return Ok(()),
            other => {
                bail!("the server's ack reply has a chunk of type 0x{other:02x}, not a string")
            }
        };
        let total = 5 + hdr + len;
        if buf.len() < total {
            return Ok(());
        }
        let reply = buf.split_to(total);
        let chunk = &reply[5 + hdr..];
        let counter = chunk
            .len()
            .checked_sub(16)
            .and_then(|at| std::str::from_utf8(&chunk[at..]).ok())
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        out.push(counter.unwrap_or(u64::MAX));
    }
}
