//! Load tool: drives a forward-protocol server with pre-encoded batches and reports
//! events/s, MB/s and ack latency; `sink` mode is an ack-only raw server, the practical
//! upper bound on this machine.
//!
//! ```text
//! cargo run --release --example load -- sink --listen 127.0.0.1:24299
//! cargo run --release --example load -- run --addr 127.0.0.1:24227 --conns 2 --batch 1000 --duration 10
//! ```

use bytes::BytesMut;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, Semaphore};

#[derive(Parser, Debug)]
#[command(about = "forward-protocol load generator and raw sink")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send load to a server.
    Run(RunArgs),
    /// An ack-only server: reads frames, acks each `chunk`, discards the events.
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:24299")]
        listen: SocketAddr,
        /// Speak TLS with the certificates tidepool generates (or reuses) in this
        /// directory: the same ECDSA P-256 server certificate a tidepool would present.
        #[arg(long)]
        tls_certs: Option<PathBuf>,
    },
    /// A mock Treasure Data import API (prints its URL, then row totals).
    TdMock,
}

/// A mock Treasure Data import API for end-to-end runs: checks every request like the
/// tests do, counts rows per table, prints the totals every half second.
async fn td_mock() -> anyhow::Result<()> {
    use tidepool::output::td::mock::MockTd;
    let mock = MockTd::start().await?;
    mock.set_keep_rows(false);
    println!("td mock listening on {}", mock.url());
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let imports = mock.imports();
        let rows: u64 = imports.iter().map(|i| i.row_count).sum();
        eprintln!(
            "rows {rows} imports {} duplicates {} violations {}",
            imports.len(),
            mock.duplicates(),
            mock.violations().len()
        );
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    Message,
    Forward,
    Packed,
    Compressed,
}

#[derive(Parser, Debug, Clone)]
struct RunArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:24227")]
    addr: String,
    /// Parallel connections.
    #[arg(long, default_value_t = 2)]
    conns: usize,
    /// Events per message.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unacked messages allowed per connection.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Event mode.
    #[arg(long, value_enum, default_value_t = Mode::Packed)]
    mode: Mode,
    /// Do not ask for acks (at-most-once; latency is not measured).
    #[arg(long)]
    no_ack: bool,
    /// Tag of every event.
    #[arg(long, default_value = "td.bench.cpu_info")]
    tag: String,
    /// Use TLS, trusting this CA file.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// A new connection (TCP, TLS, frame, ack, close) per message, like a device that
    /// sleeps between readings; latency then includes the connection setup.
    #[arg(long)]
    reconnect: bool,
}

fn cpu_record(i: usize) -> rmpv::Value {
    rmpv::Value::Map(vec![
        ("cpu".into(), 0.25.into()),
        ("user".into(), (12 + (i % 7) as i64).into()),
        ("system".into(), 3.into()),
        ("idle".into(), 85.into()),
        ("host".into(), "dev-01".into()),
        ("seq".into(), (i as u64).into()),
    ])
}

fn event_time() -> rmpv::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut data = (now.as_secs() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(&now.subsec_nanos().to_be_bytes());
    rmpv::Value::Ext(0, data)
}

/// Pre-encodes the messages a connection cycles through: only `chunk` differs.
fn encode_messages(args: &RunArgs, conn: usize) -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    for i in 0..args.batch {
        let e = rmpv::Value::Array(vec![event_time(), cpu_record(i)]);
        rmpv::encode::write_value(&mut entries, &e).expect("encode");
    }
    let gz = if args.mode == Mode::Compressed {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&entries).expect("gzip");
        enc.finish().expect("gzip")
    } else {
        Vec::new()
    };
    (0..64)
        .map(|k| {
            let chunk = format!("c{conn:04}-{k:08}");
            let size = if args.mode == Mode::Message {
                1
            } else {
                args.batch as u64
            };
            let mut opts = vec![("size".into(), size.into())];
            if !args.no_ack {
                opts.push(("chunk".into(), chunk.into()));
            }
            if args.mode == Mode::Compressed {
                opts.push(("compressed".into(), "gzip".into()));
            }
            let opts = rmpv::Value::Map(opts);
            let mut out = Vec::new();
            match args.mode {
                Mode::Packed | Mode::Compressed => {
                    let body = if args.mode == Mode::Packed {
                        &entries
                    } else {
                        &gz
                    };
                    let frame = rmpv::Value::Array(vec![
                        args.tag.as_str().into(),
                        rmpv::Value::Binary(body.clone()),
                        opts,
                    ]);
                    rmpv::encode::write_value(&mut out, &frame).expect("encode");
                }
                Mode::Forward => {
                    let list = (0..args.batch)
                        .map(|i| rmpv::Value::Array(vec![event_time(), cpu_record(i)]))
                        .collect();
                    let frame = rmpv::Value::Array(vec![
                        args.tag.as_str().into(),
                        rmpv::Value::Array(list),
                        opts,
                    ]);
                    rmpv::encode::write_value(&mut out, &frame).expect("encode");
                }
                Mode::Message => {
                    let frame = rmpv::Value::Array(vec![
                        args.tag.as_str().into(),
                        event_time(),
                        cpu_record(k),
                        opts,
                    ]);
                    rmpv::encode::write_value(&mut out, &frame).expect("encode");
                }
            }
            out
        })
        .collect()
}

