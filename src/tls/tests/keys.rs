//! Certificate and key files supplied by the operator: every key format, encrypted
//! keys, and errors that name the file.

use super::*;
use crate::tls::server_config;
use pkcs8::PrivateKeyInfoRef;
use pkcs8::pkcs5::pbes2;

/// A server certificate for 127.0.0.1 issued for `key` by a fresh CA: (cert path, CA path).
fn cert_for(dir: &Path, key: &KeyPair) -> (PathBuf, PathBuf) {
    let ca = TestCa::new("operator CA");
    let leaf = ca.issue(key, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    (
        write(dir, "operator.pem", leaf),
        write(dir, "operator-ca.pem", &ca.pem),
    )
}

/// Serves with the given key file and proves a pinned client completes an exchange.
async fn serves_with(dir: &Path, cert: &Path, ca: &Path, key: &Path, passphrase: Option<&str>) {
    let server = server_config(&file_tls(cert, key, passphrase), dir).unwrap();
    let client = Client::pinned(ca).build();
    exchange(server, client, "127.0.0.1").await.expect_ok();
}

/// `key` as encrypted PKCS#8 PEM (PBES2: PBKDF2-SHA256 + AES-256-CBC), as
/// `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it.
fn encrypt(key: &KeyPair, passphrase: &str) -> String {
    let der = key.serialize_der();
    let info = PrivateKeyInfoRef::try_from(der.as_slice()).unwrap();
    let params =
        pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(2048, &[7; 16], [9; 16]).unwrap();
    let encrypted = info.encrypt_with_params(params, passphrase).unwrap();
    encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

fn error_of(tls: &TlsConfig, dir: &Path) -> String {
    format!("{:#}", server_config(tls, dir).unwrap_err())
}

#[tokio::test]
async fn encrypted_pkcs8_key_loads_with_the_right_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let (cert, ca) = cert_for(dir, &key);
    let key_path = write(dir, "server.key", encrypt(&key, "correct horse"));
    assert!(
        std::fs::read_to_string(&key_path)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    serves_with(dir, &cert, &ca, &key_path, Some("correct horse")).await;
}

#[test]
fn encrypted_pkcs8_key_with_a_wrong_or_missing_passphrase_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let (cert, _) = cert_for(dir, &key);
    let key_path = write(dir, "server.key", encrypt(&key, "correct horse"));
    let shown = key_path.display().to_string();

    let err = error_of(&file_tls(&cert, &key_path, Some("battery staple")), dir);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(err.contains(&shown), "{err}");

    let err = error_of(&file_tls(&cert, &key_path, None), dir);
    assert!(err.contains("is encrypted"), "{err}");
    assert!(err.contains("tls.passphrase"), "{err}");
    assert!(err.contains(&shown), "{err}");
}

#[tokio::test]
async fn openssl_encrypted_pkcs8_key_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::from_pem(fixtures::EC_PKCS8).unwrap();
    let (cert, ca) = cert_for(dir, &key);
    let key_path = write(dir, "server.key", fixtures::EC_ENCRYPTED_PKCS8);
    serves_with(dir, &cert, &ca, &key_path, Some("secret")).await;
}

#[test]
fn legacy_openssl_encrypted_key_is_refused_with_the_conversion_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::from_pem(fixtures::EC_PKCS8).unwrap();
    let (cert, _) = cert_for(dir, &key);
    let key_path = write(dir, "legacy.key", fixtures::EC_LEGACY_ENCRYPTED);
    let err = error_of(&file_tls(&cert, &key_path, Some("secret")), dir);
    assert!(err.contains("Proc-Type: 4,ENCRYPTED"), "{err}");
    assert!(
        err.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"),
        "{err}"
    );
    assert!(err.contains(&key_path.display().to_string()), "{err}");
}

#[test]
fn pkcs12_pbe_encrypted_key_is_refused_with_the_conversion_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::from_pem(fixtures::EC_PKCS8).unwrap();
    let (cert, _) = cert_for(dir, &key);
    let key_path = write(dir, "old.key", fixtures::EC_PKCS12_PBE);
    let err = error_of(&file_tls(&cert, &key_path, Some("secret")), dir);
    assert!(
        err.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"),
        "{err}"
    );
    assert!(err.contains(&key_path.display().to_string()), "{err}");
}

#[tokio::test]
async fn sec1_key_with_ec_parameters_block_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::from_pem(fixtures::EC_PKCS8).unwrap();
    let (cert, ca) = cert_for(dir, &key);
    let key_path = write(dir, "server.key", fixtures::EC_SEC1);
    serves_with(dir, &cert, &ca, &key_path, None).await;
}

#[tokio::test]
async fn pkcs1_and_pkcs8_rsa_keys_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::from_pkcs8_pem_and_sign_algo(fixtures::RSA_PKCS8, &rcgen::PKCS_RSA_SHA256)
        .unwrap();
    let (cert, ca) = cert_for(dir, &key);
    for (name, pem) in [
        ("pkcs1.key", fixtures::RSA_PKCS1),
        ("pkcs8.key", fixtures::RSA_PKCS8),
    ] {
        let key_path = write(dir, name, pem);
        serves_with(dir, &cert, &ca, &key_path, None).await;
    }
}

#[test]
fn key_not_matching_the_certificate_names_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let (cert, _) = cert_for(dir, &key);
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key_path = write(dir, "other.key", other.serialize_pem());
    let err = error_of(&file_tls(&cert, &key_path, None), dir);
    assert!(err.contains(&cert.display().to_string()), "{err}");
    assert!(err.contains(&key_path.display().to_string()), "{err}");
}

#[test]
fn missing_empty_or_half_configured_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let missing = dir.join("absent.pem");
    let key = write(
        dir,
        "k.pem",
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    );
    let err = error_of(&file_tls(&missing, &key, None), dir);
    assert!(
        err.contains("certificate file") && err.contains("absent.pem"),
        "{err}"
    );

    let empty = write(dir, "empty.pem", "no pem here\n");
    let err = error_of(&file_tls(&empty, &key, None), dir);
    assert!(
        err.contains("BEGIN CERTIFICATE") && err.contains("empty.pem"),
        "{err}"
    );

    let (cert, _) = cert_for(
        dir,
        &KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
    );
    let err = error_of(&file_tls(&cert, &empty, None), dir);
    assert!(
        err.contains("holds no private key") && err.contains("empty.pem"),
        "{err}"
    );

    let mut half = file_tls(&cert, &key, None);
    half.key = None;
    let err = error_of(&half, dir);
    assert!(err.contains("tls.key"), "{err}");
    // Nothing was generated behind the operator's back.
    assert!(!dir.join(crate::tls::CA_CERT_FILE).exists());
}

#[tokio::test]
async fn crlf_line_endings_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let (cert, ca) = cert_for(dir, &key);
    let crlf = |text: &str| text.replace('\n', "\r\n");
    let cert_text = std::fs::read_to_string(&cert).unwrap();
    let cert = write(dir, "crlf.pem", crlf(&cert_text));
    let key_path = write(dir, "crlf.key", crlf(&encrypt(&key, "pw")));
    serves_with(dir, &cert, &ca, &key_path, Some("pw")).await;
}

#[test]
fn oversized_file_is_refused_without_reading_it_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = dir.join("huge.pem");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(64 * 1024 * 1024).unwrap();
    let key = write(
        dir,
        "k.pem",
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    );
    let err = error_of(&file_tls(&big, &key, None), dir);
    assert!(
        err.contains("huge.pem") && err.contains("larger than"),
        "{err}"
    );
}
