//! The HTTP input against a real daemon: the Mbed REST library's exact postback
//! request over TCP and TLS lands in the store, keys are checked, Fluentd in_http
//! bodies of every kind are stored, bad and oversized bodies are refused, slow
//! clients are cut off while others are served, and the device example's https mode
//! works end to end.

use crate::util::*;
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::SocketAddr;

const KEY: &str = "1/0123456789abcdef";

/// One http source (with `extra` lines), everything to the store, the API on.
fn config(extra: &str) -> String {
    format!(
        r#"[server]
data_dir = "data"
certs_dir = "certs"
shutdown_timeout = "10s"

[api]
listen = "127.0.0.1:0"

[[source]]
type = "http"
listen = "127.0.0.1:0"
{extra}

[[match]]
pattern = "**"
outputs = ["store"]

[output.store]
type = "store"
buffer = {{ flush_interval = "100ms" }}
"#
    )
}

fn keyed(extra: &str) -> String {
    config(&format!("write_keys = [\"{KEY}\"]\n{extra}"))
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (head, then a Content-Length body) from `s`.
fn read_response(s: &mut impl Read) -> Resp {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read response head");
        assert!(n == 1, "connection closed inside a response head: {head:?}");
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).expect("utf8 head");
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        headers,
        body: read_n(s, len),
    }
}

/// Sends raw request bytes on a fresh connection and reads the answer.
fn send_raw(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(request).expect("write request");
    read_response(&mut s)
}

/// A POST with the given headers and body.
fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes)
}

/// The request the Mbed OS `mbed-http` library builds for the TD REST example: its
/// headers come from a `std::map`, so they are sorted by name, and it adds `Host`
/// (with the port when not the default) and `Content-Length`.
fn mbed_request(host: &str, db: &str, table: &str, key: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /postback/v3/event/{db}/{table} HTTP/1.1\r\n\
         Accept: text/plain\r\n\
         Content-Length: {}\r\n\
         Content-type: application/json\r\n\
         Host: {host}\r\n\
         X-TD-Write-Key: {key}\r\n\
         \r\n{body}",
        body.len()
    )
    .into_bytes()
}

const HEAP: &str = r#"{"current_size":12345,"max_size":20480,"total_size":65536,"reserved_size":131072,"alloc_cnt":42,"alloc_fail_cnt":0}"#;

