//! Load tool: drives a forward-protocol server with pre-encoded messages and reports
//! events/s, MB/s, connections/s, ack latency percentiles and errors by kind; `sink` is
//! an ack-only raw server (the practical upper bound on this machine), `td-mock` a local
//! Treasure Data API, `http` posts JSON records over keep-alive HTTP (Treasure Data
//! postback or Fluentd in_http, a 200 being the ack), and `verify` checks a `--seq` run's
//! acked events all arrived once.
//!
//! ```text
//! cargo run --release --example load -- sink --listen 127.0.0.1:24299
//! cargo run --release --example load -- run --addr 127.0.0.1:24227 --conns 2 --batch 1000 --duration 10
//! cargo run --release --example load -- run --events 1000000 --seq r1 --acked-out /tmp/r1.acked
//! cargo run --release --example load -- verify --run r1 --acked /tmp/r1.acked --file out/*.jsonl
//! cargo run --release --example load -- http --addr 127.0.0.1:28080 --conns 256 --duration 10
//! ```

mod conn;
mod drive;
mod http;
mod request;
mod response;
mod sink;
mod template;
mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Parser, Debug)]
#[command(about = "forward-protocol and HTTP load generator, raw sink and delivery verifier")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send load to a server.
    Run(Box<RunArgs>),
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
    TdMock {
        /// Keep rows and append `{"run","seq"}` of each to this JSON lines file, for
        /// `verify --td-mock-report`.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Post JSON records over keep-alive HTTP connections (postback or in_http).
    Http(Box<http::HttpArgs>),
    /// Check that a sink received every acked sequence number of a `--seq` run, once.
    Verify(verify::VerifyArgs),
}

/// How events are framed (forward protocol reference, section 3).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Mode {
    /// `[tag, time, record, options]`: one event per frame.
    Message,
    /// `[tag, [[time, record], ...], options]`.
    Forward,
    /// `[tag, bin(entries), options]`.
    Packed,
    /// Packed with the entries gzipped.
    Compressed,
}

/// `load run` flags.
#[derive(Parser, Debug, Clone)]
pub struct RunArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:24227")]
    pub addr: String,
    /// Parallel connections.
    #[arg(long, default_value_t = 2)]
    pub conns: usize,
    /// Events per message (message mode always sends 1).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Seconds to run (default 10 unless --events is given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many events (rounded up to whole messages).
    #[arg(long)]
    pub events: Option<u64>,
    /// Open-loop pacing: events per second across all connections; latency is measured
    /// from each message's scheduled send time, so a server that falls behind shows it.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds to wait for an ack (per message with --reconnect, for the outstanding
    /// acks once sending stopped otherwise) before counting an AckTimeout.
    #[arg(long, default_value_t = 30.0)]
    pub ack_timeout: f64,
    /// Unacked messages allowed per connection.
    #[arg(long, default_value_t = 4)]
    pub inflight: usize,
    /// Event mode.
    #[arg(long, value_enum, default_value_t = Mode::Packed)]
    pub mode: Mode,
    /// Do not ask for acks (at-most-once; latency is not measured).
    #[arg(long)]
    pub no_ack: bool,
    /// Tag of every event.
    #[arg(long, default_value = "td.bench.cpu_info")]
    pub tag: String,
    /// Cycle through these comma-separated tags instead of --tag.
    #[arg(long, conflicts_with = "tag_count")]
    pub tags: Option<String>,
    /// Cycle through tags td.bench.t0 .. td.bench.t{N-1}.
    #[arg(long)]
    pub tag_count: Option<usize>,
    /// Record shape: cpu, heap, stack, sys, array, bytes:N.
    #[arg(long, default_value = "cpu")]
    pub shape: template::Shape,
    /// Run id: every record gets `run` (this) and `seq` (unique across connections).
    /// Seq numbers are patched into the pre-encoded bytes; only `compressed` must gzip
    /// each message again, so there the tool's own cost is part of the measurement.
    #[arg(long)]
    pub seq: Option<String>,
    /// Write the acked sequence numbers (half-open ranges) here, for `verify`.
    #[arg(long, requires = "seq")]
    pub acked_out: Option<PathBuf>,
    /// Use TLS, trusting this CA file.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Use TLS without verifying the server certificate (for throwaway certificates).
    #[arg(long)]
    pub insecure: bool,
    /// Run the shared-key handshake with this key on each connection.
    #[arg(long)]
    pub shared_key: Option<String>,
    /// Username for servers with `user_auth` (with --password).
    #[arg(long, requires = "password", requires = "shared_key")]
    pub username: Option<String>,
    /// Password for servers with `user_auth`.
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// Hostname sent in PING (must differ from the server's).
    #[arg(long, default_value = "tidepool-load")]
    pub hostname: String,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A new connection (TCP, TLS, handshake, frame, ack, close) per message, like a
    /// device that sleeps between readings; latency then includes the connection setup.
    #[arg(long)]
    pub reconnect: bool,
}

/// A plain or TLS stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    let threads = match &cli.cmd {
        Cmd::Run(args) => args.threads,
        Cmd::Http(args) => args.threads,
        _ => None,
    };
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    match cli.cmd {
        Cmd::Run(args) => rt.block_on(drive::run(*args)),
        Cmd::Http(args) => rt.block_on(http::run(*args)),
        Cmd::Sink { listen, tls_certs } => rt.block_on(sink::sink(listen, tls_certs)),
        Cmd::TdMock { report } => rt.block_on(sink::td_mock(report)),
        Cmd::Verify(args) => {
            if verify::verify(&args)? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}
