//! What needs no server: names, quoting, COPY escaping, statement checks, and the
//! text-to-JSON conversion. The server round trips are in `tests/it/postgres.rs`.

use super::conn::{MAX_IDENT, ident, pg_name};
use super::query::{check_statement, first_word};
use super::text::{ColType, copy_cell, copy_text, text_json};
use super::writer::column_name;
use crate::store::query::QueryError;
use crate::store::record::Cell;
use std::borrow::Cow;
use tokio_postgres::types::Type;

#[test]
fn long_names_stay_distinct_and_fit() {
    assert_eq!(pg_name("cpu_info"), "cpu_info");
    let a = format!("{}a", "t".repeat(200));
    let b = format!("{}b", "t".repeat(200));
    let (pa, pb) = (pg_name(&a), pg_name(&b));
    assert_ne!(pa, pb);
    assert!(pa.len() <= MAX_IDENT && pb.len() <= MAX_IDENT);
    assert_eq!(pa, pg_name(&a), "deterministic: every aggregator agrees");
    let exact = "x".repeat(MAX_IDENT);
    assert_eq!(pg_name(&exact), exact);
    let multibyte = "é".repeat(40);
    assert!(pg_name(&multibyte).len() <= MAX_IDENT);
}

#[test]
fn identifiers_cannot_end_their_quotes() {
    assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(ident("y; drop table x"), "\"y; drop table x\"");
    assert_eq!(ident("nul\0"), "\"nul\u{FFFD}\"");
}

#[test]
fn copy_text_escapes_the_format_characters() {
    let mut buf = Vec::new();
    copy_text(&mut buf, "a\\b\tc\nd\re\0f");
    assert_eq!(String::from_utf8_lossy(&buf), "a\\\\b\\tc\\nd\\re\u{FFFD}f");
}

#[test]
fn cells_fit_their_column_or_go_to_extra() {
    let field = |cell: Cell<'_>, t: ColType| {
        let mut buf = Vec::new();
        copy_cell(&mut buf, &cell, t).then(|| String::from_utf8_lossy(&buf).into_owned())
    };
    assert_eq!(field(Cell::Int(5), ColType::Int).as_deref(), Some("5"));
    assert_eq!(field(Cell::Int(5), ColType::Float).as_deref(), Some("5"));
    assert_eq!(field(Cell::Real(2.0), ColType::Int).as_deref(), Some("2"));
    assert_eq!(field(Cell::Real(2.5), ColType::Int), None);
    assert_eq!(field(Cell::Real(1e19), ColType::Int), None);
    assert_eq!(
        field(Cell::Real(f64::NAN), ColType::Float).as_deref(),
        Some("NaN")
    );
    assert_eq!(
        field(Cell::Real(0.1), ColType::Float).as_deref(),
        Some("0.1")
    );
    assert_eq!(field(Cell::Text(Cow::Borrowed("x")), ColType::Int), None);
    assert_eq!(field(Cell::Int(7), ColType::Text).as_deref(), Some("7"));
    assert_eq!(
        field(Cell::Blob(b"hi"), ColType::Text).as_deref(),
        Some("aGk=")
    );
    assert_eq!(field(Cell::Int(1), ColType::Bool).as_deref(), Some("t"));
    assert_eq!(field(Cell::Int(2), ColType::Bool), None);
    assert_eq!(field(Cell::Null, ColType::Other).as_deref(), Some("\\N"));
    assert_eq!(field(Cell::Int(1), ColType::Other), None);
}

#[test]
fn reserved_and_unusable_keys() {
    assert_eq!(column_name("cpu").as_deref(), Some("cpu"));
    assert_eq!(column_name("TIME").as_deref(), Some("TIME_"));
    assert_eq!(column_name("ctid").as_deref(), Some("ctid_"));
    assert_eq!(column_name("xmin").as_deref(), Some("xmin_"));
    assert_eq!(column_name("_extra").as_deref(), Some("_extra_"));
    assert_eq!(column_name(""), None);
    assert_eq!(column_name("a\0b"), None);
    assert_eq!(column_name(&"k".repeat(64)), None);
}

#[test]
fn only_queries_pass_the_statement_check() {
    assert_eq!(first_word("  -- c\n /* x */ (SELECT 1)"), "SELECT");
    for ok in [
        "select 1",
        "WITH a AS (select 1) select * from a",
        "values (1)",
        "table t",
    ] {
        assert!(check_statement(ok).is_ok(), "{ok}");
    }
    for bad in [
        "insert into t values (1)",
        "drop table t",
        "set role x",
        "copy t to '/tmp/x'",
    ] {
        assert!(
            matches!(check_statement(bad), Err(QueryError::Refused(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        check_statement(" -- only\n"),
        Err(QueryError::Sql(_))
    ));
}

#[test]
fn text_answers_become_sqlite_shaped_json() {
    use serde_json::json;
    assert_eq!(text_json(Some("42"), &Type::INT8), json!(42));
    assert_eq!(text_json(Some("11"), &Type::NUMERIC), json!(11));
    assert_eq!(text_json(Some("5.50"), &Type::NUMERIC), json!(5.5));
    assert_eq!(text_json(Some("NaN"), &Type::FLOAT8), json!(null));
    assert_eq!(text_json(Some("t"), &Type::BOOL), json!(true));
    assert_eq!(text_json(Some("{\"a\":1}"), &Type::JSONB), json!({"a": 1}));
    assert_eq!(text_json(Some("\\x6869"), &Type::BYTEA), json!("aGk="));
    assert_eq!(
        text_json(Some("2024-01-01"), &Type::DATE),
        json!("2024-01-01")
    );
    assert_eq!(text_json(None, &Type::TEXT), json!(null));
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_and_bad_records_are_permanent() {
    use crate::output::ChunkId;
    use crate::store::WriteError;
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let store = super::PgStore::new("postgres://tidepool:secret@127.0.0.1:1/tp")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.target(), "tidepool@127.0.0.1:1/tp");
    let mut entry = vec![0x92];
    crate::event::EventTime { secs: 1, nanos: 0 }.encode(&mut entry);
    entry.extend_from_slice(&[0x81, 0xa1, b'a', 0x01]);
    match store
        .write_chunk("db_x", "t_x", ChunkId([1; 16]), &entry)
        .await
    {
        Err(WriteError::Retryable(e)) => {
            assert!(e.contains("127.0.0.1:1") && !e.contains("secret"), "{e}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    let truncated = entry.get(..entry.len() - 1).unwrap_or_default();
    assert!(matches!(
        store
            .write_chunk("db_x", "t_x", ChunkId([2; 16]), truncated)
            .await,
        Err(WriteError::Permanent(_))
    ));
    assert_eq!(store.stats().json()["write_errors_total"], 2);
    assert!(matches!(
        store.query("db_x", "select 1", Default::default()).await,
        Err(QueryError::Io(_))
    ));
}
