//! The store over TLS to a real PostgreSQL server with `ssl=on` whose
//! `pg_hba.conf` takes TLS connections only (`hostssl`, and `hostnossl ... reject`),
//! and whose certificate a CA made here signed for `localhost` and `127.0.0.1`.
//!
//! Proven: with `tls.ca`, rows land and queries run, over TLS (`pg_stat_ssl`), with
//! SCRAM channel binding, and with a client certificate where the server's `cert`
//! authentication requires one. A server certificate from another CA, one that does
//! not name the host (under `verify = "full"`), or the public CAs without `tls.ca`,
//! are refused with a message that says what to change, and nothing is stored while
//! the chunk waits in the buffer (a reload with the right CA delivers it). `verify =
//! "ca"` accepts the other name, `verify = "none"` anything (warned about);
//! `sslmode=disable` is refused by the server.

use super::server::{PgServer, ServerTls, block_on};
use super::*;
use crate::test_ca::TestCa;
use std::sync::OnceLock;
use tidepool::config::{PgTlsConfig, PgVerify};

/// The role that logs in with SCRAM (channel binding needs a password exchange).
const SCRAM_USER: &str = "tp_scram";
const SCRAM_PASSWORD: &str = "scram-secret-1";
/// The role that logs in with a client certificate (`cert` authentication: the
/// certificate's CN is the user name).
const CERT_USER: &str = "tp_cert";

/// The TLS server of this run, the PEM of the CA that signed its certificate, and
/// a client certificate and key (PEM) for [`CERT_USER`] from the same CA.
struct TlsServer {
    pg: PgServer,
    ca_pem: String,
    client: (String, String),
}

/// The TLS server shared by these tests; None when PostgreSQL is not installed.
fn shared() -> Option<&'static TlsServer> {
    static SERVER: OnceLock<Option<TlsServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let ca = TestCa::new("tidepool test PostgreSQL CA");
            let (cert_pem, key_pem) = ca.server(&["localhost", "127.0.0.1"]);
            let hba = format!(
                "local all all trust\n\
                 hostssl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
                 hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n"
            );
            let pg = PgServer::with_tls(
                false,
                &ServerTls {
                    cert_pem,
                    key_pem,
                    hba,
                    client_ca_pem: ca.pem.clone(),
                },
            )?;
            block_on(async {
                let (client, conn) =
                    tokio_postgres::connect(&pg.admin("postgres"), tokio_postgres::NoTls)
                        .await
                        .expect("connect over the socket");
                tokio::spawn(conn);
                client
                    .batch_execute(&format!(
                        "CREATE ROLE {SCRAM_USER} LOGIN SUPERUSER PASSWORD '{SCRAM_PASSWORD}'; \
                         CREATE ROLE {CERT_USER} LOGIN SUPERUSER"
                    ))
                    .await
                    .expect("create the SCRAM and certificate roles");
            });
            Some(TlsServer {
                pg,
                client: ca.client(CERT_USER),
                ca_pem: ca.pem,
            })
        })
        .as_ref()
}

/// A fresh database on the TLS server, for one test.
/// A fresh database `db` on the TLS server; returns the URL of it as the superuser
/// over TCP (no `sslmode`: the default, `prefer`).
fn database(s: &TlsServer, db: &str) -> String {
    block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&s.pg.admin("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect over the socket");
        tokio::spawn(conn);
        for sql in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            client.batch_execute(&sql).await.expect("create database");
        }
    });
    format!("postgres://postgres@127.0.0.1:{}/{db}", s.pg.port)
}

/// Names of the schemas (store databases) in `db`, seen over the socket.
fn schemas(s: &TlsServer, db: &str) -> Vec<String> {
    block_on(async {
        let (client, conn) = tokio_postgres::connect(&s.pg.admin(db), tokio_postgres::NoTls)
            .await
            .expect("connect over the socket");
        tokio::spawn(conn);
        client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                 AND nspname NOT IN ('public', 'information_schema') ORDER BY 1",
                &[],
            )
            .await
            .expect("list schemas")
            .iter()
            .map(|r| r.get(0))
            .collect()
    })
}

