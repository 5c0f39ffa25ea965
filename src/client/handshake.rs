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
        crate::msgpack::write::str(&mut out, field);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecurityConfig;
    use crate::input::forward::handshake::{Helo, answer_ping};
    use std::net::{IpAddr, Ipv4Addr};

    fn creds() -> Credentials<'static> {
        Credentials {
            self_hostname: "client.test",
            shared_key: "k",
            username: None,
            password: None,
        }
    }

    fn decode(bytes: &[u8]) -> rmpv::Value {
        rmpv::decode::read_value(&mut &bytes[..]).expect("decodes")
    }

    #[test]
    fn ping_and_pong_agree_with_the_server_side() {
        let helo = Helo::new(true);
        let server = parse_helo(&decode(&helo.encode())).expect("helo");
        assert_eq!(server.nonce, helo.nonce);
        assert_eq!(server.auth, helo.auth);
        let (ping, salt) = build_ping(&server, &creds());
        assert_eq!(salt.len(), 32);
        let security = SecurityConfig {
            self_hostname: "server.test".into(),
            shared_key: "k".into(),
            allow_anonymous_source: true,
            ..SecurityConfig::default()
        };
        let outcome = answer_ping(&ping, &helo, &security, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(outcome.client_hostname.as_deref(), Some("client.test"));
        check_pong(&decode(&outcome.pong), &server, &salt, &creds()).expect("pong verifies");
        // The same PONG does not verify for another salt (a replayed exchange).
        let err =
            check_pong(&decode(&outcome.pong), &server, "other", &creds()).expect_err("wrong salt");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn recorded_refusal_carries_fluentds_reason() {
        let path = format!(
            "{}/tests/data/vectors/fluentd-1.16-handshake-badkey.server.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).expect("vector");
        let mut rest = bytes.as_slice();
        let helo = parse_helo(&rmpv::decode::read_value(&mut rest).expect("helo")).expect("helo");
        assert!(helo.keepalive);
        let pong = rmpv::decode::read_value(&mut rest).expect("pong");
        let err = check_pong(&pong, &helo, "salt", &creds()).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "server refused the handshake: shared_key mismatch"
        );
    }

    #[test]
    fn fluent_bit_style_helo_is_understood() {
        // Fluent Bit's in_forward: str salts, no keepalive key.
        let helo = rmpv::Value::Array(vec![
            "HELO".into(),
            rmpv::Value::Map(vec![
                ("nonce".into(), "0123456789abcdef".into()),
                ("auth".into(), "".into()),
            ]),
        ]);
        let parsed = parse_helo(&helo).expect("helo");
        assert_eq!(parsed.nonce, b"0123456789abcdef");
        assert!(parsed.auth.is_empty() && parsed.keepalive);
        let (ping, _) = build_ping(&parsed, &creds());
        // No auth salt: no password digest, as Fluent Bit's client does.
        assert_eq!(decode(&ping)[5].as_str(), Some(""));
    }

    #[test]
    fn data_instead_of_helo_suggests_the_missing_key() {
        let err = parse_helo(&rmpv::Value::Map(vec![("ack".into(), "x".into())]))
            .expect_err("not a helo");
        assert!(err.to_string().contains("shared key"), "{err}");
    }

    #[test]
    fn a_pong_naming_ourselves_is_refused() {
        let helo = ServerHelo {
            nonce: vec![1; 16],
            auth: Vec::new(),
            keepalive: true,
        };
        let pong = rmpv::Value::Array(vec![
            "PONG".into(),
            true.into(),
            "".into(),
            "client.test".into(),
            "00".into(),
        ]);
        let err = check_pong(&pong, &helo, "s", &creds()).expect_err("same host");
        assert!(err.to_string().contains("same hostname"), "{err}");
    }
}
