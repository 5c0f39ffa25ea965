//! The durability promise against a real process: an acked event is never lost, not to
//! kill -9, not to SIGTERM, not to a sink that is down for a while.

use crate::util::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn durable_config(path: &str, extra_buffer: &str) -> String {
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

[[match]]
pattern = "**"
outputs = ["out"]

[output.out]
type = "file"
path = "{path}"
buffer = {{ type = "file", flush_interval = "200ms", retry_wait = "100ms", retry_max_interval = "500ms"{extra_buffer} }}
"#
    )
}

/// A Forward frame of `n` numbered events starting at `first`, asking for an ack.
fn numbered_batch(tag: &str, first: u64, n: u64, chunk: &str) -> Vec<u8> {
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

/// Sends numbered batches until told to stop or the connection breaks; records every
/// sequence number whose batch was acked.
fn sender(
    addr: SocketAddr,
    tag: &'static str,
    start: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<u64>>>,
) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut seq = start;
    let n = 50;
    while !stop.load(Ordering::Relaxed) {
        let chunk = format!("c{seq}");
        if s.write_all(&numbered_batch(tag, seq, n, &chunk)).is_err() {
            return;
        }
        let want = ack_for(&chunk);
        let mut got = vec![0u8; want.len()];
        if std::io::Read::read_exact(&mut s, &mut got).is_err() || got != want {
            return;
        }
        if let Ok(mut a) = acked.lock() {
            a.extend(seq..seq + n);
        }
        seq += n;
    }
}

/// Every sequence number in the output file, with how often it appears.
fn delivered(d: &TestDaemon, rel: &str) -> std::collections::BTreeMap<u64, u32> {
    let mut m = std::collections::BTreeMap::new();
    for line in d.lines(rel) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(seq) = v["seq"].as_u64()
        {
            *m.entry(seq).or_insert(0) += 1;
        }
    }
    m
}

fn run_load_then(d: &mut TestDaemon, stop_how: impl FnOnce(&mut TestDaemon)) -> BTreeSet<u64> {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = d.addr(0);
    let threads: Vec<_> = [("crash.a", 0u64), ("crash.b", 1_000_000_000)]
        .into_iter()
        .map(|(tag, start)| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || sender(addr, tag, start, stop, acked))
        })
        .collect();
    // Let a good amount be acked, then stop the daemon mid-load.
    wait_for("acked events under load", || {
        (acked.lock().map(|a| a.len()).unwrap_or(0) >= 20_000).then_some(())
    });
    stop_how(d);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    acked.lock().map(|a| a.clone()).unwrap_or_default()
}

fn assert_all_delivered(d: &TestDaemon, acked: &BTreeSet<u64>) {
    let (a, b): (Vec<u64>, Vec<u64>) = acked.iter().partition(|&&s| s < 1_000_000_000);
    for (rel, want) in [("data/out/crash.a.jsonl", a), ("data/out/crash.b.jsonl", b)] {
        let got = wait_for(&format!("every acked event in {rel}"), || {
            let got = delivered(d, rel);
            want.iter().all(|s| got.contains_key(s)).then_some(got)
        });
        let dups = got.values().filter(|&&c| c > 1).count();
        eprintln!(
            "{rel}: {} acked, {} delivered, {dups} duplicated",
            want.len(),
            got.len()
        );
    }
}

#[test]
fn kill_9_under_load_loses_no_acked_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = durable_config("out/${tag}.jsonl", "");
    let mut d = TestDaemon::start_in(dir.path(), &cfg);
    let acked = run_load_then(&mut d, |d| d.kill9());
    assert!(acked.len() >= 20_000);
    let d = TestDaemon::start_in(dir.path(), &cfg);
    assert_all_delivered(&d, &acked);
}

#[test]
fn sigterm_under_load_loses_no_acked_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = durable_config("out/${tag}.jsonl", "");
    let mut d = TestDaemon::start_in(dir.path(), &cfg);
    let acked = run_load_then(&mut d, |d| {
        assert!(d.stop().success(), "clean exit on SIGTERM");
    });
    let d = TestDaemon::start_in(dir.path(), &cfg);
    assert_all_delivered(&d, &acked);
}

