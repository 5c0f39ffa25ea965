//! The config exactly as written: a serde mirror of the TOML, one struct per table,
//! each with `deny_unknown_fields`. Values that need checking (sizes, durations,
//! addresses, paths) stay [`Spanned`] strings here so `resolve` can point at them.
//!
//! The root table and the `type` of sources and outputs are dispatched by hand in
//! `resolve` (serde's tagged enums buffer their input and lose the spans).

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use toml::Spanned;

/// A leaf that may be written as a string, a number or a boolean: sizes
/// (`"8MiB"` or `8388608`), durations (`"5s"` or `5`), `tcp_keepalive = false`.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// An integer as written.
    Int(i64),
    /// A float as written.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A string, after `${ENV}` substitution.
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `common_name = "host"` or `common_name = ["ip", "name"]`.
#[derive(Clone, Debug, Default)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or an array of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRaw {
    pub data_dir: Option<Spanned<String>>,
    pub certs_dir: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<Scalar>>,
}

/// `[[source]]` with `type = "forward"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub listen: Spanned<String>,
    pub tls: Option<Spanned<TlsRaw>>,
    pub security: Option<Spanned<SecurityRaw>>,
    pub max_message_size: Option<Spanned<Scalar>>,
    pub max_decompressed_size: Option<Spanned<Scalar>>,
    pub max_depth: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
    pub handshake_timeout: Option<Spanned<Scalar>>,
    pub tcp_keepalive: Option<Spanned<Scalar>>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub source_address_key: Option<Spanned<String>>,
    pub source_hostname_key: Option<Spanned<String>>,
    pub deny_keepalive: Option<bool>,
    pub udp_heartbeat: Option<bool>,
    pub tag: Option<Spanned<String>>,
    pub add_tag_prefix: Option<Spanned<String>>,
}

/// `[[source]]` with `type = "http"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub listen: Spanned<String>,
    pub tls: Option<Spanned<TlsRaw>>,
    pub write_keys: Option<Vec<Spanned<String>>>,
    pub in_http: Option<bool>,
    pub max_body_size: Option<Spanned<Scalar>>,
    pub max_decompressed_size: Option<Spanned<Scalar>>,
    pub max_depth: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
    pub body_timeout: Option<Spanned<Scalar>>,
    pub handshake_timeout: Option<Spanned<Scalar>>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub cors_allow_origins: Option<Vec<Spanned<String>>>,
    pub add_tag_prefix: Option<Spanned<String>>,
}

/// `[[source]]` with `type = "mqtt"` (resolved in `resolve/mqtt.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub broker: Spanned<String>,
    pub topics: Spanned<Vec<Spanned<String>>>,
    pub qos: Option<Spanned<i64>>,
    pub client_id: Option<Spanned<String>>,
    pub clean_session: Option<bool>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub tls: Option<Spanned<MqttTlsRaw>>,
    pub keep_alive: Option<Spanned<Scalar>>,
    pub format: Option<Spanned<String>>,
    pub tag_prefix: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub topic_key: Option<Spanned<Scalar>>,
    pub max_payload_size: Option<Spanned<Scalar>>,
    pub reconnect_delay: Option<Spanned<Scalar>>,
    pub reconnect_max_delay: Option<Spanned<Scalar>>,
}

/// `tls = { ... }` of an MQTT source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsRaw {
    pub ca: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
}

/// `tls = { ... }` of a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRaw {
    pub generate: Option<Spanned<bool>>,
    pub common_name: Option<Spanned<Names>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub passphrase: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub min_version: Option<Spanned<String>>,
    pub max_version: Option<Spanned<String>>,
}

/// `security = { ... }` of a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityRaw {
    pub self_hostname: Option<Spanned<String>>,
    pub shared_key: Option<Spanned<String>>,
    pub user_auth: Option<bool>,
    pub allow_anonymous_source: Option<bool>,
    pub users: Option<Vec<Spanned<UserRaw>>>,
    pub clients: Option<Vec<Spanned<ClientRaw>>>,
}

/// One entry of `security.users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRaw {
    pub username: Spanned<String>,
    pub password: String,
}

/// One entry of `security.clients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRaw {
    pub network: Spanned<String>,
    pub shared_key: Option<Spanned<String>>,
    pub users: Option<Vec<Spanned<String>>>,
}

/// `[[match]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRaw {
    pub pattern: Spanned<String>,
    pub outputs: Spanned<Vec<Spanned<String>>>,
}

/// `[output.NAME]` of `type = "null"` or `"stdout"`: nothing but a buffer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainOutputRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub buffer: Option<Spanned<BufferRaw>>,
}

/// `[output.NAME]` of `type = "file"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutputRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub buffer: Option<Spanned<BufferRaw>>,
    pub path: Option<Spanned<String>>,
    pub time_key: Option<Spanned<String>>,
    pub tag_key: Option<Spanned<String>>,
}

