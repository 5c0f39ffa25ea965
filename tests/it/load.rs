//! The load tool (`examples/load`) against a real daemon and against its own sink: every
//! mode is acked and stored, `verify` catches a lost and a duplicated event, the sink
//! acks each chunk, the shared-key handshake works; `load http` (postback and in_http)
//! gets every 200 into the file output, counts refusals by status and reconnects. Needs
//! `cargo build --example load` (skipped, or failing under TIDEPOOL_REQUIRE_SERVICES=1,
//! when the binary is missing).

use crate::util::{
    TestDaemon, ack_for, connect, message_with_ack, plain_config, read_n, skip, wait_for,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

/// The example binary built next to the daemon binary, if it was built.
fn load_bin() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_BIN_EXE_tidepool"))
        .parent()?
        .join("examples/load");
    if bin.exists() {
        return Some(bin);
    }
    skip(&format!(
        "{} is missing: run `cargo build --example load` first",
        bin.display()
    ));
    None
}

fn load(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
}

/// Runs `load run ... --json` and returns its report; panics with stderr on failure.
fn run_json(bin: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["run", "--json"];
    all.extend_from_slice(args);
    let out = load(bin, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load {all:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("load {all:?} printed {stdout:?}, not one JSON line: {e}"))
}

/// Runs `load verify ... --json`: (exit success, report).
fn verify(bin: &Path, run: &str, acked: &Path, file: &Path) -> (bool, serde_json::Value) {
    let out = load(
        bin,
        &[
            "verify",
            "--json",
            "--run",
            run,
            "--acked",
            &acked.to_string_lossy(),
            "--file",
            &file.to_string_lossy(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed {stdout:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// Sends `events` events with `--seq run` in `mode` to `d`, waits until they are all in
/// the output file and returns (the file, the acked ranges file).
fn send_and_store(
    bin: &Path,
    d: &TestDaemon,
    mode: &str,
    run: &str,
    events: usize,
) -> (PathBuf, PathBuf) {
    let tag = format!("load.{mode}");
    let acked = d.dir.join(format!("{run}.acked"));
    let addr = d.addr(0).to_string();
    let n = events.to_string();
    let report = run_json(
        bin,
        &[
            "--addr",
            &addr,
            "--mode",
            mode,
            "--events",
            &n,
            "--batch",
            "100",
            "--conns",
            "2",
            "--tag",
            &tag,
            "--shape",
            "heap",
            "--seq",
            run,
            "--acked-out",
            &acked.to_string_lossy(),
        ],
    );
    assert_eq!(report["acked"], events, "{mode}: {report}");
    assert_eq!(report["errors"], 0, "{mode}: {report}");
    let rel = format!("data/out/{tag}.jsonl");
    let records = d.wait_records(&rel, events);
    assert_eq!(records.len(), events, "{mode}: more lines than events sent");
    assert_eq!(records[0]["run"], run);
    assert!(
        records[0]["alloc_fail_cnt"].is_number(),
        "heap shape: {}",
        records[0]
    );
    (d.dir.join(rel), acked)
}

#[test]
fn every_mode_is_acked_stored_and_verified() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&plain_config(""));
    for mode in ["message", "forward", "packed", "compressed"] {
        let run = format!("r-{mode}");
        let (file, acked) = send_and_store(&bin, &d, mode, &run, 600);
        let (ok, report) = verify(&bin, &run, &acked, &file);
        assert!(ok, "{mode}: {report}");
        assert_eq!(report["acked"], 600, "{mode}: {report}");
        assert_eq!(report["lost"], 0, "{mode}: {report}");
        assert_eq!(report["duplicated"], 0, "{mode}: {report}");
    }
}

#[test]
fn verify_detects_an_injected_loss_and_duplicate() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&plain_config(""));
    let (file, acked) = send_and_store(&bin, &d, "packed", "r-inject", 500);
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .expect("output file")
        .lines()
        .map(str::to_string)
        .collect();
    let seq_of =
        |l: &str| serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["seq"].clone();

    let lossy = d.dir.join("lossy.jsonl");
    let mut kept = lines.clone();
    let removed = kept.remove(123);
    std::fs::write(&lossy, kept.join("\n") + "\n").expect("write");
    let (ok, report) = verify(&bin, "r-inject", &acked, &lossy);
    assert!(!ok, "a lost event must fail verify: {report}");
    assert_eq!(report["lost"], 1, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    assert_eq!(report["lost_examples"][0], seq_of(&removed), "{report}");

    let doubled = d.dir.join("doubled.jsonl");
    let mut more = lines.clone();
    more.push(lines[77].clone());
    std::fs::write(&doubled, more.join("\n") + "\n").expect("write");
    let (ok, report) = verify(&bin, "r-inject", &acked, &doubled);
    assert!(!ok, "a duplicate must fail verify: {report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 1, "{report}");
    assert_eq!(
        report["duplicated_examples"][0],
        seq_of(&lines[77]),
        "{report}"
    );

    // Another run's records neither count as received nor hide a loss.
    let (ok, report) = verify(&bin, "other-run", &acked, &file);
    assert!(!ok);
    assert_eq!(report["received"], 0, "{report}");
    assert_eq!(report["lost"], 500, "{report}");
}

/// `load sink` on an ephemeral port, killed on drop.
struct Sink {
    child: Child,
    addr: String,
}

impl Sink {
    fn start(bin: &Path) -> Sink {
        let mut child = Command::new(bin)
            .args(["sink", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn load sink");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = wait_for("the sink's listening line", || {
            rx.try_recv()
                .ok()
                .and_then(|l| l.strip_prefix("sink listening on ").map(str::to_string))
        });
        Sink { child, addr }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_sink_acks_each_chunk() {
    let Some(bin) = load_bin() else { return };
    let sink = Sink::start(&bin);
    let mut s = connect(sink.addr.parse().expect("sink address"));
    for chunk in ["first-chunk", "second-chunk"] {
        let record = rmpv::Value::Map(vec![("v".into(), 1.into())]);
        s.write_all(&message_with_ack("sink.test", &record, chunk))
            .expect("write");
        let want = ack_for(chunk);
        assert_eq!(read_n(&mut s, want.len()), want, "ack for {chunk}");
    }
    for mode in ["message", "forward", "packed", "compressed"] {
        let report = run_json(
            &bin,
            &[
                "--addr", &sink.addr, "--mode", mode, "--events", "1000", "--batch", "100",
                "--seq", "s",
            ],
        );
        assert_eq!(report["acked"], 1000, "{mode}: {report}");
        assert_eq!(report["errors"], 0, "{mode}: {report}");
    }
    let report = run_json(
        &bin,
        &[
            "--addr",
            &sink.addr,
            "--reconnect",
            "--events",
            "20",
            "--batch",
            "10",
        ],
    );
    assert_eq!(report["acked"], 20, "{report}");
}

#[test]
fn the_shared_key_handshake_runs_on_each_connection() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&plain_config(
        r#"security = { self_hostname = "receiver.tidepool.test", shared_key = "load-key" }"#,
    ));
    let addr = d.addr(0).to_string();
    let report = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--shared-key",
            "load-key",
            "--events",
            "300",
            "--batch",
            "100",
            "--tag",
            "load.key",
        ],
    );
    assert_eq!(report["acked"], 300, "{report}");
    assert_eq!(d.wait_records("data/out/load.key.jsonl", 300).len(), 300);
    let report = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--shared-key",
            "wrong-key",
            "--events",
            "100",
            "--batch",
            "100",
        ],
    );
    assert_eq!(report["acked"], 0, "{report}");
    assert_eq!(report["errors_by_kind"]["Handshake"], 2, "{report}");
    // Without a key the server's HELO is not mistaken for an ack.
    let report = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--events",
            "100",
            "--batch",
            "100",
            "--ack-timeout",
            "5",
        ],
    );
    assert_eq!(report["acked"], 0, "{report}");
    assert!(
        report["errors_by_kind"]["BadReply"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{report}"
    );
}