#[derive(Default)]
struct Totals {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn open(args: &RunArgs) -> anyhow::Result<Box<dyn Io>> {
    let tcp = tokio::net::TcpStream::connect(&args.addr).await?;
    tcp.set_nodelay(true)?;
    let Some(ca) = &args.ca else {
        return Ok(Box::new(tcp));
    };
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let host = args
        .addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("localhost");
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    Ok(Box::new(tls))
}

/// Counts complete `{"ack": ...}` replies at the front of `buf`, removing them.
fn take_acks(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    loop {
        // 0x81 0xa3 "ack" then a str header.
        if buf.len() < 6 {
            return n;
        }
        let (hdr, len) = match buf[5] {
            b @ 0xa0..=0xbf => (1, (b & 0x1f) as usize),
            0xd9 if buf.len() >= 7 => (2, buf[6] as usize),
            _ => return n,
        };
        let total = 5 + hdr + len;
        if buf.len() < total {
            return n;
        }
        let _ = buf.split_to(total);
        n += 1;
    }
}

/// One connection per message: connect, send, read the ack, close.
async fn churn(
    args: Arc<RunArgs>,
    conn: usize,
    totals: Arc<Totals>,
    deadline: Instant,
) -> Vec<Duration> {
    let messages = encode_messages(&args, conn);
    let mut lat = Vec::new();
    let mut k = 0usize;
    while Instant::now() < deadline {
        let msg = &messages[k % messages.len()];
        k += 1;
        let start = Instant::now();
        let result = async {
            let mut s = open(&args).await?;
            s.write_all(msg).await?;
            if !args.no_ack {
                let mut buf = BytesMut::with_capacity(128);
                while take_acks(&mut buf) == 0 {
                    if s.read_buf(&mut buf).await? == 0 {
                        anyhow::bail!("closed before the ack");
                    }
                }
            }
            let _ = s.shutdown().await;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                lat.push(start.elapsed());
                totals.messages.fetch_add(1, Ordering::Relaxed);
                totals.bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    lat
}

async fn drive(
    args: Arc<RunArgs>,
    conn: usize,
    totals: Arc<Totals>,
    deadline: Instant,
) -> Vec<Duration> {
    if args.reconnect {
        return churn(args, conn, totals, deadline).await;
    }
    let messages = encode_messages(&args, conn);
    let stream = match open(&args).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connection {conn}: {e}");
            totals.errors.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let window = Arc::new(Semaphore::new(args.inflight.max(1)));
    let sent_at = Arc::new(Mutex::new(VecDeque::<Instant>::new()));
    let reader = {
        let (window, sent_at, no_ack) = (window.clone(), sent_at.clone(), args.no_ack);
        tokio::spawn(async move {
            let mut lat = Vec::new();
            if no_ack {
                return lat;
            }
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return lat,
                    Ok(_) => {}
                }
                let n = take_acks(&mut buf);
                let mut q = sent_at.lock().await;
                for _ in 0..n {
                    if let Some(t) = q.pop_front() {
                        lat.push(t.elapsed());
                    }
                }
                window.add_permits(n);
            }
        })
    };
    let mut k = 0usize;
    while Instant::now() < deadline {
        if !args.no_ack {
            match window.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        let msg = &messages[k % messages.len()];
        k += 1;
        sent_at.lock().await.push_back(Instant::now());
        if wr.write_all(msg).await.is_err() {
            totals.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        totals.messages.fetch_add(1, Ordering::Relaxed);
        totals.bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
    }
    // Wait for the outstanding acks, then close.
    if !args.no_ack {
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            window.acquire_many(args.inflight.max(1) as u32),
        )
        .await;
    }
    let _ = wr.shutdown().await;
    reader.await.unwrap_or_default()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let totals = Arc::new(Totals::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = (0..args.conns)
        .map(|c| tokio::spawn(drive(args.clone(), c, totals.clone(), deadline)))
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let per_msg = if args.mode == Mode::Message {
        1
    } else {
        args.batch
    } as u64;
    let events = totals.messages.load(Ordering::Relaxed) * per_msg;
    let acked = lat.len() as u64 * per_msg;
    let bytes = totals.bytes.load(Ordering::Relaxed);
    let eps = if args.no_ack { events } else { acked } as f64 / elapsed;
    let mbps = bytes as f64 / elapsed / 1e6;
    let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), pct(&lat, 1.0));
    let errors = totals.errors.load(Ordering::Relaxed);
    let conns_per_sec = if args.reconnect {
        totals.messages.load(Ordering::Relaxed) as f64 / elapsed
    } else {
        0.0
    };
    if args.json {
        println!(
            "{{\"mode\":\"{:?}\",\"conns\":{},\"batch\":{},\"connections_per_sec\":{conns_per_sec:.0},\"events\":{events},\"acked\":{acked},\"seconds\":{elapsed:.3},\"events_per_sec\":{eps:.0},\"mb_per_sec\":{mbps:.1},\"ack_p50_ms\":{p50:.2},\"ack_p99_ms\":{p99:.2},\"ack_max_ms\":{max:.2},\"errors\":{errors}}}",
            args.mode, args.conns, args.batch
        );
    } else {
        println!(
            "mode {:?}, {} conns, batch {}, {:.1} s",
            args.mode, args.conns, args.batch, elapsed
        );
        println!("  events sent   {events}");
        println!("  events acked  {acked}");
        println!("  events/s      {eps:.0}");
        println!("  MB/s          {mbps:.1}");
        println!("  ack p50/p99/max  {p50:.2} / {p99:.2} / {max:.2} ms");
        println!("  errors        {errors}");
        if args.reconnect {
            println!("  connections/s {conns_per_sec:.0}");
        }
    }
    Ok(())
}

async fn sink(listen: SocketAddr, tls_certs: Option<PathBuf>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let acceptor = match tls_certs {
        Some(dir) => {
            let cfg = tidepool::config::TlsConfig {
                common_names: vec!["127.0.0.1".into(), "localhost".into()],
                max_version: tidepool::config::TlsVersion::Tls13,
                ..Default::default()
            };
            Some(tokio_rustls::TlsAcceptor::from(
                tidepool::tls::server_config(&cfg, &dir)?,
            ))
        }
        None => None,
    };
    eprintln!("sink listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut s: Box<dyn Io> = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(t) => Box::new(t),
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            let mut buf = BytesMut::with_capacity(256 << 10);
            let limits = tidepool::msgpack::Limits {
                max_bytes: 64 << 20,
                max_depth: 64,
            };
            loop {
                loop {
                    match tidepool::msgpack::scan_value(&buf, &limits) {
                        Ok(tidepool::msgpack::Scan::Complete(n)) => {
                            let frame = buf.split_to(n);
                            if let Some(chunk) = find_chunk(&frame)
                                && (s.write_all(&ack(&chunk)).await.is_err()
                                    || s.flush().await.is_err())
                            {
                                return;
                            }
                        }
                        Ok(tidepool::msgpack::Scan::Incomplete { .. }) => break,
                        Err(_) => return,
                    }
                }
                if buf.capacity() - buf.len() < 64 << 10 {
                    buf.reserve(256 << 10);
                }
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
}

/// The `chunk` option of a frame, found by skipping the elements before the options.
fn find_chunk(frame: &[u8]) -> Option<Vec<u8>> {
    let limits = tidepool::msgpack::Limits {
        max_bytes: 64 << 20,
        max_depth: 64,
    };
    let len = match *frame.first()? {
        b @ 0x90..=0x9f => (b & 0x0f) as usize,
        _ => return None,
    };
    if len < 3 {
        return None;
    }
    let mut pos = 1;
    for _ in 0..len - 1 {
        match tidepool::msgpack::scan_value(frame.get(pos..)?, &limits).ok()? {
            tidepool::msgpack::Scan::Complete(n) => pos += n,
            _ => return None,
        }
    }
    let opts = rmpv::decode::read_value(&mut frame.get(pos..)?).ok()?;
    opts.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("chunk"))
        .and_then(|(_, v)| v.as_str().map(|s| s.as_bytes().to_vec()))
}

fn ack(chunk: &[u8]) -> Vec<u8> {
    let v = rmpv::Value::Map(vec![(
        "ack".into(),
        rmpv::Value::String(String::from_utf8_lossy(chunk).into_owned().into()),
    )]);
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &v);
    out
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Run(args) => rt.block_on(run(args)),
        Cmd::Sink { listen, tls_certs } => rt.block_on(sink(listen, tls_certs)),
        Cmd::TdMock => rt.block_on(td_mock()),
    }
}
