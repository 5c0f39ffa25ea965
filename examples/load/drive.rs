//! `load run`: connections claim message numbers from one global counter (so `seq`
//! ranges are unique across connections and `--events`/`--rate` are global), send
//! pre-encoded templates, match acks to messages by chunk id, and report.

use crate::conn::{Dialer, ErrorKind, Failed, take_acks};
use crate::template::{Spec, Template, tag_list};
use crate::{Mode, RunArgs};
use bytes::BytesMut;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

struct Shared {
    args: RunArgs,
    dialer: Dialer,
    tags: Vec<String>,
    per_msg: u64,
    start: Instant,
    deadline: Option<Instant>,
    total_msgs: Option<u64>,
    next_msg: AtomicU64,
    sent_msgs: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    errors: Mutex<BTreeMap<ErrorKind, u64>>,
    ack_timeout: Duration,
}

/// Ack latencies in microseconds, 1 µs to 1 hour at 3 significant digits.
type Latency = hdrhistogram::Histogram<u64>;

fn latency() -> Latency {
    Latency::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// What one connection saw acked.
struct Outcome {
    /// Ack latency per acked message.
    lat: Latency,
    /// Acked seq ranges, half-open.
    acked: Vec<(u64, u64)>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            lat: latency(),
            acked: Vec::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The next message number and when it is due (open-loop pacing), or None when done.
    fn claim(&self) -> Option<(u64, Option<Instant>)> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.next_msg.fetch_add(1, Ordering::Relaxed);
        if self.total_msgs.is_some_and(|t| i >= t) {
            return None;
        }
        let due = self
            .args
            .rate
            .map(|r| self.start + Duration::from_secs_f64((i * self.per_msg) as f64 / r));
        if let (Some(due), Some(end)) = (due, self.deadline)
            && due >= end
        {
            return None;
        }
        Some((i, due))
    }

    fn error(&self, f: &Failed) {
        *lock(&self.errors).entry(f.0).or_default() += 1;
        if !self.args.json {
            eprintln!("{:?}: {:#}", f.0, f.1);
        }
    }
}

/// Encodes connection `conn`'s templates, one per tag; done before the clock starts.
fn encode_templates(
    args: &RunArgs,
    per_msg: u64,
    tags: &[String],
    conn: usize,
) -> anyhow::Result<Vec<Template>> {
    let spec = Spec {
        mode: args.mode,
        shape: &args.shape,
        events: per_msg as usize,
        ack: !args.no_ack,
        run: args.seq.as_deref(),
    };
    tags.iter().map(|t| Template::new(&spec, t, conn)).collect()
}

/// Waits for a message's scheduled time and returns the instant its latency counts
/// from: the schedule when the sender is late (the server held it back: no coordinated
/// omission), the wake-up when it had to sleep (the timer's own slack is not the server's).
async fn wait_due(due: Option<Instant>) -> Instant {
    match due {
        Some(d) if d > Instant::now() => {
            tokio::time::sleep_until(d.into()).await;
            Instant::now()
        }
        Some(d) => d,
        None => Instant::now(),
    }
}

fn elapsed_us(t: Instant) -> u64 {
    t.elapsed().as_micros().min(u64::MAX as u128) as u64
}

/// One connection per message: connect, send, read the ack, close.
async fn churn(sh: Arc<Shared>, conn: usize, mut templates: Vec<Template>) -> Outcome {
    let mut out = Outcome::default();
    let ntags = templates.len();
    while let Some((i, due)) = sh.claim() {
        let t0 = wait_due(due).await;
        let seq = i * sh.per_msg;
        let Some(tpl) = templates.get_mut((conn + i as usize) % ntags) else {
            return out;
        };
        let result = async {
            let mut s = sh.dialer.open().await?;
            sh.connections.fetch_add(1, Ordering::Relaxed);
            let msg = tpl
                .render(i, seq)
                .map_err(|e| Failed(ErrorKind::Write, e))?;
            s.write_all(msg)
                .await
                .map_err(|e| Failed(ErrorKind::Write, e.into()))?;
            sh.bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
            sh.sent_msgs.fetch_add(1, Ordering::Relaxed);
            if !sh.args.no_ack {
                let mut buf = BytesMut::with_capacity(128);
                let mut acks = Vec::new();
                while acks.is_empty() {
                    let n = tokio::time::timeout(sh.ack_timeout, s.read_buf(&mut buf))
                        .await
                        .map_err(|_| Failed(ErrorKind::AckTimeout, anyhow::anyhow!("no ack")))?
                        .map_err(|e| Failed(ErrorKind::Read, e.into()))?;
                    if n == 0 {
                        return Err(Failed(
                            ErrorKind::ClosedBeforeAck,
                            anyhow::anyhow!("closed before the ack"),
                        ));
                    }
                    take_acks(&mut buf, &mut acks).map_err(|e| Failed(ErrorKind::BadReply, e))?;
                }
            }
            let _ = s.shutdown().await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                if !sh.args.no_ack {
                    out.lat.saturating_record(elapsed_us(t0));
                    out.acked.push((seq, seq + sh.per_msg));
                }
            }
            Err(f) => sh.error(&f),
        }
    }
    out
}