/// `(user, ssl, tls version)` of tidepool's open sessions on `db`, seen over the
/// socket as superuser (the store's reads run as `pg_read_all_data`, which cannot
/// see even its own session in `pg_stat_ssl`).
fn sessions(s: &TlsServer, db: &str) -> Vec<(String, bool, String)> {
    block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&s.pg.admin("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect over the socket");
        tokio::spawn(conn);
        client
            .query(
                "SELECT a.usename::text, s.ssl, coalesce(s.version, '') FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 \
                 AND a.application_name = 'tidepool' ORDER BY 1",
                &[&db],
            )
            .await
            .expect("list sessions")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    })
}

/// A PEM file in `dir`, returned as its path.
fn pem_file(dir: &std::path::Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

fn tls(ca: Option<std::path::PathBuf>, verify: PgVerify) -> PgTlsConfig {
    PgTlsConfig {
        ca,
        cert: None,
        key: None,
        passphrase: None,
        verify,
    }
}

/// One chunk of one row.
fn one_row(n: i64) -> Vec<u8> {
    entries(&[(now(), map(&[("n", n.into())]))])
}

#[test]
fn with_the_ca_rows_land_over_tls_and_queries_answer() {
    let Some(s) = shared() else {
        return;
    };
    let url = format!("{}?sslmode=require", database(s, "tp_tls_ok"));
    let tmp = tempfile::tempdir().expect("tempdir");
    // `tidepool check` reads the files: first a CA file that is not there.
    std::fs::write(
        tmp.path().join("tidepool.toml"),
        pg_config("tls = { ca = \"pg-ca.pem\" }"),
    )
    .expect("config");
    let check = tidepool_cmd(tmp.path())
        .env("TIDEPOOL_PG_URL", &url)
        .args(["-c", "tidepool.toml", "check"])
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() && err.contains("tls.ca") && err.contains("pg-ca.pem"),
        "{err}"
    );
    pem_file(tmp.path(), "pg-ca.pem", &s.ca_pem);
    let config = pg_config("retention = false\ntls = { ca = \"pg-ca.pem\" }");
    std::fs::write(tmp.path().join("tidepool.toml"), &config).expect("config");
    let check = tidepool_cmd(tmp.path())
        .env("TIDEPOOL_PG_URL", &url)
        .args(["-c", "tidepool.toml", "check"])
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let d = TestDaemon::start_in_with_env(tmp.path(), &config, &[("TIDEPOOL_PG_URL", &url)]);
    let api = d.api_addr();
    cat(&d, "td.tls_db.readings", "{\"n\":1}\n{\"n\":2}\n");
    assert_eq!(
        wait_count(api, "tls_db", "select count(*) from readings", 2),
        2
    );
    // The daemon's pooled connections (writes and the API's reads) are TLS ones,
    // as they must be: this server rejects any other.
    let (status, v) = api_query(api, "tls_db", "select max(n) from readings");
    assert_eq!((status, v["rows"][0][0].as_i64()), (200, Some(2)), "{v}");
    let open = sessions(s, "tp_tls_ok");
    assert!(!open.is_empty(), "no tidepool session seen");
    assert!(
        open.iter()
            .all(|(_, ssl, version)| *ssl && version.starts_with("TLSv1.")),
        "{open:?}"
    );
    // `tidepool query` without the API reads the same rows with the same TLS settings.
    let (ok, out, err) = cli(
        &d,
        &url,
        &[
            "query",
            "-d",
            "tls_db",
            "select sum(n) from readings",
            "--csv",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.ends_with("\r\n3\r\n"), "{out}");

    // SCRAM with tls-server-end-point channel binding, required by the URL: the
    // server checks the hash of its certificate that the client computed.
    let url = format!(
        "postgres://{SCRAM_USER}:{SCRAM_PASSWORD}@127.0.0.1:{}/tp_tls_ok?channel_binding=require",
        s.pg.port
    );
    let ca = pem_file(tmp.path(), "ca-again.pem", &s.ca_pem);
    let store = PgStore::with_tls(&url, Some(&tls(Some(ca), PgVerify::Full))).expect("store");
    block_on(async {
        let r = store
            .write_chunk("tls_db", "bound", ChunkId([1; 16]), &one_row(5))
            .await;
        assert!(r.is_ok(), "{r:?}\n{}", s.pg.log());
        assert_eq!(
            scalar(&store, "tls_db", "select session_user").await,
            SCRAM_USER
        );
        assert_eq!(scalar(&store, "tls_db", "select n from bound").await, 5);
        // The pooled connection is open while this runtime runs: TLS, as tp_scram.
        let open = std::thread::spawn(|| sessions(s, "tp_tls_ok"))
            .join()
            .expect("sessions");
        assert!(
            open.iter().any(|(user, ssl, _)| user == SCRAM_USER && *ssl),
            "{open:?}"
        );
    });
}

#[test]
fn a_client_certificate_logs_in_where_the_server_requires_one() {
    let Some(s) = shared() else {
        return;
    };
    database(s, "tp_tls_cert");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = pem_file(tmp.path(), "ca.pem", &s.ca_pem);
    let cert = pem_file(tmp.path(), "client.pem", &s.client.0);
    let key = pem_file(tmp.path(), "client.key", &s.client.1);
    let url = format!("postgres://{CERT_USER}@127.0.0.1:{}/tp_tls_cert", s.pg.port);
    let with_cert = PgTlsConfig {
        cert: Some(cert),
        key: Some(key),
        ..tls(Some(ca.clone()), PgVerify::Full)
    };
    let store = PgStore::with_tls(&url, Some(&with_cert)).expect("store");
    let without = PgStore::with_tls(&url, Some(&tls(Some(ca), PgVerify::Full))).expect("store");
    block_on(async {
        let r = without
            .write_chunk("cert_db", "t", ChunkId([1; 16]), &one_row(1))
            .await;
        let text = format!("{r:?}");
        assert!(
            text.contains("requires a valid client certificate"),
            "{text}"
        );
        let r = store
            .write_chunk("cert_db", "t", ChunkId([2; 16]), &one_row(2))
            .await;
        assert!(r.is_ok(), "{r:?}\n{}", s.pg.log());
        assert_eq!(
            scalar(&store, "cert_db", "select session_user").await,
            CERT_USER
        );
        assert_eq!(scalar(&store, "cert_db", "select sum(n) from t").await, 2);
    });
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_and_nothing_is_stored() {
    let Some(s) = shared() else {
        return;
    };
    let url = database(s, "tp_tls_other_ca");
    let tmp = tempfile::tempdir().expect("tempdir");
    pem_file(
        tmp.path(),
        "wrong-ca.pem",
        &TestCa::new("some other CA").pem,
    );
    let config = pg_config("retention = false\ntls = { ca = \"wrong-ca.pem\" }");
    let d = TestDaemon::start_in_with_env(tmp.path(), &config, &[("TIDEPOOL_PG_URL", &url)]);
    let api = d.api_addr();
    cat(&d, "td.refused_db.readings", "{\"n\":1}\n");
    // A configuration problem, not bad data: the chunk is retried (with backoff and
    // a warning each time), not dead-lettered, so fixing tls.ca delivers it.
    wait_for("a second failed write", || {
        let (_, v) = get(api, "/api/status");
        (v["store"]["counters"]["write_errors_total"].as_u64() >= Some(2)).then_some(())
    });
    let log = d.stderr();
    assert!(
        log.contains("is not signed by the CA of tls.ca")
            && log.contains("wrong-ca.pem")
            && log.contains("set tls.ca to the PEM file of the CA"),
        "{log}"
    );
    assert!(log.contains("will retry"), "{log}");
    assert_eq!(schemas(s, "tp_tls_other_ca"), Vec::<String>::new());
    let buffer = tmp.path().join("data/buffer/out");
    let queued = std::fs::read_dir(&buffer)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".chunk"))
                .count()
        })
        .unwrap_or(0);
    assert!(queued >= 1, "the chunk waits in {}", buffer.display());
    let dead = std::fs::read_dir(buffer.join("dead-letter"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    assert_eq!(dead, 0, "nothing is dead-lettered");

    // The operator fixes tls.ca and reloads: the waiting chunk is delivered.
    pem_file(tmp.path(), "right-ca.pem", &s.ca_pem);
    let fixed = pg_config("retention = false\ntls = { ca = \"right-ca.pem\" }");
    std::fs::write(tmp.path().join("tidepool.toml"), &fixed).expect("config");
    d.reload_ok();
    d.wait_log("config reloaded");
    wait_for("the waiting chunk in PostgreSQL", || {
        schemas(s, "tp_tls_other_ca")
            .contains(&"refused_db".to_string())
            .then_some(())
    });
    // The API reads through the reloaded settings too, with no restart.
    assert_eq!(
        wait_count(api, "refused_db", "select count(*) from readings", 1),
        1
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_under_verify_full_and_taken_under_verify_ca() {
    let Some(s) = shared() else {
        return;
    };
    database(s, "tp_tls_names");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = pem_file(tmp.path(), "ca.pem", &s.ca_pem);
    // Dial 127.0.0.1 but check the certificate against a name it does not carry.
    let other_name = format!(
        "postgres://postgres@db.example.net:{}/tp_tls_names?hostaddr=127.0.0.1",
        s.pg.port
    );
    let full = PgStore::with_tls(&other_name, Some(&tls(Some(ca.clone()), PgVerify::Full)))
        .expect("store");
    let only_ca =
        PgStore::with_tls(&other_name, Some(&tls(Some(ca.clone()), PgVerify::Ca))).expect("store");
    // By its own name the same CA and server are fine under verify = "full".
    let own_name = format!(
        "postgres://postgres@localhost:{}/tp_tls_names?hostaddr=127.0.0.1",
        s.pg.port
    );
    let by_name =
        PgStore::with_tls(&own_name, Some(&tls(Some(ca), PgVerify::Full))).expect("store");
    block_on(async {
        let refused = full
            .write_chunk("names_db", "t", ChunkId([1; 16]), &one_row(1))
            .await;
        let text = format!("{refused:?}");
        assert!(
            matches!(refused, Err(tidepool::store::WriteError::Retryable(_))),
            "{text}"
        );
        assert!(
            text.contains("does not name the host") && text.contains("db.example.net"),
            "{text}"
        );
        assert!(text.contains("tls.verify = \\\"ca\\\""), "{text}");
        let r = only_ca
            .write_chunk("names_db", "t", ChunkId([2; 16]), &one_row(2))
            .await;
        assert!(r.is_ok(), "{r:?}");
        let r = by_name
            .write_chunk("names_db", "t", ChunkId([3; 16]), &one_row(3))
            .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            scalar(&by_name, "names_db", "select sum(n) from t").await,
            5,
            "the refused chunk wrote nothing"
        );
    });
}

#[test]
fn without_a_ca_the_server_is_checked_against_public_cas_and_verify_none_must_be_written() {
    let Some(s) = shared() else {
        return;
    };
    let url = database(s, "tp_tls_defaults");
    // No tls table, sslmode=prefer (the default): the server offers TLS, so its
    // certificate is checked, against the public CAs; a private CA is not one.
    let default = PgStore::new(&url).expect("store");
    let require = PgStore::new(&format!("{url}?sslmode=require")).expect("store");
    // sslmode=disable: plain TCP, which this server's pg_hba.conf rejects.
    let plain = PgStore::new(&format!("{url}?sslmode=disable")).expect("store");
    block_on(async {
        for store in [&default, &require] {
            let r = store
                .write_chunk("defaults_db", "t", ChunkId([1; 16]), &one_row(1))
                .await;
            let text = format!("{r:?}");
            assert!(
                text.contains("is not signed by a public CA") && text.contains("set tls.ca"),
                "{text}"
            );
        }
        let r = plain
            .write_chunk("defaults_db", "t", ChunkId([2; 16]), &one_row(2))
            .await;
        let text = format!("{r:?}");
        assert!(
            text.contains("pg_hba.conf rejects connection") && text.contains("no encryption"),
            "{text}"
        );
    });
    assert_eq!(schemas(s, "tp_tls_defaults"), Vec::<String>::new());

    // verify = "none" is honoured only when written, and warned about at start.
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = pg_config("retention = false\ntls = { verify = \"none\" }");
    let d = TestDaemon::start_in_with_env(tmp.path(), &config, &[("TIDEPOOL_PG_URL", &url)]);
    d.wait_log("tls.verify = \"none\"");
    assert!(d.stderr().contains("WARN"), "{}", d.stderr());
    let api = d.api_addr();
    cat(&d, "td.defaults_db.unchecked", "{\"n\":7}\n");
    assert_eq!(
        wait_count(api, "defaults_db", "select count(*) from unchecked", 1),
        1
    );
}
