//! Hot reload against a real process: routes change, connections stay, a bad config is
//! refused and the running one stays.

use crate::util::*;
use std::io::Write;

fn config(output_dir: &str) -> String {
    plain_config("").replace("out/${tag}.jsonl", &format!("{output_dir}/${{tag}}.jsonl"))
}

fn send(s: &mut std::net::TcpStream, tag: &str, n: i64, chunk: &str) {
    let rec = rmpv::Value::Map(vec![("n".into(), n.into())]);
    s.write_all(&message_with_ack(tag, &rec, chunk))
        .expect("write");
    assert_eq!(
        read_n(s, ack_for(chunk).len()),
        ack_for(chunk),
        "ack for {chunk}"
    );
}

#[test]
fn reload_reroutes_new_events_keeps_connections_and_refuses_a_bad_config() {
    let d = TestDaemon::start(&config("first"));
    let mut conn = connect(d.addr(0));
    send(&mut conn, "reload.test", 1, "one");
    d.wait_records("data/first/reload.test.jsonl", 1);

    std::fs::write(d.dir.join("tidepool.toml"), config("second")).expect("write config");
    d.reload_ok();
    d.wait_log("config reloaded");
    // The same connection, still open, follows the new route.
    send(&mut conn, "reload.test", 2, "two");
    let second = d.wait_records("data/second/reload.test.jsonl", 1);
    assert_eq!(second[0]["n"], 2);
    assert_eq!(d.lines("data/first/reload.test.jsonl").len(), 1);

    // A broken config: `tidepool reload` shows the error and signals nothing...
    std::fs::write(
        d.dir.join("tidepool.toml"),
        "[[source]]\ntype = \"forward\"\nlisten = 5\n",
    )
    .expect("write config");
    let out = d.reload();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tidepool.toml:3:"), "file:line in {err}");
    // ...and a SIGHUP with it is refused by the daemon, which keeps the running config.
    let pid = std::fs::read_to_string(d.dir.join("data/tidepool.pid")).expect("pid file");
    let _ = std::process::Command::new("kill")
        .args(["-HUP", pid.trim()])
        .status();
    d.wait_log("reload refused");
    send(&mut conn, "reload.test", 3, "three");
    assert_eq!(
        d.wait_records("data/second/reload.test.jsonl", 2)[1]["n"],
        3
    );
}

#[test]
fn reloads_under_load_lose_and_duplicate_nothing() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let d = TestDaemon::start(&config("out0"));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let sender = {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), d.addr(0));
        std::thread::spawn(move || {
            let mut s = connect(addr);
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                send(&mut s, "reload.load", n, &format!("c{n}"));
                if let Ok(mut a) = acked.lock() {
                    a.push(n);
                }
                n += 1;
            }
        })
    };
    let acked_len = |acked: &Arc<Mutex<Vec<i64>>>| acked.lock().map(|a| a.len()).unwrap_or(0);
    for round in 1..=5 {
        let before = acked_len(&acked);
        let text = if round == 3 {
            "[[match]]\npattern = \"**\"\noutputs = [\"nowhere\"]\n".to_string()
        } else {
            config(&format!("out{round}"))
        };
        std::fs::write(d.dir.join("tidepool.toml"), text).expect("write config");
        let pid = std::fs::read_to_string(d.dir.join("data/tidepool.pid")).expect("pid");
        let _ = std::process::Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status();
        let (needle, count) = match round {
            3 => ("reload refused", 1),
            r if r < 3 => ("config reloaded", r),
            r => ("config reloaded", r - 1),
        };
        wait_for(&format!("reload {round} logged"), || {
            (d.stderr().matches(needle).count() >= count).then_some(())
        });
        // Let events flow under this config before the next change.
        wait_for("more acks", || {
            (acked_len(&acked) >= before + 50).then_some(())
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let seen = wait_for("every acked event in some output", || {
        let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
        for out in ["out0", "out1", "out2", "out4", "out5"] {
            for line in d.lines(&format!("data/{out}/reload.load.jsonl")) {
                if let Some(n) = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["n"].as_i64())
                {
                    *seen.entry(n).or_insert(0) += 1;
                }
            }
        }
        acked.iter().all(|n| seen.contains_key(n)).then_some(seen)
    });
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "duplicated across reloads: {dups:?}");
    assert!(
        d.lines("data/out3/reload.load.jsonl").is_empty(),
        "the refused config never took effect"
    );
}

/// Operators tune buffers on a running daemon: a reload that shortens `flush_interval`
/// applies to the running buffer, chunks already staged under the old hour included.
#[test]
fn a_reload_applies_changed_buffer_settings_to_the_running_buffer() {
    let with_interval = |every: &str| {
        format!(
            "{}buffer = {{ flush_interval = \"{every}\" }}\n",
            config("out")
        )
    };
    let d = TestDaemon::start(&with_interval("1h"));
    let mut conn = connect(d.addr(0));
    send(&mut conn, "buffered.test", 1, "one");
    assert!(
        !d.dir.join("data/out/buffered.test.jsonl").exists(),
        "an hour-long flush_interval held the chunk"
    );
    std::fs::write(d.dir.join("tidepool.toml"), with_interval("200ms")).expect("write config");
    d.reload_ok();
    d.wait_log("buffer settings changed: applied to the running buffer");
    assert_eq!(d.wait_records("data/out/buffered.test.jsonl", 1)[0]["n"], 1);
    // A changed buffer type cannot apply to a running buffer: said, not silently kept.
    let memory =
        with_interval("200ms").replace("{ flush_interval", "{ type = \"memory\", flush_interval");
    std::fs::write(d.dir.join("tidepool.toml"), memory).expect("write config");
    d.reload_ok();
    d.wait_log("they apply at the next start");
    send(&mut conn, "buffered.test", 2, "two");
    assert_eq!(d.wait_records("data/out/buffered.test.jsonl", 2)[1]["n"], 2);
}

/// Rotating the API token is a reload, not a restart: the old token stops working at
/// once and the new one is taken.
#[test]
fn a_reload_rotates_the_api_token() {
    let with_token = |token: &str| {
        config("out").replace(
            "[api]\nlisten = \"127.0.0.1:0\"",
            &format!("[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\""),
        )
    };
    let (old, new) = ("old-token-0123456789", "new-token-0123456789");
    let d = TestDaemon::start(&with_token(old));
    let api = d.api_addr();
    let status = |token: &str| {
        let header = format!("Authorization: Bearer {token}\r\n");
        http_with_headers(api, "GET", "/api/status", &header).0
    };
    assert_eq!(status(old), 200);
    assert_eq!(status(new), 401);
    std::fs::write(d.dir.join("tidepool.toml"), with_token(new)).expect("write config");
    d.reload_ok();
    d.wait_log("[api] token changed: applied");
    assert_eq!(status(old), 401);
    assert_eq!(status(new), 200);
}
