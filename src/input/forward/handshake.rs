//! The shared-key handshake: HELO, PING, PONG (reference section 6).
//!
//! Pure functions over bytes, so the connection task only moves frames: it writes
//! [`Helo::encode`], cuts one complete frame, and writes the [`PingOutcome::pong`] that
//! [`answer_ping`] returns. Every reply is byte-for-byte what Fluentd 1.16 in_forward
//! writes (checked against the recorded `*handshake*` vectors), because Fluent Bit and
//! out_forward parse these messages strictly.

use crate::config::{ClientConfig, SecurityConfig};
use sha2::{Digest, Sha512};
use std::net::IpAddr;

/// Reason Fluentd gives for a PING of the wrong shape, or for data sent before PING.
pub const INVALID_PING: &str = "invalid ping message";
/// Reason Fluentd gives when the shared-key digest does not verify.
pub const SHARED_KEY_MISMATCH: &str = "shared_key mismatch";
/// Reason Fluentd gives when `user_auth` is on and no user matches.
pub const USER_MISMATCH: &str = "username/password mismatch";

/// Deepest nesting looked at in a PING; a real one is a flat array.
const PING_MAX_DEPTH: usize = 8;

/// The server's greeting; its nonce and auth salt bind the client's digests to this
/// connection, so a replayed PING never verifies.
#[derive(Clone, Debug)]
pub struct Helo {
    /// 16 random bytes mixed into the shared-key digests.
    pub nonce: [u8; 16],
    /// 16 random bytes mixed into the password digest.
    pub auth: [u8; 16],
    /// Whether the server keeps the connection open after a frame.
    pub keepalive: bool,
}

impl Helo {
    /// A HELO with fresh random nonce and auth salt (from the thread-local CSPRNG).
    pub fn new(keepalive: bool) -> Self {
        Helo {
            nonce: rand::random(),
            auth: rand::random(),
            keepalive,
        }
    }

    /// `["HELO", {"nonce": bin, "auth": bin, "keepalive": bool}]`, as Fluentd sends it:
    /// both salts as bin8, keys in this order, always with `auth` (Fluentd sends it even
    /// without `user_auth`, and clients then always send a password digest).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        out.push(0x92);
        crate::msgpack::write::str_bytes(&mut out, b"HELO");
        out.push(0x83);
        crate::msgpack::write::str_bytes(&mut out, b"nonce");
        write_bin(&mut out, &self.nonce);
        crate::msgpack::write::str_bytes(&mut out, b"auth");
        write_bin(&mut out, &self.auth);
        crate::msgpack::write::str_bytes(&mut out, b"keepalive");
        out.push(if self.keepalive { 0xc3 } else { 0xc2 });
        out
    }
}

/// The server's verdict on a PING, with the PONG to write in one call.
#[derive(Debug)]
pub struct PingOutcome {
    /// The encoded PONG.
    pub pong: Vec<u8>,
    /// The client's claimed hostname, when the PING was well formed enough to carry one.
    pub client_hostname: Option<String>,
    /// `Ok(username)` when authenticated, else the reason sent in the PONG. The username
    /// is the one checked under `user_auth`; without `user_auth` it is empty, because an
    /// unchecked claim must not end up in logs as an identity.
    pub result: Result<String, String>,
}

/// The six fields of a well-formed PING, as raw bytes (Fluent Bit's salt is not UTF-8).
struct Ping {
    hostname: Vec<u8>,
    salt: Vec<u8>,
    digest: Vec<u8>,
    username: Vec<u8>,
    password_digest: Vec<u8>,
}