/// Runs `load verify --json` with `source` args until it passes (the sink may still be
/// flushing), returning the last report; panics with it after the patience runs out.
fn verify_eventually(bin: &Path, run: &str, acked: &Path, source: &[&str]) -> serde_json::Value {
    let acked = acked.to_string_lossy();
    let mut last = serde_json::Value::Null;
    let passed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("verify {source:?} to pass"), || {
            let mut args = vec!["verify", "--json", "--run", run, "--acked", &acked];
            args.extend_from_slice(source);
            let out = load(bin, &args);
            last = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            out.status.success().then_some(())
        })
    }));
    assert!(passed.is_ok(), "verify never passed; last report: {last}");
    last
}

#[test]
fn verify_reads_the_store() {
    let Some(bin) = load_bin() else { return };
    let cfg = plain_config("").replace(
        "type = \"file\"\npath = \"out/${tag}.jsonl\"\ntime_key = \"time\"",
        "type = \"store\"\nbuffer = { flush_interval = \"200ms\" }",
    );
    let d = TestDaemon::start(&cfg);
    let acked = d.dir.join("store.acked");
    let addr = d.addr(0).to_string();
    let report = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--events",
            "500",
            "--batch",
            "100",
            "--tag",
            "td.bench.cpu_info",
            "--seq",
            "r-store",
            "--acked-out",
            &acked.to_string_lossy(),
        ],
    );
    assert_eq!(report["acked"], 500, "{report}");
    let db = d.dir.join("data/store/bench.sqlite");
    wait_for("the store database", || db.exists().then_some(()));
    let db = db.to_string_lossy();
    let report = verify_eventually(
        &bin,
        "r-store",
        &acked,
        &["--store", &db, "--table", "cpu_info"],
    );
    assert_eq!(report["received"], 500, "{report}");
}

