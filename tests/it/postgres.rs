//! The store on a real PostgreSQL server: events sent with `tidepool cat` become
//! rows that the seed's queries read through the API and `tidepool query`; writes
//! are idempotent and safe under concurrency; retention, refusals, time limits,
//! hostile names, and a server that goes away and comes back.
//!
//! One server (from the installed binaries, see `server`) is shared by the tests of
//! a run, each test in a database of its own; skipped with a printed reason when no
//! binaries are installed, unless `TIDEPOOL_REQUIRE_SERVICES=1`.

mod server;
mod tls;

use crate::util::*;
use server::{PgServer, block_on};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use tidepool::output::ChunkId;
use tidepool::store::postgres::PgStore;

const SEED: &str = "select time, current_size, total_size, alloc_cnt, max_size, reserved_size, alloc_fail_cnt from heap_info order by time asc";

/// A config whose store output writes to `${TIDEPOOL_PG_URL}`.
fn pg_config(store_extra: &str) -> String {
    plain_config("").replace(
        "type = \"file\"\npath = \"out/${tag}.jsonl\"\ntime_key = \"time\"",
        &format!(
            "type = \"store\"\nbackend = \"postgres\"\nurl = \"${{TIDEPOOL_PG_URL}}\"\n\
             buffer = {{ flush_interval = \"200ms\", retry_wait = \"100ms\", retry_max_interval = \"500ms\" }}\n{store_extra}"
        ),
    )
}

/// A daemon writing to `url`, in a temp dir kept with it.
fn daemon(url: &str, store_extra: &str) -> (TestDaemon, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = TestDaemon::start_in_with_env(
        tmp.path(),
        &pg_config(store_extra),
        &[("TIDEPOOL_PG_URL", url)],
    );
    (d, tmp)
}

