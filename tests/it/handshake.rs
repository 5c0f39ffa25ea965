//! The shared-key handshake against a real daemon, playing the client as Fluentd does.

use crate::util::*;
use sha2::{Digest, Sha512};
use std::io::{Read, Write};
use std::net::TcpStream;

const KEY: &str = "tidepool-vector-shared-key";

fn secure_config() -> String {
    plain_config(
        r#"security = { self_hostname = "receiver.tidepool.test", shared_key = "tidepool-vector-shared-key", user_auth = true, users = [{ username = "alice", password = "s3cret-pass" }] }"#,
    )
}

/// Reads one MessagePack value from the stream.
fn read_value(s: &mut TcpStream) -> rmpv::Value {
    rmpv::decode::read_value(s).expect("a MessagePack reply")
}

fn hex_sha512(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Reads HELO and sends a PING for `key`; returns the server's PONG.
fn handshake(s: &mut TcpStream, key: &str, user: &str, pass: &str) -> rmpv::Value {
    let helo = read_value(s);
    let opts = &helo[1];
    let field = |name: &str| -> Vec<u8> {
        opts.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
            .and_then(|(_, v)| v.as_slice().map(<[u8]>::to_vec))
            .unwrap_or_default()
    };
    let (nonce, auth) = (field("nonce"), field("auth"));
    assert_eq!(helo[0].as_str(), Some("HELO"));
    assert_eq!(nonce.len(), 16);
    let salt = b"0123456789abcdef0123456789abcdef";
    let host = "sender.tidepool.test";
    let digest = hex_sha512(&[salt, host.as_bytes(), &nonce, key.as_bytes()]);
    let pw = hex_sha512(&[&auth, user.as_bytes(), pass.as_bytes()]);
    let ping = rmpv::Value::Array(vec![
        "PING".into(),
        host.into(),
        rmpv::Value::String(std::str::from_utf8(salt).expect("ascii").into()),
        digest.into(),
        user.into(),
        pw.into(),
    ]);
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &ping).expect("encode");
    s.write_all(&buf).expect("write ping");
    let pong = read_value(s);
    if pong[1].as_bool() == Some(true) {
        let want = hex_sha512(&[salt, b"receiver.tidepool.test", &nonce, key.as_bytes()]);
        assert_eq!(pong[4].as_str(), Some(want.as_str()), "server digest");
        assert_eq!(pong[3].as_str(), Some("receiver.tidepool.test"));
    }
    pong
}

/// The data part of a recorded handshake vector (after its PING).
fn data_after_ping(file: &str) -> Vec<u8> {
    let m = manifest();
    let v = m["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["file"] == file)
        .expect("vector in manifest");
    let offset = v["frames"][1]["offset"].as_u64().expect("offset") as usize;
    vector(file)[offset..].to_vec()
}

#[test]
fn fluentd_out_forward_with_user_auth_and_ack_is_accepted() {
    let d = TestDaemon::start(&secure_config());
    let mut s = connect(d.addr(0));
    let pong = handshake(&mut s, KEY, "alice", "s3cret-pass");
    assert_eq!(pong[1].as_bool(), Some(true), "PONG: {pong}");
    s.write_all(&data_after_ping(
        "fluentd-1.16-handshake-userauth-ack.client.bin",
    ))
    .expect("write data");
    let recorded = vector("fluentd-1.16-handshake-userauth-ack.server.bin");
    let ack = ack_for("ZhGS8gOnP5LfVfvGLoN3ow==\n");
    assert!(
        recorded.ends_with(&ack),
        "the recorded reply ends with this ack"
    );
    assert_eq!(read_n(&mut s, ack.len()), ack);
    assert_eq!(
        d.wait_records("data/out/td.test_database.cpu_info.jsonl", 3)
            .len(),
        3
    );
}

#[test]
fn wrong_shared_key_gets_pong_false_and_is_logged() {
    let d = TestDaemon::start(&secure_config());
    let mut s = connect(d.addr(0));
    let pong = handshake(&mut s, "wrong-shared-key", "alice", "s3cret-pass");
    assert_eq!(pong[1].as_bool(), Some(false));
    assert_eq!(pong[2].as_str(), Some("shared_key mismatch"));
    let _ = s.write_all(&data_after_ping(
        "fluentd-1.16-handshake-sharedkey.client.bin",
    ));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after a failed PONG");
    d.wait_log("shared_key mismatch");
    let log = d.stderr();
    assert!(
        log.contains("sender.tidepool.test"),
        "claimed hostname logged:\n{log}"
    );
    assert!(
        d.lines("data/out/td.test_database.cpu_info.jsonl")
            .is_empty()
    );
}

#[test]
fn wrong_password_is_refused() {
    let d = TestDaemon::start(&secure_config());
    let mut s = connect(d.addr(0));
    let pong = handshake(&mut s, KEY, "alice", "not-her-password");
    assert_eq!(pong[2].as_str(), Some("username/password mismatch"));
}

#[test]
fn data_before_ping_is_answered_with_invalid_ping_and_never_stored() {
    let d = TestDaemon::start(&secure_config());
    let mut s = connect(d.addr(0));
    let helo = read_value(&mut s);
    assert_eq!(helo[0].as_str(), Some("HELO"));
    s.write_all(&vector("handshake-data-before-ping.client.bin"))
        .expect("write");
    let pong = read_value(&mut s);
    assert_eq!(pong[1].as_bool(), Some(false));
    assert_eq!(pong[2].as_str(), Some("invalid ping message"));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(
        d.lines("data/out/td.test_database.cpu_info.jsonl")
            .is_empty()
    );
}

#[test]
fn heartbeat_connections_are_quiet() {
    let d = TestDaemon::start(&secure_config());
    for _ in 0..5 {
        let mut s = connect(d.addr(0));
        let pong = handshake(&mut s, KEY, "alice", "s3cret-pass");
        assert_eq!(pong[1].as_bool(), Some(true));
    }
    // Empty connections too (out_forward's heartbeat without security).
    for _ in 0..5 {
        drop(connect(d.addr(0)));
    }
    assert_serves_secure(&d);
    assert!(
        !d.stderr().contains("WARN"),
        "heartbeats logged at warn:\n{}",
        d.stderr()
    );
}

fn assert_serves_secure(d: &TestDaemon) {
    let mut s = connect(d.addr(0));
    handshake(&mut s, KEY, "alice", "s3cret-pass");
    let rec = rmpv::Value::Map(vec![("hb".into(), 1.into())]);
    s.write_all(&message_with_ack("hb.done", &rec, "hb"))
        .expect("write");
    assert_eq!(read_n(&mut s, ack_for("hb").len()), ack_for("hb"));
}