#[test]
fn a_sink_that_fails_for_a_while_gets_everything_once_it_recovers() {
    let dir = tempfile::tempdir().expect("tmp");
    // `data/blocked` is a file, so the output cannot create its directory: every
    // flush fails with a retryable error until the file is removed.
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/blocked"), b"not a directory").expect("write");
    let d = TestDaemon::start_in(dir.path(), &durable_config("blocked/${tag}.jsonl", ""));
    let mut s = connect(d.addr(0));
    for i in 0..5u64 {
        let chunk = format!("r{i}");
        s.write_all(&numbered_batch("retry.me", i * 10, 10, &chunk))
            .expect("write");
        let want = ack_for(&chunk);
        assert_eq!(
            read_n(&mut s, want.len()),
            want,
            "acked while the sink is down"
        );
    }
    d.wait_log("retry");
    std::fs::remove_file(dir.path().join("data/blocked")).expect("unblock");
    let got = wait_for("all 50 events after recovery", || {
        let got = delivered(&d, "data/blocked/retry.me.jsonl");
        (got.len() == 50).then_some(got)
    });
    assert!(got.values().all(|&c| c == 1), "each event once: {got:?}");
}

#[test]
fn a_permanent_error_dead_letters_and_requeue_brings_it_back() {
    let dir = tempfile::tempdir().expect("tmp");
    // A tag with two parts has no tag_parts[2]: a permanent error for that chunk.
    let bad = durable_config("out/${tag_parts[2]}.jsonl", "");
    let mut d = TestDaemon::start_in(dir.path(), &bad);
    let mut s = connect(d.addr(0));
    s.write_all(&numbered_batch("two.parts", 0, 7, "dl"))
        .expect("write");
    assert_eq!(read_n(&mut s, ack_for("dl").len()), ack_for("dl"));
    d.wait_log("dead");
    let listed = tidepool_cmd(dir.path())
        .args(["-c", "tidepool.toml", "buffer", "dead-letter", "list"])
        .output()
        .expect("list");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("two.parts"));
    assert!(d.stop().success());

    // The operator fixes the config and requeues; the running daemon picks it up.
    let good = durable_config("out/${tag}.jsonl", "");
    let d = TestDaemon::start_in(dir.path(), &good);
    let requeued = tidepool_cmd(dir.path())
        .args([
            "-c",
            "tidepool.toml",
            "buffer",
            "dead-letter",
            "requeue",
            "ALL",
        ])
        .output()
        .expect("requeue");
    assert!(
        requeued.status.success(),
        "{}",
        String::from_utf8_lossy(&requeued.stderr)
    );
    let got = wait_for("the requeued chunk delivered", || {
        let got = delivered(&d, "data/out/two.parts.jsonl");
        (got.len() == 7).then_some(got)
    });
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
}

#[test]
fn a_full_buffer_stalls_the_client_and_acks_nothing_it_did_not_store() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/blocked"), b"not a directory").expect("write");
    let limit = 64 * 1024u64;
    let cfg = durable_config(
        "blocked/${tag}.jsonl",
        r#", total_limit_size = "64KiB", chunk_limit_size = "16KiB", overflow_action = "block""#,
    );
    let d = TestDaemon::start_in(dir.path(), &cfg);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let batch_bytes = numbered_batch("full.buf", 0, 50, "c0").len() as u64;
    let t = {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), d.addr(0));
        std::thread::spawn(move || sender(addr, "full.buf", 0, stop, acked))
    };
    d.wait_log("buffer full");
    // While the sink is down, what was acked fits in the buffer: every ack is stored.
    let acked_while_full = acked.lock().map(|a| a.len()).unwrap_or(0) as u64;
    assert!(
        acked_while_full > 0,
        "some batches were acked before the buffer filled"
    );
    assert!(
        acked_while_full / 50 * batch_bytes <= limit,
        "{acked_while_full} events acked but only {limit} bytes of buffer"
    );
    assert!(
        d.lines("data/blocked/full.buf.jsonl").is_empty(),
        "nothing reached the sink"
    );
    // The sink comes back: everything flows again, and nothing acked is lost.
    std::fs::remove_file(dir.path().join("data/blocked")).expect("unblock");
    wait_for("acks flowing again", || {
        (acked.lock().map(|a| a.len()).unwrap_or(0) as u64 >= acked_while_full + 500).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = t.join();
    let want = acked.lock().map(|a| a.clone()).unwrap_or_default();
    wait_for("every acked event delivered", || {
        let got = delivered(&d, "data/blocked/full.buf.jsonl");
        want.iter().all(|s| got.contains_key(s)).then_some(())
    });
}
