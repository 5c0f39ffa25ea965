//! The names a generated server certificate is valid for.
//!
//! Devices pin the CA and connect by a configured host string, often an IP (protocol
//! reference section 10). Whether Mbed TLS matches that string against the CN or an
//! iPAddress SAN is unconfirmed, so the first name is the CN and every name is a SAN.

use rustls_pki_types::DnsName;
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// One checked certificate name: an IP address (iPAddress SAN) or a DNS name (dNSName SAN).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CertName {
    /// Matched by clients that connect by address.
    Ip(IpAddr),
    /// Lower-cased, since DNS names compare case-insensitively.
    Dns(String),
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::Ip(ip) => write!(f, "{ip}"),
            CertName::Dns(name) => f.write_str(name),
        }
    }
}

impl CertName {
    /// Parses a configured name; the error names the value and what is accepted.
    pub(crate) fn parse(raw: &str) -> anyhow::Result<CertName> {
        let trimmed = raw.trim();
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(CertName::Ip(ip));
        }
        match DnsName::try_from(trimmed) {
            Ok(_) => Ok(CertName::Dns(trimmed.to_ascii_lowercase())),
            Err(_) => anyhow::bail!(
                "tls.common_names: {raw:?} is neither an IP address nor a DNS name \
                 (e.g. \"192.168.1.85\" or \"logs.example.com\")"
            ),
        }
    }
}

/// The checked, de-duplicated names for a certificate, in configured order (first = CN).
///
/// An empty list means [`default_names`].
pub(crate) fn resolve(configured: &[String]) -> anyhow::Result<Vec<CertName>> {
    let raw = if configured.is_empty() {
        default_names()
    } else {
        configured.to_vec()
    };
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for name in &raw {
        let parsed = CertName::parse(name)?;
        if seen.insert(parsed.clone()) {
            names.push(parsed);
        }
    }
    Ok(names)
}

/// The names used when none are configured: this host's primary IP (the address devices
/// on the LAN most likely connect to), then `127.0.0.1` and `localhost` for local clients.
///
/// The primary IP is the source address the kernel picks for a route to a documentation
/// address; `connect` on a UDP socket only selects that route and sends no packet. With
/// no route (an offline host) the IP is left out.
pub fn default_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Some(ip) = primary_ip() {
        names.push(ip.to_string());
    }
    for fixed in ["127.0.0.1", "localhost"] {
        if !names.iter().any(|n| n == fixed) {
            names.push(fixed.to_string());
        }
    }
    names
}

/// This host's address on its default route, IPv4 preferred.
fn primary_ip() -> Option<IpAddr> {
    let probes = [
        (
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9)),
        ),
        (
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9)),
        ),
    ];
    probes.iter().find_map(|(bind, target)| {
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(target).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    })
}

/// This host's name, for the generated CA's CN; `localhost` when it cannot be read.
pub(crate) fn hostname() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let from_env = || std::env::var("HOSTNAME").ok();
    from_kernel
        .or_else(from_env)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .unwrap_or_else(|| "localhost".to_string())
}
