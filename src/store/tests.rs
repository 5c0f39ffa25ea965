//! Store tests: real SQLite files in a temp directory.

use super::cli::{QueryFormat, render_csv, run_query};
use super::names::Naming;
use super::query::{Limits, QueryError, run};
use super::records::{MAX_LIMIT, RecordsQuery, parse_params, records};
use super::*;
use crate::event::EventTime;
use rmpv::Value;
use std::time::Duration;

/// Appends `[EventTime(secs, nanos), record]`.
pub(crate) fn entry(out: &mut Vec<u8>, secs: i64, nanos: u32, record: &Value) {
    out.push(0x92);
    EventTime { secs, nanos }.encode(out);
    rmpv::encode::write_value(out, record).unwrap_or_else(|e| panic!("encode: {e}"));
}

pub(crate) fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn heap(i: i64) -> Value {
    map(&[
        ("current_size", Value::from(1000 + i)),
        ("max_size", Value::from(2000)),
        ("total_size", Value::from(3000 + i)),
        ("reserved_size", Value::from(4000)),
        ("alloc_cnt", Value::from(10 + i)),
        ("alloc_fail_cnt", Value::from(0)),
    ])
}

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Store::open(store_dir(tmp.path())).unwrap_or_else(|e| panic!("open: {e}"));
    (tmp, store)
}

fn q(store: &Store, db: &str, sql: &str) -> Result<super::query::QueryResult, QueryError> {
    run(store.dir(), db, sql, Limits::default())
}

fn ok(store: &Store, db: &str, sql: &str) -> super::query::QueryResult {
    q(store, db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn write(store: &Store, db: &str, table: &str, id: ChunkId, bytes: &[u8]) -> WriteOutcome {
    store
        .write_chunk(db, table, id, bytes)
        .unwrap_or_else(|e| panic!("write: {e}"))
}

#[test]
fn chunks_become_rows_and_the_seed_queries_work_verbatim() {
    let (tmp, store) = store();
    let mut bytes = Vec::new();
    // Out of time order on purpose: the seed's query orders by time.
    for (i, t) in [(2, 1_700_000_002), (0, 1_700_000_000), (1, 1_700_000_001)] {
        entry(&mut bytes, t, 7, &heap(i));
    }
    let out = write(
        &store,
        "test_database",
        "heap_info",
        ChunkId([1; 16]),
        &bytes,
    );
    assert_eq!(out.rows, 3);
    assert_eq!(out.columns_added, 6);
    let r = ok(
        &store,
        "test_database",
        "select time, current_size, total_size, alloc_cnt, max_size, reserved_size, alloc_fail_cnt from heap_info order by time asc",
    );
    assert_eq!(
        r.columns,
        [
            "time",
            "current_size",
            "total_size",
            "alloc_cnt",
            "max_size",
            "reserved_size",
            "alloc_fail_cnt"
        ]
    );
    assert_eq!(r.rows.len(), 3);
    assert_eq!(r.rows[0][0], 1_700_000_000);
    assert_eq!(r.rows[0][1], 1000);
    assert_eq!(r.rows[2][0], 1_700_000_002);
    assert_eq!(r.rows[2][2], 3002);

    let mut cpu = Vec::new();
    entry(
        &mut cpu,
        1_700_000_000,
        0,
        &map(&[
            ("uptime", Value::from(5)),
            ("idle_time", Value::from(3)),
            ("sleep_time", Value::from(1)),
            ("deep_sleep_time", Value::from(0)),
        ]),
    );
    write(&store, "test_database", "cpu_info", ChunkId([2; 16]), &cpu);
    let text = run_query(
        tmp.path(),
        Some("test_database"),
        "select * from cpu_info",
        QueryFormat::Table,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("uptime"), "{text}");
    assert!(text.contains("deep_sleep_time"), "{text}");
    assert!(text.contains("(1 row)"), "{text}");
    let r = ok(&store, "test_database", "select * from cpu_info");
    let uptime = r
        .columns
        .iter()
        .position(|c| c == "uptime")
        .unwrap_or(usize::MAX);
    assert_eq!(r.rows[0].get(uptime), Some(&Value2::from(5)));
    assert_eq!(r.rows[0][1], 0, "time_nanos");
}

type Value2 = serde_json::Value;

#[test]
fn eventtime_nanoseconds_are_kept_and_time_is_whole_seconds() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    entry(
        &mut bytes,
        1_700_000_000,
        123_456_789,
        &map(&[("time", Value::from("ignored")), ("a", Value::from(1))]),
    );
    write(&store, "db1", "t_x", ChunkId([3; 16]), &bytes);
    let r = ok(&store, "db1", "select time, time_nanos, a from t_x");
    assert_eq!(
        r.rows,
        vec![vec![
            Value2::from(1_700_000_000),
            Value2::from(123_456_789),
            Value2::from(1)
        ]]
    );
}

#[test]
fn a_new_key_adds_a_column_typed_by_its_first_value() {
    let (_tmp, store) = store();
    let mut a = Vec::new();
    entry(&mut a, 1, 0, &map(&[("x", Value::from(1))]));
    write(&store, "dbx", "tbl", ChunkId([4; 16]), &a);
    let mut b = Vec::new();
    entry(
        &mut b,
        2,
        0,
        &map(&[
            ("x", Value::from(2)),
            ("y", Value::from(1.5)),
            ("Z", Value::from("s")),
        ]),
    );
    entry(
        &mut b,
        3,
        0,
        &map(&[
            ("z", Value::from("lower goes to Z")),
            ("b", Value::Binary(vec![1, 2])),
        ]),
    );
    let out = write(&store, "dbx", "tbl", ChunkId([5; 16]), &b);
    assert_eq!(out.columns_added, 3, "y, Z and b; z shares Z");
    let tables = catalog::tables(store.dir(), "dbx", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let cols: Vec<(String, String)> = tables[0]
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.decl_type.clone()))
        .collect();
    assert!(cols.contains(&("y".into(), "REAL".into())), "{cols:?}");
    assert!(cols.contains(&("Z".into(), "TEXT".into())), "{cols:?}");
    assert!(cols.contains(&("b".into(), "BLOB".into())), "{cols:?}");
    assert_eq!(tables[0].rows, 3);
    assert_eq!((tables[0].min_time, tables[0].max_time), (Some(1), Some(3)));
    let r = ok(&store, "dbx", "select x, y, z from tbl order by time");
    assert_eq!(
        r.rows[2],
        vec![Value2::Null, Value2::Null, Value2::from("lower goes to Z")]
    );
}