/// Checks one complete PING frame against the HELO sent on this connection.
///
/// Follows Fluentd's `check_ping` order: shape (`invalid ping message`), then the
/// anonymous-source rule, then the shared-key digest (per-network key first), then,
/// with `user_auth`, the password digest. Digests are compared in constant time.
pub fn answer_ping(
    ping: &[u8],
    helo: &Helo,
    security: &SecurityConfig,
    peer: IpAddr,
) -> PingOutcome {
    let Some(ping) = parse_ping(ping) else {
        return refuse(INVALID_PING.to_string(), None);
    };
    let hostname = Some(String::from_utf8_lossy(&ping.hostname).into_owned());
    let peer = peer.to_canonical();
    let client = security.clients.iter().find(|c| c.network.contains(&peer));
    if client.is_none() && !security.allow_anonymous_source {
        return refuse(format!("anonymous source host '{peer}' denied"), hostname);
    }
    let shared_key = client
        .and_then(|c| c.shared_key.as_deref())
        .unwrap_or(&security.shared_key);
    let expected = digest_hex(&[
        &ping.salt,
        &ping.hostname,
        &helo.nonce,
        shared_key.as_bytes(),
    ]);
    if !ct_eq(expected.as_bytes(), &ping.digest) {
        return refuse(SHARED_KEY_MISMATCH.to_string(), hostname);
    }
    let username = if security.user_auth {
        if !user_matches(&ping, helo, security, client) {
            return refuse(USER_MISMATCH.to_string(), hostname);
        }
        String::from_utf8_lossy(&ping.username).into_owned()
    } else {
        String::new()
    };
    let server_digest = digest_hex(&[
        &ping.salt,
        security.self_hostname.as_bytes(),
        &helo.nonce,
        shared_key.as_bytes(),
    ]);
    let mut pong = Vec::with_capacity(48 + security.self_hostname.len() + server_digest.len());
    pong.push(0x95);
    crate::msgpack::write::str_bytes(&mut pong, b"PONG");
    pong.push(0xc3);
    crate::msgpack::write::str_bytes(&mut pong, b"");
    crate::msgpack::write::str_bytes(&mut pong, security.self_hostname.as_bytes());
    crate::msgpack::write::str_bytes(&mut pong, server_digest.as_bytes());
    PingOutcome {
        pong,
        client_hostname: hostname,
        result: Ok(username),
    }
}

/// Lowercase hex SHA-512 over the concatenation of `parts`, the digest every handshake
/// field uses (salt + hostname + nonce + key, or auth salt + username + password).
pub fn digest_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha512::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Equality whose time does not depend on where the inputs differ, so a client cannot
/// find a valid digest byte by byte. Lengths are public (always 128 hex digits).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether some configured user (limited to the client network's list, when it has one)
/// matches the PING's username and password digest. Every candidate is hashed, as
/// Fluentd does, so timing does not reveal which usernames exist.
fn user_matches(
    ping: &Ping,
    helo: &Helo,
    security: &SecurityConfig,
    client: Option<&ClientConfig>,
) -> bool {
    let mut ok = false;
    for user in &security.users {
        if let Some(c) = client
            && !c.users.is_empty()
            && !c.users.iter().any(|u| u == &user.username)
        {
            continue;
        }
        let expected = digest_hex(&[
            &helo.auth,
            user.username.as_bytes(),
            user.password.as_bytes(),
        ]);
        let digest_ok = ct_eq(expected.as_bytes(), &ping.password_digest);
        ok |= digest_ok && user.username.as_bytes() == ping.username.as_slice();
    }
    ok
}

/// Decodes `["PING", hostname, salt, digest, username, password_digest]`; strings may be
/// str (any bytes) or bin. Anything else, including trailing bytes, is `None`.
fn parse_ping(frame: &[u8]) -> Option<Ping> {
    let mut rd = frame;
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, PING_MAX_DEPTH).ok()?;
    if !rd.is_empty() {
        return None;
    }
    let rmpv::Value::Array(items) = value else {
        return None;
    };
    let [kind, hostname, salt, digest, username, password_digest] =
        <[rmpv::Value; 6]>::try_from(items).ok()?;
    if raw_bytes(kind)? != b"PING" {
        return None;
    }
    Some(Ping {
        hostname: raw_bytes(hostname)?,
        salt: raw_bytes(salt)?,
        digest: raw_bytes(digest)?,
        username: raw_bytes(username)?,
        password_digest: raw_bytes(password_digest)?,
    })
}

/// The bytes of a str (valid UTF-8 or not) or bin value.
fn raw_bytes(value: rmpv::Value) -> Option<Vec<u8>> {
    match value {
        rmpv::Value::String(s) => Some(s.into_bytes()),
        rmpv::Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// `["PONG", false, reason, "", ""]`.
fn refuse(reason: String, client_hostname: Option<String>) -> PingOutcome {
    let mut pong = Vec::with_capacity(16 + reason.len());
    pong.push(0x95);
    crate::msgpack::write::str_bytes(&mut pong, b"PONG");
    pong.push(0xc2);
    crate::msgpack::write::str_bytes(&mut pong, reason.as_bytes());
    crate::msgpack::write::str_bytes(&mut pong, b"");
    crate::msgpack::write::str_bytes(&mut pong, b"");
    PingOutcome {
        pong,
        client_hostname,
        result: Err(reason),
    }
}

/// A MessagePack bin8 (the salts are 16 bytes).
fn write_bin(out: &mut Vec<u8>, b: &[u8; 16]) {
    out.extend_from_slice(&[0xc4, 16]);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests;
