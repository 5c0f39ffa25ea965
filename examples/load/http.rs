//! `load http`: keep-alive HTTP/1.1 connections posting pre-encoded JSON records to a
//! Treasure Data postback path (or a Fluentd in_http `/<tag>`), one request in flight
//! each. A 200 is the ack (tidepool answers it once the events are durable); any other
//! status (`Status`), no answer within `--timeout` (`AckTimeout`) or a connection closed
//! before the answer (`ClosedBeforeAck`) is an error by kind, and the connection is
//! opened again. Requests claim numbers from one global counter, so `--seq` numbers are
//! unique across connections and `load verify` can check the sink.

use crate::conn::{Dialer, ErrorKind, Failed, client_tls};
use crate::request::{HttpRequest, HttpSpec};
use crate::response::take_reply;
use crate::{Io, template};
use bytes::BytesMut;
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `load http` flags.
#[derive(Parser, Debug, Clone)]
pub struct HttpArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:28080")]
    pub addr: String,
    /// Keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Seconds to run (default 10 unless --events is given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many events (rounded up to whole requests).
    #[arg(long)]
    pub events: Option<u64>,
    /// Request path: a postback path, or `/<tag>` for Fluentd in_http.
    #[arg(long, default_value = "/postback/v3/event/bench_db/events")]
    pub path: String,
    /// Sent as `X-TD-Write-Key`.
    #[arg(long)]
    pub write_key: Option<String>,
    /// Records per request: 1 posts a JSON object, more a JSON array (in_http paths
    /// only; postback takes one object per request).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Record shape: cpu, heap, stack, sys, array, bytes:N.
    #[arg(long, default_value = "cpu")]
    pub shape: template::Shape,
    /// Run id: every record gets `run` (this) and `seq` (unique across connections).
    #[arg(long, visible_alias = "run")]
    pub seq: Option<String>,
    /// Write the sequence numbers answered 200 (half-open ranges) here, for `verify`.
    #[arg(long, requires = "seq")]
    pub acked_out: Option<PathBuf>,
    /// Use TLS (with --ca, or --insecure).
    #[arg(long)]
    pub tls: bool,
    /// Trust this CA file (implies --tls).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TLS without verifying the server certificate (implies --tls).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to wait for each response before counting an AckTimeout and reconnecting.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Latencies in microseconds, 1 µs to 1 hour at 3 significant digits.
type Latency = hdrhistogram::Histogram<u64>;

fn latency() -> Latency {
    Latency::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Error lines printed per kind before the rest are only counted (256 connections
/// failing at once would otherwise bury the report).
const PRINTED_PER_KIND: u64 = 5;

struct Shared {
    args: HttpArgs,
    dialer: Dialer,
    per_req: u64,
    deadline: Option<Instant>,
    total_reqs: Option<u64>,
    timeout: Duration,
    next_req: AtomicU64,
    sent: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    errors: Mutex<BTreeMap<ErrorKind, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn done(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self
                .total_reqs
                .is_some_and(|t| self.next_req.load(Ordering::Relaxed) >= t)
    }

    /// The next request number, or None when the run is over.
    fn claim(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.next_req.fetch_add(1, Ordering::Relaxed);
        if self.total_reqs.is_some_and(|t| i >= t) {
            return None;
        }
        Some(i)
    }

    fn error(&self, f: &Failed) {
        let n = {
            let mut e = lock(&self.errors);
            let n = e.entry(f.0).or_default();
            *n += 1;
            *n
        };
        if !self.args.json && n <= PRINTED_PER_KIND {
            eprintln!("{:?}: {:#}", f.0, f.1);
        }
    }
}

/// What one connection saw.
struct Outcome {
    /// Latency of each 200.
    lat: Latency,
    /// Seq ranges answered 200, half-open.
    acked: Vec<(u64, u64)>,
    /// Responses by status code.
    statuses: BTreeMap<u16, u64>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            lat: latency(),
            acked: Vec::new(),
            statuses: BTreeMap::new(),
        }
    }
}

