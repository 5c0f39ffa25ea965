//! The handshake against the recorded Fluentd / Fluent Bit exchanges in
//! `tests/data/vectors/`: our PONG must equal the one real Fluentd wrote, byte for byte.

use super::*;
use crate::config::{ClientConfig, SecurityConfig, UserConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const KEY: &str = "tidepool-vector-shared-key";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn security() -> SecurityConfig {
    SecurityConfig {
        self_hostname: "receiver.tidepool.test".into(),
        shared_key: KEY.into(),
        user_auth: false,
        users: Vec::new(),
        allow_anonymous_source: true,
        clients: Vec::new(),
    }
}

fn with_alice(mut s: SecurityConfig) -> SecurityConfig {
    s.user_auth = true;
    s.users = vec![UserConfig {
        username: "alice".into(),
        password: "s3cret-pass".into(),
    }];
    s
}

fn read_vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The file cut into its top-level MessagePack values: (bytes, decoded value).
fn frames(bytes: &[u8]) -> Vec<(Vec<u8>, rmpv::Value)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let before = rest.len();
        let value = rmpv::decode::read_value(&mut rest).expect("vector decodes");
        let used = before - rest.len();
        let start = bytes.len() - before;
        out.push((bytes[start..start + used].to_vec(), value));
    }
    out
}

/// The HELO a recorded server sent, rebuilt from its nonce and auth salt.
fn recorded_helo(helo: &rmpv::Value) -> Helo {
    let map = helo[1].as_map().expect("HELO options map");
    let field = |key: &str| -> [u8; 16] {
        let v = map
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("HELO has no {key}"));
        v.as_slice().expect("bin").try_into().expect("16 bytes")
    };
    let keepalive = map
        .iter()
        .find(|(k, _)| k.as_str() == Some("keepalive"))
        .and_then(|(_, v)| v.as_bool())
        .expect("keepalive");
    Helo {
        nonce: field("nonce"),
        auth: field("auth"),
        keepalive,
    }
}

/// Replays `<name>.client.bin`'s first frame against `<name>.server.bin`'s HELO and
/// checks our HELO encoding and PONG against the recorded bytes.
fn check_vector(name: &str, security: &SecurityConfig) -> PingOutcome {
    let client = read_vector(&format!("{name}.client.bin"));
    let server = read_vector(&format!("{name}.server.bin"));
    let server_frames = frames(&server);
    let (helo_bytes, helo_value) = &server_frames[0];
    let (pong_bytes, _) = &server_frames[1];
    let helo = recorded_helo(helo_value);
    assert_eq!(&helo.encode(), helo_bytes, "{name}: HELO bytes");
    let client_frames = frames(&client);
    let outcome = answer_ping(&client_frames[0].0, &helo, security, LOCAL);
    assert_eq!(
        outcome.pong,
        *pong_bytes,
        "{name}: PONG differs\n ours: {:?}\n real: {:?}",
        rmpv::decode::read_value(&mut outcome.pong.as_slice()),
        rmpv::decode::read_value(&mut pong_bytes.as_slice()),
    );
    outcome
}

#[test]
fn fluentd_shared_key_vectors_match_byte_for_byte() {
    for name in [
        "fluentd-1.16-handshake-sharedkey",
        "fluentd-1.16-handshake-heartbeat",
    ] {
        let outcome = check_vector(name, &security());
        assert_eq!(outcome.result, Ok(String::new()), "{name}");
        assert_eq!(
            outcome.client_hostname.as_deref(),
            Some("sender.tidepool.test")
        );
    }
}

#[test]
fn fluent_bit_binary_salt_vector_matches() {
    let outcome = check_vector("fluent-bit-4.2-handshake-sharedkey-ack", &security());
    assert_eq!(outcome.result, Ok(String::new()));
    assert_eq!(
        outcome.client_hostname.as_deref(),
        Some("fluentbit.tidepool.test")
    );
}

#[test]
fn user_auth_vector_matches_and_names_the_user() {
    let outcome = check_vector(
        "fluentd-1.16-handshake-userauth-ack",
        &with_alice(security()),
    );
    assert_eq!(outcome.result, Ok("alice".to_string()));
}

#[test]
fn user_auth_rejects_a_wrong_password() {
    let mut sec = with_alice(security());
    sec.users[0].password = "other".into();
    let client = read_vector("fluentd-1.16-handshake-userauth-ack.client.bin");
    let server = read_vector("fluentd-1.16-handshake-userauth-ack.server.bin");
    let helo = recorded_helo(&frames(&server)[0].1);
    let outcome = answer_ping(&frames(&client)[0].0, &helo, &sec, LOCAL);
    assert_eq!(outcome.result, Err(USER_MISMATCH.to_string()));
    assert_eq!(
        pong_fields(&outcome.pong),
        (false, USER_MISMATCH.to_string())
    );
}

#[test]
fn refusals_match_recorded_pongs() {
    for (name, reason) in [
        ("fluentd-1.16-handshake-badkey", SHARED_KEY_MISMATCH),
        ("handshake-ping-wrong-digest", SHARED_KEY_MISMATCH),
        ("handshake-ping-bad-arity", INVALID_PING),
        ("handshake-data-before-ping", INVALID_PING),
    ] {
        let outcome = check_vector(name, &security());
        assert_eq!(outcome.result, Err(reason.to_string()), "{name}");
    }
}

