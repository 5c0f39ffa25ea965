//! API tests: the real server on 127.0.0.1:0, a hand-rolled HTTP/1.1 client.

use super::*;
use crate::output::ChunkId;
use crate::store::query::Limits;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers: head.to_string(),
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(after.get(..n).unwrap_or(after));
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], "").await
}

struct Server {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _tmp: tempfile::TempDir,
}

impl Server {
    async fn shutdown(self) {
        self.stop.cancel();
        let r = self.task.await.unwrap_or_else(|e| panic!("join: {e}"));
        assert!(r.is_ok(), "{r:?}");
    }
}

fn heap(out: &mut Vec<u8>, secs: i64, n: i64, host: &str) {
    let rec = crate::store::tests::map(&[
        ("current_size", rmpv::Value::from(n)),
        ("host", rmpv::Value::from(host)),
    ]);
    crate::store::tests::entry(out, secs, 0, &rec);
}

async fn start(token: Option<&str>, limits: Limits) -> Server {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(crate::store::store_dir(tmp.path())).unwrap_or_else(|e| panic!("{e}"));
    let now = crate::store::retention::cutoff(Duration::ZERO);
    let mut bytes = Vec::new();
    for i in 0..30 {
        heap(
            &mut bytes,
            now - 3600 * (30 - i) + 1800, // half-hour offsets: no row sits on a window edge
            i,
            if i % 3 == 0 { "a" } else { "b" },
        );
    }
    store
        .write_chunk("test_database", "heap_info", ChunkId([1; 16]), &bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut state = ApiState::new(
        store,
        Arc::new(
            || serde_json::json!({ "plugins": [{ "plugin_id": "stdout", "retry_count": 0 }] }),
        ),
        Arc::new(|| "# TYPE tidepool_frames_total counter\ntidepool_frames_total 7\n".to_string()),
    );
    *state.token.write().unwrap() = token.map(str::to_string);
    state.limits = limits;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, stop.clone()));
    Server {
        addr,
        stop,
        task,
        _tmp: tmp,
    }
}

