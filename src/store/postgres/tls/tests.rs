//! The connector without a PostgreSQL server: handshakes over an in-memory pipe
//! with a rustls server (what is accepted, what is refused and why), channel-binding
//! hashes, and files that do not load. The real server is in `tests/it/postgres/tls.rs`.

use super::{PgTls, PgTlsStream, end_point_hash};
use crate::config::{PgTlsConfig, PgVerify};
use crate::tls::test_ca::TestCa;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::DuplexStream;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

/// What these tests need of a test CA: a rustls server it certified, its PEM on disk.
trait PgTestCa {
    /// A rustls server config with a certificate for `localhost` this CA signed,
    /// and that certificate's DER.
    fn rustls_server(&self) -> (Arc<rustls::ServerConfig>, Vec<u8>);
    /// The CA certificate written to `dir/name`.
    fn file(&self, dir: &Path, name: &str) -> PathBuf;
}

impl PgTestCa for TestCa {
    fn rustls_server(&self) -> (Arc<rustls::ServerConfig>, Vec<u8>) {
        let (cert_pem, key_pem) = self.server(&["localhost"]);
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert");
        let der = cert.to_vec();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        (Arc::new(config), der)
    }

    fn file(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }
}

fn tls(ca: Option<PathBuf>, verify: PgVerify) -> PgTlsConfig {
    PgTlsConfig {
        ca,
        cert: None,
        key: None,
        passphrase: None,
        verify,
    }
}

/// A handshake of `client` (dialling `host`) with `server` over a pipe.
async fn handshake(
    mut client: PgTls,
    host: &str,
    server: Arc<rustls::ServerConfig>,
) -> Result<PgTlsStream<DuplexStream>, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connect = MakeTlsConnect::<DuplexStream>::make_tls_connect(&mut client, host)
        .map_err(|e| e.to_string())?;
    let accept = tokio_rustls::TlsAcceptor::from(server).accept(server_io);
    let (client, server) = tokio::join!(TlsConnect::connect(connect, client_io), async {
        let s = accept.await;
        // Keep the server side open until the client has read its last flight.
        tokio::task::yield_now().await;
        s
    });
    drop(server);
    client.map_err(|e| e.to_string())
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn verify_full_takes_the_named_server_of_the_ca_and_binds_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("pg CA");
    let (server, der) = ca.rustls_server();
    let client = PgTls::new(Some(&tls(
        Some(ca.file(dir.path(), "ca.pem")),
        PgVerify::Full,
    )))
    .expect("client");
    let stream = run(handshake(client, "localhost", server)).expect("handshake");
    assert_eq!(
        stream.binding,
        Some(sha2::Sha256::digest(&der).to_vec()),
        "tls-server-end-point of an ECDSA-SHA256 certificate is its SHA-256"
    );
}

#[test]
fn another_name_is_refused_under_full_and_taken_under_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("pg CA");
    let (server, _) = ca.rustls_server();
    let path = ca.file(dir.path(), "ca.pem");
    let full = PgTls::new(Some(&tls(Some(path.clone()), PgVerify::Full))).expect("client");
    let e = run(handshake(full, "db.example.net", server.clone()))
        .err()
        .expect("refused");
    assert!(
        e.contains("db.example.net") && e.contains("does not name the host"),
        "{e}"
    );
    assert!(e.contains("tls.verify = \"ca\""), "{e}");
    let only_ca = PgTls::new(Some(&tls(Some(path), PgVerify::Ca))).expect("client");
    assert!(run(handshake(only_ca, "db.example.net", server)).is_ok());
}

#[test]
fn another_ca_is_refused_even_under_verify_ca_and_none_takes_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = TestCa::new("the server's CA").rustls_server();
    let stranger = TestCa::new("some other CA").file(dir.path(), "other.pem");
    for verify in [PgVerify::Full, PgVerify::Ca] {
        let client = PgTls::new(Some(&tls(Some(stranger.clone()), verify))).expect("client");
        let e = run(handshake(client, "localhost", server.clone()))
            .err()
            .expect("refused");
        assert!(
            e.contains("is not signed by the CA of tls.ca") && e.contains("other.pem"),
            "{verify:?}: {e}"
        );
    }
    // No tls table: the public CAs, which a private CA is not one of.
    let e = run(handshake(
        PgTls::new(None).expect("client"),
        "localhost",
        server.clone(),
    ))
    .err()
    .expect("refused");
    assert!(
        e.contains("is not signed by a public CA") && e.contains("set tls.ca"),
        "{e}"
    );
    let none = PgTls::new(Some(&tls(None, PgVerify::None))).expect("client");
    assert!(run(handshake(none, "db.example.net", server)).is_ok());
}

#[test]
fn a_host_that_is_no_tls_name_is_named() {
    let (server, _) = TestCa::new("pg CA").rustls_server();
    let e = run(handshake(PgTls::new(None).expect("client"), "", server))
        .err()
        .expect("refused");
    assert!(e.contains("\"\" is not a name TLS can check"), "{e}");
}

#[test]
fn end_point_hashes_follow_the_signature_algorithm() {
    let cert = |alg: &'static rcgen::SignatureAlgorithm| {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert")
            .der()
            .to_vec()
    };
    let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        end_point_hash(&p256),
        Some(sha2::Sha256::digest(&p256).to_vec())
    );
    let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
    assert_eq!(
        end_point_hash(&p384),
        Some(sha2::Sha384::digest(&p384).to_vec())
    );
    assert_eq!(end_point_hash(&cert(&rcgen::PKCS_ED25519)), None);
    assert_eq!(end_point_hash(b"not a certificate"), None);
}

#[test]
fn files_that_do_not_load_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing-ca.pem");
    let e = PgTls::new(Some(&tls(Some(missing), PgVerify::Full)))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("tls.ca") && e.contains("missing-ca.pem"), "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").expect("write");
    let e = PgTls::new(Some(&tls(Some(empty), PgVerify::Full)))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("tls.ca") && e.contains("empty.pem"), "{e}");
    let ca = TestCa::new("pg CA");
    let mut with_client = tls(Some(ca.file(dir.path(), "ca.pem")), PgVerify::Full);
    with_client.cert = Some(dir.path().join("ca.pem"));
    with_client.key = Some(dir.path().join("no-key.pem"));
    let e = PgTls::new(Some(&with_client))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("tls.key") && e.contains("no-key.pem"), "{e}");
    let e = PgTls::new(Some(&tls(None, PgVerify::Ca)))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("needs tls.ca"), "{e}");
}
