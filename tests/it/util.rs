//! Test helpers: a real `tidepool` child process on ephemeral ports, raw clients, and
//! polling for outcomes (never fixed sleeps: we wait for a positive sign, with a cap).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous cap on waiting for something that should happen in milliseconds; only a
/// broken build ever reaches it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The vectors copied from real clients.
pub fn vector(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vectors")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The vectors' manifest.
pub fn manifest() -> serde_json::Value {
    let raw = vector("manifest.json");
    serde_json::from_slice(&raw).expect("manifest.json parses")
}

/// Polls `f` until it returns Some, or panics after [`PATIENCE`] with `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether tests needing an external service must fail instead of skipping.
pub fn services_required() -> bool {
    std::env::var("TIDEPOOL_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (returns true after printing why) unless services are required, then panics.
pub fn skip(reason: &str) -> bool {
    assert!(
        !services_required(),
        "TIDEPOOL_REQUIRE_SERVICES=1 but {reason}"
    );
    eprintln!("SKIPPED: {reason}");
    true
}

/// A `tidepool` child process with its own directory, config and captured output.
pub struct TestDaemon {
    child: Option<Child>,
    /// Working directory: config, data/ and certs/ live here.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Listening addresses in config order.
    pub addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The environment it was started with, for `tidepool reload` to read the config
    /// the same way.
    env: Vec<(String, String)>,
}

impl TestDaemon {
    /// `tidepool reload` for this daemon (after the test rewrote `tidepool.toml`).
    pub fn reload(&self) -> std::process::Output {
        tidepool_cmd(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-c", "tidepool.toml", "reload"])
            .output()
            .expect("tidepool reload")
    }

    /// [`TestDaemon::reload`], which must succeed.
    pub fn reload_ok(&self) {
        let out = self.reload();
        assert!(
            out.status.success(),
            "tidepool reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `config` as `tidepool.toml` in a fresh temp dir and starts the daemon there.
    pub fn start(config: &str) -> TestDaemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = TestDaemon::start_in(&dir, config);
        d._tmp = Some(tmp);
        d
    }

    /// Starts the daemon in `dir` (kept by the caller, e.g. across restarts).
    pub fn start_in(dir: &Path, config: &str) -> TestDaemon {
        TestDaemon::start_in_with_env(dir, config, &[])
    }

    /// Like [`TestDaemon::start_in`], with extra environment variables.
    pub fn start_in_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> TestDaemon {
        let expected = listening_sources(config);
        std::fs::write(dir.join("tidepool.toml"), config).expect("write config");
        let mut child = tidepool_cmd(dir)
            .envs(env.iter().copied())
            .args(["-c", "tidepool.toml", "run"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tidepool");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        pump(child.stderr.take().expect("stderr"), stderr.clone(), true);
        pump(child.stdout.take().expect("stdout"), stdout.clone(), false);
        let mut d = TestDaemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            addrs: Vec::new(),
            stderr,
            stdout,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.addrs = wait_for("the daemon's listening lines", || {
            if let Some(c) = d.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("tidepool exited early ({status}):\n{}", d.stderr());
            }
            let addrs = listening_addrs(&d.stderr());
            (addrs.len() >= expected).then_some(addrs)
        });
        d
    }

    /// Everything the daemon logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything the daemon printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_for(&format!("log line containing {needle:?}"), || {
            self.stderr().contains(needle).then_some(())
        });
    }

    /// Where the HTTP API listens (waits for its log line).
    pub fn api_addr(&self) -> SocketAddr {
        wait_for("the HTTP API's listening line", || {
            self.stderr()
                .lines()
                .filter_map(|l| l.split("HTTP API listening on ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .find_map(|a| a.parse().ok())
        })
    }

    /// Address of the `i`th source.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Lines of a file under the daemon's directory (empty when absent).
    pub fn lines(&self, rel: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(rel))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Waits until `rel` has at least `n` lines and returns them as JSON values.
    pub fn wait_records(&self, rel: &str, n: usize) -> Vec<serde_json::Value> {
        let lines = wait_for(&format!("{n} lines in {rel}"), || {
            let l = self.lines(rel);
            (l.len() >= n).then_some(l)
        });
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait")
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `tidepool` command run in `dir`.
pub fn tidepool_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidepool"));
    c.current_dir(dir).env_remove("RUST_LOG");
    c
}

fn pump(src: impl Read + Send + 'static, into: Arc<Mutex<String>>, echo: bool) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(src);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            if echo && std::env::var_os("TIDEPOOL_TEST_ECHO").is_some() {
                eprint!("[tidepool] {line}");
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&line);
            }
            line.clear();
        }
    });
}

fn listening_addrs(log: &str) -> Vec<SocketAddr> {
    log.lines()
        .filter(|l| l.contains("source #"))
        .filter_map(|l| l.split("listening on ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|a| {
            a.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .collect()
}

/// A config with one plain forward source on an ephemeral port and a file output.
pub fn plain_config(extra_source: &str) -> String {
    format!(
        r#"[server]
data_dir = "data"
certs_dir = "certs"
shutdown_timeout = "10s"

[api]
listen = "127.0.0.1:0"

[[source]]
type = "forward"
listen = "127.0.0.1:0"
{extra_source}

[[match]]
pattern = "**"
outputs = ["out"]

[output.out]
type = "file"
path = "out/${{tag}}.jsonl"
time_key = "time"
"#
    )
}

/// Connects with a read timeout so a broken server fails the test instead of hanging.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads until the peer closes; returns what it sent.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out).expect("read reply");
    out
}

/// A Message-mode frame `[tag, time, record, {"chunk": id}]` asking for an ack.
pub fn message_with_ack(tag: &str, record: &rmpv::Value, chunk: &str) -> Vec<u8> {
    let v = rmpv::Value::Array(vec![
        tag.into(),
        rmpv::Value::from(1_700_000_000u64),
        record.clone(),
        rmpv::Value::Map(vec![("chunk".into(), chunk.into())]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).expect("encode");
    out
}

/// The ack a server must answer to `chunk`.
pub fn ack_for(chunk: &str) -> Vec<u8> {
    let v = rmpv::Value::Map(vec![("ack".into(), chunk.into())]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).expect("encode");
    out
}

/// Sends one Message frame with an ack on a fresh connection and checks the ack: the
/// positive sign that the daemon still serves after whatever a test did.
pub fn assert_serves(addr: SocketAddr, tag: &str) {
    let mut s = connect(addr);
    let chunk = "still-serving";
    let rec = rmpv::Value::Map(vec![("alive".into(), true.into())]);
    s.write_all(&message_with_ack(tag, &rec, chunk))
        .expect("write");
    let want = ack_for(chunk);
    assert_eq!(
        read_n(&mut s, want.len()),
        want,
        "ack from a fresh connection"
    );
}

/// A plain HTTP/1.1 request without a body; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    http_with_headers(addr, method, path, "")
}

/// [`http`] with extra header lines (each ending in `\r\n`).
pub fn http_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    let mut s = connect(addr);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------------
// Reliability helpers (faults, limits, hostile clients).

impl TestDaemon {
    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's resident memory in KiB, from /proc (None once it exited).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// Resident memory of a process in KiB (`VmRSS` in /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The sum of every sample of the Prometheus metric `name` (all label sets).
pub fn metric_sum(api: SocketAddr, name: &str) -> u64 {
    let (status, body) = http(api, "GET", "/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A Forward frame of `n` numbered events (`{"seq": n}`) starting at `first`, asking
/// for an ack with `chunk`.
pub fn numbered_batch(tag: &str, first: u64, n: u64, chunk: &str) -> Vec<u8> {
    let entries = (first..first + n)
        .map(|seq| {
            rmpv::Value::Array(vec![
                rmpv::Value::from(1_700_000_000u64),
                rmpv::Value::Map(vec![("seq".into(), seq.into())]),
            ])
        })
        .collect();
    let frame = rmpv::Value::Array(vec![
        tag.into(),
        rmpv::Value::Array(entries),
        rmpv::Value::Map(vec![("chunk".into(), chunk.into())]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &frame).expect("encode");
    out
}

/// A client on its own thread sending one acked message after another until stopped;
/// counts the acks, so a test can prove other clients are still served.
pub struct HealthyClient {
    /// Acks received so far.
    pub acks: Arc<std::sync::atomic::AtomicU64>,
    /// The first failure (write, read or a wrong ack), if any.
    pub error: Arc<Mutex<Option<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthyClient {
    /// Connects to `addr` and starts sending under `tag`.
    pub fn start(addr: SocketAddr, tag: &str) -> HealthyClient {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let acks = Arc::new(AtomicU64::new(0));
        let error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = connect(addr);
        let (a, e, st, tag) = (acks.clone(), error.clone(), stop.clone(), tag.to_string());
        let thread = std::thread::spawn(move || {
            let rec = rmpv::Value::Map(vec![("healthy".into(), true.into())]);
            let mut i = 0u64;
            while !st.load(Ordering::Relaxed) {
                let chunk = format!("h{i}");
                let want = ack_for(&chunk);
                let mut got = vec![0u8; want.len()];
                let r = s
                    .write_all(&message_with_ack(&tag, &rec, &chunk))
                    .and_then(|()| s.read_exact(&mut got));
                match r {
                    Ok(()) if got == want => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        if let Ok(mut e) = e.lock() {
                            *e = Some(format!(
                                "healthy client, message {i}: {other:?}, got {got:?}"
                            ));
                        }
                        return;
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        HealthyClient {
            acks,
            error,
            stop,
            thread: Some(thread),
        }
    }

    /// Acks so far.
    pub fn count(&self) -> u64 {
        self.acks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until at least `n` more acks arrive than now: the positive sign that the
    /// client is still served. Panics with the client's error if it failed.
    pub fn wait_more(&self, n: u64) {
        let base = self.count();
        wait_for("the healthy client's acks", || {
            if let Ok(e) = self.error.lock()
                && let Some(e) = e.as_ref()
            {
                panic!("{e}");
            }
            (self.count() >= base + n).then_some(())
        });
    }

    /// Stops the client; returns the acks it received.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(e) = self.error.lock() {
            assert!(e.is_none(), "{e:?}");
        }
        self.count()
    }
}

/// How many sources of `config` log a "listening on" line: all but MQTT sources,
/// which subscribe instead of listening.
fn listening_sources(config: &str) -> usize {
    let Ok(table) = config.parse::<toml::Table>() else {
        return config.matches("[[source]]").count();
    };
    table
        .get("source")
        .and_then(|s| s.as_array())
        .map_or(0, |sources| {
            sources
                .iter()
                .filter(|s| s.get("type").and_then(|t| t.as_str()) != Some("mqtt"))
                .count()
        })
}