#[test]
fn verify_reads_the_td_mock_report() {
    let Some(bin) = load_bin() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let report_file = tmp.path().join("td-rows.jsonl");
    let mut mock = Command::new(&bin)
        .args(["td-mock", "--report", &report_file.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn load td-mock");
    let mut first = String::new();
    let _ = BufReader::new(mock.stdout.take().expect("stdout")).read_line(&mut first);
    let url = first
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with("http"), "td-mock printed {first:?}");
    let cfg = plain_config("").replace(
        "type = \"file\"\npath = \"out/${tag}.jsonl\"\ntime_key = \"time\"",
        &format!(
            "type = \"td\"\napikey = \"1/mock0123456789abcdef\"\nendpoint = \"{url}\"\napi_endpoint = \"{url}\"\nbuffer = {{ flush_interval = \"200ms\" }}"
        ),
    );
    let d = TestDaemon::start(&cfg);
    let acked = d.dir.join("td.acked");
    let addr = d.addr(0).to_string();
    let report = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--events",
            "400",
            "--batch",
            "100",
            "--tag",
            "td.bench.cpu_info",
            "--seq",
            "r-td",
            "--acked-out",
            &acked.to_string_lossy(),
        ],
    );
    assert_eq!(report["acked"], 400, "{report}");
    let rf = report_file.to_string_lossy();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify_eventually(&bin, "r-td", &acked, &["--td-mock-report", &rf])
    }));
    let _ = mock.kill();
    let _ = mock.wait();
    let report = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(report["received"], 400, "{report}");
}

#[test]
fn tls_with_a_pinned_ca_or_insecure_and_one_connection_per_message() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&plain_config(
        r#"tls = { generate = true, common_name = ["127.0.0.1", "localhost"] }"#,
    ));
    let addr = d.addr(0).to_string();
    let ca = d.dir.join("certs/ca.pem");
    let ca = ca.to_string_lossy();
    let pinned = run_json(
        &bin,
        &[
            "--addr", &addr, "--ca", &ca, "--events", "300", "--batch", "100", "--tag", "load.tls",
        ],
    );
    assert_eq!(pinned["acked"], 300, "{pinned}");
    let churn = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--insecure",
            "--reconnect",
            "--events",
            "20",
            "--batch",
            "10",
            "--tag",
            "load.tls",
        ],
    );
    assert_eq!(churn["acked"], 20, "{churn}");
    assert_eq!(d.wait_records("data/out/load.tls.jsonl", 320).len(), 320);
    // Plain TCP to a TLS port fails at the first ack, reported by kind.
    let plain = run_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--events",
            "100",
            "--batch",
            "100",
            "--ack-timeout",
            "1",
        ],
    );
    assert_eq!(plain["acked"], 0, "{plain}");
    assert!(plain["errors"].as_u64().is_some_and(|n| n > 0), "{plain}");
}

