//! Generated certificates: verified by pinned clients, kept across restarts, renewed
//! under the same CA.

use super::*;
use crate::tls::generate::{load_ca_for_test, write_server_valid_for};
use crate::tls::names::CertName;
use crate::tls::{Generation, ensure_generated, regenerate, server_config};
use std::time::Duration;

fn server_not_after(dir: &Path) -> i64 {
    let pem = std::fs::read(dir.join(crate::tls::SERVER_CERT_FILE)).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.validity().not_after.timestamp()
}

#[tokio::test]
async fn generated_cert_verifies_for_ip_and_dns_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let tls = generated_tls(&["127.0.0.1", "localhost"]);
    let server = server_config(&tls, &dir).unwrap();
    let ca = dir.join(crate::tls::CA_CERT_FILE);

    for name in ["127.0.0.1", "localhost"] {
        let client = Client::pinned(&ca).build();
        exchange(server.clone(), client, name).await.expect_ok();
    }
    // A name the certificate does not carry is refused: the check above is real.
    let client = Client::pinned(&ca).build();
    let refused = exchange(server.clone(), client, "other.example").await;
    let err = refused.client.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn restart_reuses_byte_identical_files_and_pinned_ca_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tls = generated_tls(&["127.0.0.1"]);
    let first = ensure_generated(dir, &tls.common_names).unwrap();
    assert_eq!(first.generation, Generation::Created);
    let before = snapshot(dir);
    // A device pins the CA from the first start.
    let pinned = roots_from(&first.ca_cert);

    let second = ensure_generated(dir, &tls.common_names).unwrap();
    assert_eq!(second.generation, Generation::Reused);
    let server = server_config(&tls, dir).unwrap();
    assert_eq!(snapshot(dir), before, "a restart must not rewrite any file");

    let mut client = Client::pinned(&first.ca_cert);
    client.roots = pinned;
    exchange(server, client.build(), "127.0.0.1")
        .await
        .expect_ok();
}

#[tokio::test]
async fn changed_names_renew_server_cert_under_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ensure_generated(dir, &strings(&["127.0.0.1"])).unwrap();
    let [ca_before, ca_key_before, server_before, _] = snapshot(dir);
    let pinned = dir.join("pinned-ca.pem");
    std::fs::write(&pinned, &ca_before).unwrap();

    let tls = generated_tls(&["localhost", "127.0.0.1"]);
    let result = ensure_generated(dir, &tls.common_names).unwrap();
    assert_eq!(result.generation, Generation::RenewedServer);
    let [ca_after, ca_key_after, server_after, _] = snapshot(dir);
    assert_eq!(ca_after, ca_before);
    assert_eq!(ca_key_after, ca_key_before);
    assert_ne!(server_after, server_before);

    let server = server_config(&tls, dir).unwrap();
    let client = Client::pinned(&pinned).build();
    exchange(server, client, "localhost").await.expect_ok();
    // The new names stick: the next start reuses them.
    let again = ensure_generated(dir, &tls.common_names).unwrap();
    assert_eq!(again.generation, Generation::Reused);
}

#[tokio::test]
async fn near_expiry_server_cert_is_renewed_under_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = strings(&["127.0.0.1"]);
    ensure_generated(dir, &names).unwrap();
    let ca = load_ca_for_test(dir).unwrap();
    let parsed = [CertName::parse("127.0.0.1").unwrap()];
    write_server_valid_for(dir, &ca, &parsed, Duration::from_secs(10 * 86_400)).unwrap();
    let [ca_before, ca_key_before, short_lived, _] = snapshot(dir);
    let soon = now_secs() + 11 * 86_400;
    assert!(server_not_after(dir) < soon);

    let result = ensure_generated(dir, &names).unwrap();
    assert_eq!(result.generation, Generation::RenewedServer);
    let [ca_after, ca_key_after, renewed, _] = snapshot(dir);
    assert_eq!((ca_after, ca_key_after), (ca_before, ca_key_before));
    assert_ne!(renewed, short_lived);
    assert!(server_not_after(dir) > now_secs() + 365 * 86_400);

    let server = server_config(&generated_tls(&["127.0.0.1"]), dir).unwrap();
    let client = Client::pinned(&dir.join(crate::tls::CA_CERT_FILE)).build();
    exchange(server, client, "127.0.0.1").await.expect_ok();
}

fn now_secs() -> i64 {
    x509_parser::time::ASN1Time::now().timestamp()
}

#[test]
fn server_key_not_matching_its_cert_is_renewed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = strings(&["127.0.0.1"]);
    ensure_generated(dir, &names).unwrap();
    let stray = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    write(dir, crate::tls::SERVER_KEY_FILE, stray.serialize_pem());
    let result = ensure_generated(dir, &names).unwrap();
    assert_eq!(result.generation, Generation::RenewedServer);
    assert_ne!(
        std::fs::read_to_string(dir.join(crate::tls::SERVER_KEY_FILE)).unwrap(),
        stray.serialize_pem()
    );
}

