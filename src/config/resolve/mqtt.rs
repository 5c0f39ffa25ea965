//! MQTT sources: broker address, topic filters, QoS, session, TLS, tags and payloads.

use super::Resolver;
use crate::config::de::{Value, typed};
use crate::config::raw::{self, Scalar};
use crate::config::*;
use crate::input::mqtt::TopicTemplate;
use toml::Spanned;

/// The broker port when `broker` names none: MQTT's registered ports.
const PLAIN_PORT: u16 = 1883;
const TLS_PORT: u16 = 8883;

impl Resolver<'_, '_, '_> {
    /// An MQTT input: its raw table deserialized, then every value checked.
    pub(super) fn mqtt(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
    ) -> Option<MqttConfig> {
        let raw: raw::MqttRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let p = |key: &str| format!("{path}.{key}");
        let tls = match &raw.tls {
            Some(t) => {
                let t = self.mqtt_tls(t, &p("tls"));
                ok &= t.is_some();
                t
            }
            None => None,
        };
        let default_port = if raw.tls.is_some() {
            TLS_PORT
        } else {
            PLAIN_PORT
        };
        let broker = match parse_broker(raw.broker.get_ref(), default_port) {
            Ok(hp) => Some(hp),
            Err(e) => {
                self.at(raw.broker.span(), &p("broker"), e);
                None
            }
        };
        let mut topics = Vec::new();
        if raw.topics.get_ref().is_empty() {
            self.at(
                raw.topics.span(),
                &p("topics"),
                "no topic filters listed (expected at least one, e.g. topics = [\"devices/+/telemetry\"])",
            );
            ok = false;
        }
        for (i, t) in raw.topics.get_ref().iter().enumerate() {
            let tpath = format!("{path}.topics[{}]", i + 1);
            if let Err(e) = check_topic_filter(t.get_ref()) {
                self.at(t.span(), &tpath, e);
                ok = false;
            } else if topics.contains(t.get_ref()) {
                self.at(
                    t.span(),
                    &tpath,
                    format!("topic filter \"{}\" is listed twice", t.get_ref()),
                );
                ok = false;
            } else {
                topics.push(t.get_ref().clone());
            }
        }
        let qos = match &raw.qos {
            None => Some(1),
            Some(q) => match u8::try_from(*q.get_ref()) {
                Ok(n @ 0..=2) => Some(n),
                _ => {
                    self.at(
                        q.span(),
                        &p("qos"),
                        format!("bad qos {} (expected 0, 1 or 2)", q.get_ref()),
                    );
                    None
                }
            },
        };
        let client_id = match &raw.client_id {
            Some(id) => {
                let checked = self.client_id(id, &p("client_id"));
                ok &= checked.is_some();
                checked
            }
            None => None,
        };
        let username = self.opt_name(raw.username.as_ref(), &p("username"), &mut ok);
        let password = raw.password.as_ref().map(|pw| pw.get_ref().clone());
        if let (Some(pw), None) = (&raw.password, &username) {
            self.at(
                pw.span(),
                &p("password"),
                "`password` needs `username` (MQTT 3.1.1 sends a password only with a username)",
            );
            ok = false;
        }
        let keep_alive = self.duration(
            raw.keep_alive.as_ref(),
            &p("keep_alive"),
            Duration::from_secs(30),
        );
        if let (Some(ka), Some(v)) = (keep_alive, &raw.keep_alive)
            && (ka < Duration::from_secs(1) || ka.as_secs() > u64::from(u16::MAX))
        {
            self.at(
                v.span(),
                &p("keep_alive"),
                format!("keep_alive {ka:?} is out of range (expected 1s to 65535s)"),
            );
            ok = false;
        }
        let format = match &raw.format {
            None => Some(PayloadFormat::Json),
            Some(f) => {
                match f.get_ref().trim().to_ascii_lowercase().as_str() {
                    "json" => Some(PayloadFormat::Json),
                    "msgpack" | "messagepack" => Some(PayloadFormat::Msgpack),
                    "raw" | "none" | "text" => Some(PayloadFormat::Raw),
                    other => {
                        self.at(
                        f.span(),
                        &p("format"),
                        format!("unknown format \"{other}\" (expected \"json\", \"msgpack\" or \"raw\")"),
                    );
                        None
                    }
                }
            }
        };
        let tag_prefix = match &raw.tag_prefix {
            None => Some("mqtt".to_string()),
            Some(v) if v.get_ref().is_empty() => None,
            Some(_) => self.opt_tag(raw.tag_prefix.as_ref(), &p("tag_prefix"), &mut ok),
        };
        let tag = match &raw.tag {
            None => None,
            Some(t) => match TopicTemplate::parse(t.get_ref()) {
                Ok(tpl) => Some(tpl),
                Err(e) => {
                    self.at(t.span(), &p("tag"), e);
                    ok = false;
                    None
                }
            },
        };
        let topic_key = match &raw.topic_key {
            None => Some("topic".to_string()),
            Some(v) => match v.get_ref() {
                Scalar::Bool(false) => None,
                Scalar::Str(s) if !s.trim().is_empty() => Some(s.clone()),
                _ => {
                    self.at(
                        v.span(),
                        &p("topic_key"),
                        "bad topic_key (expected a record key such as \"topic\", or false to leave the topic out)",
                    );
                    ok = false;
                    None
                }
            },
        };
        let max_payload_size = self.size_usize(
            raw.max_payload_size.as_ref(),
            &p("max_payload_size"),
            1 << 20,
        );
        let reconnect_delay = self.duration(
            raw.reconnect_delay.as_ref(),
            &p("reconnect_delay"),
            Duration::from_secs(1),
        );
        let reconnect_max_delay = self.duration(
            raw.reconnect_max_delay.as_ref(),
            &p("reconnect_max_delay"),
            Duration::from_secs(60),
        );
        if let (Some(min), Some(max), Some(v)) = (
            reconnect_delay,
            reconnect_max_delay,
            &raw.reconnect_max_delay,
        ) && max < min
        {
            self.at(
                v.span(),
                &p("reconnect_max_delay"),
                format!("reconnect_max_delay {max:?} is below reconnect_delay {min:?}"),
            );
            ok = false;
        }
        let (
            Some((host, port)),
            Some(qos),
            Some(keep_alive),
            Some(format),
            Some(max_payload_size),
            Some(reconnect_delay),
            Some(reconnect_max_delay),
            true,
        ) = (
            broker,
            qos,
            keep_alive,
            format,
            max_payload_size,
            reconnect_delay,
            reconnect_max_delay,
            ok,
        )
        else {
            return None;
        };
        Some(MqttConfig {
            host,
            port,
            topics,
            qos,
            client_id,
            clean_session: raw.clean_session.unwrap_or(false),
            username,
            password,
            tls,
            keep_alive,
            format,
            tag_prefix,
            tag,
            topic_key,
            max_payload_size,
            reconnect_delay,
            reconnect_max_delay,
        })
    }

    /// A client id: 1 to 65535 bytes of printable characters, no spaces.
    fn client_id(&mut self, v: &Spanned<String>, path: &str) -> Option<String> {
        let id = v.get_ref();
        if id.is_empty()
            || id.len() > usize::from(u16::MAX)
            || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.at(
                v.span(),
                path,
                format!("bad client_id \"{id}\" (expected 1 to 65535 characters without spaces, e.g. \"tidepool-1\")"),
            );
            return None;
        }
        Some(id.clone())
    }

    /// `tls = { ca, cert, key, server_name }`: cert and key come together.
    fn mqtt_tls(&mut self, tls: &Spanned<raw::MqttTlsRaw>, path: &str) -> Option<MqttTlsConfig> {
        let raw = tls.get_ref();
        let files = self.client_tls_files(&raw.ca, &raw.cert, &raw.key, path);
        let server_name = match &raw.server_name {
            Some(n) => Some(self.non_empty(n, &format!("{path}.server_name"))?),
            None => None,
        };
        let files = files?;
        Some(MqttTlsConfig {
            ca: files.ca,
            cert: files.cert,
            key: files.key,
            server_name,
        })
    }
}

