//! TLS for inputs: certificates from files, or generated once and kept.
//!
//! Devices (Mbed TLS 2.x boards in particular, protocol reference section 10) speak
//! only TLS 1.2 with ECDHE + AES-GCM over P-256 and pin a CA in firmware. So the
//! server offers TLS 1.2 and 1.3 with ring's suites, and a generated CA is created
//! once under `certs_dir` and kept for as long as it is valid; only the server
//! certificate it signs is renewed (names changed, or near expiry).
//!
//! - [`server_config`]: the rustls config an input listens with.
//! - `generate`: [`ensure_generated`] / [`regenerate`], the files under `certs_dir`.
//! - `load`: operator-supplied PEM certificates and keys (plain or encrypted).
//! - `info`: [`describe`] and [`c_header`] for `tidepool certs`.
//! - `names`: [`default_names`] and name checks.
//! - `files`: atomic writes with owner-only keys.
//! - `verify`: the chain-only, accept-any and fixed-name server checks of tidepool's clients.

mod files;
mod generate;
mod info;
mod load;
mod names;
#[cfg(test)]
pub(crate) mod test_ca;
#[cfg(test)]
mod tests;
mod verify;

pub use generate::{
    CA_CERT_FILE, CA_KEY_FILE, GeneratedCerts, Generation, SERVER_CERT_FILE, SERVER_KEY_FILE,
    ensure_generated, regenerate,
};
pub use info::{DEFAULT_C_NAME, c_header, describe};
/// The PEM loaders, for clients that present or check certificates (the PostgreSQL store).
pub(crate) use load::{cert_chain, private_key, root_store};
pub use names::default_names;
/// Verifiers for clients that check a server less (or differently) than WebPKI.
pub(crate) use verify::ServerCheck;

use crate::config::{TlsConfig, TlsVersion};
use anyhow::{Context, anyhow, bail};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::path::Path;
use std::sync::Arc;

/// Builds the rustls server config for an input.
///
/// With `cert` + `key` the files are used as given (the whole chain is sent); with
/// neither, the certificate generated under `certs_dir` for `common_names` is used,
/// created or renewed first if needed. TLS versions follow `min_version`..`max_version`;
/// with `client_ca`, clients must present a certificate that CA signed, and others are
/// refused during the handshake. Every error names the file or setting at fault.
pub fn server_config(
    tls: &TlsConfig,
    certs_dir: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (chain, key, cert_path, key_path) = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            if !tls.common_names.is_empty() {
                tracing::warn!(
                    cert = %cert.display(),
                    "tls.common_names only applies to generated certificates; it is \
                     ignored because tls.cert and tls.key are set"
                );
            }
            (
                load::cert_chain(cert)?,
                load::private_key(key, tls.passphrase.as_deref())?,
                cert.clone(),
                key.clone(),
            )
        }
        (None, None) => {
            let generated = ensure_generated(certs_dir, &tls.common_names)?;
            (
                load::cert_chain(&generated.server_cert)?,
                load::private_key(&generated.server_key, None)?,
                generated.server_cert,
                generated.server_key,
            )
        }
        (Some(cert), None) => bail!(
            "tls.cert is set ({}) but tls.key is not: set both, or neither to use a \
             generated certificate",
            cert.display()
        ),
        (None, Some(key)) => bail!(
            "tls.key is set ({}) but tls.cert is not: set both, or neither to use a \
             generated certificate",
            key.display()
        ),
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = protocol_versions(tls.min_version, tls.max_version)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .context("the ring crypto provider rejected the TLS version range")?;
    let builder = match &tls.client_ca {
        Some(ca_path) => {
            let roots = load::root_store(ca_path, "tls.client_ca")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| anyhow!("tls.client_ca {}: {e}", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        anyhow!(
            "certificate {} and key {} cannot be used together: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Arc::new(config))
}

/// The rustls versions for `min..=max`, newest first.
fn protocol_versions(
    min: TlsVersion,
    max: TlsVersion,
) -> anyhow::Result<Vec<&'static SupportedProtocolVersion>> {
    if min > max {
        bail!(
            "tls.min_version ({min:?}) is above tls.max_version ({max:?}); e.g. min \
             TLS 1.2 and max TLS 1.3 accepts both"
        );
    }
    let all = [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ];
    Ok(all
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, rustls_version)| rustls_version)
        .collect())
}