#[test]
fn damaged_ca_is_replaced_with_everything_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = strings(&["127.0.0.1"]);
    ensure_generated(dir, &names).unwrap();
    let before = snapshot(dir);
    write(dir, crate::tls::CA_CERT_FILE, "not a certificate");
    let result = ensure_generated(dir, &names).unwrap();
    assert_eq!(result.generation, Generation::ReplacedCa);
    let after = snapshot(dir);
    for (old, new) in before.iter().zip(after.iter()) {
        assert_ne!(old, new);
    }
}

#[test]
fn regenerate_replaces_the_ca_unconditionally() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = strings(&["127.0.0.1"]);
    ensure_generated(dir, &names).unwrap();
    let [ca_before, ..] = snapshot(dir);
    let result = regenerate(dir, &names).unwrap();
    assert_eq!(result.generation, Generation::ReplacedCa);
    let [ca_after, ..] = snapshot(dir);
    assert_ne!(ca_after, ca_before);
    assert_eq!(
        ensure_generated(dir, &names).unwrap().generation,
        Generation::Reused
    );
}

#[cfg(unix)]
#[test]
fn key_files_are_owner_only_and_loosened_keys_are_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/certs");
    let names = strings(&["127.0.0.1"]);
    let files = ensure_generated(&dir, &names).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.ca_key), 0o600);
    assert_eq!(mode(&files.server_key), 0o600);
    assert_eq!(mode(&files.ca_cert), 0o644);
    assert_eq!(mode(&files.server_cert), 0o644);

    std::fs::set_permissions(&files.ca_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        ensure_generated(&dir, &names).unwrap().generation,
        Generation::Reused
    );
    assert_eq!(mode(&files.ca_key), 0o600);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn generated_cert_carries_cn_ip_and_dns_sans() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ensure_generated(dir, &strings(&["192.168.1.85", "Logs.Example.com"])).unwrap();
    let pem = std::fs::read(dir.join(crate::tls::SERVER_CERT_FILE)).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(chain.len(), 2, "server.pem holds the leaf then the CA");
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let (cn, sans) = crate::tls::generate::cert_names(&leaf);
    assert_eq!(cn.as_deref(), Some("192.168.1.85"));
    let sans: Vec<String> = sans.iter().map(ToString::to_string).collect();
    assert_eq!(sans, ["192.168.1.85", "logs.example.com"]);
    assert_eq!(
        leaf.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );
    let eku = leaf.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth);
    let (_, ca) = x509_parser::parse_x509_certificate(&chain[1]).unwrap();
    assert!(ca.is_ca());
    assert!(
        ca.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap()
            .starts_with("tidepool CA ")
    );
    let lifetime = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
    assert!(lifetime > 9 * 365 * 86_400, "CA lifetime {lifetime} s");
}

#[test]
fn empty_names_default_to_primary_ip_loopback_and_localhost() {
    let defaults = crate::tls::default_names();
    assert!(defaults.iter().any(|n| n == "127.0.0.1"), "{defaults:?}");
    assert!(defaults.iter().any(|n| n == "localhost"), "{defaults:?}");
    for name in &defaults {
        CertName::parse(name).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    ensure_generated(tmp.path(), &[]).unwrap();
    let pem = std::fs::read(tmp.path().join(crate::tls::SERVER_CERT_FILE)).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let (_, sans) = crate::tls::generate::cert_names(&leaf);
    assert!(sans.contains(&CertName::parse("127.0.0.1").unwrap()));
    assert!(sans.contains(&CertName::parse("localhost").unwrap()));
}

#[test]
fn invalid_name_is_reported_with_its_value() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ensure_generated(tmp.path(), &strings(&["not a host"])).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("\"not a host\""), "{msg}");
    assert!(msg.contains("tls.common_names"), "{msg}");
    assert!(!tmp.path().join(crate::tls::CA_CERT_FILE).exists());
}

#[test]
fn ca_not_yet_valid_by_this_clock_is_kept() {
    // A board without RTC boots with its clock behind: the CA must survive that.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "tidepool CA future");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2099, 1, 1);
    params.not_after = rcgen::date_time_ymd(2109, 1, 1);
    let ca_pem = params.self_signed(&key).unwrap().pem();
    write(dir, crate::tls::CA_CERT_FILE, &ca_pem);
    write(dir, crate::tls::CA_KEY_FILE, key.serialize_pem());

    let result = ensure_generated(dir, &strings(&["127.0.0.1"])).unwrap();
    assert_eq!(result.generation, Generation::RenewedServer);
    assert_eq!(
        std::fs::read_to_string(dir.join(crate::tls::CA_CERT_FILE)).unwrap(),
        ca_pem
    );
}
