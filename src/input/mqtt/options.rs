//! Client options from the config: client id, session, credentials and TLS, all
//! checked (files read, keys parsed) before a start or reload changes anything.

use crate::config::{MqttConfig, MqttTlsConfig};
use crate::tls::ServerCheck;
use anyhow::{Context, anyhow};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls_pki_types::ServerName;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest MQTT packet accepted from the broker: the protocol's own limit (256 MiB).
/// Payloads over `max_payload_size` are cut by the payload step, not refused here, so
/// one oversized message can never wedge a persistent session in a reconnect loop.
const MAX_INCOMING_PACKET: usize = 268_435_455;

/// Largest packet tidepool sends (SUBSCRIBE with every filter, acks, pings).
const MAX_OUTGOING_PACKET: usize = 1 << 20;

/// Where Linux distributions keep the system CA bundle, for `tls` without `ca`.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The default client id: `tidepool-<hostname>-<source index>`, stable across restarts
/// (so a persistent session is found again) and distinct per host and source.
pub fn default_client_id(n: usize) -> String {
    let host = dns_lookup::get_hostname().unwrap_or_else(|_| "host".to_string());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("tidepool-{host}-{n}")
}

/// The rumqttc options of source `n`: manual acks, the session kind, credentials, TLS.
pub fn mqtt_options(config: &MqttConfig, client_id: &str) -> anyhow::Result<MqttOptions> {
    let mut o = MqttOptions::new(client_id, config.host.clone(), config.port);
    o.set_keep_alive(config.keep_alive)
        .set_clean_session(config.clean_session)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
    if let Some(user) = &config.username {
        o.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &config.tls {
        let client = client_config(tls, &config.host)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client)));
    }
    Ok(o)
}

/// The rustls client config (ring provider, TLS 1.2 and 1.3) for a broker at `host`.
fn client_config(tls: &MqttTlsConfig, host: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_path = match &tls.ca {
        Some(p) => p.clone(),
        None => system_bundle()?,
    };
    let roots = crate::tls::root_store(&ca_path, "tls.ca")?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .context("choosing TLS versions")?;
    let builder = match &tls.server_name {
        Some(name) if name != host => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| anyhow!("tls.server_name \"{name}\" is not a DNS name or IP: {e}"))?;
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .context("building the broker certificate verifier")?;
            let check = ServerCheck::named(inner, name, provider.signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(check))
        }
        _ => builder.with_root_certificates(roots),
    };
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::cert_chain(cert).map_err(|e| anyhow!("tls.cert: {e:#}"))?;
            let key = crate::tls::private_key(key, None).map_err(|e| anyhow!("tls.key: {e:#}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("tls.cert and tls.key do not make a usable client certificate")?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The first system CA bundle that exists.
fn system_bundle() -> anyhow::Result<PathBuf> {
    SYSTEM_CA_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "tls without `ca`: no system CA bundle found (looked for {}); set tls.ca to the broker's CA file",
                SYSTEM_CA_BUNDLES.join(", ")
            )
        })
}