#[test]
fn arrays_and_nested_values_land_as_json() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    entry(
        &mut bytes,
        1,
        0,
        &Value::Array(vec![Value::from(1), Value::from("two")]),
    );
    entry(
        &mut bytes,
        2,
        0,
        &map(&[
            ("tags", Value::Array(vec![Value::from("a")])),
            ("m", map(&[("k", Value::from(true))])),
        ]),
    );
    write(&store, "dbj", "arr", ChunkId([6; 16]), &bytes);
    let r = ok(
        &store,
        "dbj",
        "select value, tags, m from arr order by time",
    );
    assert_eq!(r.rows[0][0], "[1,\"two\"]");
    assert_eq!(r.rows[1][1], "[\"a\"]");
    assert_eq!(r.rows[1][2], "{\"k\":true}");
}

#[test]
fn a_redelivered_chunk_is_stored_once() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    for i in 0..100 {
        entry(&mut bytes, i, 0, &heap(i));
    }
    let id = ChunkId([9; 16]);
    assert_eq!(write(&store, "dup", "heap_info", id, &bytes).rows, 100);
    let again = write(&store, "dup", "heap_info", id, &bytes);
    assert!(again.duplicate);
    assert_eq!(again.rows, 0);
    // Another handle on the same directory (a restarted daemon) sees it too.
    let other = Store::open(store.dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(write(&other, "dup", "heap_info", id, &bytes).duplicate);
    let other_id = write(&store, "dup", "heap_info", ChunkId([8; 16]), &bytes);
    assert_eq!(other_id.rows, 100);
    let r = ok(&store, "dup", "select count(*) from heap_info");
    assert_eq!(r.rows[0][0], 200);
    assert_eq!(
        store
            .stats()
            .chunks_duplicate
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn retention_purges_only_old_rows_in_batches() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    for t in 0..250 {
        entry(&mut bytes, 1000 + t, 0, &map(&[("n", Value::from(t))]));
    }
    write(&store, "ret", "events", ChunkId([10; 16]), &bytes);
    let report = store.purge(1100, 30).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.rows, 100);
    let r = ok(&store, "ret", "select min(time), count(*) from events");
    assert_eq!(r.rows[0], vec![Value2::from(1100), Value2::from(150)]);
    let report = super::retention::purge_dir(store.dir(), Duration::from_secs(3600))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.rows, 150,
        "1970 timestamps are all older than an hour"
    );
}