fn elapsed_us(t: Instant) -> u64 {
    t.elapsed().as_micros().min(u64::MAX as u128) as u64
}

/// Opens a connection, retrying (each failure counted) until it works or the run ends.
async fn open(sh: &Shared) -> Option<Box<dyn Io>> {
    while !sh.done() {
        match sh.dialer.open().await {
            Ok(s) => {
                sh.connections.fetch_add(1, Ordering::Relaxed);
                return Some(s);
            }
            Err(f) => {
                sh.error(&f);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    None
}

/// Sends one request and reads its response.
async fn exchange(
    sh: &Shared,
    s: &mut Box<dyn Io>,
    buf: &mut BytesMut,
    req: &[u8],
) -> Result<crate::response::Reply, Failed> {
    s.write_all(req)
        .await
        .map_err(|e| Failed(ErrorKind::Write, anyhow::anyhow!("sending a request: {e}")))?;
    sh.sent.fetch_add(1, Ordering::Relaxed);
    sh.bytes.fetch_add(req.len() as u64, Ordering::Relaxed);
    loop {
        let n = tokio::time::timeout(sh.timeout, s.read_buf(buf))
            .await
            .map_err(|_| {
                Failed(
                    ErrorKind::AckTimeout,
                    anyhow::anyhow!("no response within {:?}", sh.timeout),
                )
            })?
            .map_err(|e| Failed(ErrorKind::Read, anyhow::anyhow!("reading a response: {e}")))?;
        let eof = n == 0;
        match take_reply(buf, eof) {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) if eof => {
                return Err(Failed(
                    ErrorKind::ClosedBeforeAck,
                    anyhow::anyhow!("the server closed the connection before answering"),
                ));
            }
            Ok(None) => {}
            Err(e) if eof => return Err(Failed(ErrorKind::ClosedBeforeAck, anyhow::anyhow!(e))),
            Err(e) => return Err(Failed(ErrorKind::BadReply, anyhow::anyhow!(e))),
        }
    }
}

/// One keep-alive connection (opened again whenever it breaks or the server closes it).
async fn connection(sh: Arc<Shared>, mut req: HttpRequest) -> Outcome {
    let mut out = Outcome::default();
    let mut stream: Option<Box<dyn Io>> = None;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let mut s = match stream.take() {
            Some(s) => s,
            None => match open(&sh).await {
                Some(s) => {
                    buf.clear();
                    s
                }
                None => break,
            },
        };
        let Some(i) = sh.claim() else {
            let _ = s.shutdown().await;
            break;
        };
        let seq = i * sh.per_req;
        let t0 = Instant::now();
        match exchange(&sh, &mut s, &mut buf, req.render(seq)).await {
            Ok(reply) => {
                *out.statuses.entry(reply.status).or_default() += 1;
                if reply.status == 200 {
                    out.lat.saturating_record(elapsed_us(t0));
                    out.acked.push((seq, seq + sh.per_req));
                } else {
                    sh.error(&Failed(
                        ErrorKind::Status,
                        anyhow::anyhow!("the server answered {}: {}", reply.status, reply.body),
                    ));
                }
                if !buf.is_empty() {
                    sh.error(&Failed(
                        ErrorKind::BadReply,
                        anyhow::anyhow!(
                            "{} bytes after a response with no request outstanding",
                            buf.len()
                        ),
                    ));
                } else if !reply.close {
                    stream = Some(s);
                }
            }
            Err(f) => sh.error(&f),
        }
    }
    out
}

fn pct(lat: &Latency, q: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat.value_at_quantile(q) as f64 / 1000.0
}

fn seconds(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("--{what} {v} must be a non-negative number of seconds"))
}

