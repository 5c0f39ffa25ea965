//! The generated CA and server certificate under `certs_dir`, created once and kept.
//!
//! Devices pin the CA in firmware, so the CA must survive restarts: it is only replaced
//! when it is missing, unreadable or about to expire. The server certificate is
//! re-signed by that same CA when the configured names change or it nears expiry, which
//! devices never notice. Every replacement is logged as a warning.

use super::files::{self, Access};
use super::names::{self, CertName};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

/// File name of the generated CA certificate (what devices pin).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the generated CA's private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the generated server certificate chain: leaf, then the CA.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the generated server private key (mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// CA lifetime: long, because replacing it means reflashing every device.
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// Server certificate lifetime; renewal is silent for devices, so it can be shorter.
const SERVER_VALIDITY: Duration = Duration::from_secs(730 * 24 * 60 * 60);
/// A certificate expiring sooner than this is replaced at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Backdating absorbs clock skew between this host and devices.
const BACKDATE: Duration = DAY;

/// What [`ensure_generated`] or [`regenerate`] did, so callers can log or report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// All four files were valid and kept byte for byte.
    Reused,
    /// Nothing usable existed: a new CA and server certificate were made (first start).
    Created,
    /// The CA was kept and a new server certificate was signed by it; devices are unaffected.
    RenewedServer,
    /// The CA was replaced too: devices pinning the old CA must get the new one.
    ReplacedCa,
}

/// Where the generated files are, and what this call did to them.
#[derive(Clone, Debug)]
pub struct GeneratedCerts {
    /// The CA certificate devices pin (`ca.pem`).
    pub ca_cert: PathBuf,
    /// The CA private key (`ca.key`).
    pub ca_key: PathBuf,
    /// The server chain the TLS listener sends (`server.pem`).
    pub server_cert: PathBuf,
    /// The server private key (`server.key`).
    pub server_key: PathBuf,
    /// What happened to the files.
    pub generation: Generation,
}

impl GeneratedCerts {
    fn at(certs_dir: &Path, generation: Generation) -> GeneratedCerts {
        GeneratedCerts {
            ca_cert: certs_dir.join(CA_CERT_FILE),
            ca_key: certs_dir.join(CA_KEY_FILE),
            server_cert: certs_dir.join(SERVER_CERT_FILE),
            server_key: certs_dir.join(SERVER_KEY_FILE),
            generation,
        }
    }
}

/// Makes sure `certs_dir` holds a usable CA and a server certificate for `names`
/// (empty = [`default_names`](super::default_names)), reusing what is there.
///
/// Files are rewritten only when missing or unreadable, when a certificate expires
/// within 30 days, when the server certificate's CN/SANs differ from `names`, or when
/// a key does not match its certificate. A valid CA is always kept, so devices that
/// pinned it keep connecting. Writes are atomic and keys are mode 0600.
pub fn ensure_generated(certs_dir: &Path, names: &[String]) -> anyhow::Result<GeneratedCerts> {
    let names = names::resolve(names)?;
    let ca_problem = match load_ca(certs_dir) {
        Ok(ca) => match check_server(certs_dir, &ca, &names) {
            Ok(()) => {
                tighten_keys(certs_dir);
                return Ok(GeneratedCerts::at(certs_dir, Generation::Reused));
            }
            Err(reason) => {
                tracing::warn!(
                    certs_dir = %certs_dir.display(),
                    "renewing the generated TLS server certificate: {reason}; \
                     it is signed by the same CA, so devices need no change"
                );
                write_server(certs_dir, &ca, &names)?;
                tighten_keys(certs_dir);
                return Ok(GeneratedCerts::at(certs_dir, Generation::RenewedServer));
            }
        },
        Err(reason) => reason,
    };
    let ca_sha256 = create_all(certs_dir, &names)?;
    let generation = if ca_problem.missing {
        tracing::info!(
            certs_dir = %certs_dir.display(),
            %ca_sha256,
            "created a TLS CA and server certificate; run `tidepool certs --c-header` for a C \
             header to pin the CA in device firmware"
        );
        Generation::Created
    } else {
        tracing::warn!(
            certs_dir = %certs_dir.display(),
            %ca_sha256,
            "REPLACED the generated TLS CA: {}; devices that pinned the old CA will be \
             refused until their firmware gets the new one (`tidepool certs`)",
            ca_problem.reason
        );
        Generation::ReplacedCa
    };
    Ok(GeneratedCerts::at(certs_dir, generation))
}