/// Runs SQL through `tidepool query --json`; None until the database exists.
fn query(d: &TestDaemon, db: &str, sql: &str) -> Option<serde_json::Value> {
    if !d.dir.join(format!("data/store/{db}.sqlite")).exists() {
        return None;
    }
    let out = tidepool_cmd(&d.dir)
        .args(["-c", "tidepool.toml", "query", "-d", db, sql, "--json"])
        .output()
        .expect("tidepool query");
    if !out.status.success() {
        return None; // the table does not exist yet
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until `sql` returns at least `n` rows; returns the rows.
fn wait_rows(d: &TestDaemon, db: &str, sql: &str, n: usize) -> Vec<serde_json::Value> {
    wait_for(&format!("{n} rows of {sql}"), || {
        let v = query(d, db, sql)?;
        let rows = v["rows"].as_array()?.clone();
        (rows.len() >= n).then_some(rows)
    })
}

fn assert_postback_ok(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"{}");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn the_mbed_postback_request_lands_in_the_store_over_tcp() {
    let d = TestDaemon::start(&keyed(""));
    let addr = d.addr(0);
    let r = send_raw(
        addr,
        &mbed_request(&addr.to_string(), "test_database", "heap_info", KEY, HEAP),
    );
    assert_postback_ok(&r);
    let rows = wait_rows(
        &d,
        "test_database",
        "select current_size, alloc_cnt, time from heap_info",
        1,
    );
    assert_eq!(rows[0][0], 12345);
    assert_eq!(rows[0][1], 42);
    assert!(rows[0][2].as_i64().is_some_and(|t| t > 1_700_000_000));
}

#[test]
fn the_mbed_postback_request_lands_in_the_store_over_tls_with_the_pinned_ca() {
    let d = TestDaemon::start(&keyed(
        r#"tls = { generate = true, common_name = "127.0.0.1" }"#,
    ));
    let addr = d.addr(0);
    let cfg = crate::tls::client_config(&d.dir.join("certs/ca.pem"), &[&rustls::version::TLS12]);
    let name = ServerName::try_from("127.0.0.1".to_string()).expect("name");
    let conn = rustls::ClientConnection::new(cfg, name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, connect(addr));
    let cpu = r#"{"uptime":1234,"idle_time":1000,"sleep_time":10,"deep_sleep_time":0}"#;
    tls.write_all(&mbed_request(
        &format!("127.0.0.1:{}", addr.port()),
        "test_database",
        "cpu_info",
        KEY,
        cpu,
    ))
    .expect("TLS write");
    let r = read_response(&mut tls);
    assert_postback_ok(&r);
    // Keep-alive: a second request on the same TLS connection.
    tls.write_all(&mbed_request("x", "test_database", "cpu_info", KEY, cpu))
        .expect("TLS write");
    assert_postback_ok(&read_response(&mut tls));
    let rows = wait_rows(&d, "test_database", "select uptime from cpu_info", 2);
    assert_eq!(rows[0][0], 1234);
}

#[test]
fn wrong_or_missing_keys_are_refused_and_nothing_is_stored() {
    let d = TestDaemon::start(&keyed(""));
    let addr = d.addr(0);
    let path = "/postback/v3/event/keys_db/events";
    let r = post(
        addr,
        path,
        &[
            ("X-TD-Write-Key", "1/wrong"),
            ("Content-Type", "application/json"),
        ],
        br#"{"who":"wrong"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post(addr, path, &[], br#"{"who":"missing"}"#);
    assert_eq!(r.status, 401, "{}", r.text());
    // The key from `Authorization: TD1` and from the query string both work.
    let auth = format!("TD1 {KEY}");
    let r = post(addr, path, &[("Authorization", &auth)], br#"{"who":"td1"}"#);
    assert_postback_ok(&r);
    let q = format!("{path}?td_write_key={}", KEY.replace('/', "%2F"));
    assert_postback_ok(&post(addr, &q, &[], br#"{"who":"query"}"#));
    let rows = wait_rows(&d, "keys_db", "select who from events order by who", 2);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], "query");
    assert_eq!(rows[1][0], "td1");
    let bad = post(
        addr,
        "/postback/v3/event/Bad-DB/events",
        &[("X-TD-Write-Key", KEY)],
        b"{}",
    );
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("database name"), "{}", bad.text());
    let arr = post(addr, path, &[("X-TD-Write-Key", KEY)], b"[{}]");
    assert_eq!(arr.status, 400, "{}", arr.text());
    let (status, body) = http(d.api_addr(), "GET", "/api/status");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
    let input = v["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["type"] == "http"))
        .expect("the http input in /api/status")
        .clone();
    assert_eq!(input["auth_failures"], 2, "{input}");
    assert_eq!(input["emit_records"], 2, "{input}");
    assert!(input["rejections"]["auth"].as_u64() == Some(2), "{input}");
}

#[test]
fn fluentd_in_http_bodies_of_every_kind_are_stored() {
    let d = TestDaemon::start(&config(""));
    let addr = d.addr(0);
    let json = [("Content-Type", "application/json")];
    let ok = |r: Resp| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body.is_empty());
    };
    ok(post(
        addr,
        "/td/fl_db/objects?time=1600000000",
        &json,
        br#"{"kind":"object","n":1}"#,
    ));
    ok(post(
        addr,
        "/td/fl_db/objects",
        &json,
        br#"[{"kind":"batch","n":2,"time":1600000100},{"kind":"batch","n":3}]"#,
    ));
    let mut packed = Vec::new();
    rmpv::encode::write_value(
        &mut packed,
        &rmpv::Value::Map(vec![
            ("kind".into(), "msgpack".into()),
            ("n".into(), 4.into()),
        ]),
    )
    .expect("encode");
    ok(post(
        addr,
        "/td/fl_db/objects",
        &[("Content-Type", "application/msgpack")],
        &packed,
    ));
    ok(post(
        addr,
        "/td/fl_db/objects",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"json=%7B%22kind%22%3A%22form%22%2C%22n%22%3A5%7D",
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"kind":"gzip","n":6}"#).expect("gzip");
    let gz = gz.finish().expect("gzip");
    ok(post(
        addr,
        "/td/fl_db/objects",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gz,
    ));
    let rows = wait_rows(
        &d,
        "fl_db",
        "select n, kind, time from objects order by n",
        6,
    );
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r[1].as_str()).collect();
    assert_eq!(
        kinds,
        ["object", "batch", "batch", "msgpack", "form", "gzip"]
    );
    assert_eq!(rows[0][2], 1_600_000_000, "time parameter");
    assert_eq!(rows[1][2], 1_600_000_100, "per-record time key");
    assert!(
        rows[2][2].as_i64().is_some_and(|t| t > 1_700_000_000),
        "receive time"
    );
}

#[test]
fn bad_and_oversized_bodies_are_refused_and_nothing_is_stored() {
    let d = TestDaemon::start(&config(
        "max_body_size = \"1KiB\"\nmax_decompressed_size = \"8KiB\"",
    ));
    let addr = d.addr(0);
    let json = [("Content-Type", "application/json")];
    let r = post(addr, "/td/bad_db/events", &json, br#"{"n":1,"#);
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("400 Bad Request\n"), "{}", r.text());
    assert!(r.text().contains("invalid JSON"), "{}", r.text());
    let r = post(addr, "/td/bad_db/events", &json, br#"[{"n":1},"x"]"#);
    assert_eq!(r.status, 400, "{}", r.text());
    // Declared too large: refused before the body is read.
    let big = format!(r#"{{"n":2,"pad":"{}"}}"#, "x".repeat(2000));
    let r = post(addr, "/td/bad_db/events", &json, big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    // Chunked with no length: refused once the streamed body passes the limit.
    // (One write, so the server has read every byte when it closes: no reset.)
    let mut req = String::from(
        "POST /td/bad_db/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..3 {
        req.push_str(&format!("258\r\n{}\r\n", "x".repeat(600)));
    }
    let mut s = connect(addr);
    s.write_all(req.as_bytes()).expect("chunked request");
    let r = read_response(&mut s);
    assert_eq!(r.status, 413, "{}", r.text());
    // A gzip bomb inflating past max_decompressed_size.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 200 << 10]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 1024, "the bomb fits the body limit");
    let r = post(
        addr,
        "/td/bad_db/events",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    // The positive sign: a good request is stored, and it is the only row.
    let r = post(addr, "/td/bad_db/events", &json, br#"{"n":3}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = wait_rows(&d, "bad_db", "select n from events", 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], 3);
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let d = TestDaemon::start(&config("idle_timeout = \"1s\"\nbody_timeout = \"1s\""));
    let addr = d.addr(0);
    // Headers complete, then the body stops after one byte.
    let mut slow_body = connect(addr);
    slow_body
        .write_all(
            b"POST /td/slow_db/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .expect("head");
    // Headers that never end.
    let mut slow_head = connect(addr);
    slow_head
        .write_all(b"POST /td/slow_db/events HTTP/1.1\r\nHost: x\r\nX-Dribble: a")
        .expect("partial head");
    // Meanwhile another client is served.
    let r = post(
        addr,
        "/td/slow_db/events",
        &[("Content-Type", "application/json")],
        br#"{"n":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = read_response(&mut slow_body);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        read_to_eof(&mut slow_body).is_empty(),
        "closed after the 408"
    );
    let rest = read_to_eof(&mut slow_head);
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "closed: {}",
        String::from_utf8_lossy(&rest)
    );
    let rows = wait_rows(&d, "slow_db", "select n from events", 1);
    assert_eq!(rows.len(), 1);
}

#[test]
fn the_device_examples_https_mode_posts_like_the_mbed_library() {
    let d = TestDaemon::start(&keyed(
        r#"tls = { generate = true, common_name = "127.0.0.1" }"#,
    ));
    let device = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tidepool"))
        .parent()
        .expect("dir")
        .join("examples/device");
    if !device.exists() && skip("examples/device is not built (run `cargo test`)") {
        return;
    }
    let out = std::process::Command::new(&device)
        .current_dir(&d.dir)
        .args(["--mode", "https", "--addr", &d.addr(0).to_string()])
        .args(["--ca", "certs/ca.pem", "--write-key", KEY])
        .args(["--count", "8", "--interval-ms", "0"])
        .output()
        .expect("run device");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (table, col) in [
        ("cpu_info", "uptime"),
        ("heap_info", "current_size"),
        ("stack_info", "thread_id"),
        ("sys_info", "os_version"),
    ] {
        let rows = wait_rows(
            &d,
            "test_database",
            &format!("select {col} from {table}"),
            2,
        );
        assert!(rows[0][0].as_i64().is_some(), "{table}: {rows:?}");
    }
}

#[test]
fn reload_keeps_the_socket_and_applies_new_keys_to_new_connections() {
    let d = TestDaemon::start(&keyed(""));
    let addr = d.addr(0);
    let path = "/postback/v3/event/reload_db/events";
    // A keep-alive connection opened before the reload.
    let mut before = connect(addr);
    let request = |key: &str, n: u32| {
        let body = format!(r#"{{"n":{n}}}"#);
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-TD-Write-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    before.write_all(request(KEY, 1).as_bytes()).expect("write");
    assert_postback_ok(&read_response(&mut before));
    std::fs::write(
        d.dir.join("tidepool.toml"),
        config("write_keys = [\"2/rotated\"]"),
    )
    .expect("new config");
    d.reload_ok();
    d.wait_log("config reloaded");
    // Same port; new connections need the new key.
    let old_key = post(addr, path, &[("X-TD-Write-Key", KEY)], br#"{"n":2}"#);
    assert_eq!(old_key.status, 403, "{}", old_key.text());
    assert_postback_ok(&post(
        addr,
        path,
        &[("X-TD-Write-Key", "2/rotated")],
        br#"{"n":3}"#,
    ));
    // The connection from before keeps working (its context is the one it started with).
    before.write_all(request(KEY, 4).as_bytes()).expect("write");
    assert_postback_ok(&read_response(&mut before));
    let rows = wait_rows(&d, "reload_db", "select n from events order by n", 3);
    let ns: Vec<i64> = rows.iter().filter_map(|r| r[0].as_i64()).collect();
    assert_eq!(ns, [1, 3, 4]);
}

#[test]
fn cors_is_off_by_default_and_follows_the_allowed_origins() {
    let preflight = |addr: SocketAddr, origin: &str| {
        send_raw(
            addr,
            format!(
                "OPTIONS /app/events HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let off = TestDaemon::start(&config(""));
    assert_eq!(
        preflight(off.addr(0), "https://app.example.com").status,
        403
    );
    let on = TestDaemon::start(&config(
        "cors_allow_origins = [\"https://app.example.com\"]",
    ));
    let addr = on.addr(0);
    let r = preflight(addr, "https://app.example.com");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(preflight(addr, "https://evil.example.com").status, 403);
    let r = post(
        addr,
        "/cors/events",
        &[
            ("Origin", "https://evil.example.com"),
            ("Content-Type", "application/json"),
        ],
        br#"{"n":1}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post(
        addr,
        "/cors/events",
        &[
            ("Origin", "https://app.example.com"),
            ("Content-Type", "application/json"),
        ],
        br#"{"n":2}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}
