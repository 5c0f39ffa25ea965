//! HTTPS to the mock: certificate verification, `ca_file`, `tls_verify = false`, and
//! `http_proxy`.

use super::{chunk_of, map};
use crate::config::TlsConfig;
use crate::output::OutputError;
use crate::output::td::mock::{MOCK_APIKEY, MockTd};
use crate::output::td::{ApiKey, TdOutput, TdOutputConfig};
use rmpv::Value;

/// A mock on HTTPS with a certificate for 127.0.0.1 signed by a fresh CA; returns the
/// CA file too.
async fn tls_mock(dir: &std::path::Path) -> (MockTd, std::path::PathBuf) {
    let tls = TlsConfig {
        common_names: vec!["127.0.0.1".to_string()],
        ..TlsConfig::default()
    };
    let server = crate::tls::server_config(&tls, dir).expect("server config");
    let mock = MockTd::start_tls(server).await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    (mock, dir.join(crate::tls::CA_CERT_FILE))
}

fn config(url: &str) -> TdOutputConfig {
    let mut c = TdOutputConfig::new(ApiKey::new(MOCK_APIKEY));
    c.endpoint = url.to_string();
    c.api_endpoint = url.to_string();
    c
}

fn one() -> crate::output::Chunk {
    chunk_of(
        "test_database.cpu_info",
        0x51,
        5,
        &[map(&[("uptime", Value::from(1))])],
    )
}

#[tokio::test]
async fn an_unknown_ca_is_refused_until_ca_file_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mock, ca) = tls_mock(dir.path()).await;
    let out = TdOutput::new("td", &config(&mock.url())).expect("builds");
    match out.write(&one()).await {
        Err(OutputError::Retryable(m)) => {
            assert!(m.to_lowercase().contains("certificate"), "{m}")
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    assert!(mock.imports().is_empty());

    let mut c = config(&mock.url());
    c.ca_file = Some(ca);
    let out = TdOutput::new("td", &c).expect("builds");
    out.write(&one()).await.expect("trusted with ca_file");
    assert_eq!(mock.imports().len(), 1);
    assert_eq!(mock.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn tls_verify_false_accepts_any_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mock, _) = tls_mock(dir.path()).await;
    let mut c = config(&mock.url());
    c.tls_verify = false;
    let out = TdOutput::new("td", &c).expect("builds");
    out.write(&one()).await.expect("stored");
    assert_eq!(mock.imports().len(), 1);
}

#[test]
fn a_bad_ca_file_fails_the_build_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config("https://127.0.0.1:1");
    c.ca_file = Some(dir.path().join("missing.pem"));
    let e = TdOutput::new("td", &c).expect_err("missing").to_string();
    assert!(e.contains("missing.pem"), "{e}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    c.ca_file = Some(junk);
    let e = TdOutput::new("td", &c).expect_err("junk").to_string();
    assert!(e.contains("junk.pem"), "{e}");
}

#[tokio::test]
async fn http_proxy_carries_every_request() {
    // The mock plays the proxy: the endpoint's host does not resolve, so the import
    // arrives only if it went through http_proxy.
    let mock = MockTd::start().await.expect("mock");
    mock.add_table("test_database", "cpu_info");
    let mut c = config("http://td-endpoint.invalid");
    c.http_proxy = Some(mock.url());
    let out = TdOutput::new("td", &c).expect("builds");
    out.write(&one()).await.expect("stored through the proxy");
    assert_eq!(mock.imports().len(), 1);
}
