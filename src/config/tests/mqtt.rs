//! `[[source]] type = "mqtt"`: defaults, the shipped example, every check.

use super::*;

fn mqtt(c: &Config, i: usize) -> &MqttConfig {
    match c.sources.get(i) {
        Some(SourceConfig::Mqtt(m)) => m,
        other => panic!("source #{i} is not an mqtt source: {other:?}"),
    }
}

#[test]
fn defaults_are_a_persistent_qos1_json_session() {
    let c = parse(
        r#"
[[source]]
type = "mqtt"
broker = "broker.local"
topics = ["devices/+/telemetry"]
"#,
    );
    let m = mqtt(&c, 0);
    assert_eq!((m.host.as_str(), m.port), ("broker.local", 1883));
    assert_eq!(m.topics, ["devices/+/telemetry"]);
    assert_eq!(m.qos, 1);
    assert!(!m.clean_session);
    assert_eq!(m.client_id, None);
    assert_eq!(m.format, PayloadFormat::Json);
    assert_eq!(m.tag_prefix.as_deref(), Some("mqtt"));
    assert_eq!(m.topic_key.as_deref(), Some("topic"));
    assert_eq!(m.max_payload_size, 1 << 20);
    assert_eq!(m.keep_alive, Duration::from_secs(30));
    assert_eq!(m.reconnect_delay, Duration::from_secs(1));
    assert_eq!(m.reconnect_max_delay, Duration::from_secs(60));
    assert!(m.tls.is_none());
}

#[test]
fn the_shipped_example_parses() {
    let c = parse(include_str!("../../../conf/examples/mqtt.toml"));
    let m = mqtt(&c, 0);
    assert_eq!(m.client_id.as_deref(), Some("tidepool-aggregator-1"));
    assert_eq!(m.topics.len(), 2);
}

#[test]
fn tls_defaults_the_port_and_resolves_files_against_the_config_dir() {
    let base = Path::new("/etc/tidepool");
    let c = parse_in(
        r##"
[[source]]
type = "mqtt"
broker = "10.0.0.5"
topics = ["#"]
qos = 2
format = "msgpack"
tag_prefix = ""
topic_key = false
tag = "dev.${topic_parts[-1]}"
username = "u"
password = "${MQTT_PW}"
tls = { ca = "ca.pem", cert = "c.pem", key = "c.key", server_name = "broker.local" }
"##,
        base,
        &[("MQTT_PW", "secret")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = mqtt(&c, 0);
    assert_eq!(m.port, 8883);
    assert_eq!(m.qos, 2);
    assert_eq!(m.format, PayloadFormat::Msgpack);
    assert_eq!(m.tag_prefix, None);
    assert_eq!(m.topic_key, None);
    assert!(m.tag.is_some());
    assert_eq!(m.password.as_deref(), Some("secret"));
    let tls = m.tls.clone().unwrap_or_default();
    assert_eq!(tls.ca, Some(base.join("ca.pem")));
    assert_eq!(tls.key, Some(base.join("c.key")));
    assert_eq!(tls.server_name.as_deref(), Some("broker.local"));
}

#[test]
fn every_bad_value_is_reported_with_its_place() {
    let errs = errors(
        r#"
[[source]]
type = "mqtt"
broker = "mqtt://x:1883"
topics = ["a/#/b", "ok", "ok"]
qos = 3
password = "p"
format = "xml"
tag = "${tag}"
topic_key = ""
client_id = "has space"
tls = { cert = "c.pem" }
reconnect_delay = "10s"
reconnect_max_delay = "1s"
"#,
    );
    let all = errs.join("\n");
    for needle in [
        "t.toml:4:10: source[1].broker: bad broker \"mqtt://x:1883\": write host:port without a scheme",
        "source[1].topics[1]: bad topic filter \"a/#/b\"",
        "source[1].topics[3]: topic filter \"ok\" is listed twice",
        "source[1].qos: bad qos 3 (expected 0, 1 or 2)",
        "source[1].password: `password` needs `username`",
        "source[1].format: unknown format \"xml\"",
        "source[1].tag: unknown placeholder ${tag}",
        "source[1].topic_key: bad topic_key",
        "source[1].client_id: bad client_id \"has space\"",
        "source[1].tls.cert: `cert` needs `key`",
        "source[1].reconnect_max_delay: reconnect_max_delay 1s is below reconnect_delay 10s",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn missing_topics_and_unknown_keys_are_refused() {
    let all = errors(
        r#"
[[source]]
type = "mqtt"
broker = "127.0.0.1:1883"
topics = []
listen = "0.0.0.0:1"
"#,
    )
    .join("\n");
    assert!(
        all.contains("source[1].listen: unknown key `listen`"),
        "{all}"
    );
    let all = errors(
        r#"
[[source]]
type = "mqtt"
broker = "127.0.0.1:1883"
topics = []
"#,
    )
    .join("\n");
    assert!(
        all.contains("source[1].topics: no topic filters listed"),
        "{all}"
    );
    let all = errors("[[source]]\ntype = \"amqp\"\n").join("\n");
    assert!(
        all.contains("expected one of: forward, http, mqtt"),
        "{all}"
    );
}