/// `buffer = { ... }` of an output, with Fluentd's `<buffer>` parameter names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferRaw {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub chunk_limit_size: Option<Spanned<Scalar>>,
    pub chunk_limit_records: Option<Spanned<i64>>,
    pub flush_interval: Option<Spanned<Scalar>>,
    pub flush_thread_count: Option<Spanned<i64>>,
    pub retry_wait: Option<Spanned<Scalar>>,
    pub retry_max_interval: Option<Spanned<Scalar>>,
    pub retry_max_times: Option<Spanned<i64>>,
    pub retry_timeout: Option<Spanned<Scalar>>,
    pub retry_forever: Option<bool>,
    pub total_limit_size: Option<Spanned<Scalar>>,
    pub overflow_action: Option<Spanned<String>>,
    pub fsync: Option<Spanned<String>>,
}

/// `[output.NAME]` of `type = "td"` (resolved in `resolve/td.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdOutputRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub buffer: Option<Spanned<BufferRaw>>,
    pub apikey: Spanned<String>,
    pub region: Option<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub api_endpoint: Option<Spanned<String>>,
    pub auto_create_table: Option<bool>,
    pub database: Option<Spanned<String>>,
    pub table: Option<Spanned<String>>,
    pub tls_verify: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub http_proxy: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<Scalar>>,
    pub request_timeout: Option<Spanned<Scalar>>,
    pub non_map: Option<Spanned<String>>,
    pub gzip_level: Option<Spanned<i64>>,
}

/// A TOML table kept as its key/value pairs in file order, keys with their places
/// (`record = { ... }` and `rename_keys = { ... }` apply in the order written).
#[derive(Debug, Default)]
pub struct Pairs<V>(pub Vec<(Spanned<String>, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
            type Value = Pairs<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of keys and values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Pairs<V>, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    pairs.push((k, v));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}

/// `[[filter]]` with `type = "record_transformer"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordTransformerRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub pattern: Spanned<String>,
    pub record: Option<Spanned<Pairs<Scalar>>>,
    pub remove_keys: Option<Spanned<Names>>,
    pub keep_keys: Option<Spanned<Names>>,
    pub renew_record: Option<bool>,
    pub rename_keys: Option<Spanned<Pairs<String>>>,
}

/// One `{ key, pattern }` condition of a grep filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepRuleRaw {
    pub key: Spanned<String>,
    pub pattern: Spanned<String>,
}

/// `and = { ... }` / `or = { ... }` of a grep filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepGroupRaw {
    pub regexp: Option<Vec<Spanned<GrepRuleRaw>>>,
    pub exclude: Option<Vec<Spanned<GrepRuleRaw>>>,
}

/// `[[filter]]` with `type = "grep"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub pattern: Spanned<String>,
    pub regexp: Option<Vec<Spanned<GrepRuleRaw>>>,
    pub exclude: Option<Vec<Spanned<GrepRuleRaw>>>,
    #[serde(rename = "and")]
    pub and_group: Option<Spanned<GrepGroupRaw>>,
    #[serde(rename = "or")]
    pub or_group: Option<Spanned<GrepGroupRaw>>,
}

/// `[[filter]]` with `type = "parser"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub pattern: Spanned<String>,
    pub key_name: Spanned<String>,
    pub format: Spanned<String>,
    pub expression: Option<Spanned<String>>,
    pub delimiter: Option<Spanned<String>>,
    pub separator: Option<Spanned<String>>,
    pub reserve_data: Option<bool>,
    pub remove_key_name_field: Option<bool>,
    pub hash_value_field: Option<Spanned<String>>,
}

/// One rule of a rewrite_tag filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRuleRaw {
    pub key: Spanned<String>,
    pub pattern: Spanned<String>,
    pub tag: Spanned<String>,
    pub invert: Option<bool>,
    pub keep: Option<bool>,
}

/// `[[filter]]` with `type = "rewrite_tag"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteTagRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub pattern: Spanned<String>,
    pub rules: Spanned<Vec<Spanned<RewriteRuleRaw>>>,
    pub drop_unmatched: Option<bool>,
}

/// `[[filter]]` with `type = "sample"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub pattern: Spanned<String>,
    pub rate: Spanned<i64>,
}

/// `[[filter]]` with `type = "throttle"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub pattern: Spanned<String>,
    pub rate_limit: Spanned<i64>,
    pub interval: Option<Spanned<Scalar>>,
    pub group_key: Option<Spanned<String>>,
}

/// `[output.NAME]` of `type = "store"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreOutputRaw {
    /// Already read by `resolve` to pick this struct; listed so it is not unknown.
    #[serde(rename = "type")]
    pub _type: de::IgnoredAny,
    pub buffer: Option<Spanned<BufferRaw>>,
    pub backend: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub table: Option<Spanned<String>>,
    pub retention: Option<Spanned<Scalar>>,
    pub tls: Option<Spanned<PgTlsRaw>>,
}

/// `tls = { ... }` of a PostgreSQL store output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTlsRaw {
    pub ca: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub passphrase: Option<Spanned<String>>,
    pub verify: Option<Spanned<String>>,
}

/// `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRaw {
    pub enabled: Option<bool>,
    pub listen: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub tls: Option<Spanned<TlsRaw>>,
}