/// Runs the load and prints the report.
pub async fn run(args: HttpArgs) -> anyhow::Result<()> {
    let per_req = args.batch.max(1) as u64;
    let timeout = seconds("timeout", args.timeout)?;
    let duration = match (args.duration, args.events) {
        (Some(d), _) => Some(seconds("duration", d)?),
        (None, None) => Some(Duration::from_secs(10)),
        (None, Some(_)) => None,
    };
    let tls = if args.tls || args.ca.is_some() || args.insecure {
        Some(client_tls(&args.addr, args.ca.as_ref(), args.insecure)?)
    } else {
        None
    };
    let conns = args.conns.max(1);
    let spec = HttpSpec {
        path: &args.path,
        host: &args.addr,
        write_key: args.write_key.as_deref(),
        shape: &args.shape,
        events: per_req as usize,
        run: args.seq.as_deref(),
    };
    let mut requests = (0..conns)
        .map(|c| HttpRequest::new(&spec, c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let sh = Arc::new(Shared {
        dialer: Dialer::plain(&args.addr, tls),
        deadline: duration.map(|d| start + d),
        total_reqs: args.events.map(|e| e.div_ceil(per_req)),
        args,
        per_req,
        timeout,
        next_req: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    });
    let tasks: Vec<_> = requests
        .drain(..)
        .map(|r| tokio::spawn(connection(sh.clone(), r)))
        .collect();
    let mut total = Outcome::default();
    for t in tasks {
        let o = t.await.unwrap_or_default();
        let _ = total.lat.add(&o.lat);
        total.acked.extend(o.acked);
        for (status, n) in o.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    report(&sh, total, elapsed)
}

fn report(sh: &Shared, total: Outcome, elapsed: f64) -> anyhow::Result<()> {
    let args = &sh.args;
    let lat = &total.lat;
    let requests = sh.sent.load(Ordering::Relaxed);
    let ok = lat.len();
    let acked = ok * sh.per_req;
    if let (Some(path), Some(run)) = (&args.acked_out, &args.seq) {
        crate::verify::write_acked(path, run, total.acked)?;
    }
    let rps = ok as f64 / elapsed;
    let eps = acked as f64 / elapsed;
    let mbps = sh.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6;
    let connections = sh.connections.load(Ordering::Relaxed);
    let (p50, p99, p999, max) = (
        pct(lat, 0.5),
        pct(lat, 0.99),
        pct(lat, 0.999),
        lat.max() as f64 / 1000.0,
    );
    let errors_by_kind: BTreeMap<String, u64> = lock(&sh.errors)
        .iter()
        .map(|(k, v)| (format!("{k:?}"), *v))
        .collect();
    let errors: u64 = errors_by_kind.values().sum();
    let statuses: BTreeMap<String, u64> = total
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    if args.json {
        let j = serde_json::json!({
            "mode": "http",
            "path": args.path,
            "conns": args.conns,
            "batch": sh.per_req,
            "shape": format!("{:?}", args.shape),
            "run": args.seq,
            "connections": connections,
            "requests": requests,
            "ok": ok,
            "statuses": statuses,
            "events": requests * sh.per_req,
            "acked": acked,
            "seconds": (elapsed * 1000.0).round() / 1000.0,
            "requests_per_sec": rps.round() as u64,
            "events_per_sec": eps.round() as u64,
            "mb_per_sec": (mbps * 10.0).round() / 10.0,
            "ack_p50_ms": p50,
            "ack_p99_ms": p99,
            "ack_p999_ms": p999,
            "ack_max_ms": max,
            "errors": errors,
            "errors_by_kind": errors_by_kind,
        });
        println!("{j}");
    } else {
        println!(
            "http POST {}, {} conns, batch {}, shape {:?}, {:.1} s",
            args.path, args.conns, sh.per_req, args.shape, elapsed
        );
        println!("  requests sent    {requests}");
        println!("  requests 200     {ok}");
        println!("  requests/s       {rps:.0} (200s)");
        println!("  events/s         {eps:.0}");
        println!("  MB/s sent        {mbps:.1}");
        println!("  connections      {connections}");
        println!("  200 p50/p99/p999/max  {p50:.2} / {p99:.2} / {p999:.2} / {max:.2} ms");
        println!("  statuses         {statuses:?}");
        println!("  errors           {errors} {errors_by_kind:?}");
    }
    Ok(())
}
