//! Real TLS against a real daemon: generated certificates that survive restarts, TLS
//! 1.2 and 1.3 clients, and keys from files with a passphrase.

use crate::test_ca::TestCa;
use crate::util::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

fn tls_config() -> String {
    plain_config(r#"tls = { generate = true, common_name = ["127.0.0.1", "localhost"] }"#)
}

/// A client that trusts only `ca` and speaks only `versions`.
pub fn client_config(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Sends one acked message over TLS; returns the negotiated version.
pub fn send_over_tls(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    name: &str,
    tag: &str,
) -> rustls::ProtocolVersion {
    let server_name = ServerName::try_from(name.to_string()).expect("name");
    let conn = rustls::ClientConnection::new(cfg, server_name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, connect(addr));
    let rec = rmpv::Value::Map(vec![("secure".into(), true.into())]);
    tls.write_all(&message_with_ack(tag, &rec, "tls-chunk"))
        .expect("TLS write");
    let want = ack_for("tls-chunk");
    assert_eq!(read_n(&mut tls, want.len()), want, "ack over TLS");
    tls.conn.protocol_version().expect("negotiated")
}

#[test]
fn tls12_and_tls13_clients_pinned_to_the_generated_ca_get_acks() {
    let d = TestDaemon::start(&tls_config());
    let ca = d.dir.join("certs/ca.pem");
    let v12 = send_over_tls(
        d.addr(0),
        client_config(&ca, &[&rustls::version::TLS12]),
        "127.0.0.1",
        "tls.v12",
    );
    assert_eq!(v12, rustls::ProtocolVersion::TLSv1_2);
    let v13 = send_over_tls(
        d.addr(0),
        client_config(&ca, &[&rustls::version::TLS13]),
        "localhost",
        "tls.v13",
    );
    assert_eq!(v13, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(
        d.wait_records("data/out/tls.v12.jsonl", 1)[0]["secure"],
        true
    );
}

#[test]
fn generated_certificates_are_identical_after_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut first = TestDaemon::start_in(dir.path(), &tls_config());
    let read = |f: &str| std::fs::read(dir.path().join("certs").join(f)).expect("cert file");
    let (ca1, srv1) = (read("ca.pem"), read("server.pem"));
    let pinned = client_config(&dir.path().join("certs/ca.pem"), &[&rustls::version::TLS12]);
    send_over_tls(first.addr(0), pinned.clone(), "127.0.0.1", "restart.before");
    assert!(first.stop().success());

    let second = TestDaemon::start_in(dir.path(), &tls_config());
    assert_eq!(read("ca.pem"), ca1, "CA changed on restart");
    assert_eq!(
        read("server.pem"),
        srv1,
        "server certificate changed on restart"
    );
    send_over_tls(second.addr(0), pinned, "127.0.0.1", "restart.after");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(dir.path().join("certs").join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key} mode");
        }
    }
}

fn openssl_available() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The daemon's own generated certificate, with its key re-encrypted by openssl the way
/// operators' keys usually are (`cipher` as in `openssl pkcs8 -topk8 -v2 <cipher>`;
/// `des3` is what `openssl req` uses when it encrypts a new key).
fn encrypted_key_files(dir: &Path, pass: &str, cipher: &str) {
    std::fs::write(
        dir.join("gen.toml"),
        plain_config(r#"tls = { generate = true, common_name = "127.0.0.1" }"#),
    )
    .expect("config");
    let gen_out = tidepool_cmd(dir)
        .args(["-c", "gen.toml", "certs"])
        .output()
        .expect("certs");
    assert!(
        gen_out.status.success(),
        "{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            cipher,
            "-in",
            "certs/server.key",
            "-out",
            "key.pem",
        ])
        .arg("-passout")
        .arg(format!("pass:{pass}"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(dir.join("key.pem")).expect("key");
    assert!(
        key.contains("ENCRYPTED PRIVATE KEY"),
        "openssl wrote an encrypted key"
    );
}

fn file_tls_config() -> String {
    plain_config(
        r#"tls = { cert = "certs/server.pem", key = "key.pem", passphrase = "${TP_KEY_PASS}" }"#,
    )
}

#[test]
fn an_encrypted_key_loads_with_the_right_passphrase_and_is_refused_with_a_wrong_one() {
    if !openssl_available() && skip("the openssl command is not installed") {
        return;
    }
    for cipher in ["des3", "aes-256-cbc"] {
        encrypted_key_round(cipher);
    }
}

fn encrypted_key_round(cipher: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    encrypted_key_files(dir.path(), "right horse battery", cipher);
    std::fs::write(dir.path().join("tidepool.toml"), file_tls_config()).expect("config");

    let bad = tidepool_cmd(dir.path())
        .args(["-c", "tidepool.toml", "run"])
        .env("TP_KEY_PASS", "wrong")
        .output()
        .expect("run");
    assert!(!bad.status.success(), "started with a wrong passphrase");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("key.pem"), "error names the key file: {err}");

    let d = TestDaemon::start_in_with_env(
        dir.path(),
        &file_tls_config(),
        &[("TP_KEY_PASS", "right horse battery")],
    );
    let cfg = client_config(&dir.path().join("certs/ca.pem"), &[&rustls::version::TLS12]);
    send_over_tls(d.addr(0), cfg, "127.0.0.1", "file.key");
}

/// `[api] tls`: the API answers over HTTPS with the generated certificate, a client
/// pinned to the generated CA verifies it, and plain HTTP on that port gets nothing.
#[test]
fn the_api_serves_https_with_the_generated_certificate() {
    let config = plain_config("").replace(
        "[api]\nlisten = \"127.0.0.1:0\"",
        "[api]\nlisten = \"127.0.0.1:0\"\ntls = { common_name = [\"127.0.0.1\"] }",
    );
    let d = TestDaemon::start(&config);
    d.wait_log("(HTTPS)");
    let addr = d.api_addr();
    let cfg = client_config(
        &d.dir.join("certs/ca.pem"),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    );
    let name = ServerName::try_from("127.0.0.1".to_string()).expect("name");
    let conn = rustls::ClientConnection::new(cfg, name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, connect(addr));
    write!(
        tls,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut tls, &mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("ok\n"), "{reply}");
    // Plain HTTP to the TLS port is not answered as HTTP (the server may reset the
    // connection, since it closes with the request unread).
    let mut plain = connect(addr);
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut raw);
    assert!(!raw.starts_with(b"HTTP/"), "{raw:02x?}");
}

