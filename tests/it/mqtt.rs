//! The MQTT input against a real Mosquitto broker started by each test: JSON, msgpack
//! and raw payloads become routed records, bad payloads are kept and counted, QoS 1
//! with a persistent session loses nothing across a tidepool crash, TLS with a client
//! certificate, an output blocked for several keep-alive periods costs no reconnect.
//! Skipped (with the reason printed) when Mosquitto is not installed,
//! unless `TIDEPOOL_REQUIRE_SERVICES=1`.

use crate::util::*;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian puts the broker; PATH is tried too.
const MOSQUITTO: &[&str] = &["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "mosquitto"];

/// A Mosquitto child on free loopback ports, killed on drop.
struct Broker {
    child: Child,
    /// The plain listener.
    port: u16,
    /// The TLS listener (client certificate required), when asked for.
    tls_port: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_bin() -> Option<PathBuf> {
    MOSQUITTO.iter().map(PathBuf::from).find(|p| {
        Command::new(p)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Broker {
    /// Starts Mosquitto, or returns None after printing why it is skipped.
    fn start(tls: Option<&Path>) -> Option<Broker> {
        Broker::start_on(free_port(), tls)
    }

    /// [`Broker::start`] on a chosen plain port.
    fn start_on(port: u16, tls: Option<&Path>) -> Option<Broker> {
        Broker::launch(port, tls, 0)
    }

    /// [`Broker::start`] with Mosquitto's `max_inflight_messages` (QoS 1/2 messages sent
    /// to a client and not yet acked) set to `inflight`; 0 is no limit.
    fn start_with_inflight(inflight: u32) -> Option<Broker> {
        Broker::launch(free_port(), None, inflight)
    }

    fn launch(port: u16, tls: Option<&Path>, inflight: u32) -> Option<Broker> {
        let Some(bin) = mosquitto_bin() else {
            skip("mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conf = format!(
            "per_listener_settings false\nallow_anonymous true\nuser root\n\
             persistence true\npersistence_location {}/\n\
             max_queued_messages 0\nmax_inflight_messages {inflight}\n\
             log_dest stderr\nlog_type error\nlog_type warning\n\
             listener {port} 127.0.0.1\n",
            dir.path().display()
        );
        let tls_port = tls.map(|certs| {
            let p = free_port();
            conf.push_str(&format!(
                "listener {p} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
                certs.display()
            ));
            p
        });
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mosquitto");
        let broker = Broker {
            child,
            port,
            tls_port,
            _dir: dir,
        };
        for p in std::iter::once(port).chain(tls_port) {
            wait_for(&format!("mosquitto listening on {p}"), || {
                std::net::TcpStream::connect(("127.0.0.1", p)).ok()
            });
        }
        Some(broker)
    }
}

/// Publishes `msgs` with `qos` and returns once the broker acknowledged every one.
fn publish(port: u16, qos: QoS, msgs: &[(String, Vec<u8>)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let id = format!("test-pub-{}", rand::random::<u32>());
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_max_packet_size(1 << 24, 1 << 24);
        o.set_inflight(100);
        let (client, mut ev) = AsyncClient::new(o, 1000);
        let msgs = msgs.to_vec();
        let total = msgs.len();
        let sender = tokio::spawn({
            let client = client.clone();
            async move {
                for (topic, payload) in msgs {
                    client
                        .publish(topic, qos, false, payload)
                        .await
                        .expect("queue publish");
                }
            }
        });
        let mut done = 0usize;
        let mut sent = 0usize;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while done < total {
            let ev = tokio::time::timeout_at(deadline, ev.poll())
                .await
                .expect("broker acks within PATIENCE")
                .expect("publisher connection");
            match ev {
                Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_)) => done += 1,
                Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => {
                    sent += 1;
                    done = sent;
                }
                _ => {}
            }
        }
        sender.await.expect("sender");
        let _ = client.disconnect().await;
        // Let the DISCONNECT go out.
        while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await {
            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    });
}

fn json_msg(topic: &str, v: serde_json::Value) -> (String, Vec<u8>) {
    (topic.to_string(), v.to_string().into_bytes())
}

/// A daemon config: the API on a free port, everything into `out/${tag}.jsonl`.
fn config(sources: &str) -> String {
    format!(
        r#"[server]
data_dir = "data"
shutdown_timeout = "10s"

[api]
listen = "127.0.0.1:0"

{sources}

[[match]]
pattern = "**"
outputs = ["out"]

[output.out]
type = "file"
path = "out/${{tag}}.jsonl"
"#
    )
}

fn mqtt_source(port: u16, topics: &str, extra: &str) -> String {
    format!(
        "[[source]]\ntype = \"mqtt\"\nbroker = \"127.0.0.1:{port}\"\ntopics = {topics}\n{extra}\n"
    )
}

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = http(addr, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[test]
fn payloads_become_routed_records_and_bad_ones_are_kept_and_counted() {
    let Some(broker) = Broker::start(None) else {
        return;
    };
    let sources = [
        mqtt_source(broker.port, r#"["devices/+/telemetry"]"#, "qos = 1"),
        mqtt_source(
            broker.port,
            r#"["mp/#"]"#,
            "format = \"msgpack\"\ntag_prefix = \"\"\ntopic_key = false",
        ),
        mqtt_source(
            broker.port,
            r#"["logs/#"]"#,
            "format = \"raw\"\nqos = 0\ntag = \"app.${topic_parts[1]}\"",
        ),
    ]
    .join("\n");
    let d = TestDaemon::start(&config(&sources));
    d.wait_log("source #1 (mqtt) subscribed to devices/+/telemetry (qos 1) on 127.0.0.1:");
    d.wait_log("source #2 (mqtt) subscribed to mp/# (qos 1)");
    d.wait_log("source #3 (mqtt) subscribed to logs/# (qos 0)");

    let mut mp = Vec::new();
    rmpv::encode::write_value(
        &mut mp,
        &rmpv::Value::Map(vec![
            ("heap".into(), 4096.into()),
            ("ok".into(), true.into()),
        ]),
    )
    .expect("encode");
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &[
            json_msg(
                "devices/d1/telemetry",
                serde_json::json!({"temp": 21.5, "n": 1}),
            ),
            json_msg("devices/d2/telemetry", serde_json::json!([1, 2])),
            ("devices/d1/telemetry".into(), b"{\"temp\": ".to_vec()),
            ("not/subscribed".into(), b"{}".to_vec()),
            ("mp/heap".into(), mp),
            ("logs/web/access".into(), b"GET / 200".to_vec()),
        ],
    );

    let d1 = d.wait_records("data/out/mqtt.devices.d1.telemetry.jsonl", 2);
    assert_eq!(d1[0]["temp"], 21.5);
    assert_eq!(d1[0]["n"], 1);
    assert_eq!(d1[0]["topic"], "devices/d1/telemetry");
    assert_eq!(d1[1]["message"], "{\"temp\": ");
    assert!(
        d1[1]["_parse_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid JSON")),
        "{}",
        d1[1]
    );
    let d2 = d.wait_records("data/out/mqtt.devices.d2.telemetry.jsonl", 1);
    assert_eq!(d2[0]["message"], serde_json::json!([1, 2]));
    let heap = d.wait_records("data/out/mp.heap.jsonl", 1);
    assert_eq!(heap[0], serde_json::json!({"heap": 4096, "ok": true}));
    let logs = d.wait_records("data/out/mqtt.app.web.jsonl", 1);
    assert_eq!(logs[0]["message"], "GET / 200");
    assert_eq!(logs[0]["topic"], "logs/web/access");
    assert!(
        !d.dir.join("data/out/mqtt.not.subscribed.jsonl").exists(),
        "an unsubscribed topic arrived"
    );

    let api = d.api_addr();
    let metrics = get(api, "/metrics");
    assert!(
        metrics.contains("tidepool_mqtt_bad_payloads_total{input=\"mqtt #1 127.0.0.1:")
            && metrics.contains("reason=\"json\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidepool_mqtt_events_total{input=\"mqtt #1"),
        "{metrics}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&get(api, "/api/status")).expect("status JSON");
    let mqtt: Vec<&serde_json::Value> = status["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter(|p| p["type"] == "mqtt")
        .collect();
    assert_eq!(mqtt.len(), 3, "{status}");
    assert_eq!(mqtt[0]["emit_records"], 3);
    assert_eq!(mqtt[0]["acks"], 3);
    assert_eq!(mqtt[0]["connected"], true);
    assert_eq!(mqtt[0]["bad_payloads"]["json"], 1);
}

/// `seq` values found in the JSON lines of `rel`, with how often each came.
fn seqs(d: &TestDaemon, rel: &str) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for line in d.lines(rel) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(n) = v["seq"].as_u64()
        {
            *seen.entry(n).or_default() += 1;
        }
    }
    seen
}

fn numbered(topic: &str, range: std::ops::Range<u64>) -> Vec<(String, Vec<u8>)> {
    padded(topic, range, 32)
}

/// Numbered JSON messages with a `pad` string of `pad` bytes each.
fn padded(topic: &str, range: std::ops::Range<u64>, pad: usize) -> Vec<(String, Vec<u8>)> {
    range
        .map(|seq| {
            json_msg(
                topic,
                serde_json::json!({"seq": seq, "pad": "x".repeat(pad)}),
            )
        })
        .collect()
}

#[test]
fn qos1_persistent_session_delivers_what_was_published_while_tidepool_was_down() {
    let Some(broker) = Broker::start(None) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&mqtt_source(
        broker.port,
        r#"["plant/#"]"#,
        "client_id = \"tidepool-restart-test\"",
    ));
    let mut d = TestDaemon::start_in(dir.path(), &cfg);
    d.wait_log("subscribed to plant/# (qos 1)");
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &numbered("plant/line1", 0..10),
    );
    let out = "data/out/mqtt.plant.line1.jsonl";
    d.wait_records(out, 10);
    d.kill9();

    // Published while tidepool is down: the broker queues them for the session.
    const N: u64 = 500;
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &numbered("plant/line1", 10..10 + N),
    );
    let d = TestDaemon::start_in(dir.path(), &cfg);
    let seen = wait_for("every message published while down", || {
        let s = seqs(&d, out);
        (s.len() as u64 == 10 + N).then_some(s)
    });
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..10 + N).collect::<Vec<_>>()
    );
    // The session was resumed, not re-made: no new SUBSCRIBE was needed for delivery.
    assert!(
        d.stderr().contains("subscribed to plant/#"),
        "{}",
        d.stderr()
    );
}