#[tokio::test]
async fn health_status_metrics_databases_tables() {
    let s = start(None, Limits::default()).await;
    let r = get(s.addr, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let st = get(s.addr, "/api/status").await.json();
    assert_eq!(st["plugins"][0]["plugin_id"], "stdout");
    assert_eq!(st["store"]["counters"]["chunks_written_total"], 1);
    let m = get(s.addr, "/metrics").await;
    assert!(m.headers.contains("text/plain"), "{}", m.headers);
    assert!(m.body.contains("tidepool_frames_total 7\n"), "{}", m.body);
    assert!(
        m.body.contains("tidepool_store_rows_written_total 30\n"),
        "{}",
        m.body
    );
    let dbs = get(s.addr, "/api/databases").await.json();
    assert_eq!(dbs["databases"][0]["name"], "test_database");
    let t = get(s.addr, "/api/tables?database=test_database")
        .await
        .json();
    assert_eq!(t["tables"][0]["name"], "heap_info");
    assert_eq!(t["tables"][0]["rows"], 30);
    assert!(t["tables"][0]["min_time"].as_i64() < t["tables"][0]["max_time"].as_i64());
    let cols = t["tables"][0]["columns"].to_string();
    assert!(
        cols.contains("\"current_size\"") && cols.contains("INTEGER"),
        "{cols}"
    );
    for (path, param) in [
        ("/api/tables", "database"),
        ("/api/tables?database=..%2F..%2Fetc", "database"),
        ("/api/tables?database=nope", "database"),
    ] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["parameter"], param, "{path}");
    }
    let r = get(s.addr, "/nope").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("/nope")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn records_filters_and_every_bad_parameter() {
    let s = start(None, Limits::default()).await;
    let recs = |r: &Reply| r.json()["records"].as_array().cloned().unwrap_or_default();
    let base = "/api/records?database=test_database&table=heap_info";
    let all = get(s.addr, base).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let all = recs(&all);
    assert_eq!(all.len(), 30);
    assert_eq!(all[0]["current_size"], 29, "newest first");
    assert!(all[0].get("_chunk").is_none());
    let r = recs(&get(s.addr, &format!("{base}&limit=5")).await);
    assert_eq!(r.len(), 5);
    assert_eq!(r[4]["current_size"], 25);
    let r = recs(&get(s.addr, &format!("{base}&host=a")).await);
    assert_eq!(r.len(), 10);
    assert!(r.iter().all(|x| x["host"] == "a"));
    let r = recs(&get(s.addr, &format!("{base}&current_size=7")).await);
    assert_eq!(r.len(), 1);
    // Rows are an hour apart, the newest half an hour old.
    let r = recs(&get(s.addr, &format!("{base}&created_in_sec={}", 3 * 3600)).await);
    assert_eq!(r.len(), 3);
    let r = recs(&get(s.addr, &format!("{base}&created_in_days=1")).await);
    assert_eq!(r.len(), 24);
    let r = recs(&get(s.addr, &format!("{base}&created_in_days=1&host=b&limit=2")).await);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["current_size"], 29);

    let long = "x".repeat(5000);
    for (query, param) in [
        ("&limit=ten", "limit"),
        ("&limit=-3", "limit"),
        ("&created_in_days=two", "created_in_days"),
        ("&created_in_sec=1.5", "created_in_sec"),
        ("&color=red", "color"),
        (&format!("&host={long}") as &str, "host"),
    ] {
        let r = get(s.addr, &format!("{base}{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let j = r.json();
        assert_eq!(j["parameter"], param, "{query}");
        assert!(!j["error"].as_str().unwrap_or_default().is_empty());
    }
    for (path, param) in [
        ("/api/records?database=test_database&table=nope", "table"),
        ("/api/records?database=test_database", "table"),
        ("/api/records?database=nodb&table=heap_info", "database"),
        (
            "/api/records?database=%2E%2E%2Fx&table=heap_info",
            "database",
        ),
    ] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["parameter"], param, "{path}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn sql_queries_answer_json_or_csv_and_refuse_writes() {
    let s = start(
        None,
        Limits {
            max_rows: 10_000,
            timeout: Duration::from_millis(300),
        },
    )
    .await;
    let sql = "select time, current_size from heap_info order by time asc limit 2";
    let r = get(
        s.addr,
        &format!("/api/query?database=test_database&sql={}", enc(sql)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["columns"], serde_json::json!(["time", "current_size"]));
    assert_eq!(j["rows"][1][1], 1);
    let body = serde_json::json!({ "database": "test_database", "sql": "select count(*) as n from heap_info" }).to_string();
    let r = request(
        s.addr,
        "POST",
        "/api/query",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(r.json()["rows"][0][0], 30);
    let r = request(
        s.addr,
        "POST",
        "/api/query",
        &[("Content-Type", "application/json"), ("Accept", "text/csv")],
        &body,
    )
    .await;
    assert!(r.headers.contains("text/csv"), "{}", r.headers);
    assert_eq!(r.body, "n\r\n30\r\n");

    let post =
        |sql: &str| serde_json::json!({ "database": "test_database", "sql": sql }).to_string();
    for bad in [
        "delete from heap_info",
        "insert into heap_info (time, _chunk, _idx) values (1, 1, 1)",
        "attach database 'x.sqlite' as x",
        "pragma journal_mode = delete",
    ] {
        let r = request(
            s.addr,
            "POST",
            "/api/query",
            &[("Content-Type", "application/json")],
            &post(bad),
        )
        .await;
        assert_eq!(r.status, 403, "{bad}: {}", r.body);
        assert_eq!(r.json()["parameter"], "sql");
    }
    let forever =
        "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c";
    let r = request(
        s.addr,
        "POST",
        "/api/query",
        &[("Content-Type", "application/json")],
        &post(forever),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{}",
        r.body
    );
    let r = request(
        s.addr,
        "POST",
        "/api/query",
        &[("Content-Type", "application/json")],
        "{\"sql\": 5}",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("body"))
    );
    let r = get(s.addr, "/api/query?database=test_database").await;
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("sql"))
    );
    let r = get(s.addr, "/api/query?database=test_database&sql=selec").await;
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("sql"))
    );
    // Still intact after all that.
    let r = request(
        s.addr,
        "POST",
        "/api/query",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(r.json()["rows"][0][0], 30);
    s.shutdown().await;
}

#[tokio::test]
async fn the_token_guards_everything_but_healthz() {
    let token = "0123456789abcdef0123";
    let s = start(Some(token), Limits::default()).await;
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
    for path in [
        "/api/status",
        "/metrics",
        "/api/databases",
        "/api/records?table=x",
        "/api/query?sql=select%201",
    ] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["parameter"], "Authorization");
        let wrong = request(s.addr, "GET", path, &[("Authorization", "Bearer nope")], "").await;
        assert_eq!(wrong.status, 401, "{path}");
    }
    let bearer = format!("Bearer {token}");
    let r = request(
        s.addr,
        "GET",
        "/api/databases",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.shutdown().await;
}
