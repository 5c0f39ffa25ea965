//! The operator commands: check, cat, certs.

use crate::util::*;
use std::io::Write;
use std::process::Stdio;

#[test]
fn check_accepts_a_good_config_and_names_file_and_line_of_a_bad_one() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("good.toml"), plain_config("")).expect("write");
    let ok = tidepool_cmd(dir.path())
        .args(["check", "-c", "good.toml"])
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = plain_config("").replace("type = \"forward\"", "type = \"forward\"\nlistne = \"x\"");
    std::fs::write(dir.path().join("bad.toml"), bad).expect("write");
    let out = tidepool_cmd(dir.path())
        .args(["check", "-c", "bad.toml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = bad_line_of(&dir, "listne");
    assert!(
        err.contains(&format!("bad.toml:{line}:")),
        "file:line in {err}"
    );
    assert!(err.contains("listne"), "names the key: {err}");
}

/// The 1-based line of `needle` in `dir/bad.toml`.
fn bad_line_of(dir: &tempfile::TempDir, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.path().join("bad.toml")).expect("bad.toml");
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

fn cat(d: &TestDaemon, tag: &str, extra: &[&str], input: &str) -> std::process::Output {
    let mut child = tidepool_cmd(&d.dir)
        .arg("cat")
        .arg(tag)
        .args(["--addr", &d.addr(0).to_string()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("cat output")
}

#[test]
fn cat_sends_json_lines_and_waits_for_acks() {
    let d = TestDaemon::start(&plain_config(""));
    let out = cat(
        &d,
        "td.test_database.cpu_info",
        &[],
        "{\"cpu\": 12.5, \"n\": 1}\n[{\"n\": 2}, {\"n\": 3}]\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = d.wait_records("data/out/td.test_database.cpu_info.jsonl", 3);
    assert_eq!(recs[0]["cpu"], 12.5);
    assert_eq!(recs[2]["n"], 3);
}

#[test]
fn cat_over_tls_with_the_generated_ca_is_printed_by_stdout_output() {
    let cfg = plain_config(r#"tls = { generate = true, common_name = "127.0.0.1" }"#).replace(
        "type = \"file\"\npath = \"out/${tag}.jsonl\"\ntime_key = \"time\"",
        "type = \"stdout\"",
    );
    let d = TestDaemon::start(&cfg);
    let out = cat(
        &d,
        "td.test_database.cpu_info",
        &["--tls", "--ca", "certs/ca.pem"],
        "{\"cpu\": 1}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the event on stdout", || {
        d.stdout()
            .contains("td.test_database.cpu_info: {\"cpu\":1}")
            .then_some(())
    });
}

#[test]
fn cat_fails_clearly_when_nothing_listens() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = tidepool_cmd(dir.path())
        .args(["cat", "x.y", "--addr", "127.0.0.1:1"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _ = child.stdin.take().expect("stdin").write_all(b"{}\n");
    let out = child.wait_with_output().expect("out");
    assert!(!out.status.success());
}

#[test]
fn certs_prints_a_c_header_of_the_generated_ca() {
    let cfg = plain_config(r#"tls = { generate = true, common_name = "192.168.1.85" }"#);
    let d = TestDaemon::start(&cfg);
    let out = tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "certs", "--c-header"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = String::from_utf8_lossy(&out.stdout);
    assert!(header.contains("const char SSL_CA_PEM[] ="), "{header}");
    assert!(
        header.contains("\"-----BEGIN CERTIFICATE-----\\n\""),
        "{header}"
    );
    assert!(
        header.contains("\"-----END CERTIFICATE-----\\n\";"),
        "{header}"
    );
    let info = tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "certs"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("192.168.1.85"), "names shown: {text}");
}

#[test]
fn check_loads_tls_files_and_finds_ports_in_use() {
    let dir = tempfile::tempdir().expect("tmp");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let cfg = plain_config(r#"tls = { cert = "missing.pem", key = "missing.key" }"#)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.path().join("t.toml"), cfg).expect("write");
    let out = tidepool_cmd(dir.path())
        .args(["check", "-c", "t.toml"])
        .output()
        .expect("check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.pem"),
        "names the certificate file: {err}"
    );
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}