#[test]
fn a_crash_during_ingest_loses_no_acknowledged_message() {
    let Some(broker) = Broker::start(None) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&mqtt_source(
        broker.port,
        r#"["crash/#"]"#,
        "client_id = \"tidepool-crash-test\"",
    ));
    let out = "data/out/mqtt.crash.x.jsonl";
    // Flushed to the file often, so the crashes below come while messages stream in.
    let cfg = cfg.replace(
        "type = \"file\"",
        "type = \"file\"\nbuffer = { flush_interval = \"50ms\" }",
    );
    let mut d = TestDaemon::start_in(dir.path(), &cfg);
    d.wait_log("subscribed to crash/# (qos 1)");
    const N: u64 = 20_000;
    const CHUNK: u64 = 500;
    let port = broker.port;
    let publisher = std::thread::spawn(move || {
        for start in (0..N).step_by(CHUNK as usize) {
            publish(
                port,
                QoS::AtLeastOnce,
                &numbered("crash/x", start..start + CHUNK),
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // Kill -9 twice while messages stream in, each time once some have been stored.
    for round in 1..=2usize {
        wait_for(&format!("records before crash {round}"), || {
            (d.lines(out).len() >= round * 3000).then_some(())
        });
        d.kill9();
        d = TestDaemon::start_in(dir.path(), &cfg);
    }
    publisher.join().expect("publisher");
    let seen = wait_for("every published message after the crashes", || {
        let s = seqs(&d, out);
        (s.len() as u64 == N).then_some(s)
    });
    let dups: usize = seen.values().map(|c| c - 1).sum();
    eprintln!("crash test: {N} messages, {dups} duplicates after 2 kill -9");
    assert_eq!(seen.keys().next_back().copied(), Some(N - 1));
}

/// CA, broker certificate (127.0.0.1) and client certificate, as PEM files in `dir`.
fn write_certs(dir: &Path) {
    let ca = crate::test_ca::TestCa::new("mqtt test CA");
    let write = |name: &str, pem: &str| {
        std::fs::write(dir.join(name), pem).expect("write certificate file");
    };
    write("ca.pem", &ca.pem);
    let (cert, key) = ca.server(&["127.0.0.1"]);
    write("server.pem", &cert);
    write("server.key", &key);
    let (cert, key) = ca.client("tidepool");
    write("client.pem", &cert);
    write("client.key", &key);
}

#[test]
fn tls_to_the_broker_with_a_pinned_ca_and_a_client_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    write_certs(certs.path());
    let Some(broker) = Broker::start(Some(certs.path())) else {
        return;
    };
    let tls_port = broker.tls_port.expect("TLS listener");
    let c = certs.path().display();
    let source = mqtt_source(
        tls_port,
        r#"["secure/#"]"#,
        &format!(
            "tls = {{ ca = \"{c}/ca.pem\", cert = \"{c}/client.pem\", key = \"{c}/client.key\" }}"
        ),
    );
    let d = TestDaemon::start(&config(&source));
    d.wait_log("(mqtt) connecting to 127.0.0.1:");
    d.wait_log("subscribed to secure/# (qos 1)");
    // Published on the plain listener of the same broker.
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &[json_msg("secure/dev", serde_json::json!({"over": "tls"}))],
    );
    let recs = d.wait_records("data/out/mqtt.secure.dev.jsonl", 1);
    assert_eq!(recs[0]["over"], "tls");

    // A CA that did not sign the broker's certificate: refused, said once, no records.
    let other = tempfile::tempdir().expect("tempdir");
    write_certs(other.path());
    let o = other.path().display();
    let bad = mqtt_source(
        tls_port,
        r#"["secure/#"]"#,
        &format!(
            "tls = {{ ca = \"{o}/ca.pem\", cert = \"{c}/client.pem\", key = \"{c}/client.key\" }}"
        ),
    );
    let d = TestDaemon::start(&config(&bad));
    d.wait_log("cannot connect to 127.0.0.1:");
    assert!(!d.stderr().contains("subscribed to"), "{}", d.stderr());
}

#[test]
fn reload_restarts_a_changed_source_and_keeps_an_unchanged_one() {
    let Some(broker) = Broker::start(None) else {
        return;
    };
    let keep = mqtt_source(broker.port, r#"["keep/#"]"#, "client_id = \"keep\"");
    let first = mqtt_source(broker.port, r#"["a/#"]"#, "client_id = \"changing\"");
    let second = mqtt_source(broker.port, r#"["b/#"]"#, "client_id = \"changing\"");
    let d = TestDaemon::start(&config(&format!("{keep}\n{first}")));
    d.wait_log("subscribed to a/# (qos 1)");
    d.wait_log("subscribed to keep/# (qos 1)");
    std::fs::write(
        d.dir.join("tidepool.toml"),
        config(&format!("{keep}\n{second}")),
    )
    .expect("write config");
    d.reload_ok();
    d.wait_log("subscribed to b/# (qos 1)");
    d.wait_log("config reloaded");
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &[
            json_msg("b/x", serde_json::json!({"n": 1})),
            json_msg("keep/x", serde_json::json!({"n": 2})),
        ],
    );
    d.wait_records("data/out/mqtt.b.x.jsonl", 1);
    d.wait_records("data/out/mqtt.keep.x.jsonl", 1);
    let log = d.stderr();
    assert_eq!(
        log.matches("source #2 (mqtt) removed or changed").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("subscribed to keep/#").count(),
        1,
        "kept source resubscribed:\n{log}"
    );
    assert!(!log.contains("did not stop within"), "{log}");
    // SIGTERM: both sources send their last acks, DISCONNECT and end.
    let mut d = d;
    assert!(d.stop().success(), "{}", d.stderr());
    let log = d.stderr();
    assert!(
        log.contains("source #1 (mqtt) stopped") && log.contains("source #2 (mqtt) stopped"),
        "{log}"
    );
}

#[test]
fn reconnects_with_backoff_and_resubscribes_when_the_broker_lost_the_session() {
    if mosquitto_bin().is_none() {
        skip("mosquitto is not installed (apt-get install mosquitto)");
        return;
    }
    // No broker yet: tidepool starts anyway and says so once, not once per attempt.
    let port = free_port();
    let source = mqtt_source(
        port,
        r#"["up/#"]"#,
        "reconnect_delay = \"50ms\"\nreconnect_max_delay = \"200ms\"",
    );
    let d = TestDaemon::start(&config(&source));
    d.wait_log("source #1 (mqtt) cannot connect to 127.0.0.1:");
    let api = d.api_addr();
    wait_for("several failed attempts", || {
        let m = get(api, "/metrics");
        m.lines()
            .find(|l| l.starts_with("tidepool_mqtt_reconnects_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n >= 3)
    });
    assert_eq!(
        d.stderr().matches("cannot connect to").count(),
        1,
        "{}",
        d.stderr()
    );

    let broker = Broker::start_on(port, None).expect("mosquitto");
    d.wait_log("subscribed to up/# (qos 1)");
    publish(
        port,
        QoS::AtLeastOnce,
        &[json_msg("up/a", serde_json::json!({"n": 1}))],
    );
    d.wait_records("data/out/mqtt.up.a.jsonl", 1);

    // The broker dies and comes back without the session (SIGKILL, nothing saved):
    // tidepool notices, reconnects and subscribes again.
    drop(broker);
    d.wait_log("lost its connection to 127.0.0.1:");
    let _broker = Broker::start_on(port, None).expect("mosquitto");
    wait_for("a second SUBSCRIBE", || {
        (d.stderr().matches("subscribed to up/#").count() == 2).then_some(())
    });
    publish(
        port,
        QoS::AtLeastOnce,
        &[json_msg("up/a", serde_json::json!({"n": 2}))],
    );
    let recs = d.wait_records("data/out/mqtt.up.a.jsonl", 2);
    assert_eq!(recs[1]["n"], 2);
}

#[test]
fn qos2_messages_are_received_once_durable() {
    let Some(broker) = Broker::start(None) else {
        return;
    };
    let source = mqtt_source(broker.port, r#"["q2/#"]"#, "qos = 2");
    let d = TestDaemon::start(&config(&source));
    d.wait_log("subscribed to q2/# (qos 2)");
    publish(broker.port, QoS::ExactlyOnce, &numbered("q2/x", 0..50));
    let out = "data/out/mqtt.q2.x.jsonl";
    d.wait_records(out, 50);
    let api = d.api_addr();
    let status: serde_json::Value =
        serde_json::from_str(&get(api, "/api/status")).expect("status JSON");
    let acks = status["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["type"] == "mqtt"))
        .map(|p| p["acks"].clone());
    // Every PUBREC went out after its batch was durable.
    assert_eq!(acks, Some(serde_json::json!(50)), "{status}");
    assert_eq!(seqs(&d, out).len(), 50);
}

/// The MQTT plugin entry of `/api/status` (the first one).
fn mqtt_status(d: &TestDaemon) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&get(d.api_addr(), "/api/status")).expect("status JSON");
    status["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["type"] == "mqtt"))
        .cloned()
        .unwrap_or_else(|| panic!("no mqtt plugin in {status}"))
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// An output blocked for several keep-alive periods must not cost the broker
/// connection: the source keeps polling rumqttc (pings, PINGRESP reads) while what the
/// batcher cannot take waits in its bounded backlog, then everything arrives once.
#[test]
fn a_blocked_output_does_not_cost_the_broker_connection() {
    // The broker lets this many QoS 1 messages be in flight (sent, unacked) to tidepool:
    // more than the batcher's channel holds (1000, `session::MAX_BATCH`) with the
    // batch stuck in emit, fewer than the channel plus the driver's backlog (another
    // 1000). A driver that stops polling when the channel is full sends no PINGREQ.
    const WINDOW: u64 = 1500;
    const KEEP_ALIVE: Duration = Duration::from_secs(2);
    let Some(broker) = Broker::start_with_inflight(WINDOW as u32) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // `data/blocked` is a file, so the output cannot create its directory: every flush
    // fails (retryably) and the tiny buffer fills, blocking the MQTT source's emits.
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/blocked"), b"not a directory").expect("write");
    let cfg = config(&mqtt_source(
        broker.port,
        r#"["stall/#"]"#,
        &format!(
            "client_id = \"tidepool-stall-test\"\nkeep_alive = \"{}s\"",
            KEEP_ALIVE.as_secs()
        ),
    ))
    .replace(
        "path = \"out/${tag}.jsonl\"",
        "path = \"blocked/${tag}.jsonl\"\n\
         buffer = { type = \"file\", flush_interval = \"100ms\", retry_wait = \"100ms\", \
         retry_max_interval = \"500ms\", total_limit_size = \"128KiB\", \
         chunk_limit_size = \"16KiB\", overflow_action = \"block\" }",
    );
    let d = TestDaemon::start_in(dir.path(), &cfg);
    d.wait_log("subscribed to stall/# (qos 1)");

    // 1 KiB messages fill the 128 KiB buffer in two waves of 80 (a batch bigger than
    // the whole buffer would be refused, not blocked): the first is stored and acked,
    // the second overflows and its batch waits in emit. The largest batch later (1000
    // small messages, ≈ 70 KiB) fits too.
    const WAVE: u64 = 80;
    const FILL: u64 = 2 * WAVE;
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &padded("stall/x", 0..WAVE, 1000),
    );
    wait_for("the first wave stored and acked", || {
        (count(&mqtt_status(&d), "acks") == WAVE).then_some(())
    });
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &padded("stall/x", WAVE..FILL, 1000),
    );
    d.wait_log("buffer full");
    // More than the window: the broker sends WINDOW unacked ones and queues the rest.
    const FLOOD: u64 = 3000;
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &numbered("stall/x", FILL..FILL + FLOOD),
    );

    // The stall under test: several keep-alive periods, well past the broker's 1.5 ×
    // keep_alive grace, with the output still down.
    std::thread::sleep(KEEP_ALIVE * 4);
    let stalled = mqtt_status(&d);
    assert!(
        d.lines("data/blocked/mqtt.stall.x.jsonl").is_empty(),
        "the output was down"
    );

    std::fs::remove_file(dir.path().join("data/blocked")).expect("unblock");
    let out = "data/blocked/mqtt.stall.x.jsonl";
    let seen = wait_for("every message after the stall", || {
        let s = seqs(&d, out);
        (s.len() as u64 == FILL + FLOOD).then_some(s)
    });

    let log = d.stderr();
    let status = mqtt_status(&d);
    assert_eq!(
        count(&status, "connects"),
        1,
        "the broker dropped tidepool during the stall: {status}\n{log}"
    );
    assert!(!log.contains("lost its connection"), "{log}");
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    // The stall really held more than the channel: tidepool read the broker's whole
    // window (received minus acked) and kept the connection.
    let held = count(&stalled, "messages").saturating_sub(count(&stalled, "acks"));
    assert_eq!(
        held, WINDOW,
        "received but unacked during the stall: {stalled}"
    );
    wait_for("every message acked", || {
        (count(&mqtt_status(&d), "acks") == FILL + FLOOD).then_some(())
    });
}

/// A burst bigger than the whole buffer is stored message by message, and one message
/// bigger than the buffer is dropped, logged and counted: neither makes the session
/// fail and the broker send the same messages again forever.
#[test]
fn messages_bigger_together_or_alone_than_the_buffer_do_not_wedge_the_session() {
    let Some(broker) = Broker::start(None) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&mqtt_source(
        broker.port,
        r#"["big/#"]"#,
        "client_id = \"tidepool-big-test\"",
    ))
    .replace(
        "path = \"out/${tag}.jsonl\"",
        "path = \"out/${tag}.jsonl\"\n\
         buffer = { type = \"file\", flush_interval = \"50ms\", total_limit_size = \"64KiB\", \
         chunk_limit_size = \"8KiB\", overflow_action = \"block\" }",
    );
    let mut d = TestDaemon::start_in(dir.path(), &cfg);
    d.wait_log("subscribed to big/# (qos 1)");
    d.kill9();
    // Queued while tidepool is down, so they arrive together at the next start: 200
    // messages of 1 KiB (≈ 200 KiB together, over the 64 KiB buffer) around one of
    // 100 KiB that no buffer this size can hold.
    let mut burst = padded("big/x", 0..100, 1000);
    burst.push(json_msg(
        "big/x",
        serde_json::json!({"seq": 1_000_000, "pad": "x".repeat(100 * 1024)}),
    ));
    burst.extend(padded("big/x", 100..200, 1000));
    publish(broker.port, QoS::AtLeastOnce, &burst);
    let d = TestDaemon::start_in(dir.path(), &cfg);
    let out = "data/out/mqtt.big.x.jsonl";
    let seen = wait_for("the 200 small messages", || {
        let s = seqs(&d, out);
        (s.len() == 200).then_some(s)
    });
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>()
    );
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");
    wait_for("every message acked, the big one too", || {
        (count(&mqtt_status(&d), "acks") == 201).then_some(())
    });
    let status = mqtt_status(&d);
    assert_eq!(count(&status, "dropped_too_large"), 1, "{status}");
    assert_eq!(count(&status, "connects"), 1, "{status}");
    assert!(d.stderr().contains("no buffer can hold"), "{}", d.stderr());
}
