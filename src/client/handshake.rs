//! The client side of the shared-key handshake (reference section 6): read HELO, send
//! PING, check PONG, as Fluentd's out_forward does.

use super::reply::brief;
use crate::input::forward::handshake::{ct_eq, digest_hex};
use anyhow::{Context, anyhow, bail};

/// What the client needs from the server's HELO.
#[derive(Clone, Debug)]
pub struct ServerHelo {
    /// Mixed into both shared-key digests.
    pub nonce: Vec<u8>,
    /// Mixed into the password digest; empty when the server sent none.
    pub auth: Vec<u8>,
    /// Whether the server keeps the connection after a frame (absent means true).
    pub keepalive: bool,
}

/// Who the client says it is and what it proves.
#[derive(Clone, Debug)]
pub struct Credentials<'a> {
    /// Sent in PING and hashed into its digest.
    pub self_hostname: &'a str,
    /// The shared key.
    pub shared_key: &'a str,
    /// Username for `user_auth` servers.
    pub username: Option<&'a str>,
    /// Password for `user_auth` servers.
    pub password: Option<&'a str>,
}

/// Reads `["HELO", {"nonce": .., "auth": .., "keepalive": ..}]`; nonce and auth may be
/// bin (Fluentd) or str (Fluent Bit).
pub fn parse_helo(value: &rmpv::Value) -> anyhow::Result<ServerHelo> {
    let items = value
        .as_array()
        .filter(|a| a.len() == 2 && a.first().and_then(|k| k.as_str()) == Some("HELO"))
        .ok_or_else(|| anyhow!("expected HELO from the server, got {}: does the server have a shared key configured?", brief(value)))?;
    let map = items
        .get(1)
        .and_then(|m| m.as_map())
        .ok_or_else(|| anyhow!("HELO options are not a map: {}", brief(value)))?;
    let field = |key: &str| {
        map.iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    };
    let nonce = field("nonce")
        .and_then(bytes_of)
        .ok_or_else(|| anyhow!("HELO has no nonce: {}", brief(value)))?;
    let auth = field("auth").and_then(bytes_of).unwrap_or_default();
    let keepalive = field("keepalive").and_then(|v| v.as_bool()).unwrap_or(true);
    Ok(ServerHelo {
        nonce,
        auth,
        keepalive,
    })
}

/// `["PING", hostname, salt, digest, username, password_digest]` with a fresh 32-hex
/// salt; returns the frame and the salt, which the PONG check needs.
pub fn build_ping(helo: &ServerHelo, creds: &Credentials<'_>) -> (Vec<u8>, String) {
    let salt = hex::encode(rand::random::<[u8; 16]>());
    let digest = digest_hex(&[
        salt.as_bytes(),
        creds.self_hostname.as_bytes(),
        &helo.nonce,
        creds.shared_key.as_bytes(),
    ]);
    let username = creds.username.unwrap_or("");
    let password = creds.password.unwrap_or("");
    let password_digest = if helo.auth.is_empty() {
        String::new()
    } else {
        digest_hex(&[&helo.auth, username.as_bytes(), password.as_bytes()])
    };
    let mut out = Vec::with_capacity(320);
    super::encode::write_array_len(&mut out, 6);
    for field in [
        "PING",
        creds.self_hostname,
        &salt,
        &digest,
        username,
        &password_digest,
    ] {
        super::encode::write_str(&mut out, field);
    }
    (out, salt)
}

/// Checks `["PONG", ok, reason, server_hostname, digest]`: fails with the server's reason
/// on refusal, and when the server's digest does not prove it knows the shared key.
pub fn check_pong(
    value: &rmpv::Value,
    helo: &ServerHelo,
    salt: &str,
    creds: &Credentials<'_>,
) -> anyhow::Result<()> {
    let items = value
        .as_array()
        .filter(|a| a.len() == 5 && a.first().and_then(|k| k.as_str()) == Some("PONG"))
        .ok_or_else(|| anyhow!("expected PONG from the server, got {}", brief(value)))?;
    let field = |i: usize| items.get(i).context("PONG too short");
    let ok = field(1)?
        .as_bool()
        .ok_or_else(|| anyhow!("PONG's second element is not a boolean: {}", brief(value)))?;
    if !ok {
        let reason = field(2)?.as_str().unwrap_or("(no reason given)");
        bail!("server refused the handshake: {reason}");
    }
    let hostname = field(3)?.as_slice().unwrap_or_default();
    if hostname == creds.self_hostname.as_bytes() {
        bail!(
            "server's hostname equals ours ({}): same hostname between input and output; set a different self_hostname",
            creds.self_hostname
        );
    }
    let expected = digest_hex(&[
        salt.as_bytes(),
        hostname,
        &helo.nonce,
        creds.shared_key.as_bytes(),
    ]);
    let got = field(4)?.as_slice().unwrap_or_default();
    if !ct_eq(expected.as_bytes(), got) {
        bail!(
            "server's PONG digest does not verify with our shared key: the server does not know the same key"
        );
    }
    Ok(())
}

fn bytes_of(v: &rmpv::Value) -> Option<Vec<u8>> {
    v.as_slice().map(<[u8]>::to_vec)
}
