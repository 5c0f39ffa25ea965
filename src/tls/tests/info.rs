//! `tidepool certs` output: the description and the C header for firmware.

use crate::tls::{DEFAULT_C_NAME, c_header, describe, ensure_generated};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

fn generated() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    ensure_generated(
        tmp.path(),
        &["192.168.1.85".to_string(), "localhost".to_string()],
    )
    .unwrap();
    tmp
}

fn ca_der(dir: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read(dir.join(crate::tls::CA_CERT_FILE)).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
}

#[test]
fn describe_shows_paths_fingerprints_names_and_expiry() {
    let tmp = generated();
    let text = describe(tmp.path()).unwrap();
    let fingerprint = Sha256::digest(ca_der(tmp.path()))
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(text.contains(&fingerprint), "{text}");
    assert!(
        text.contains(&tmp.path().join("ca.pem").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&tmp.path().join("server.pem").display().to_string()),
        "{text}"
    );
    assert!(text.contains("CN=tidepool CA "), "{text}");
    assert!(text.contains("CN=192.168.1.85"), "{text}");
    assert!(text.contains("192.168.1.85, localhost"), "{text}");
    assert!(text.contains("signed by:   the CA above"), "{text}");
    assert_eq!(text.matches("not after:").count(), 2, "{text}");
}

#[test]
fn describe_without_generated_files_says_how_they_appear() {
    let tmp = tempfile::tempdir().unwrap();
    let err = format!("{:#}", describe(tmp.path()).unwrap_err());
    assert!(err.contains("ca.pem"), "{err}");
    assert!(err.contains("generated"), "{err}");
}

#[test]
fn c_header_quotes_every_pem_line_and_round_trips() {
    let tmp = generated();
    let header = c_header(tmp.path(), DEFAULT_C_NAME).unwrap();
    assert!(header.starts_with("/*"), "{header}");
    assert!(header.contains("SHA-256:"), "{header}");
    assert!(header.contains("Not after:"), "{header}");
    let start = header
        .find("const char SSL_CA_PEM[] =\n    \"-----BEGIN CERTIFICATE-----\\n\"")
        .expect("array declaration");
    let body = &header[start..];
    let end = body.find(';').expect("terminating semicolon");
    assert!(
        body[..end].ends_with("\"-----END CERTIFICATE-----\\n\""),
        "{header}"
    );

    // Each PEM line is one quoted C string ending in \n; joined they are the CA again.
    let mut pem = String::new();
    for line in body[..end].lines().skip(1) {
        let quoted = line.trim();
        let inner = quoted
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix("\\n\""))
            .unwrap_or_else(|| panic!("not a quoted PEM line: {quoted}"));
        assert!(inner.len() <= 64, "{inner}");
        pem.push_str(inner);
        pem.push('\n');
    }
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(der.as_ref(), ca_der(tmp.path()).as_slice());
}

#[test]
fn c_header_takes_a_custom_name_and_rejects_non_identifiers() {
    let tmp = generated();
    let header = c_header(tmp.path(), "TIDEPOOL_CA").unwrap();
    assert!(header.contains("const char TIDEPOOL_CA[] ="), "{header}");
    assert!(header.contains("#ifndef TIDEPOOL_CA_H"), "{header}");
    for bad in ["", "9lives", "ca-pem", "a b"] {
        let err = format!("{:#}", c_header(tmp.path(), bad).unwrap_err());
        assert!(err.contains(&format!("{bad:?}")), "{err}");
    }
}
