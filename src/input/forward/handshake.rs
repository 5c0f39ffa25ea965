//! The shared-key handshake: HELO, PING, PONG (reference section 6).
//!
//! OWNER: client helper. STUB.

use crate::config::SecurityConfig;
use std::net::IpAddr;

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
    /// A HELO with fresh random nonce and auth salt.
    pub fn new(keepalive: bool) -> Self {
        Helo {
            nonce: [0; 16],
            auth: [0; 16],
            keepalive,
        }
    }

    /// `["HELO", {"nonce": bin, "auth": bin, "keepalive": bool}]`, as Fluentd sends it.
    pub fn encode(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// The server's verdict on a PING, with the PONG to write in one call.
#[derive(Debug)]
pub struct PingOutcome {
    /// The encoded PONG.
    pub pong: Vec<u8>,
    /// The client's claimed hostname, when the PING was well formed enough to carry one.
    pub client_hostname: Option<String>,
    /// `Ok(username)` when authenticated, else the reason sent in the PONG.
    pub result: Result<String, String>,
}

/// Checks one complete PING frame against the HELO sent on this connection.
pub fn answer_ping(
    ping: &[u8],
    helo: &Helo,
    security: &SecurityConfig,
    peer: IpAddr,
) -> PingOutcome {
    let _ = (ping, helo, security, peer);
    PingOutcome {
        pong: Vec::new(),
        client_hostname: None,
        result: Err("stub".into()),
    }
}