/// One long-lived connection with up to `--inflight` unacked messages.
async fn persistent(sh: Arc<Shared>, conn: usize, mut templates: Vec<Template>) -> Outcome {
    let stream = match sh.dialer.open().await {
        Ok(s) => s,
        Err(f) => {
            sh.error(&f);
            return Outcome::default();
        }
    };
    sh.connections.fetch_add(1, Ordering::Relaxed);
    let inflight = sh.args.inflight.max(1);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let window = Arc::new(Semaphore::new(inflight));
    let pending = Arc::new(Mutex::new(HashMap::<u64, (Instant, u64)>::new()));
    // Tells the reader to stop once the acks are in (or will not come): a server that
    // never closes must not hold the run.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let (window, pending, sh) = (window.clone(), pending.clone(), sh.clone());
        tokio::spawn(async move {
            let mut out = Outcome::default();
            if sh.args.no_ack {
                return out;
            }
            let mut buf = BytesMut::with_capacity(4096);
            let mut acks = Vec::new();
            loop {
                let read = tokio::select! {
                    r = rd.read_buf(&mut buf) => r,
                    _ = &mut stopped => return out,
                };
                match read {
                    Ok(0) => {
                        let left = lock(&pending).len();
                        if left > 0 {
                            sh.error(&Failed(
                                ErrorKind::ClosedBeforeAck,
                                anyhow::anyhow!(
                                    "the server closed the connection with {left} messages unacked"
                                ),
                            ));
                        }
                        window.close();
                        return out;
                    }
                    Err(e) => {
                        sh.error(&Failed(ErrorKind::Read, e.into()));
                        window.close();
                        return out;
                    }
                    Ok(_) => {}
                }
                acks.clear();
                let taken = take_acks(&mut buf, &mut acks);
                let mut p = lock(&pending);
                for k in &acks {
                    if let Some((t0, seq)) = p.remove(k) {
                        out.lat.saturating_record(elapsed_us(t0));
                        out.acked.push((seq, seq + sh.per_msg));
                        window.add_permits(1);
                    }
                }
                drop(p);
                if let Err(e) = taken {
                    sh.error(&Failed(ErrorKind::BadReply, e));
                    window.close();
                    return out;
                }
            }
        })
    };
    let ntags = templates.len();
    while let Some((i, due)) = sh.claim() {
        if !sh.args.no_ack {
            match window.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        let t0 = wait_due(due).await;
        let seq = i * sh.per_msg;
        let Some(tpl) = templates.get_mut((conn + i as usize) % ntags) else {
            break;
        };
        let msg = match tpl.render(i, seq) {
            Ok(m) => m,
            Err(e) => {
                sh.error(&Failed(ErrorKind::Write, e));
                break;
            }
        };
        if !sh.args.no_ack {
            lock(&pending).insert(i, (t0, seq));
        }
        if let Err(e) = wr.write_all(msg).await {
            sh.error(&Failed(ErrorKind::Write, e.into()));
            break;
        }
        sh.sent_msgs.fetch_add(1, Ordering::Relaxed);
        sh.bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
    }
    if !sh.args.no_ack {
        let drained =
            tokio::time::timeout(sh.ack_timeout, window.acquire_many(inflight as u32)).await;
        let left = lock(&pending).len();
        if drained.is_err() && left > 0 {
            sh.error(&Failed(
                ErrorKind::AckTimeout,
                anyhow::anyhow!(
                    "{left} messages unacked {:?} after sending stopped",
                    sh.ack_timeout
                ),
            ));
        }
    }
    let _ = stop.send(());
    let _ = wr.shutdown().await;
    reader.await.unwrap_or_default()
}