/// Replaces the CA and the server certificate unconditionally (`tidepool certs` regenerate).
///
/// Devices pinning the old CA will be refused until they get the new one.
pub fn regenerate(certs_dir: &Path, names: &[String]) -> anyhow::Result<GeneratedCerts> {
    let names = names::resolve(names)?;
    let ca_sha256 = create_all(certs_dir, &names)?;
    tracing::warn!(
        certs_dir = %certs_dir.display(),
        %ca_sha256,
        "regenerated the TLS CA and server certificate on request; devices that pinned \
         the old CA must get the new one"
    );
    Ok(GeneratedCerts::at(certs_dir, Generation::ReplacedCa))
}

/// A loaded, checked CA.
pub(crate) struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
}

/// Why the CA cannot be used; `missing` means a first start rather than damage.
struct CaProblem {
    missing: bool,
    reason: String,
}

/// Loads and checks `ca.pem` + `ca.key`.
fn load_ca(dir: &Path) -> Result<Ca, CaProblem> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if !cert_path.exists() && !key_path.exists() {
        return Err(CaProblem {
            missing: true,
            reason: format!("{} does not exist", cert_path.display()),
        });
    }
    let damaged = |reason: String| CaProblem {
        missing: false,
        reason,
    };
    let cert_pem = std::fs::read_to_string(&cert_path)
        .map_err(|e| damaged(format!("cannot read {}: {e}", cert_path.display())))?;
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
        damaged(format!(
            "{} holds no PEM certificate: {e}",
            cert_path.display()
        ))
    })?;
    let key_pem = std::fs::read_to_string(&key_path)
        .map_err(|e| damaged(format!("cannot read {}: {e}", key_path.display())))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| damaged(format!("{} holds no usable key: {e}", key_path.display())))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| damaged(format!("{} is not valid X.509: {e}", cert_path.display())))?;
    if !x509.is_ca() {
        return Err(damaged(format!(
            "{} is not a CA certificate",
            cert_path.display()
        )));
    }
    if x509.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
        return Err(damaged(format!(
            "{} does not match {}",
            key_path.display(),
            cert_path.display()
        )));
    }
    expiry_problem(&x509).map_err(|e| damaged(format!("{}: {e}", cert_path.display())))?;
    Ok(Ca {
        cert_der,
        cert_pem,
        key,
    })
}

/// Checks `server.pem` + `server.key` against the CA and the wanted names.
fn check_server(dir: &Path, ca: &Ca, names: &[CertName]) -> Result<(), String> {
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    let pem = std::fs::read(&cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    let leaf = CertificateDer::from_pem_slice(&pem)
        .map_err(|e| format!("{} holds no PEM certificate: {e}", cert_path.display()))?;
    let key_pem = std::fs::read_to_string(&key_path)
        .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| format!("{} holds no usable key: {e}", key_path.display()))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("{} is not valid X.509: {e}", cert_path.display()))?;
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca.cert_der)
        .map_err(|e| format!("CA certificate is not valid X.509: {e}"))?;
    if x509.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
        return Err(format!(
            "{} does not match {}",
            key_path.display(),
            cert_path.display()
        ));
    }
    if x509.issuer() != ca_x509.subject()
        || x509.verify_signature(Some(ca_x509.public_key())).is_err()
    {
        return Err(format!(
            "{} is not signed by the current CA",
            cert_path.display()
        ));
    }
    expiry_problem(&x509)?;
    let (cn, sans) = cert_names(&x509);
    let wanted_cn = names.first().map(ToString::to_string);
    let wanted_sans: BTreeSet<CertName> = names.iter().cloned().collect();
    if cn.map(|c| c.to_ascii_lowercase()) != wanted_cn || sans != wanted_sans {
        return Err(format!(
            "configured names [{}] differ from the certificate's [{}]",
            join(names.iter()),
            join(sans.iter())
        ));
    }
    Ok(())
}