#[test]
fn queries_are_read_only_and_bounded() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    entry(&mut bytes, 1, 0, &map(&[("a", Value::from(1))]));
    write(&store, "ro_db", "t1", ChunkId([11; 16]), &bytes);
    for sql in [
        "insert into t1 (time) values (1)",
        "delete from t1",
        "drop table t1",
        "create table t2 (x)",
        "attach database '/tmp/x.sqlite' as x",
        "pragma journal_mode = delete",
        "pragma writable_schema = 1",
        "begin",
        "select 1; delete from t1",
    ] {
        match q(&store, "ro_db", sql) {
            Err(QueryError::Refused(m)) => assert!(!m.is_empty()),
            other => panic!("{sql}: expected refusal, got {other:?}"),
        }
    }
    assert_eq!(ok(&store, "ro_db", "select count(*) from t1").rows[0][0], 1);
    assert!(ok(&store, "ro_db", "pragma table_info(t1)").rows.len() >= 3);
    let forever =
        "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c";
    let limits = Limits {
        max_rows: 10,
        timeout: Duration::from_millis(200),
    };
    match run(store.dir(), "ro_db", forever, limits) {
        Err(QueryError::Interrupted(_)) => {}
        other => panic!("expected interruption, got {other:?}"),
    }
    let many =
        "with recursive c(x) as (select 1 union all select x + 1 from c limit 50) select x from c";
    let r = run(store.dir(), "ro_db", many, limits).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.rows.len(), 10);
    assert!(r.truncated);
    match q(&store, "ro_db", "select length(randomblob(1000000000))") {
        Err(QueryError::Sql(m)) => assert!(m.contains("too big"), "{m}"),
        other => panic!("expected a size error, got {other:?}"),
    }
    assert!(matches!(
        q(&store, "../../etc/passwd", "select 1"),
        Err(QueryError::UnknownDatabase { .. })
    ));
    assert!(matches!(
        q(&store, "nope", "select 1"),
        Err(QueryError::UnknownDatabase { .. })
    ));
}

#[test]
fn hostile_tags_and_keys_stay_escaped_and_inside_the_store() {
    let (tmp, store) = store();
    let naming = Naming::default();
    let long_tag = format!("td.{}.{}", "D".repeat(400), "t".repeat(400));
    for tag in [
        "td.x.y;drop table",
        "../../etc",
        "td.\"q\".'t'",
        long_tag.as_str(),
        "td.../..",
        "td.a.sqlite_master",
    ] {
        let Ok((db, table)) = naming.resolve(tag) else {
            assert_eq!(
                tag, "td.../..",
                "only the tag with an empty table part is rejected"
            );
            continue;
        };
        let long_key = "k".repeat(300);
        let mut bytes = Vec::new();
        entry(
            &mut bytes,
            5,
            0,
            &map(&[
                ("a\"b", Value::from(1)),
                (
                    "x\"); drop table t; --",
                    Value::from("v'); drop table t; --"),
                ),
                ("_chunk", Value::from("mine")),
                (long_key.as_str(), Value::from(2)),
                ("", Value::from(3)),
            ]),
        );
        let out = write(&store, &db, &table, ChunkId([12; 16]), &bytes);
        assert_eq!(out.rows, 1, "{tag}");
        let tables = catalog::tables(store.dir(), &db, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        let t = tables
            .iter()
            .find(|t| t.name == table)
            .unwrap_or_else(|| panic!("{tag}: {tables:?}"));
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"a\"b"), "{names:?}");
        assert!(names.contains(&"_chunk_"), "{names:?}");
        assert!(names.contains(&"_extra"), "{names:?}");
        let q = RecordsQuery {
            database: db.clone(),
            table: table.clone(),
            limit: 10,
            since: None,
            filters: vec![(
                "x\"); drop table t; --".into(),
                "v'); drop table t; --".into(),
            )],
        };
        let recs =
            records(store.dir(), &q, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recs.len(), 1);
        assert_eq!(
            recs[0].get(&long_key),
            Some(&Value2::from(2)),
            "extra keys rejoin the record"
        );
        assert_eq!(recs[0].get(""), Some(&Value2::from(3)));
    }
    let root = std::fs::canonicalize(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    for e in std::fs::read_dir(store.dir()).unwrap_or_else(|e| panic!("{e}")) {
        let p = std::fs::canonicalize(e.unwrap_or_else(|e| panic!("{e}")).path())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(p.starts_with(&root), "{}", p.display());
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        assert!(name.len() <= 255, "{name}");
        assert!(
            name.ends_with(".sqlite")
                || name.ends_with(".sqlite-wal")
                || name.ends_with(".sqlite-shm"),
            "{name}"
        );
    }
    let only: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .collect();
    assert_eq!(only.len(), 1, "only the store directory under data_dir");
}

