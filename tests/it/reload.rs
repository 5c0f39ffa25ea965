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

fn reload_cmd(d: &TestDaemon) -> std::process::Output {
    tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "reload"])
        .output()
        .expect("tidepool reload")
}

#[test]
fn reload_reroutes_new_events_keeps_connections_and_refuses_a_bad_config() {
    let d = TestDaemon::start(&config("first"));
    let mut conn = connect(d.addr(0));
    send(&mut conn, "reload.test", 1, "one");
    d.wait_records("data/first/reload.test.jsonl", 1);

    std::fs::write(d.dir.join("tidepool.toml"), config("second")).expect("write config");
    let out = reload_cmd(&d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = reload_cmd(&d);
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