/// The certificate's CN and its IP/DNS SANs (DNS lower-cased).
pub(crate) fn cert_names(x509: &X509Certificate<'_>) -> (Option<String>, BTreeSet<CertName>) {
    let cn = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let mut sans = BTreeSet::new();
    if let Ok(Some(ext)) = x509.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    sans.insert(CertName::Dns(dns.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        sans.insert(CertName::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    (cn, sans)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(v4.into());
    }
    <[u8; 16]>::try_from(bytes).ok().map(Into::into)
}

fn join<'a>(names: impl Iterator<Item = &'a CertName>) -> String {
    names
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Err if the certificate expires within [`RENEW_BEFORE`].
///
/// A certificate that is not valid *yet* is kept: that means this host's clock is
/// behind (a board without RTC before NTP sync), and replacing the CA then would cut
/// off every device. It is only logged.
fn expiry_problem(x509: &X509Certificate<'_>) -> Result<(), String> {
    let now = ASN1Time::now().timestamp();
    let validity = x509.validity();
    if validity.not_before.timestamp() > now {
        tracing::warn!(
            not_before = %validity.not_before,
            "a generated TLS certificate is not valid before a date in the future: this \
             host's clock looks wrong; keeping the certificate (check NTP)"
        );
    }
    let horizon = now.saturating_add(i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX));
    if validity.not_after.timestamp() <= horizon {
        return Err(format!(
            "it expires {} (renewed 30 days ahead)",
            validity.not_after
        ));
    }
    Ok(())
}

/// Makes a new CA and server certificate, writes all four files, and returns the CA's
/// SHA-256 fingerprint for the log.
fn create_all(dir: &Path, names: &[CertName]) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create certificate directory {}", dir.display()))?;
    let ca = new_ca()?;
    files::write_atomic(
        &dir.join(CA_KEY_FILE),
        ca.key.serialize_pem().as_bytes(),
        Access::Private,
    )?;
    files::write_atomic(
        &dir.join(CA_CERT_FILE),
        ca.cert_pem.as_bytes(),
        Access::Public,
    )?;
    write_server(dir, &ca, names)?;
    Ok(super::info::fingerprint(&ca.cert_der))
}

/// A fresh self-signed CA: ECDSA P-256 with SHA-256, as Mbed TLS devices need.
fn new_ca() -> anyhow::Result<Ca> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("cannot generate the CA key (ECDSA P-256)")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tidepool");
    dn.push(
        DnType::CommonName,
        format!("tidepool CA {}", names::hostname()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params
        .self_signed(&key)
        .context("cannot self-sign the CA certificate")?;
    Ok(Ca {
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        key,
    })
}

/// Signs a new server certificate for `names` with `ca` and writes `server.key` and
/// `server.pem` (leaf then CA).
pub(crate) fn write_server(dir: &Path, ca: &Ca, names: &[CertName]) -> anyhow::Result<()> {
    write_server_valid_for(dir, ca, names, SERVER_VALIDITY)
}

/// [`write_server`] with a chosen lifetime; tests use a short one to exercise renewal.
pub(crate) fn write_server_valid_for(
    dir: &Path,
    ca: &Ca,
    names: &[CertName],
    validity: Duration,
) -> anyhow::Result<()> {
    let first = names
        .first()
        .context("tls.common_names resolved to no name; give at least one IP or DNS name")?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("cannot generate the server key (ECDSA P-256)")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.to_string());
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|name| match name {
            CertName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            CertName::Dns(dns) => dns
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .with_context(|| format!("tls.common_names: {dns:?} is not a valid DNS name")),
        })
        .collect::<anyhow::Result<_>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity);
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der, &ca.key)
        .context("cannot use the CA certificate as an issuer")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the server certificate")?;
    let chain = format!("{}{}", cert.pem(), ca.cert_pem);
    files::write_atomic(
        &dir.join(SERVER_KEY_FILE),
        key.serialize_pem().as_bytes(),
        Access::Private,
    )?;
    files::write_atomic(
        &dir.join(SERVER_CERT_FILE),
        chain.as_bytes(),
        Access::Public,
    )
}

/// Loads the CA for tests that sign their own server certificates with it.
#[cfg(test)]
pub(crate) fn load_ca_for_test(dir: &Path) -> anyhow::Result<Ca> {
    load_ca(dir).map_err(|p| anyhow::anyhow!(p.reason))
}

/// Resets reused key files to 0600 if someone loosened them; a failure is only logged.
fn tighten_keys(dir: &Path) {
    for file in [CA_KEY_FILE, SERVER_KEY_FILE] {
        let path = dir.join(file);
        match files::tighten_key_mode(&path) {
            Ok(true) => tracing::warn!(
                path = %path.display(),
                "private key was readable by others; reset to mode 0600"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(path = %path.display(), "{e:#}"),
        }
    }
}

/// Sets a validity period starting (backdated) now.
fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = ASN1Time::now().to_datetime();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}