#[test]
fn every_shape_and_a_tag_list_reach_the_daemon_intact() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&plain_config(""));
    let addr = d.addr(0).to_string();
    let shapes = ["cpu", "heap", "stack", "sys", "array", "bytes:300"];
    for shape in shapes {
        let report = run_json(
            &bin,
            &[
                "--addr",
                &addr,
                "--shape",
                shape,
                "--tag-count",
                "2",
                "--events",
                "200",
                "--batch",
                "50",
                "--seq",
                shape,
            ],
        );
        assert_eq!(report["acked"], 200, "{shape}: {report}");
    }
    let total = 200 * shapes.len();
    let records = wait_for(&format!("{total} records in td.bench.t0 and t1"), || {
        let mut all = d.lines("data/out/td.bench.t0.jsonl");
        let t1 = d.lines("data/out/td.bench.t1.jsonl");
        (!t1.is_empty() && all.len() + t1.len() >= total).then(|| {
            all.extend(t1);
            all
        })
    });
    assert_eq!(records.len(), total);
    let of = |run: &str| -> serde_json::Value {
        records
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
            .find(|v| v["run"] == run)
            .unwrap_or_else(|| panic!("no record of shape {run}"))
    };
    assert_eq!(
        of("array")["array"],
        serde_json::json!(["sint", 0, 1, -1, -128, -32768, -2147483648i64])
    );
    assert_eq!(of("bytes:300")["data"].as_str().map(str::len), Some(300));
    assert!(of("stack")["thread_id"].is_number());
    assert!(of("sys")["compiler_version"].is_number());
    assert!(of("cpu")["idle"].is_number());
}

#[test]
fn user_auth_credentials_are_sent_in_the_handshake() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&plain_config(
        r#"security = { self_hostname = "receiver.tidepool.test", shared_key = "load-key", user_auth = true, users = [{ username = "bench", password = "bench-pass" }] }"#,
    ));
    let addr = d.addr(0).to_string();
    let base = [
        "--addr",
        &addr,
        "--shared-key",
        "load-key",
        "--events",
        "100",
        "--batch",
        "100",
    ];
    let mut with_user = base.to_vec();
    with_user.extend(["--username", "bench", "--password", "bench-pass"]);
    let report = run_json(&bin, &with_user);
    assert_eq!(report["acked"], 100, "{report}");
    let report = run_json(&bin, &base);
    assert_eq!(report["acked"], 0, "{report}");
    assert_eq!(report["errors_by_kind"]["Handshake"], 2, "{report}");
}

/// One http source (postback key `KEY`, in_http on) into the file output.
fn http_config() -> String {
    plain_config("").replace(
        "type = \"forward\"\nlisten = \"127.0.0.1:0\"\n",
        "type = \"http\"\nlisten = \"127.0.0.1:0\"\nwrite_keys = [\"1/load-key\"]\n",
    )
}

/// Runs `load http ... --json` and returns its report; panics with stderr on failure.
fn http_json(bin: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["http", "--json"];
    all.extend_from_slice(args);
    let out = load(bin, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load {all:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("load {all:?} printed {stdout:?}, not one JSON line: {e}"))
}

#[test]
fn http_postback_and_in_http_every_200_is_in_the_file() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&http_config());
    let addr = d.addr(0).to_string();
    let acked = d.dir.join("http.acked");
    let acked_s = acked.to_string_lossy();
    let report = http_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--conns",
            "4",
            "--events",
            "600",
            "--write-key",
            "1/load-key",
            "--shape",
            "heap",
            "--seq",
            "r-http",
            "--acked-out",
            &acked_s,
        ],
    );
    assert_eq!(report["ok"], 600, "{report}");
    assert_eq!(report["acked"], 600, "{report}");
    assert_eq!(report["statuses"]["200"], 600, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["connections"], 4, "keep-alive: {report}");
    let file = d.dir.join("data/out/td.bench_db.events.jsonl");
    let f = file.to_string_lossy();
    let v = verify_eventually(&bin, "r-http", &acked, &["--file", &f]);
    assert_eq!(v["received"], 600, "{v}");
    let records = d.wait_records("data/out/td.bench_db.events.jsonl", 600);
    assert!(
        records[0]["alloc_fail_cnt"].is_number(),
        "heap shape: {}",
        records[0]
    );

    // Fluentd in_http: the path is the tag, a batch is a JSON array.
    let acked = d.dir.join("in_http.acked");
    let acked_s = acked.to_string_lossy();
    let report = http_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--path",
            "/load/in_http",
            "--batch",
            "10",
            "--conns",
            "2",
            "--events",
            "300",
            "--run",
            "r-in-http",
            "--acked-out",
            &acked_s,
        ],
    );
    assert_eq!(report["ok"], 30, "{report}");
    assert_eq!(report["acked"], 300, "{report}");
    let file = d.dir.join("data/out/load.in_http.jsonl");
    let f = file.to_string_lossy();
    let v = verify_eventually(&bin, "r-in-http", &acked, &["--file", &f]);
    assert_eq!(v["received"], 300, "{v}");
}