/// `host:port`, `host` (the default port), `[v6]:port` or `[v6]`.
fn parse_broker(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let expected = "expected host:port such as \"127.0.0.1:1883\" or \"broker.local:8883\"";
    if text.contains("://") {
        return Err(format!(
            "bad broker \"{text}\": write host:port without a scheme; TLS is `tls = {{ ... }}` ({expected})"
        ));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad broker \"{text}\": unclosed [ ({expected})"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("bad broker \"{text}\" ({expected})")),
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            Some(_) => {
                return Err(format!(
                    "bad broker \"{text}\": put an IPv6 address in brackets, e.g. \"[::1]:1883\""
                ));
            }
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!(
            "bad broker \"{text}\": empty or blank host ({expected})"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "bad broker \"{text}\": port \"{p}\" is not 1 to 65535"
                ));
            }
        },
    };
    Ok((host.to_string(), port))
}

/// MQTT 3.1.1 section 4.7: `#` only as the whole last level, `+` only as a whole level,
/// no NUL, at most 65535 bytes.
fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("empty topic filter (expected e.g. \"devices/+/telemetry\" or \"#\")".into());
    }
    if filter.len() > usize::from(u16::MAX) {
        return Err(format!(
            "topic filter is {} bytes long (at most 65535)",
            filter.len()
        ));
    }
    if filter.contains('\0') {
        return Err("topic filter contains a NUL character".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(format!(
                "bad topic filter \"{filter}\": `#` must be a whole level and the last one (e.g. \"devices/#\")"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "bad topic filter \"{filter}\": `+` must be a whole level (e.g. \"devices/+/telemetry\")"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_broker("127.0.0.1:1883", 1),
            Ok(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            parse_broker("broker.local", 8883),
            Ok(("broker.local".into(), 8883))
        );
        assert_eq!(parse_broker("[::1]:1884", 1), Ok(("::1".into(), 1884)));
        assert_eq!(parse_broker("[::1]", 1883), Ok(("::1".into(), 1883)));
        assert!(parse_broker("::1", 1).is_err());
        assert!(parse_broker("mqtt://x:1883", 1).is_err());
        assert!(parse_broker("x:0", 1).is_err());
        assert!(parse_broker("x:99999", 1).is_err());
        assert!(parse_broker(":1883", 1).is_err());
    }

    #[test]
    fn topic_filters() {
        for good in ["#", "+", "a/b", "a/+/c", "a/#", "/a", "a//b", "+/+/#"] {
            assert_eq!(check_topic_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "a/b+", "#/a", "a\0b"] {
            assert!(check_topic_filter(bad).is_err(), "{bad:?}");
        }
    }
}