#[test]
fn per_network_key_overrides_the_shared_key() {
    let mut sec = security();
    sec.shared_key = "not-the-key".into();
    sec.clients = vec![ClientConfig {
        network: "127.0.0.0/8".parse().expect("net"),
        shared_key: Some(KEY.into()),
        users: Vec::new(),
    }];
    let outcome = check_vector("fluentd-1.16-handshake-sharedkey", &sec);
    assert!(outcome.result.is_ok());
    // The same PING from outside that network meets the input-wide key and fails.
    let client = read_vector("fluentd-1.16-handshake-sharedkey.client.bin");
    let server = read_vector("fluentd-1.16-handshake-sharedkey.server.bin");
    let helo = recorded_helo(&frames(&server)[0].1);
    let outside = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let outcome = answer_ping(&frames(&client)[0].0, &helo, &sec, outside);
    assert_eq!(outcome.result, Err(SHARED_KEY_MISMATCH.to_string()));
}

#[test]
fn anonymous_sources_can_be_refused() {
    let mut sec = security();
    sec.allow_anonymous_source = false;
    sec.clients = vec![ClientConfig {
        network: "192.168.1.0/24".parse().expect("net"),
        shared_key: None,
        users: Vec::new(),
    }];
    let client = read_vector("fluentd-1.16-handshake-sharedkey.client.bin");
    let server = read_vector("fluentd-1.16-handshake-sharedkey.server.bin");
    let helo = recorded_helo(&frames(&server)[0].1);
    let ping = &frames(&client)[0].0;
    let outcome = answer_ping(ping, &helo, &sec, LOCAL);
    let reason = "anonymous source host '127.0.0.1' denied".to_string();
    assert_eq!(outcome.result, Err(reason.clone()));
    assert_eq!(pong_fields(&outcome.pong), (false, reason));
    // An IPv4-mapped IPv6 peer is matched as the IPv4 address it is.
    sec.clients[0].network = "127.0.0.0/8".parse().expect("net");
    let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    assert!(answer_ping(ping, &helo, &sec, mapped).result.is_ok());
    assert!(
        answer_ping(ping, &helo, &sec, IpAddr::V6(Ipv6Addr::LOCALHOST))
            .result
            .is_err()
    );
}

#[test]
fn per_network_user_list_limits_users() {
    let mut sec = with_alice(security());
    sec.clients = vec![ClientConfig {
        network: "127.0.0.0/8".parse().expect("net"),
        shared_key: None,
        users: vec!["bob".into()],
    }];
    let client = read_vector("fluentd-1.16-handshake-userauth-ack.client.bin");
    let server = read_vector("fluentd-1.16-handshake-userauth-ack.server.bin");
    let helo = recorded_helo(&frames(&server)[0].1);
    let outcome = answer_ping(&frames(&client)[0].0, &helo, &sec, LOCAL);
    assert_eq!(outcome.result, Err(USER_MISMATCH.to_string()));
}

#[test]
fn fresh_helos_differ_and_keep_the_shape() {
    let a = Helo::new(true);
    let b = Helo::new(false);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.auth, b.auth);
    let bytes = b.encode();
    assert_eq!(bytes.len(), 65);
    assert_eq!(bytes.last(), Some(&0xc2));
}

#[test]
fn garbage_is_an_invalid_ping_and_never_panics() {
    let helo = Helo::new(true);
    let cases: [&[u8]; 7] = [
        b"",
        &[0xc1],
        &[0x96],
        &[0xdd, 0xff, 0xff, 0xff, 0xff],
        &[
            0x96, 0xa4, b'P', b'O', b'N', b'G', 0xa0, 0xa0, 0xa0, 0xa0, 0xa0,
        ],
        &[
            0x96, 0xa4, b'P', b'I', b'N', b'G', 0x01, 0xa0, 0xa0, 0xa0, 0xa0,
        ],
        &[
            0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90,
        ],
    ];
    for case in cases {
        let outcome = answer_ping(case, &helo, &security(), LOCAL);
        assert_eq!(outcome.result, Err(INVALID_PING.to_string()), "{case:x?}");
        assert_eq!(
            pong_fields(&outcome.pong),
            (false, INVALID_PING.to_string())
        );
    }
}

#[test]
fn a_ping_built_like_our_client_verifies() {
    let helo = Helo::new(true);
    let salt = b"0123456789abcdef0123456789abcdef";
    let digest = digest_hex(&[salt, b"me", &helo.nonce, KEY.as_bytes()]);
    let ping = rmpv::Value::Array(vec![
        "PING".into(),
        "me".into(),
        rmpv::Value::Binary(salt.to_vec()),
        digest.into(),
        "".into(),
        "".into(),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &ping).expect("encode");
    let outcome = answer_ping(&bytes, &helo, &security(), LOCAL);
    assert!(outcome.result.is_ok());
    let pong = rmpv::decode::read_value(&mut outcome.pong.as_slice()).expect("pong");
    let expected = digest_hex(&[salt, b"receiver.tidepool.test", &helo.nonce, KEY.as_bytes()]);
    assert_eq!(pong[4].as_str(), Some(expected.as_str()));
    // Trailing bytes after the PING make it invalid, as a second frame would be.
    bytes.push(0xc0);
    let outcome = answer_ping(&bytes, &helo, &security(), LOCAL);
    assert_eq!(outcome.result, Err(INVALID_PING.to_string()));
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
}

/// `(ok, reason)` of an encoded PONG.
fn pong_fields(pong: &[u8]) -> (bool, String) {
    let v = rmpv::decode::read_value(&mut &pong[..]).expect("pong decodes");
    assert_eq!(v[0].as_str(), Some("PONG"));
    (
        v[1].as_bool().expect("bool"),
        v[2].as_str().expect("reason").to_string(),
    )
}