#[test]
fn http_refusals_count_by_status_and_reconnect() {
    let Some(bin) = load_bin() else { return };
    let d = TestDaemon::start(&http_config());
    let addr = d.addr(0).to_string();
    let report = http_json(
        &bin,
        &[
            "--addr",
            &addr,
            "--conns",
            "1",
            "--events",
            "3",
            "--write-key",
            "1/wrong",
        ],
    );
    assert_eq!(report["ok"], 0, "{report}");
    assert_eq!(report["statuses"]["403"], 3, "{report}");
    assert_eq!(report["errors_by_kind"]["Status"], 3, "{report}");
    // A refusal closes the connection: each request went on a new one.
    assert_eq!(report["connections"], 3, "{report}");
}

/// Reads one request (head and Content-Length body) off `s`; false at EOF.
fn read_request(s: &mut std::net::TcpStream) -> bool {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match std::io::Read::read(s, &mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    std::io::Read::read_exact(s, &mut body).is_ok()
}

#[test]
fn http_bad_answers_are_errors_by_kind_and_the_connection_is_reopened() {
    let Some(bin) = load_bin() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    // Connection n reads one request, gets answer n, and is closed.
    let answers: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"hello\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n{}",
    ];
    std::thread::spawn(move || {
        for (s, answer) in listener.incoming().zip(answers) {
            let Ok(mut s) = s else { return };
            if read_request(&mut s) {
                let _ = s.write_all(answer);
            }
        }
    });
    let report = http_json(&bin, &["--addr", &addr, "--conns", "1", "--events", "4"]);
    assert_eq!(report["requests"], 4, "{report}");
    assert_eq!(report["errors_by_kind"]["BadReply"], 3, "{report}");
    // HTTP/1.0 without a length: the body runs to the close, and that is a 200.
    assert_eq!(report["ok"], 1, "{report}");
    assert_eq!(report["connections"], 4, "{report}");
}

#[test]
fn http_a_connection_closed_before_the_answer_is_an_error_and_reconnects() {
    let Some(bin) = load_bin() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    // The first connection is closed after its request, unanswered; later ones get 200s.
    std::thread::spawn(move || {
        for (n, s) in listener.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            if n == 0 {
                read_request(&mut s);
                continue;
            }
            while read_request(&mut s) {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                if s.write_all(ok).is_err() {
                    break;
                }
            }
        }
    });
    let report = http_json(&bin, &["--addr", &addr, "--conns", "1", "--events", "3"]);
    assert_eq!(report["requests"], 3, "{report}");
    assert_eq!(report["ok"], 2, "{report}");
    assert_eq!(report["errors_by_kind"]["ClosedBeforeAck"], 1, "{report}");
    assert_eq!(report["connections"], 2, "{report}");
}

#[test]
fn http_over_tls_with_a_pinned_ca() {
    let Some(bin) = load_bin() else { return };
    let cfg = http_config().replace(
        "write_keys = [",
        "tls = { generate = true, common_name = [\"127.0.0.1\", \"localhost\"] }\nwrite_keys = [",
    );
    let d = TestDaemon::start(&cfg);
    let addr = d.addr(0).to_string();
    let ca = d.dir.join("certs/ca.pem");
    let ca = ca.to_string_lossy();
    let base = [
        "--addr",
        &addr,
        "--conns",
        "2",
        "--events",
        "100",
        "--write-key",
        "1/load-key",
    ];
    let mut pinned = base.to_vec();
    pinned.extend(["--tls", "--ca", &ca]);
    let report = http_json(&bin, &pinned);
    assert_eq!(report["ok"], 100, "{report}");
    assert_eq!(
        d.wait_records("data/out/td.bench_db.events.jsonl", 100)
            .len(),
        100
    );
    // Plain HTTP to the TLS port: no 200, errors reported by kind.
    let mut plain = base.to_vec();
    plain.extend(["--timeout", "5"]);
    let report = http_json(&bin, &plain);
    assert_eq!(report["ok"], 0, "{report}");
    assert!(report["errors"].as_u64().is_some_and(|n| n > 0), "{report}");
}
