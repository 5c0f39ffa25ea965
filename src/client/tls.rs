//! The client's TLS: a pinned CA from a PEM file, as a device does, or no verification
//! at all for tests against throwaway certificates.

use crate::config::TlsVersion;
use crate::tls::ServerCheck;
use anyhow::{Context, bail};
use rustls_pki_types::ServerName;
use std::path::PathBuf;
use std::sync::Arc;

/// How the client speaks TLS.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) the server's chain must lead to. Required
    /// unless `insecure`; there is no system trust store, as on a device.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (signatures are still checked). For tests only.
    pub insecure: bool,
    /// Name (DNS name or IP) the certificate must carry; default: the host part of the
    /// address dialled.
    pub server_name: Option<String>,
    /// Lowest version offered (default 1.2).
    pub min_version: TlsVersion,
    /// Highest version offered (default 1.3); set it to 1.2 to behave like Mbed TLS 2.x.
    pub max_version: TlsVersion,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            ca_file: None,
            insecure: false,
            server_name: None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
        }
    }
}

/// Builds the rustls client config for `tls`.
pub fn client_config(tls: &ClientTls) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if tls.min_version > tls.max_version {
        bail!(
            "TLS min_version {:?} is above max_version {:?}: swap them",
            tls.min_version,
            tls.max_version
        );
    }
    if tls.min_version <= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if tls.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .context("choosing TLS versions")?;
    let config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerCheck::any(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        let Some(ca_file) = &tls.ca_file else {
            bail!("TLS needs a CA file to pin (ca_file), or insecure for testing");
        };
        let roots = crate::tls::root_store(ca_file, "CA file")?;
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The name to verify: `server_name` if set, else the host part of `addr`
/// (`host:port` or `[v6]:port`).
pub fn server_name(tls: &ClientTls, addr: &str) -> anyhow::Result<ServerName<'static>> {
    let host = match &tls.server_name {
        Some(name) => name.as_str(),
        None => host_of(addr),
    };
    ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a valid TLS server name (DNS name or IP)"))
}

/// The host part of `host:port`, without IPv6 brackets.
fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_cut_from_the_address() {
        assert_eq!(host_of("127.0.0.1:24228"), "127.0.0.1");
        assert_eq!(host_of("[::1]:24228"), "::1");
        assert_eq!(host_of("logs.example.com"), "logs.example.com");
    }

    #[test]
    fn missing_ca_is_an_actionable_error() {
        let err = client_config(&ClientTls::default()).expect_err("no CA");
        assert!(err.to_string().contains("ca_file"), "{err}");
    }
}