/// Sends JSON lines with `tidepool cat` and checks they were all acknowledged.
fn cat(d: &TestDaemon, tag: &str, lines: &str) {
    let mut child = tidepool_cmd(&d.dir)
        .args(["cat", tag, "--addr", &d.addr(0).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidepool cat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write events");
    let out = child.wait_with_output().expect("cat");
    assert!(
        out.status.success(),
        "cat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tidepool query` with the config's PostgreSQL URL.
fn cli(d: &TestDaemon, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = tidepool_cmd(&d.dir)
        .env("TIDEPOOL_PG_URL", url)
        .args(["-c", "tidepool.toml"])
        .args(args)
        .output()
        .expect("tidepool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// GET on the API, answer as JSON.
fn get(api: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(api, "GET", path);
    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, v)
}

/// `/api/query` of `sql` on `db`.
fn api_query(api: SocketAddr, db: &str, sql: &str) -> (u16, serde_json::Value) {
    get(
        api,
        &format!("/api/query?database={}&sql={}", enc(db), enc(sql)),
    )
}

/// Waits until `sql` (a count) answers at least `n`.
fn wait_count(api: SocketAddr, db: &str, sql: &str, n: i64) -> i64 {
    wait_for(&format!("{n} rows from {sql}"), || {
        let (status, v) = api_query(api, db, sql);
        let got = v["rows"][0][0].as_i64().filter(|_| status == 200)?;
        (got >= n).then_some(got)
    })
}

#[test]
fn events_become_rows_that_the_seed_queries_read() {
    let Some(pg) = server::shared() else {
        return;
    };
    let url = pg.database("tp_e2e");
    let (d, _tmp) = daemon(&url, "retention = false");
    let api = d.api_addr();
    cat(
        &d,
        "td.test_database.heap_info",
        "{\"current_size\":100,\"total_size\":1000,\"alloc_cnt\":5,\"max_size\":200,\"reserved_size\":10,\"alloc_fail_cnt\":0}\n\
         {\"current_size\":110,\"total_size\":1000,\"alloc_cnt\":6,\"max_size\":200,\"reserved_size\":10,\"alloc_fail_cnt\":0}\n\
         {\"current_size\":120,\"total_size\":1000,\"alloc_cnt\":7,\"max_size\":200,\"reserved_size\":10,\"alloc_fail_cnt\":1}\n",
    );
    cat(
        &d,
        "td.test_database.cpu_info",
        "{\"cpu_idle\":97.5,\"cpu_user\":2,\"device\":\"dev-1\"}\n",
    );
    wait_count(api, "test_database", "select count(*) from heap_info", 3);
    wait_count(api, "test_database", "select count(*) from cpu_info", 1);

    // The seed's queries, verbatim, through the API and the CLI.
    let (status, v) = api_query(api, "test_database", SEED);
    assert_eq!(status, 200, "{v}");
    let cols: Vec<&str> = SEED["select ".len()..SEED.find(" from").unwrap_or(0)]
        .split(", ")
        .collect();
    assert_eq!(v["columns"], serde_json::json!(cols));
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    let times: Vec<i64> = rows.iter().filter_map(|r| r[0].as_i64()).collect();
    assert_eq!(times.len(), 3, "time is an integer: {rows:?}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let mut sizes: Vec<i64> = rows.iter().filter_map(|r| r[1].as_i64()).collect();
    sizes.sort();
    assert_eq!(sizes, [100, 110, 120]);
    let (ok, table, err) = cli(&d, &url, &["query", "-d", "test_database", SEED]);
    assert!(ok, "{err}");
    assert!(table.starts_with("time "), "{table}");
    assert!(
        table.contains("alloc_fail_cnt") && table.contains("(3 rows)"),
        "{table}"
    );
    let (ok, json, err) = cli(
        &d,
        &url,
        &[
            "query",
            "-d",
            "test_database",
            "select * from cpu_info",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        v["columns"],
        serde_json::json!(["time", "time_nanos", "cpu_idle", "cpu_user", "device"]),
        "select * shows only the data"
    );
    assert_eq!(v["rows"][0][2], 97.5);
    assert_eq!(v["rows"][0][4], "dev-1");

    // A new key adds a column, typed by its first value.
    cat(
        &d,
        "td.test_database.heap_info",
        "{\"current_size\":130,\"new_key\":\"fresh\"}\n",
    );
    wait_count(
        api,
        "test_database",
        "select count(*) from heap_info where new_key = 'fresh'",
        1,
    );
    let (status, v) = get(api, "/api/tables?database=test_database");
    assert_eq!(status, 200, "{v}");
    let heap = v["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "heap_info"))
        .expect("heap_info listed")
        .clone();
    assert_eq!(heap["rows"], 4);
    let col_type = |name: &str| {
        heap["columns"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["type"].clone())
    };
    assert_eq!(col_type("new_key"), Some("text".into()));
    assert_eq!(col_type("current_size"), Some("bigint".into()));
    assert!(heap["min_time"].as_i64().is_some());
    assert!(
        !v["tables"].to_string().contains("#chunks"),
        "the ledger is not a table of the database: {v}"
    );

    // An array record lands as JSON in `value`.
    let mut s = connect(d.addr(0));
    let rec = rmpv::Value::Array(vec![
        1.into(),
        "two".into(),
        rmpv::Value::Map(vec![("three".into(), 3.into())]),
    ]);
    s.write_all(&message_with_ack("td.test_database.arrays", &rec, "arr-1"))
        .expect("send array record");
    let want = ack_for("arr-1");
    assert_eq!(read_n(&mut s, want.len()), want);
    wait_count(api, "test_database", "select count(*) from arrays", 1);
    let (_, v) = api_query(api, "test_database", "select value from arrays");
    let text = v["rows"][0][0].as_str().expect("value is text");
    let parsed: serde_json::Value = serde_json::from_str(text).expect("value is JSON");
    assert_eq!(parsed, serde_json::json!([1, "two", {"three": 3}]));

    // A hostile tag is normalized and quoted.
    cat(&d, "td.x.y;drop table", "{\"k\":1}\n");
    wait_count(api, "x__", "select count(*) from y_drop_table", 1);
    let (status, v) = get(api, "/api/databases");
    assert_eq!(status, 200);
    let names: Vec<&str> = v["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["test_database", "x__"]);

    records_api(api);
    refusals(api);

    let (status, v) = get(api, "/api/status");
    assert_eq!(status, 200);
    assert_eq!(v["store"]["backend"], "postgres", "{v}");
    assert!(v["store"]["counters"]["rows_written_total"].as_u64() >= Some(7));
}

/// `/api/records` on PostgreSQL: newest first, filters, and every 400.
fn records_api(api: SocketAddr) {
    let base = "/api/records?database=test_database&table=heap_info";
    let (status, v) = get(api, base);
    assert_eq!(status, 200, "{v}");
    let recs = v["records"].as_array().expect("records");
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0]["current_size"], 130, "newest first: {recs:?}");
    assert!(recs[0].get("alloc_cnt").is_none(), "nulls are left out");
    assert!(recs[0].get("time_nanos").is_none());
    assert!(recs[0]["time"].as_i64().is_some());
    let (_, v) = get(api, &format!("{base}&limit=2"));
    assert_eq!(v["records"].as_array().map(Vec::len), Some(2));
    let (_, v) = get(api, &format!("{base}&current_size=110"));
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["records"][0]["alloc_cnt"], 6);
    let (_, v) = get(api, &format!("{base}&new_key=fresh&created_in_sec=3600"));
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = get(api, &format!("{base}&current_size=abc"));
    assert_eq!(
        v["records"],
        serde_json::json!([]),
        "a non-number matches nothing"
    );
    let (_, v) = get(api, &format!("{base}&created_in_days=1"));
    assert_eq!(v["records"].as_array().map(Vec::len), Some(4));
    let long = "x".repeat(1025);
    for (query, parameter) in [
        (format!("{base}&limit=x"), "limit"),
        (format!("{base}&limit=0"), "limit"),
        (format!("{base}&created_in_days=-1"), "created_in_days"),
        (format!("{base}&created_in_sec=soon"), "created_in_sec"),
        (format!("{base}&nope=1"), "nope"),
        (format!("{base}&device={long}"), "device"),
        (format!("{base}&limit=1&limit=2"), "limit"),
        (
            "/api/records?database=test_database&table=nope".to_string(),
            "table",
        ),
        (
            "/api/records?database=nope_db&table=heap_info".to_string(),
            "database",
        ),
        ("/api/records?database=test_database".to_string(), "table"),
    ] {
        let (status, v) = get(api, &query);
        assert_eq!(status, 400, "{query}: {v}");
        assert_eq!(v["parameter"], parameter, "{query}: {v}");
    }
}

/// Writes, several statements and a statement that runs forever are refused or
/// interrupted; the data stays.
fn refusals(api: SocketAddr) {
    for sql in [
        "insert into heap_info (time) values (1)",
        "drop table heap_info",
        "create table t (a int)",
        "delete from heap_info",
        "select 1; drop table heap_info",
        "with d as (delete from heap_info returning *) select * from d",
    ] {
        let (status, v) = api_query(api, "test_database", sql);
        assert_eq!(status, 403, "{sql}: {v}");
        assert_eq!(v["parameter"], "sql");
    }
    // The tests connect as a superuser; reads still cannot reach server files or
    // other sessions, because they run as pg_read_all_data.
    for sql in [
        "select pg_read_file('PG_VERSION')",
        "select pg_ls_dir('.')",
        "select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid()",
    ] {
        let (status, v) = api_query(api, "test_database", sql);
        assert_ne!(status, 200, "{sql}: {v}");
        assert!(
            v["error"].as_str().is_some_and(
                |e| e.contains("permission denied") || e.contains("must be a superuser")
            ),
            "{sql}: {v}"
        );
    }
    let (status, v) = api_query(api, "test_database", "select pg_sleep(60)");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted")),
        "{v}"
    );
    let (status, v) = api_query(api, "nope_db", "select 1");
    assert_eq!((status, v["parameter"].as_str()), (400, Some("database")));
    assert_eq!(
        wait_count(api, "test_database", "select count(*) from heap_info", 4),
        4,
        "nothing was written or dropped"
    );
}

/// Entries of a chunk: `(secs, record)` pairs.
fn entries(items: &[(i64, rmpv::Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (secs, rec) in items {
        out.push(0x92);
        tidepool::event::EventTime {
            secs: *secs,
            nanos: 7,
        }
        .encode(&mut out);
        rmpv::encode::write_value(&mut out, rec).expect("encode");
    }
    out
}

fn map(pairs: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    )
}

fn now() -> i64 {
    tidepool::event::EventTime::now().secs
}

/// One value of `sql` on `db`.
async fn scalar(store: &PgStore, db: &str, sql: &str) -> serde_json::Value {
    let r = store
        .query(db, sql, Default::default())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    r.rows
        .first()
        .and_then(|row| row.first())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_chunk_written_twice_is_stored_once() {
    let Some(pg) = server::shared() else {
        return;
    };
    let store = PgStore::new(&pg.database("tp_dup")).expect("store");
    let bytes = entries(&[
        (now(), map(&[("a", 1.into())])),
        (now(), map(&[("a", 2.into())])),
    ]);
    block_on(async {
        let id = ChunkId([3; 16]);
        let first = store.write_chunk("db_one", "t_dup", id, &bytes).await;
        let first = first.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((first.rows, first.duplicate), (2, false));
        let again = store.write_chunk("db_one", "t_dup", id, &bytes).await;
        let again = again.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((again.rows, again.duplicate), (0, true));
        let other = store
            .write_chunk("db_one", "t_dup", ChunkId([4; 16]), &bytes)
            .await;
        assert_eq!(other.map(|o| o.rows).ok(), Some(2));
        assert_eq!(
            scalar(&store, "db_one", "select count(*) from t_dup").await,
            4
        );
        assert_eq!(
            scalar(&store, "db_one", "select sum(a) from t_dup").await,
            6
        );
        assert_eq!(
            scalar(&store, "db_one", "select max(time_nanos) from t_dup").await,
            7
        );

        // A value that does not fit its column's type keeps its key in `_extra`.
        let odd = entries(&[(
            now(),
            map(&[("a", "not a number".into()), ("b", 2.5.into())]),
        )]);
        let r = store
            .write_chunk("db_one", "t_dup", ChunkId([5; 16]), &odd)
            .await;
        assert!(r.is_ok(), "{r:?}");
        let q = tidepool::store::records::parse_params(
            &[
                ("database".to_string(), "db_one".to_string()),
                ("table".to_string(), "t_dup".to_string()),
                ("b".to_string(), "2.5".to_string()),
            ],
            now(),
        )
        .expect("params");
        let recs = store
            .records(&q, std::time::Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["a"], "not a number");
        assert_eq!(recs[0]["b"], 2.5);
    });
    assert_eq!(store.stats().json()["chunks_duplicate_total"], 1);
    assert_eq!(store.stats().json()["chunks_written_total"], 3);
}

#[test]
fn concurrent_aggregators_share_one_table() {
    let Some(pg) = server::shared() else {
        return;
    };
    let url = pg.database("tp_race");
    block_on(async {
        let mut tasks = Vec::new();
        for n in 0..8u8 {
            // Each its own store: its own connections, as separate aggregators.
            let store = PgStore::new(&url).expect("store");
            tasks.push(tokio::spawn(async move {
                let rec = map(&[
                    ("shared_int", i64::from(n).into()),
                    ("shared_text", format!("n{n}").into()),
                    (&format!("own_{n}"), true.into()),
                ]);
                let bytes = entries(&[(now(), rec.clone()), (now(), rec)]);
                store
                    .write_chunk("race_db", "race", ChunkId([n; 16]), &bytes)
                    .await
            }));
        }
        for t in tasks {
            let r = t.await.expect("task");
            assert!(r.is_ok(), "{r:?}");
        }
        let store = PgStore::new(&url).expect("store");
        assert_eq!(
            scalar(&store, "race_db", "select count(*) from race").await,
            16
        );
        assert_eq!(
            scalar(
                &store,
                "race_db",
                "select count(distinct shared_text) from race"
            )
            .await,
            8
        );
        assert_eq!(
            scalar(&store, "race_db", "select sum(own_3) from race").await,
            2
        );
    });
}

#[test]
fn hostile_and_long_names_are_escaped() {
    let Some(pg) = server::shared() else {
        return;
    };
    let store = PgStore::new(&pg.database("tp_hostile")).expect("store");
    let long_a = format!("{}a", "t".repeat(200));
    let long_b = format!("{}b", "t".repeat(200));
    let key_63 = "k".repeat(63);
    let key_300 = "k".repeat(300);
    let rec = map(&[
        ("a\"b", 1.into()),
        ("x'); drop table t; --", "v'\"\\\t\n\r\0end".into()),
        ("time", 5.into()),
        ("ctid", 6.into()),
        ("Time_", 7.into()),
        (&key_63, 8.into()),
        (&key_300, 9.into()),
        (
            "nested",
            map(&[("deep", rmpv::Value::Array(vec![1.into()]))]),
        ),
    ]);
    block_on(async {
        for (table, id) in [(&long_a, 1u8), (&long_b, 2)] {
            let bytes = entries(&[(now(), rec.clone())]);
            let r = store
                .write_chunk("h_db", table, ChunkId([id; 16]), &bytes)
                .await;
            assert!(r.is_ok(), "{r:?}");
        }
        for table in [&long_a, &long_b] {
            let q = tidepool::store::records::parse_params(
                &[
                    ("database".to_string(), "h_db".to_string()),
                    ("table".to_string(), table.clone()),
                ],
                now(),
            )
            .expect("params");
            let recs = store
                .records(&q, std::time::Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(recs.len(), 1, "one row per long table, not both in one");
            let r = &recs[0];
            assert_eq!(r["a\"b"], 1);
            assert_eq!(r["x'); drop table t; --"], "v'\"\\\t\n\r\u{FFFD}end");
            assert_eq!(r["ctid_"], 6);
            assert_eq!(
                r["Time_"], 7,
                "a key named like a reserved one keeps its own column"
            );
            assert_eq!(r[key_63.as_str()], 8);
            assert_eq!(
                r[key_300.as_str()],
                9,
                "a key too long for a column comes back from _extra"
            );
            assert_eq!(r["nested"], r#"{"deep":[1]}"#);
            assert!(
                r["time"].as_i64().is_some_and(|t| t != 5),
                "time is the event time"
            );
        }
        let tables = store
            .tables("h_db", Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tables.len(), 2);
        assert!(tables.iter().all(|t| t.name.len() <= 63), "{tables:?}");
        let cols: Vec<&str> = tables[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert!(
            cols.contains(&"ctid_") && cols.contains(&"_extra"),
            "{cols:?}"
        );
        assert!(
            !cols.contains(&"time_"),
            "a `time` key gives way to the event time: {cols:?}"
        );
    });
}

#[test]
fn retention_purges_only_old_rows() {
    let Some(pg) = server::shared() else {
        return;
    };
    let url = pg.database("tp_retention");
    let store = PgStore::new(&url).expect("store");
    let old = now() - 10 * 86_400;
    let bytes = entries(&[
        (old, map(&[("age", "old".into())])),
        (old, map(&[("age", "old".into())])),
        (now(), map(&[("age", "new".into())])),
    ]);
    block_on(async {
        let r = store
            .write_chunk("ret_db", "events", ChunkId([9; 16]), &bytes)
            .await;
        assert!(r.is_ok(), "{r:?}");
    });
    // `tidepool store purge` finds the PostgreSQL store through the config.
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("tidepool.toml"),
        pg_config("retention = \"5 weeks\""),
    )
    .expect("config");
    let out = tidepool_cmd(tmp.path())
        .env("TIDEPOOL_PG_URL", &url)
        .args([
            "-c",
            "tidepool.toml",
            "store",
            "purge",
            "--older-than",
            "1 day",
        ])
        .output()
        .expect("purge");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("purged 2 rows"), "{text}");
    block_on(async {
        assert_eq!(
            scalar(&store, "ret_db", "select count(*) from events").await,
            1
        );
        assert_eq!(
            scalar(&store, "ret_db", "select age from events").await,
            "new"
        );
    });
    let (ok, json, err) = {
        let out = tidepool_cmd(tmp.path())
            .env("TIDEPOOL_PG_URL", &url)
            .args([
                "-c",
                "tidepool.toml",
                "query",
                "-d",
                "ret_db",
                "select age from events",
                "--csv",
            ])
            .output()
            .expect("query");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok, "{err}");
    assert_eq!(json, "age\r\nnew\r\n");
}

#[test]
fn chunks_wait_for_a_stopped_server_and_are_delivered_after() {
    let Some(mut pg) = PgServer::new(true) else {
        return;
    };
    let url = pg.database("tp_outage");
    let (d, _tmp) = daemon(&url, "retention = false");
    let api = d.api_addr();
    cat(&d, "td.outage_db.before", "{\"n\":1}\n");
    wait_count(api, "outage_db", "select count(*) from before", 1);

    pg.stop();
    cat(&d, "td.outage_db.during", "{\"n\":2}\n{\"n\":3}\n");
    wait_for("a failed write while the server is down", || {
        let (_, v) = get(api, "/api/status");
        (v["store"]["counters"]["write_errors_total"].as_u64() >= Some(1)).then_some(())
    });
    pg.start();
    let n = wait_count(api, "outage_db", "select count(*) from during", 2);
    assert_eq!(
        n,
        2,
        "delivered once after the server came back; log: {}",
        pg.log()
    );
}
