//! Protocol versions, Mbed-like clients and client-certificate authentication.

use super::*;
use crate::tls::server_config;
use rustls::CipherSuite;

/// A server with a generated certificate for 127.0.0.1, and its CA file.
fn generated_server(dir: &Path, tls: &TlsConfig) -> (Arc<rustls::ServerConfig>, PathBuf) {
    let server = server_config(tls, dir).unwrap();
    (server, dir.join(crate::tls::CA_CERT_FILE))
}

#[tokio::test]
async fn tls12_only_and_tls13_only_clients_both_connect_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, ca) = generated_server(tmp.path(), &generated_tls(&["127.0.0.1"]));

    let tls12 = Client::pinned(&ca)
        .versions(&[&rustls::version::TLS12])
        .build();
    let got = exchange(server.clone(), tls12, "127.0.0.1")
        .await
        .expect_ok();
    assert_eq!(got.version, ProtocolVersion::TLSv1_2);

    let tls13 = Client::pinned(&ca)
        .versions(&[&rustls::version::TLS13])
        .build();
    let got = exchange(server, tls13, "127.0.0.1").await.expect_ok();
    assert_eq!(got.version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_client() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tls = generated_tls(&["127.0.0.1"]);
    tls.min_version = TlsVersion::Tls13;
    let (server, ca) = generated_server(tmp.path(), &tls);

    let tls12 = Client::pinned(&ca)
        .versions(&[&rustls::version::TLS12])
        .build();
    let err = exchange(server.clone(), tls12, "127.0.0.1")
        .await
        .expect_refused();
    assert!(err.contains("Tls12NotOfferedOrEnabled"), "{err}");
    // The same server still serves TLS 1.3.
    let tls13 = Client::pinned(&ca)
        .versions(&[&rustls::version::TLS13])
        .build();
    exchange(server, tls13, "127.0.0.1").await.expect_ok();
}

#[tokio::test]
async fn max_version_tls12_refuses_a_tls13_only_client() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tls = generated_tls(&["127.0.0.1"]);
    tls.max_version = TlsVersion::Tls12;
    let (server, ca) = generated_server(tmp.path(), &tls);

    let tls13 = Client::pinned(&ca)
        .versions(&[&rustls::version::TLS13])
        .build();
    exchange(server.clone(), tls13, "127.0.0.1")
        .await
        .expect_refused();
    let both = Client::pinned(&ca).build();
    let got = exchange(server, both, "127.0.0.1").await.expect_ok();
    assert_eq!(got.version, ProtocolVersion::TLSv1_2);
}

#[test]
fn min_version_above_max_version_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tls = generated_tls(&["127.0.0.1"]);
    tls.min_version = TlsVersion::Tls13;
    tls.max_version = TlsVersion::Tls12;
    let err = format!("{:#}", server_config(&tls, tmp.path()).unwrap_err());
    assert!(err.contains("tls.min_version"), "{err}");
    assert!(err.contains("tls.max_version"), "{err}");
}

#[tokio::test]
async fn mbed_like_ecdsa_client_connects_with_aes128_gcm_over_p256() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, ca) = generated_server(tmp.path(), &generated_tls(&["127.0.0.1"]));
    let device = Client::pinned(&ca)
        .versions(&[&rustls::version::TLS12])
        .provider(mbed_like(
            ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ))
        .build();
    let got = exchange(server, device, "127.0.0.1").await.expect_ok();
    assert_eq!(got.version, ProtocolVersion::TLSv1_2);
    assert_eq!(
        got.suite,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    assert_eq!(got.peer_chain_len, 2, "leaf and CA are sent");
}

#[tokio::test]
async fn mbed_like_rsa_client_connects_to_a_pkcs1_rsa_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = TestCa::new("test RSA CA");
    let rsa = KeyPair::from_pkcs8_pem_and_sign_algo(fixtures::RSA_PKCS8, &rcgen::PKCS_RSA_SHA256)
        .unwrap();
    let leaf = ca.issue(&rsa, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let cert = write(dir, "server.pem", &leaf);
    let key = write(dir, "server.key", fixtures::RSA_PKCS1);
    let ca_path = write(dir, "ca.pem", &ca.pem);
    let server = server_config(&file_tls(&cert, &key, None), dir).unwrap();

    let device = Client::pinned(&ca_path)
        .versions(&[&rustls::version::TLS12])
        .provider(mbed_like(
            ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ))
        .build();
    let got = exchange(server, device, "127.0.0.1").await.expect_ok();
    assert_eq!(
        got.suite,
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    );
}

#[tokio::test]
async fn whole_chain_from_the_cert_file_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = TestCa::new("test root");
    let (intermediate, intermediate_pem) = root.intermediate("test intermediate");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = intermediate.issue(&key, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let cert = write(dir, "chain.pem", format!("{leaf}{intermediate_pem}"));
    let key = write(dir, "leaf.key", key.serialize_pem());
    let root_path = write(dir, "root.pem", &root.pem);
    let server = server_config(&file_tls(&cert, &key, None), dir).unwrap();

    // The client trusts only the root, so it needs the intermediate from the server.
    let client = Client::pinned(&root_path).build();
    let got = exchange(server, client, "localhost").await.expect_ok();
    assert_eq!(got.peer_chain_len, 2);
}

/// A server requiring client certificates signed by a fresh CA, plus that CA.
fn client_auth_server(dir: &Path) -> (Arc<rustls::ServerConfig>, PathBuf, TestCa) {
    let client_ca = TestCa::new("device CA");
    let client_ca_path = write(dir, "client-ca.pem", &client_ca.pem);
    let mut tls = generated_tls(&["127.0.0.1"]);
    tls.client_ca = Some(client_ca_path);
    let certs = dir.join("certs");
    let server = server_config(&tls, &certs).unwrap();
    (server, certs.join(crate::tls::CA_CERT_FILE), client_ca)
}

fn client_identity(ca: &TestCa) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = ca.issue(&key, &["device-7"], ExtendedKeyUsagePurpose::ClientAuth);
    let chain = vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    (chain, key)
}

#[tokio::test]
async fn client_cert_from_the_configured_ca_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, server_ca, client_ca) = client_auth_server(tmp.path());
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (chain, key) = client_identity(&client_ca);
        let client = Client::pinned(&server_ca)
            .versions(&[version])
            .auth(chain, key)
            .build();
        exchange(server.clone(), client, "127.0.0.1")
            .await
            .expect_ok();
    }
}

#[tokio::test]
async fn client_cert_from_another_ca_or_none_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, server_ca, _) = client_auth_server(tmp.path());
    let stranger = TestCa::new("stranger CA");
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (chain, key) = client_identity(&stranger);
        let client = Client::pinned(&server_ca)
            .versions(&[version])
            .auth(chain, key)
            .build();
        let err = exchange(server.clone(), client, "127.0.0.1")
            .await
            .expect_refused();
        assert!(err.contains("UnknownIssuer"), "{err}");

        let anonymous = Client::pinned(&server_ca).versions(&[version]).build();
        let err = exchange(server.clone(), anonymous, "127.0.0.1")
            .await
            .expect_refused();
        assert!(err.contains("peer sent no certificates"), "{err}");
    }
}

#[test]
fn unreadable_client_ca_names_the_setting_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tls = generated_tls(&["127.0.0.1"]);
    let missing = tmp.path().join("no-such-ca.pem");
    tls.client_ca = Some(missing.clone());
    let err = format!("{:#}", server_config(&tls, tmp.path()).unwrap_err());
    assert!(err.contains("tls.client_ca"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}
