//! TLS for inputs: certificates from files or generated once and kept.
//!
//! OWNER: tls helper. STUB.

use crate::config::TlsConfig;
use std::path::Path;
use std::sync::Arc;

/// Builds the rustls server config for an input.
pub fn server_config(
    tls: &TlsConfig,
    certs_dir: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let _ = (tls, certs_dir);
    anyhow::bail!("stub")
}