#[test]
fn records_parameters_are_checked_and_name_the_parameter() {
    let p = |pairs: &[(&str, &str)]| {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_params(&v, 1_000_000)
    };
    let ok = p(&[
        ("database", "d"),
        ("table", "t"),
        ("limit", "5"),
        ("created_in_days", "1"),
        ("created_in_sec", "60"),
        ("host", "a"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.limit, 5);
    assert_eq!(ok.since, Some(1_000_000 - 60));
    assert_eq!(ok.filters, vec![("host".to_string(), "a".to_string())]);
    assert_eq!(
        p(&[("table", "t"), ("limit", "999999")]).map(|q| q.limit),
        Ok(MAX_LIMIT)
    );
    assert_eq!(
        p(&[("table", "t")]).map(|q| q.database),
        Ok("default".to_string())
    );
    for (pairs, param) in [
        (vec![("table", "t"), ("limit", "ten")], "limit"),
        (vec![("table", "t"), ("limit", "0")], "limit"),
        (vec![("table", "t"), ("limit", "1.5")], "limit"),
        (
            vec![("table", "t"), ("created_in_days", "x")],
            "created_in_days",
        ),
        (
            vec![("table", "t"), ("created_in_days", "-1")],
            "created_in_days",
        ),
        (
            vec![("table", "t"), ("created_in_days", "999999999999999999")],
            "created_in_days",
        ),
        (
            vec![("table", "t"), ("created_in_sec", "1e3")],
            "created_in_sec",
        ),
        (vec![("limit", "1")], "table"),
        (vec![("table", "t"), ("table", "u")], "table"),
    ] {
        let e = p(&pairs)
            .err()
            .unwrap_or_else(|| panic!("{pairs:?} accepted"));
        assert_eq!(e.parameter, param, "{pairs:?}: {e}");
    }
    let long = "v".repeat(2000);
    let e = p(&[("table", "t"), ("host", &long)])
        .err()
        .unwrap_or_else(|| panic!("long accepted"));
    assert_eq!(e.parameter, "host");
}

#[test]
fn records_are_newest_first_and_filtered() {
    let (_tmp, store) = store();
    let now = retention::cutoff(Duration::ZERO);
    let mut bytes = Vec::new();
    for i in 0..20i64 {
        let host = if i % 2 == 0 { "even" } else { "odd" };
        entry(
            &mut bytes,
            now - 100 * (20 - i),
            0,
            &map(&[("host", Value::from(host)), ("n", Value::from(i))]),
        );
    }
    write(&store, "rec", "metrics", ChunkId([13; 16]), &bytes);
    let base = RecordsQuery {
        database: "rec".into(),
        table: "metrics".into(),
        limit: MAX_LIMIT,
        since: None,
        filters: vec![],
    };
    let get = |q: &RecordsQuery| {
        records(store.dir(), q, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"))
    };
    let all = get(&base);
    assert_eq!(all.len(), 20);
    assert_eq!(all[0].get("n"), Some(&Value2::from(19)));
    assert!(all[0].get("_chunk").is_none() && all[0].get("time").is_some());
    let lim = get(&RecordsQuery {
        limit: 3,
        ..base.clone()
    });
    assert_eq!(
        lim.iter().map(|r| r["n"].clone()).collect::<Vec<_>>(),
        [19, 18, 17]
    );
    let odd = get(&RecordsQuery {
        filters: vec![("host".into(), "odd".into())],
        ..base.clone()
    });
    assert_eq!(odd.len(), 10);
    let by_int = get(&RecordsQuery {
        filters: vec![("n".into(), "4".into())],
        ..base.clone()
    });
    assert_eq!(
        by_int.len(),
        1,
        "text parameter compared with an INTEGER column"
    );
    let recent = get(&RecordsQuery {
        since: Some(now - 350),
        ..base.clone()
    });
    assert_eq!(recent.len(), 3);
    for (q, param) in [
        (
            RecordsQuery {
                table: "nope".into(),
                ..base.clone()
            },
            "table",
        ),
        (
            RecordsQuery {
                database: "nodb".into(),
                ..base.clone()
            },
            "database",
        ),
        (
            RecordsQuery {
                filters: vec![("color".into(), "x".into())],
                ..base.clone()
            },
            "color",
        ),
        (
            RecordsQuery {
                filters: vec![("_chunk".into(), "1".into())],
                ..base.clone()
            },
            "_chunk",
        ),
    ] {
        match records(store.dir(), &q, Duration::from_secs(5)) {
            Err(super::records::RecordsError::Param(e)) => assert_eq!(e.parameter, param),
            other => panic!("{q:?}: {other:?}"),
        }
    }
}

#[test]
fn csv_quotes_what_needs_quoting() {
    let r = super::query::QueryResult {
        columns: vec!["a".into(), "b,c".into()],
        rows: vec![vec![Value2::from("x\"y"), Value2::Null]],
        truncated: false,
    };
    assert_eq!(render_csv(&r), "a,\"b,c\"\r\n\"x\"\"y\",\r\n");
}

#[test]
fn the_files_of_a_stopped_daemon_can_be_queried() {
    let (tmp, store) = store();
    let mut bytes = Vec::new();
    entry(&mut bytes, 1, 0, &heap(1));
    write(
        &store,
        "test_database",
        "heap_info",
        ChunkId([14; 16]),
        &bytes,
    );
    // Dropping the last handle closes the writer, which checkpoints and removes the WAL.
    drop(store);
    let text = run_query(
        tmp.path(),
        Some("test_database"),
        "select count(*) as n from heap_info",
        QueryFormat::Json,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        text,
        "{\"columns\":[\"n\"],\"rows\":[[1]],\"truncated\":false}\n"
    );
    let e = run_query(tmp.path(), None, "select 1", QueryFormat::Table)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("unknown database \"default\"") && e.contains("test_database"),
        "{e}"
    );
}

#[test]
fn keys_named_like_store_or_rowid_columns_get_their_own_column() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    for t in [100, 200] {
        entry(
            &mut bytes,
            t,
            0,
            &map(&[
                ("Time", Value::from("user time")),
                ("rowid", Value::from(-t)),
                ("OID", Value::from(1)),
                ("_IDX", Value::from(2)),
            ]),
        );
    }
    write(&store, "resv", "t_r", ChunkId([15; 16]), &bytes);
    let r = ok(
        &store,
        "resv",
        "select time, Time_, rowid_, OID_, _IDX_ from t_r order by time",
    );
    assert_eq!(
        r.rows[0],
        vec![
            Value2::from(100),
            Value2::from("user time"),
            Value2::from(-100),
            Value2::from(1),
            Value2::from(2),
        ]
    );
    // Retention and records still use the real rowid.
    assert_eq!(store.purge(150, 10).map(|p| p.rows).unwrap_or_default(), 1);
    assert_eq!(
        ok(&store, "resv", "select time from t_r").rows,
        vec![vec![Value2::from(200)]]
    );
}

#[test]
fn concurrent_writers_and_readers_share_a_database() {
    let (_tmp, store) = store();
    let chunk = |k: u8| {
        let mut bytes = Vec::new();
        for i in 0..100 {
            entry(&mut bytes, i64::from(k) * 1000 + i, 0, &heap(i));
        }
        bytes
    };
    let first = chunk(0);
    write(&store, "conc", "heap_info", ChunkId([0; 16]), &first);
    std::thread::scope(|s| {
        for w in 0..2u8 {
            let store = store.clone();
            s.spawn(move || {
                for k in 1..=20u8 {
                    let mut id = [w; 16];
                    id[15] = k;
                    let out = store
                        .write_chunk("conc", "heap_info", ChunkId(id), &chunk(k))
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(out.rows, 100);
                }
            });
        }
        let dir = store.dir().to_path_buf();
        s.spawn(move || {
            for _ in 0..20 {
                let r = run(
                    &dir,
                    "conc",
                    "select count(*) from heap_info",
                    Limits::default(),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                let n = r.rows[0][0].as_i64().unwrap_or_default();
                assert!(
                    n >= 100 && n % 100 == 0,
                    "a reader sees whole chunks only: {n}"
                );
            }
        });
    });
    assert_eq!(
        ok(&store, "conc", "select count(*) from heap_info").rows[0][0],
        4100
    );
}

#[test]
fn select_star_shows_only_data_and_the_ledger_stays_hidden() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    entry(&mut bytes, 5, 0, &map(&[("a", Value::from(1))]));
    write(&store, "plain", "t", ChunkId([21; 16]), &bytes);
    let r = ok(&store, "plain", "select * from t");
    assert_eq!(r.columns, vec!["time", "time_nanos", "a"]);
    let tables = super::catalog::tables(store.dir(), "plain", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["t"]);
    let ledger = ok(&store, "plain", "select tbl, rows from \"#chunks\"");
    assert_eq!(ledger.rows, vec![vec![Value2::from("t"), Value2::from(1)]]);
}

#[test]
fn a_table_from_before_the_ledger_keeps_working_and_deduplicating() {
    let (_tmp, store) = store();
    let path = store.db_path("old").unwrap_or_else(|| panic!("valid name"));
    let id = ChunkId([22; 16]);
    let key = super::writer::chunk_key(id);
    {
        let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(&format!(
            "CREATE TABLE t (time INTEGER NOT NULL, time_nanos INTEGER NOT NULL DEFAULT 0, \
             _chunk INTEGER NOT NULL, _idx INTEGER NOT NULL, a INTEGER, UNIQUE (_chunk, _idx));\
             INSERT INTO t VALUES (1, 0, {key}, 0, 10);"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut bytes = Vec::new();
    entry(&mut bytes, 1, 0, &map(&[("a", Value::from(10))]));
    assert!(write(&store, "old", "t", id, &bytes).duplicate);
    let fresh = write(&store, "old", "t", ChunkId([23; 16]), &bytes);
    assert_eq!(fresh.rows, 1);
    let r = ok(
        &store,
        "old",
        "select count(*), count(distinct _chunk) from t",
    );
    assert_eq!(r.rows[0], vec![Value2::from(2), Value2::from(2)]);
}

#[test]
fn the_ledger_forgets_only_ids_older_than_a_week_and_the_retention() {
    let (_tmp, store) = store();
    let mut bytes = Vec::new();
    entry(&mut bytes, 1, 0, &map(&[("a", Value::from(1))]));
    write(&store, "led", "t", ChunkId([24; 16]), &bytes);
    write(&store, "led", "t", ChunkId([25; 16]), &bytes);
    let path = store.db_path("led").unwrap_or_else(|| panic!("valid name"));
    let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let old = super::retention::cutoff(Duration::from_secs(8 * 24 * 3600));
    let key = super::writer::chunk_key(ChunkId([24; 16]));
    conn.execute(
        "UPDATE \"#chunks\" SET stored_at = ?1 WHERE chunk = ?2",
        rusqlite::params![old, key],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A one-hour retention: the ledger still keeps a week, so only the 8-day-old id goes.
    let report = store.purge(super::retention::cutoff(Duration::from_secs(3600)), 10);
    assert!(report.is_ok(), "{report:?}");
    let left = ok(&store, "led", "select chunk from \"#chunks\"");
    assert_eq!(
        left.rows,
        vec![vec![Value2::from(super::writer::chunk_key(ChunkId(
            [25; 16]
        )))]]
    );
}
