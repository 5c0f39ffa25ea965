//! Bad input closes only the connection that sent it, with a logged reason; nothing is
//! acked or stored, and the daemon and every other connection go on.

use crate::util::*;
use std::io::Write;
use std::net::Shutdown;

fn malformed_vectors() -> Vec<String> {
    let m = manifest();
    let mut names: Vec<String> = m["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .filter_map(|v| v["file"].as_str())
        .filter(|f| f.ends_with(".client.bin"))
        .filter(|f| {
            f.starts_with("malformed-")
                || *f == "synthetic-message-msgpack-timestamp-ext.client.bin"
                || *f == "synthetic-tag-empty.client.bin"
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[test]
fn every_malformed_vector_closes_its_connection_only() {
    let d = TestDaemon::start(&plain_config(""));
    let addr = d.addr(0);
    // A long-lived good connection, opened before any bad input.
    let mut good = connect(addr);
    let rec = rmpv::Value::Map(vec![("ok".into(), true.into())]);
    let names = malformed_vectors();
    assert!(names.len() >= 20, "only {} malformed vectors", names.len());
    for (i, name) in names.iter().enumerate() {
        let mut bad = connect(addr);
        // The server may close before a big frame is fully written: that is fine.
        let _ = bad.write_all(&vector(name));
        let _ = bad.shutdown(Shutdown::Write);
        let reply = read_to_eof(&mut bad);
        assert!(
            reply.is_empty(),
            "{name}: no ack or reply expected, got {reply:?}"
        );

        let chunk = format!("good-{i}");
        good.write_all(&message_with_ack("good.conn", &rec, &chunk))
            .expect("good write");
        let want = ack_for(&chunk);
        assert_eq!(
            read_n(&mut good, want.len()),
            want,
            "good connection after {name}"
        );
    }
    d.wait_log("closing connection");
    let log = d.stderr();
    let closes = log.matches("closing connection").count();
    assert!(
        closes >= names.len().min(20),
        "only {closes} close lines:\n{log}"
    );
    assert!(log.contains("127.0.0.1:"), "peer address is logged");
    // Nothing from the bad frames reached an output.
    assert!(
        d.lines("data/out/td.test_database.cpu_info.jsonl")
            .is_empty(),
        "a malformed frame was stored"
    );
    assert_eq!(
        d.wait_records("data/out/good.conn.jsonl", names.len())
            .len(),
        names.len()
    );
    assert_serves(addr, "still.alive");
}

#[test]
fn garbage_on_the_tls_port_is_refused_and_the_daemon_goes_on() {
    let cfg = plain_config("tls = { generate = true, common_name = \"127.0.0.1\" }");
    let d = TestDaemon::start(&cfg);
    let mut s = connect(d.addr(0));
    let _ = s.write_all(b"\x16\x03\x01\x00\x05hello this is not TLS at all");
    let _ = read_to_eof(&mut s);
    d.wait_log("TLS handshake failed");
}

#[test]
fn a_frame_over_max_message_size_is_refused_before_it_arrives() {
    let d = TestDaemon::start(&plain_config("max_message_size = \"1KiB\""));
    let mut s = connect(d.addr(0));
    // PackedForward declaring a 1 MiB bin body: refused on the header alone.
    let mut frame = vec![0x92, 0xa1, b't', 0xc6];
    frame.extend_from_slice(&(1u32 << 20).to_be_bytes());
    s.write_all(&frame).expect("write");
    assert!(read_to_eof(&mut s).is_empty());
    d.wait_log("closing connection");
    assert_serves(d.addr(0), "after.big");
}

/// Every file of `tests/data/bad/`, sorted.
fn bad_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/data/bad")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), std::fs::read(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_file_in_the_bad_corpus_is_refused_while_a_healthy_client_is_served() {
    let files = bad_corpus();
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad/README.md"),
    )
    .expect("README.md");
    for (name, _) in &files {
        assert!(
            readme.contains(name.as_str()),
            "{name} is not described in tests/data/bad/README.md"
        );
    }
    assert!(files.len() >= 50, "only {} bad inputs", files.len());
    let d = TestDaemon::start(&plain_config(""));
    let (addr, api) = (d.addr(0), d.api_addr());
    let healthy = HealthyClient::start(addr, "good.conn");
    healthy.wait_more(1);
    let mut rejected = metric_sum(api, "tidepool_input_rejections_total");
    for (name, bytes) in &files {
        let mut bad = connect(addr);
        // The server may close before a big input is fully written: that is fine.
        let _ = bad.write_all(bytes);
        let _ = bad.shutdown(Shutdown::Write);
        let reply = read_to_eof(&mut bad);
        assert!(
            reply.is_empty(),
            "{name}: no ack or reply expected, got {reply:?}"
        );
        // Counted under a rejection reason (the warn line itself is rate-limited).
        rejected = wait_for(&format!("{name} counted as rejected"), || {
            let now = metric_sum(api, "tidepool_input_rejections_total");
            (now > rejected).then_some(now)
        });
        healthy.wait_more(1);
    }
    let acks = healthy.stop();
    let log = d.stderr();
    let closes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("closing connection"))
        .collect();
    assert!(
        closes.len() >= 20,
        "only {} close lines:\n{log}",
        closes.len()
    );
    assert!(
        closes
            .iter()
            .all(|l| l.contains("127.0.0.1:") && l.contains("listener")),
        "every close line names the listener and the peer:\n{log}"
    );
    // All the healthy events arrive, and nothing else was ever written.
    d.wait_records("data/out/good.conn.jsonl", acks as usize);
    let outputs: Vec<String> = std::fs::read_dir(d.dir.join("data/out"))
        .expect("data/out")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        outputs,
        vec!["good.conn.jsonl".to_string()],
        "only the healthy client's events are stored"
    );
    let rss = d.rss_kib().expect("daemon running");
    assert!(rss < 512 * 1024, "daemon RSS after the corpus is {rss} KiB");
    assert_serves(addr, "still.alive");
}