/// A device's identity from `ca`: certificate chain and key, as rustls takes them.
fn device_identity(
    ca: &TestCa,
) -> (
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let (cert_pem, key_pem) = ca.client("device-7");
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert PEM");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    (vec![cert], key)
}

/// `tls.client_ca` on a real daemon: a device whose certificate the configured CA
/// signed gets its ack; one signed by another CA, or with no certificate, is refused
/// in the handshake, counted, and nothing it sent is written.
#[test]
fn client_certificates_from_another_ca_are_refused_by_the_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let devices = TestCa::new("device CA");
    let stranger = TestCa::new("stranger CA");
    std::fs::write(tmp.path().join("device-ca.pem"), &devices.pem).expect("write CA");
    let config =
        plain_config(r#"tls = { common_name = ["127.0.0.1"], client_ca = "device-ca.pem" }"#);
    let d = TestDaemon::start_in(tmp.path(), &config);
    let server_ca = d.dir.join("certs/ca.pem");
    let with_identity = |ca: &TestCa| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&server_ca).expect("read CA") {
            roots.add(cert.expect("CA cert")).expect("add CA");
        }
        let (chain, key) = device_identity(ca);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("client auth"),
        )
    };
    send_over_tls(d.addr(0), with_identity(&devices), "127.0.0.1", "mtls.ok");
    let refused = |cfg: Arc<rustls::ClientConfig>, tag: &str| {
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let conn = rustls::ClientConnection::new(cfg, name).expect("client");
        let mut tls = rustls::StreamOwned::new(conn, connect(d.addr(0)));
        let rec = rmpv::Value::Map(vec![("secure".into(), false.into())]);
        // The write may fail (TLS 1.2 refuses in the handshake) or succeed
        // (TLS 1.3 clients learn of the refusal on the next read); no ack comes back.
        let _ = tls.write_all(&message_with_ack(tag, &rec, "x"));
        let mut buf = [0u8; 64];
        let got = std::io::Read::read(&mut tls, &mut buf);
        assert!(!matches!(got, Ok(n) if n > 0), "{tag}: the daemon answered");
    };
    refused(with_identity(&stranger), "mtls.stranger");
    refused(
        client_config(
            &server_ca,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        ),
        "mtls.anonymous",
    );
    d.wait_log("TLS handshake failed");
    // A later, accepted event proves the refused ones had their chance to be written.
    send_over_tls(
        d.addr(0),
        with_identity(&devices),
        "127.0.0.1",
        "mtls.after",
    );
    d.wait_records("data/out/mtls.after.jsonl", 1);
    assert_eq!(d.wait_records("data/out/mtls.ok.jsonl", 1).len(), 1);
    for tag in ["mtls.stranger", "mtls.anonymous"] {
        assert!(
            !d.dir.join(format!("data/out/{tag}.jsonl")).exists(),
            "{tag} was written"
        );
    }
}
