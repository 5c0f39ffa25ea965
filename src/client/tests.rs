//! The client against an in-test forward server that decodes frames with rmpv, answers
//! acks, and plays the server side of the handshake with `input::forward::handshake`.

use super::*;
use crate::config::{SecurityConfig, UserConfig};
use crate::event::EventTime;
use crate::input::forward::handshake::{Helo, answer_ping};
use std::io::Read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One decoded frame as the test server saw it.
#[derive(Debug)]
struct Received {
    tag: String,
    entries: Vec<(EventTime, rmpv::Value)>,
    options: Option<rmpv::Value>,
}

/// How the test server answers a frame carrying a chunk.
#[derive(Clone, Copy)]
enum AckReply {
    Echo,
    Wrong,
    Close,
}

#[derive(Clone)]
struct ServerSetup {
    security: Option<SecurityConfig>,
    ack: AckReply,
}

fn plain() -> ServerSetup {
    ServerSetup {
        security: None,
        ack: AckReply::Echo,
    }
}

fn secured(user_auth: bool) -> ServerSetup {
    ServerSetup {
        security: Some(SecurityConfig {
            self_hostname: "server.test".into(),
            shared_key: "k3y".into(),
            user_auth,
            users: vec![UserConfig {
                username: "alice".into(),
                password: "pw".into(),
            }],
            allow_anonymous_source: true,
            clients: Vec::new(),
        }),
        ack: AckReply::Echo,
    }
}

/// Starts the server on 127.0.0.1:0; returns its address and the frames it decodes.
async fn start(setup: ServerSetup) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, setup.clone(), tx.clone()));
        }
    });
    (addr, rx)
}

async fn serve(mut stream: TcpStream, setup: ServerSetup, tx: mpsc::UnboundedSender<Received>) {
    let mut buf = Vec::new();
    if let Some(security) = &setup.security {
        let helo = Helo::new(true);
        if stream.write_all(&helo.encode()).await.is_err() {
            return;
        }
        let Some((ping, _)) = next_frame(&mut stream, &mut buf).await else {
            return;
        };
        let peer = stream.peer_addr().expect("peer").ip();
        let outcome = answer_ping(&ping, &helo, security, peer);
        let _ = stream.write_all(&outcome.pong).await;
        if outcome.result.is_err() {
            return;
        }
    }
    while let Some((_, frame)) = next_frame(&mut stream, &mut buf).await {
        let received = decode(frame);
        let chunk = received
            .options
            .as_ref()
            .and_then(|o| o.as_map())
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("chunk")))
            .map(|(_, v)| v.clone());
        let _ = tx.send(received);
        if let Some(chunk) = chunk {
            let reply = match setup.ack {
                AckReply::Echo => chunk,
                AckReply::Wrong => rmpv::Value::from("not-your-chunk"),
                AckReply::Close => return,
            };
            let ack = rmpv::Value::Map(vec![(rmpv::Value::from("ack"), reply)]);
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &ack).expect("encode ack");
            // Split the ack over two writes: the client must reassemble it.
            let (a, b) = out.split_at(3);
            let _ = stream.write_all(a).await;
            let _ = stream.flush().await;
            let _ = stream.write_all(b).await;
        }
    }
}