fn pct(lat: &Latency, q: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the load and prints the report.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        anyhow::bail!(
            "--rate {:?} must be a positive number of events per second",
            args.rate
        );
    }
    let per_msg = if args.mode == Mode::Message {
        1
    } else {
        args.batch.max(1) as u64
    };
    let ack_timeout = Duration::try_from_secs_f64(args.ack_timeout).map_err(|_| {
        anyhow::anyhow!(
            "--ack-timeout {} must be a non-negative number of seconds",
            args.ack_timeout
        )
    })?;
    let tags = tag_list(&args.tag, args.tags.as_deref(), args.tag_count)?;
    let dialer = Dialer::new(&args)?;
    let duration = match (args.duration, args.events) {
        (Some(d), _) => Some(Duration::try_from_secs_f64(d).map_err(|_| {
            anyhow::anyhow!("--duration {d} must be a non-negative number of seconds")
        })?),
        (None, None) => Some(Duration::from_secs(10)),
        (None, Some(_)) => None,
    };
    let conns = args.conns.max(1);
    let mut templates = (0..conns)
        .map(|c| encode_templates(&args, per_msg, &tags, c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let sh = Arc::new(Shared {
        deadline: duration.map(|d| start + d),
        total_msgs: args.events.map(|e| e.div_ceil(per_msg)),
        args,
        dialer,
        tags,
        per_msg,
        start,
        next_msg: AtomicU64::new(0),
        sent_msgs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        ack_timeout,
    });
    let tasks: Vec<_> = templates
        .drain(..)
        .enumerate()
        .map(|(c, t)| {
            let sh = sh.clone();
            if sh.args.reconnect {
                tokio::spawn(churn(sh, c, t))
            } else {
                tokio::spawn(persistent(sh, c, t))
            }
        })
        .collect();
    let mut lat = latency();
    let mut acked_ranges = Vec::new();
    for t in tasks {
        let o = t.await.unwrap_or_default();
        let _ = lat.add(&o.lat);
        acked_ranges.extend(o.acked);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let args = &sh.args;
    if let (Some(path), Some(run)) = (&args.acked_out, &args.seq) {
        crate::verify::write_acked(path, run, acked_ranges)?;
    }
    let events = sh.sent_msgs.load(Ordering::Relaxed) * per_msg;
    let acked = lat.len() * per_msg;
    let bytes = sh.bytes.load(Ordering::Relaxed);
    let eps = if args.no_ack { events } else { acked } as f64 / elapsed;
    let mbps = bytes as f64 / elapsed / 1e6;
    let (p50, p99, p999, max) = (
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.max() as f64 / 1000.0,
    );
    let errors_by_kind: BTreeMap<String, u64> = lock(&sh.errors)
        .iter()
        .map(|(k, v)| (format!("{k:?}"), *v))
        .collect();
    let errors: u64 = errors_by_kind.values().sum();
    let cps = sh.connections.load(Ordering::Relaxed) as f64 / elapsed;
    if args.json {
        let j = serde_json::json!({
            "mode": format!("{:?}", args.mode),
            "conns": args.conns,
            "batch": per_msg,
            "shape": format!("{:?}", args.shape),
            "tags": sh.tags.len(),
            "run": args.seq,
            "rate": args.rate,
            "connections_per_sec": cps.round() as u64,
            "events": events,
            "acked": acked,
            "seconds": (elapsed * 1000.0).round() / 1000.0,
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
            "mode {:?}, {} conns, batch {}, shape {:?}, {} tag(s), {:.1} s",
            args.mode,
            args.conns,
            per_msg,
            args.shape,
            sh.tags.len(),
            elapsed
        );
        println!("  events sent      {events}");
        println!("  events acked     {acked}");
        println!("  events/s         {eps:.0}");
        println!("  MB/s             {mbps:.1}");
        println!("  connections/s    {cps:.0}");
        println!("  ack p50/p99/p999/max  {p50:.2} / {p99:.2} / {p999:.2} / {max:.2} ms");
        println!("  errors           {errors} {errors_by_kind:?}");
    }
    Ok(())
}
