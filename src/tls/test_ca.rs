//! A throwaway certificate authority for tests: the unit tests use it as
//! `crate::tls::test_ca`, the integration tests include this same file (`tests/it/main.rs`),
//! so every test that needs certificates tidepool did not generate makes them one way.
// Two test crates include this file and each uses a part of it.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// A CA (ECDSA P-256, like tidepool's generated one) that issues leaves on demand.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM: what a peer that trusts this CA is configured with.
    pub pem: String,
}

impl TestCa {
    /// A self-signed root named `cn`.
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let params = ca_params(cn);
        let pem = params.self_signed(&key).expect("self-signed CA").pem();
        TestCa { params, key, pem }
    }

    /// A leaf certificate for `key`, valid for `names` (DNS names or IP addresses; the
    /// first is also the common name, "client" when there is none), with the given
    /// extended key usage; PEM.
    pub fn issue(&self, key: &KeyPair, names: &[&str], eku: ExtendedKeyUsagePurpose) -> String {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf names");
        let cn = names.first().map_or("client", String::as_str);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![eku];
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(key, &issuer).expect("sign leaf").pem()
    }

    /// A new key and a leaf for it (see [`TestCa::issue`]): (certificate PEM, key PEM).
    pub fn leaf(&self, names: &[&str], eku: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
        (self.issue(&key, names, eku), key.serialize_pem())
    }

    /// A server certificate for `names` and its key, PEM.
    pub fn server(&self, names: &[&str]) -> (String, String) {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose common name is `cn`, and its key, PEM.
    pub fn client(&self, cn: &str) -> (String, String) {
        self.leaf(&[cn], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// An intermediate CA signed by this one, and its certificate PEM.
    pub fn intermediate(&self, cn: &str) -> (TestCa, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let params = ca_params(cn);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let pem = params.signed_by(&key, &issuer).expect("sign CA").pem();
        let ca = TestCa {
            params,
            key,
            pem: pem.clone(),
        };
        (ca, pem)
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}