/// The next whole MessagePack value on the stream, with its bytes; None at EOF.
async fn next_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Vec<u8>, rmpv::Value)> {
    loop {
        let mut rest = buf.as_slice();
        if let Ok(v) = rmpv::decode::read_value(&mut rest) {
            let used = buf.len() - rest.len();
            let bytes: Vec<u8> = buf.drain(..used).collect();
            return Some((bytes, v));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn event_time(v: &rmpv::Value) -> EventTime {
    match v {
        rmpv::Value::Ext(0, b) if b.len() == 8 => EventTime {
            secs: i64::from(u32::from_be_bytes(b[..4].try_into().expect("4"))),
            nanos: u32::from_be_bytes(b[4..].try_into().expect("4")),
        },
        other => panic!("time is not an EventTime: {other}"),
    }
}

fn decode(frame: rmpv::Value) -> Received {
    let items = frame.as_array().expect("frame is an array").clone();
    let tag = items[0].as_str().expect("tag").to_string();
    let mut entries = Vec::new();
    let options;
    match &items[1] {
        rmpv::Value::Array(list) => {
            for e in list {
                entries.push((event_time(&e[0]), e[1].clone()));
            }
            options = items.get(2).cloned();
        }
        rmpv::Value::Binary(body) => {
            options = items.get(2).cloned();
            let gz = options
                .as_ref()
                .map(|o| o["compressed"].as_str() == Some("gzip"))
                .unwrap_or(false);
            let mut body = body.clone();
            if gz {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(body.as_slice())
                    .read_to_end(&mut out)
                    .expect("gunzip");
                body = out;
            }
            let mut rest = body.as_slice();
            while !rest.is_empty() {
                let e = rmpv::decode::read_value(&mut rest).expect("entry");
                entries.push((event_time(&e[0]), e[1].clone()));
            }
        }
        time => {
            entries.push((event_time(time), items[2].clone()));
            options = items.get(3).cloned();
        }
    }
    Received {
        tag,
        entries,
        options,
    }
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            time: EventTime {
                secs: 1_700_000_000 + i as i64,
                nanos: 123_456_789,
            },
            record: Record::Value(rmpv::Value::Map(vec![
                ("n".into(), rmpv::Value::from(i as u64)),
                ("msg".into(), rmpv::Value::from("héllo")),
            ])),
        })
        .collect()
}

#[tokio::test]
async fn every_mode_round_trips_with_ack() {
    let (addr, mut rx) = start(plain()).await;
    let mut client = ForwardClient::connect(&ClientOptions::new(&addr))
        .await
        .expect("connect");
    for (mode, n) in [
        (Mode::Message, 1),
        (Mode::Forward, 3),
        (Mode::PackedForward, 3),
        (Mode::CompressedPackedForward, 3),
    ] {
        let sent = events(n);
        client
            .send(mode, "td.db.t", &sent, true)
            .await
            .expect("send");
        let got = rx.recv().await.expect("frame");
        assert_eq!(got.tag, "td.db.t", "{mode:?}");
        assert_eq!(got.entries.len(), n, "{mode:?}");
        for (e, (time, record)) in sent.iter().zip(&got.entries) {
            assert_eq!(*time, e.time, "{mode:?}");
            let Record::Value(v) = &e.record else {
                unreachable!()
            };
            assert_eq!(record, v, "{mode:?}");
        }
        let options = got.options.expect("options");
        assert_eq!(options["size"].as_u64(), Some(n as u64), "{mode:?}");
        assert_eq!(
            options["chunk"].as_str().map(str::len),
            Some(24),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn frames_without_ack_carry_no_chunk_and_raw_records_pass_through() {
    let (addr, mut rx) = start(plain()).await;
    let mut client = ForwardClient::connect(&ClientOptions::new(&addr))
        .await
        .expect("connect");
    let raw = Event {
        time: EventTime::now(),
        record: Record::Raw(vec![0x81, 0xa1, b'k', 0xca, 0x3e, 0xaa, 0xaa, 0xab]),
    };
    client
        .send(Mode::Message, "raw", std::slice::from_ref(&raw), false)
        .await
        .expect("send");
    client
        .send(Mode::Forward, "fwd", &events(2), false)
        .await
        .expect("send");
    let got = rx.recv().await.expect("frame");
    assert!(got.options.is_none());
    assert!(got.entries[0].1["k"].is_f32());
    let got = rx.recv().await.expect("frame");
    assert_eq!((got.tag.as_str(), got.entries.len()), ("fwd", 2));
    assert!(got.options.is_none());
}

#[tokio::test]
async fn message_mode_refuses_batches() {
    let err = encode_frame(Mode::Message, "t", &events(2), false).expect_err("two events");
    assert!(
        err.to_string().contains("exactly one event, got 2"),
        "{err}"
    );
}

#[tokio::test]
async fn ack_mismatch_is_detected() {
    let (addr, _rx) = start(ServerSetup {
        ack: AckReply::Wrong,
        ..plain()
    })
    .await;
    let mut client = ForwardClient::connect(&ClientOptions::new(&addr))
        .await
        .expect("connect");
    let err = client
        .send(Mode::Forward, "t", &events(1), true)
        .await
        .expect_err("mismatch");
    assert!(format!("{err:#}").contains("ack mismatch"), "{err:#}");
}

#[tokio::test]
async fn close_without_ack_is_an_error() {
    let (addr, _rx) = start(ServerSetup {
        ack: AckReply::Close,
        ..plain()
    })
    .await;
    let mut client = ForwardClient::connect(&ClientOptions::new(&addr))
        .await
        .expect("connect");
    let err = client
        .send(Mode::Forward, "t", &events(1), true)
        .await
        .expect_err("closed");
    assert!(
        format!("{err:#}").contains("closed the connection"),
        "{err:#}"
    );
}

fn secured_options(addr: &str, key: &str) -> ClientOptions {
    ClientOptions {
        shared_key: Some(key.into()),
        self_hostname: "client.test".into(),
        ..ClientOptions::new(addr)
    }
}

#[tokio::test]
async fn handshake_succeeds_then_frames_flow() {
    let (addr, mut rx) = start(secured(false)).await;
    let mut client = ForwardClient::connect(&secured_options(&addr, "k3y"))
        .await
        .expect("handshake");
    assert!(client.keepalive());
    client
        .send(Mode::PackedForward, "t", &events(2), true)
        .await
        .expect("send");
    assert_eq!(rx.recv().await.expect("frame").entries.len(), 2);
}

#[tokio::test]
async fn handshake_with_user_auth() {
    let (addr, mut rx) = start(secured(true)).await;
    let mut opts = secured_options(&addr, "k3y");
    opts.username = Some("alice".into());
    opts.password = Some("pw".into());
    let mut client = ForwardClient::connect(&opts).await.expect("handshake");
    client
        .send(Mode::Forward, "t", &events(1), true)
        .await
        .expect("send");
    assert_eq!(rx.recv().await.expect("frame").entries.len(), 1);
    opts.password = Some("nope".into());
    let err = ForwardClient::connect(&opts)
        .await
        .err()
        .expect("bad password");
    assert!(
        format!("{err:#}").contains("username/password mismatch"),
        "{err:#}"
    );
}

#[tokio::test]
async fn wrong_key_fails_with_the_servers_reason() {
    let (addr, _rx) = start(secured(false)).await;
    let err = ForwardClient::connect(&secured_options(&addr, "wrong"))
        .await
        .err()
        .expect("wrong key");
    let msg = format!("{err:#}");
    assert!(msg.contains("shared_key mismatch"), "{msg}");
    assert!(msg.contains(&addr), "{msg}");
}

#[tokio::test]
async fn a_server_that_does_not_know_the_key_is_caught() {
    // A fake server answering PONG true with a digest made from another key.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.expect("accept");
        let helo = Helo::new(true);
        stream.write_all(&helo.encode()).await.expect("helo");
        let mut buf = Vec::new();
        let (ping, _) = next_frame(&mut stream, &mut buf).await.expect("ping");
        // The impostor accepts any key by recomputing the client's digest check with
        // its own key, which the client must reject.
        let mut security = secured(false).security.expect("security");
        security.shared_key = "impostor".into();
        let mut ping_value = rmpv::decode::read_value(&mut ping.as_slice()).expect("ping");
        let salt = ping_value[2].as_str().expect("salt").to_string();
        let digest = crate::input::forward::handshake::digest_hex(&[
            salt.as_bytes(),
            b"client.test",
            &helo.nonce,
            b"impostor",
        ]);
        if let rmpv::Value::Array(items) = &mut ping_value {
            items[3] = digest.into();
        }
        let mut forged = Vec::new();
        rmpv::encode::write_value(&mut forged, &ping_value).expect("encode");
        let outcome = answer_ping(&forged, &helo, &security, peer.ip());
        assert!(outcome.result.is_ok());
        stream.write_all(&outcome.pong).await.expect("pong");
    });
    let err = ForwardClient::connect(&secured_options(&addr, "k3y"))
        .await
        .err()
        .expect("impostor");
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
}

#[tokio::test]
async fn cat_sends_three_lines_as_three_acked_events() {
    let (addr, mut rx) = start(plain()).await;
    let input: &[u8] = b"{\"a\":1}\n{\"b\":2.5,\"s\":\"x\"}\n[{\"c\":-3}]\n";
    let summary = cat(
        CatOptions::new(ClientOptions::new(&addr), "cat.test"),
        input,
    )
    .await
    .expect("cat");
    assert_eq!(summary.events, 3);
    assert_eq!(summary.lines, 3);
    let mut records = Vec::new();
    while records.len() < 3 {
        let got = rx.recv().await.expect("frame");
        assert_eq!(got.tag, "cat.test");
        records.extend(got.entries.into_iter().map(|(_, r)| r));
    }
    assert_eq!(records[0]["a"].as_u64(), Some(1));
    assert_eq!(records[1]["b"].as_f64(), Some(2.5));
    assert_eq!(records[2]["c"].as_i64(), Some(-3));
}

#[tokio::test]
async fn cat_batches_buffered_lines_and_names_a_bad_line() {
    let (addr, mut rx) = start(plain()).await;
    // All lines are buffered at once, so they travel in one frame.
    let input: &[u8] = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
    let summary = cat(CatOptions::new(ClientOptions::new(&addr), "t"), input)
        .await
        .expect("cat");
    assert_eq!(summary.frames, 1);
    assert_eq!(rx.recv().await.expect("frame").entries.len(), 3);
    let input: &[u8] = b"{\"a\":1}\nnot json\n";
    let err = cat(CatOptions::new(ClientOptions::new(&addr), "t"), input)
        .await
        .expect_err("bad line");
    assert!(format!("{err:#}").contains("line 2"), "{err:#}");
}

#[tokio::test]
async fn cat_sends_each_line_at_once_when_input_trickles() {
    let (addr, mut rx) = start(secured(false)).await;
    let (mut input, rd) = tokio::io::duplex(1024);
    let task = tokio::spawn(cat(
        CatOptions::new(secured_options(&addr, "k3y"), "t"),
        tokio::io::BufReader::new(rd),
    ));
    input.write_all(b"{\"a\":1}\n").await.expect("write");
    // The first line is delivered on its own, before any later input exists.
    assert_eq!(rx.recv().await.expect("frame").entries.len(), 1);
    input
        .write_all(b"{\"a\":2}\n{\"a\":3}\n")
        .await
        .expect("write");
    drop(input);
    let summary = task.await.expect("join").expect("cat");
    assert_eq!(summary.events, 3);
    assert_eq!(summary.lines, 3);
    let mut later = 0;
    while later < 2 {
        later += rx.recv().await.expect("frame").entries.len();
    }
    assert_eq!(later, 2);
}

#[tokio::test]
async fn connect_errors_name_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let err = ForwardClient::connect(&ClientOptions::new(&addr))
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains(&addr), "{err:#}");
}

/// A CA and a server certificate for `127.0.0.1` signed by it; returns the server's
/// rustls config and the CA's PEM.
fn tls_server(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (std::sync::Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    (std::sync::Arc::new(config), ca_cert.pem())
}

/// A TLS server that reads one frame per connection and acks it; returns its address.
async fn start_tls(
    config: std::sync::Arc<rustls::ServerConfig>,
) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                continue;
            };
            let mut reader = ReplyReader::default();
            let Ok(frame) = reader.read(&mut tls).await else {
                continue;
            };
            let received = decode(frame);
            let chunk = received.options.as_ref().map(|o| o["chunk"].clone());
            let _ = tx.send(received);
            if let Some(chunk) = chunk {
                let ack = rmpv::Value::Map(vec![(rmpv::Value::from("ack"), chunk)]);
                let mut out = Vec::new();
                rmpv::encode::write_value(&mut out, &ack).expect("encode ack");
                let _ = tls.write_all(&out).await;
                let _ = tls.flush().await;
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn tls_with_a_pinned_ca_round_trips() {
    let (config, ca_pem) = tls_server(&[&rustls::version::TLS12]);
    let (addr, mut rx) = start_tls(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");
    let mut opts = ClientOptions::new(&addr);
    opts.tls = Some(ClientTls {
        ca_file: Some(ca_file.clone()),
        ..ClientTls::default()
    });
    let mut client = ForwardClient::connect(&opts).await.expect("tls connect");
    client
        .send(Mode::Forward, "tls.test", &events(2), true)
        .await
        .expect("send over tls");
    assert_eq!(rx.recv().await.expect("frame").entries.len(), 2);

    // A name the certificate does not carry is refused.
    opts.tls = Some(ClientTls {
        ca_file: Some(ca_file),
        server_name: Some("other.example".into()),
        ..ClientTls::default()
    });
    let err = ForwardClient::connect(&opts).await.err().expect("bad name");
    assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");

    // Another CA is refused; insecure accepts anything.
    let (_, other_ca) = tls_server(&[&rustls::version::TLS12]);
    let other = dir.path().join("other.pem");
    std::fs::write(&other, other_ca).expect("write ca");
    opts.tls = Some(ClientTls {
        ca_file: Some(other),
        ..ClientTls::default()
    });
    assert!(ForwardClient::connect(&opts).await.is_err());
    opts.tls = Some(ClientTls {
        insecure: true,
        ..ClientTls::default()
    });
    let mut client = ForwardClient::connect(&opts).await.expect("insecure");
    client
        .send(Mode::Message, "tls.test", &events(1), true)
        .await
        .expect("send");
}

#[tokio::test]
async fn tls13_only_client_cannot_reach_a_tls12_server() {
    let (config, _) = tls_server(&[&rustls::version::TLS12]);
    let (addr, _rx) = start_tls(config).await;
    let mut opts = ClientOptions::new(&addr);
    opts.tls = Some(ClientTls {
        insecure: true,
        min_version: crate::config::TlsVersion::Tls13,
        max_version: crate::config::TlsVersion::Tls13,
        ..ClientTls::default()
    });
    assert!(ForwardClient::connect(&opts).await.is_err());
}
