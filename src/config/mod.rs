//! The operator's TOML config, checked once into typed values.
//!
//! The config is parsed as written (`raw`, serde with `deny_unknown_fields`), then
//! resolved once (`resolve`): `${ENV}` substitution ([`env`]), sizes and durations
//! ([`units`]), tag patterns, output names and paths. Runtime code only sees the
//! typed structs below. Every problem is reported, each as
//! `file:line:col: key.path: what is wrong (what was expected)`.

mod de;
pub mod env;
mod error;
mod filter;
mod raw;
mod resolve;
#[cfg(test)]
mod tests;
pub mod units;
pub mod warnings;

pub use filter::{
    FilterConfig, FilterKind, GrepConfig, GrepRule, KeyPath, ParseFormat, ParserConfig,
    RecordTransformerConfig, RewriteRule, RewriteTagConfig, SetValue, Template, TemplatePart,
    ThrottleConfig,
};
pub use warnings::warnings;

pub use crate::output::td::TdOutputConfig;
use crate::pipeline::pattern::TagPattern;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default config, built into the binary so `tidepool` runs with no file:
/// forward on 24227 (plain) and 24228 (TLS with a generated certificate), every tag
/// to stdout. Its relative paths are relative to the working directory.
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/tidepool.toml");

/// A whole, checked config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (`<default>` for the embedded one), for messages.
    pub origin: String,
    /// Daemon-wide settings.
    pub server: ServerConfig,
    /// Inputs, in file order.
    pub sources: Vec<SourceConfig>,
    /// Filters, in file order: each runs on the events whose tag it matches.
    pub filters: Vec<FilterConfig>,
    /// Routes, in file order: the first whose pattern matches a tag wins.
    pub matches: Vec<MatchConfig>,
    /// Named outputs referenced by matches.
    pub outputs: BTreeMap<String, OutputDef>,
    /// The HTTP API (`[api]`): records, SQL, status, metrics.
    pub api: ApiConfig,
}

/// Every problem found in a config, in file order, each as
/// `file:line:col: key.path: what is wrong (what was expected)`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads and checks a config file; its relative paths (`tls.cert`, `tls.key`,
    /// `tls.client_ca`, a file output's `path`) are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![format!("{}: cannot read config: {e}", path.display())])
        })?;
        let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let origin = path.display().to_string();
        resolve::resolve(
            &text,
            &resolve::Context {
                origin: &origin,
                base_dir,
                env: &env::process_env,
            },
        )
    }

    /// Checks config text; `origin` names it in errors. Relative paths stay relative
    /// (to the working directory); `${ENV}` comes from the process environment.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        resolve::resolve(
            text,
            &resolve::Context {
                origin,
                base_dir: None,
                env: &env::process_env,
            },
        )
    }

    /// The embedded [`DEFAULT_CONFIG`], checked.
    pub fn default_config() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG, "<default>")
    }
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where buffers, the store and the dead letter live (default `data`, relative to
    /// the working directory).
    pub data_dir: PathBuf,
    /// Where generated certificates are kept (default `certs`, relative to the working
    /// directory).
    pub certs_dir: PathBuf,
    /// How long a graceful shutdown may take (default 30 s).
    pub shutdown_timeout: Duration,
}

/// One `[[source]]`.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// `type = "forward"`.
    Forward(ForwardConfig),
    /// `type = "http"`: Treasure Data postback and Fluentd in_http over HTTP(S).
    Http(HttpConfig),
    /// `type = "mqtt"`.
    Mqtt(MqttConfig),
}

impl SourceConfig {
    /// The address a listening source binds, for checks that a port is free.
    pub fn listen(&self) -> Option<SocketAddr> {
        match self {
            SourceConfig::Forward(f) => Some(f.listen),
            SourceConfig::Http(h) => Some(h.listen),
            SourceConfig::Mqtt(_) => None,
        }
    }

    /// The server-side TLS a listening source terminates, when it has one.
    pub fn server_tls(&self) -> Option<&TlsConfig> {
        match self {
            SourceConfig::Forward(f) => f.tls.as_ref(),
            SourceConfig::Http(h) => h.tls.as_ref(),
            SourceConfig::Mqtt(_) => None,
        }
    }

    /// The `type` as written, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Forward(_) => "forward",
            SourceConfig::Http(_) => "http",
            SourceConfig::Mqtt(_) => "mqtt",
        }
    }
}

/// An HTTP input (`type = "http"`): Treasure Data's postback API
/// (`POST /postback/v3/event/<db>/<table>`) and Fluentd's in_http (`POST /<tag>`).
/// Every answer comes after the events are durable, as a forward ack does.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Address to bind, e.g. `0.0.0.0:8888`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// TLS (HTTPS), when set; the same options as a forward input.
    pub tls: Option<TlsConfig>,
    /// Postback write keys accepted; empty = any key or none (the source is open).
    pub write_keys: Vec<String>,
    /// Serve Fluentd's in_http paths (`POST /<tag>`) besides the postback path
    /// (default true); false answers them 404.
    pub in_http: bool,
    /// Largest request body as sent, in bytes (default 1 MiB, the postback API's
    /// limit); larger bodies get 413.
    pub max_body_size: usize,
    /// Largest body once a `Content-Encoding: gzip`/`deflate` body is inflated
    /// (default 16 MiB); larger gets 413.
    pub max_decompressed_size: usize,
    /// Deepest record nesting (default 64).
    pub max_depth: usize,
    /// Connections held at once; more are refused (default 10000).
    pub max_connections: usize,
    /// A connection that sends no complete request head for this long is closed,
    /// an idle keep-alive connection included (default 10 s, Fluentd's
    /// keepalive_timeout); this is what stops a slowloris sending headers.
    pub idle_timeout: Duration,
    /// A request body must arrive in full within this (default 30 s); a client
    /// dribbling its body gets 408 and is closed.
    pub body_timeout: Duration,
    /// TLS handshake deadline (default 10 s).
    pub handshake_timeout: Duration,
    /// Client networks allowed to connect; empty = all.
    pub allow: Vec<ipnet::IpNet>,
    /// Origins browsers may post from (CORS); empty = CORS off, `"*"` = any.
    pub cors_allow_origins: Vec<String>,
    /// Prepend `prefix.` to every in_http tag (not to postback `td.<db>.<table>`).
    pub add_tag_prefix: Option<String>,
}

/// An MQTT input (`type = "mqtt"`): a client that subscribes to topic filters on a
/// broker and routes every message as one event, acknowledging QoS 1/2 messages to the
/// broker only once they are durable.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttConfig {
    /// The broker's host (name or IP) as written in `broker = "host:port"`.
    pub host: String,
    /// The broker's port (default 1883, or 8883 with `tls`).
    pub port: u16,
    /// Topic filters to subscribe to (`+` and `#` wildcards allowed), at least one.
    pub topics: Vec<String>,
    /// Subscription QoS, 0, 1 or 2 (default 1); a message arrives with the lower of this
    /// and its publisher's QoS.
    pub qos: u8,
    /// MQTT client id; None = `tidepool-<hostname>-<source index>`, stable across
    /// restarts so a persistent session finds its queued messages.
    pub client_id: Option<String>,
    /// Start a fresh session on every connect (default false: the broker keeps the
    /// subscriptions and queues QoS 1/2 messages while tidepool is away).
    pub clean_session: bool,
    /// Username for the broker, if it asks for one.
    pub username: Option<String>,
    /// Password, with `username`.
    pub password: Option<String>,
    /// TLS to the broker, when set.
    pub tls: Option<MqttTlsConfig>,
    /// MQTT keep-alive (default 30 s).
    pub keep_alive: Duration,
    /// How payloads become records (default JSON).
    pub format: PayloadFormat,
    /// Prepended to every tag as `prefix.`; None = the tag is the topic alone
    /// (default `mqtt`).
    pub tag_prefix: Option<String>,
    /// Tag template with `${topic}` and `${topic_parts[N]}`; None = `${topic}`.
    pub tag: Option<crate::input::mqtt::TopicTemplate>,
    /// Record key that receives the topic (default `topic`); None = not added.
    pub topic_key: Option<String>,
    /// Largest payload kept whole (default 1 MiB); a larger one is kept cut to this size
    /// with `_parse_error` set, and counted.
    pub max_payload_size: usize,
    /// First delay before reconnecting (default 1 s); doubles up to `reconnect_max_delay`.
    pub reconnect_delay: Duration,
    /// Longest delay between reconnect attempts (default 60 s).
    pub reconnect_max_delay: Duration,
}

/// `tls = { ... }` of an MQTT source: how tidepool checks the broker and proves itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MqttTlsConfig {
    /// PEM bundle of the CA(s) the broker's certificate must lead to; None = the
    /// system's CA bundle.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that require one; with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key: Option<PathBuf>,
    /// Name the broker's certificate must carry; None = the host of `broker`.
    pub server_name: Option<String>,
}

/// How an MQTT payload becomes a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A JSON object is the record; any other JSON value becomes `{"message": value}`.
    #[default]
    Json,
    /// A MessagePack map is the record; any other value becomes `{"message": value}`.
    Msgpack,
    /// `{"message": payload}`: a string when the payload is UTF-8, else binary.
    Raw,
}

/// A forward input (`type = "forward"`).
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardConfig {
    /// Address to bind, e.g. `0.0.0.0:24227`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// TLS, when set.
    pub tls: Option<TlsConfig>,
    /// The shared-key handshake, when set.
    pub security: Option<SecurityConfig>,
    /// Largest frame in bytes (`max_message_size`, default 32 MiB).
    pub max_message_size: usize,
    /// Largest inflated CompressedPackedForward body (default 64 MiB).
    pub max_decompressed_size: usize,
    /// Deepest record nesting (default 64).
    pub max_depth: usize,
    /// Connections held at once; more are refused (default 10000).
    pub max_connections: usize,
    /// A connection silent this long is closed (default 300 s).
    pub idle_timeout: Duration,
    /// TLS plus forward handshake must finish within this (default 10 s).
    pub handshake_timeout: Duration,
    /// TCP keepalive idle time, so idle device links survive NAT (default 60 s; None = off).
    pub tcp_keepalive: Option<Duration>,
    /// Client networks allowed to connect; empty = all.
    pub allow: Vec<ipnet::IpNet>,
    /// Record key that receives the peer IP, if set.
    pub source_address_key: Option<String>,
    /// Record key that receives the peer's reverse-resolved name, if set.
    pub source_hostname_key: Option<String>,
    /// Close after each frame, like Fluentd's `deny_keepalive`.
    pub deny_keepalive: bool,
    /// Answer UDP heartbeats on the same port (default true).
    pub udp_heartbeat: bool,
    /// Replace every incoming tag with this one.
    pub tag: Option<String>,
    /// Prepend `prefix.` to every incoming tag.
    pub add_tag_prefix: Option<String>,
}

/// TLS for an input: from files, or generated and kept under `server.certs_dir`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`. None = generate.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1, possibly encrypted).
    pub key: Option<PathBuf>,
    /// Passphrase of an encrypted key.
    pub passphrase: Option<String>,
    /// Names (IPs or DNS names) put in a generated certificate's CN and SANs; the first
    /// is the CN. Empty = this host's primary IP, 127.0.0.1 and localhost.
    pub common_names: Vec<String>,
    /// CA bundle for client-certificate authentication; None = no client certs.
    pub client_ca: Option<PathBuf>,
    /// Lowest TLS version accepted (default 1.2).
    pub min_version: TlsVersion,
    /// Highest TLS version accepted (default 1.3).
    pub max_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    /// TLS 1.2, all that Mbed TLS 2.x devices speak.
    #[default]
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The `security` table of a forward input (Fluentd's `<security>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecurityConfig {
    /// Name the server puts in its PONG.
    pub self_hostname: String,
    /// The shared key both sides hash into their digests.
    pub shared_key: String,
    /// Check usernames and passwords too.
    pub user_auth: bool,
    /// Accepted users, with `user_auth`.
    pub users: Vec<UserConfig>,
    /// Whether addresses not in `clients` may connect (default true).
    pub allow_anonymous_source: bool,
    /// Per-network overrides.
    pub clients: Vec<ClientConfig>,
}

/// A user for `user_auth`.
#[derive(Clone, Debug, PartialEq)]
pub struct UserConfig {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A `<client>`-like entry: a network with its own shared key and users.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// The client network (a single host is a /32 or /128).
    pub network: ipnet::IpNet,
    /// Shared key for this network, overriding the input's.
    pub shared_key: Option<String>,
    /// Usernames allowed from this network; empty = any.
    pub users: Vec<String>,
}

/// One `[[match]]`.
#[derive(Clone, Debug)]
pub struct MatchConfig {
    /// Where it stands in the file (1-based index among matches), for messages.
    pub index: usize,
    /// The compiled pattern(s).
    pub pattern: TagPattern,
    /// Output names, each a key of [`Config::outputs`].
    pub outputs: Vec<String>,
}

/// One `[output.NAME]`: what it is, and the buffer in front of it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputDef {
    /// The output's own settings.
    pub kind: OutputConfig,
    /// Its buffer (`buffer = { ... }`); file by default, memory for `stdout` and `null`.
    pub buffer: BufferConfig,
}

/// What an output is (`type = ...`) and its own settings.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputConfig {
    /// `type = "null"`: discards.
    Null,
    /// `type = "stdout"`: Fluentd-like `time tag: json` lines.
    Stdout,
    /// `type = "file"`: JSON lines appended to files.
    File(FileOutputConfig),
    /// `type = "td"`: Treasure Data streaming import.
    Td(TdOutputConfig),
    /// `type = "store"`: rows in the local SQLite records store.
    Store(StoreOutputConfig),
}

/// `type = "store"`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreOutputConfig {
    /// Directory of the database files (default `<data_dir>/store`).
    pub dir: PathBuf,
    /// `database` template (`${tag}`, `${tag_parts[N]}`); None = `td.<db>.<table>`
    /// tags name it, other tags go to `default`.
    pub database: Option<String>,
    /// `table` template; None = from the tag.
    pub table: Option<String>,
    /// Rows older than this are purged hourly (default 5 weeks; `retention = false`
    /// keeps everything).
    pub retention: Option<Duration>,
    /// Where the rows go: SQLite files under `dir` (default) or a PostgreSQL server.
    pub backend: StoreBackendConfig,
}

/// A store output's backend (`backend = "sqlite" | "postgres"`).
#[derive(Clone, Default, PartialEq)]
pub enum StoreBackendConfig {
    /// One SQLite file per database under the output's `dir`: nothing to install.
    #[default]
    Sqlite,
    /// One schema per database on a PostgreSQL server that many aggregators share.
    Postgres {
        /// The connection URL after `${VAR}` substitution; it may hold a password, so
        /// `Debug` never shows it.
        url: String,
        /// `tls = { ... }`: how the server's certificate is checked and the client
        /// certificate, if any. None = TLS as the URL's `sslmode` says (default
        /// `prefer`), checked against the public CAs.
        tls: Option<PgTlsConfig>,
    },
}

impl std::fmt::Debug for StoreBackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreBackendConfig::Sqlite => f.write_str("Sqlite"),
            StoreBackendConfig::Postgres { tls, .. } => {
                write!(f, "Postgres {{ url: <hidden>, tls: {tls:?} }}")
            }
        }
    }
}

/// `tls = { ca, cert, key, passphrase, verify }` of a PostgreSQL store: libpq's
/// `sslrootcert` / `sslcert` / `sslkey` and `sslmode=verify-ca|verify-full`, which
/// tokio-postgres does not parse from the URL. With it, TLS is required (a URL with
/// `sslmode=disable` is refused).
#[derive(Clone, PartialEq)]
pub struct PgTlsConfig {
    /// PEM bundle of the CA(s) the server's certificate must lead to; None = the
    /// public CAs built into tidepool (webpki-roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for servers with `clientcert=verify-ca|verify-full`
    /// or `cert` authentication; with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1, SEC1, or encrypted PKCS#8).
    pub key: Option<PathBuf>,
    /// Passphrase of an encrypted `key`; `Debug` never shows it.
    pub passphrase: Option<String>,
    /// How much of the server's certificate is checked (default full).
    pub verify: PgVerify,
}

impl std::fmt::Debug for PgTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTlsConfig")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<hidden>"))
            .field("verify", &self.verify)
            .finish()
    }
}

/// `tls.verify` of a PostgreSQL store: libpq's `verify-full`, `verify-ca`, or no
/// check at all (`require`), which must be asked for by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgVerify {
    /// `"full"`: the chain leads to a trusted CA and the certificate names the host
    /// dialled (libpq `verify-full`).
    #[default]
    Full,
    /// `"ca"`: the chain leads to `tls.ca`; the name is not checked (libpq
    /// `verify-ca`), for servers reached by a name their certificate lacks.
    Ca,
    /// `"none"`: encrypted, but anyone on the path can pose as the server (libpq
    /// `require`); warned about at every start.
    None,
}

/// `[api]`: the HTTP API.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    /// Serve it at all (default true).
    pub enabled: bool,
    /// Address to bind (default `127.0.0.1:24220`).
    pub listen: SocketAddr,
    /// Bearer token every endpoint but `/healthz` requires, when set.
    pub token: Option<String>,
    /// Serve HTTPS with these certificate options (as a forward source's `tls`).
    pub tls: Option<TlsConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 24220)),
            token: None,
            tls: None,
        }
    }
}

/// `type = "file"`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOutputConfig {
    /// Path template, relative to `data_dir` unless absolute; `${tag}` and
    /// `${tag_parts[N]}` are replaced (default
    /// `<data_dir>/out/${tag}.jsonl`).
    pub path: String,
    /// Record key that receives the event time (seconds, float with nanoseconds), if set.
    pub time_key: Option<String>,
    /// Record key that receives the tag, if set.
    pub tag_key: Option<String>,
}

/// `buffer = { ... }` of an output (Fluentd's `<buffer>` parameters, same names).
#[derive(Clone, Debug, PartialEq)]
pub struct BufferConfig {
    /// File (durable, the default) or memory (lost on crash).
    pub kind: BufferKind,
    /// A staged chunk is queued once it reaches this size (default 8 MiB).
    pub chunk_limit_size: u64,
    /// ... or this many records (default: no limit).
    pub chunk_limit_records: Option<u64>,
    /// ... or this age (default 1 s).
    pub flush_interval: Duration,
    /// Parallel flush workers (default 2).
    pub flush_thread_count: usize,
    /// First retry delay (default 1 s); doubles with jitter.
    pub retry_wait: Duration,
    /// Largest retry delay (default 5 min).
    pub retry_max_interval: Duration,
    /// Retries before dead-lettering (default: none, bounded by `retry_timeout`).
    pub retry_max_times: Option<u32>,
    /// Give up (dead letter) after retrying this long (default 72 h).
    pub retry_timeout: Duration,
    /// Never give up on retryable errors.
    pub retry_forever: bool,
    /// Most bytes staged plus queued (default 1 GiB).
    pub total_limit_size: u64,
    /// What happens when `total_limit_size` is reached.
    pub overflow_action: OverflowAction,
    /// When appended data is synced before the ack.
    pub fsync: FsyncPolicy,
}

/// Where a buffer keeps chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// Chunk files under `data_dir/buffer/<output>`; acks wait for the covering fsync.
    File,
    /// In memory, bounded; lost on crash.
    Memory,
}

/// `overflow_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowAction {
    /// Stall the sending connections (TCP backpressure); never ack what is not stored.
    Block,
    /// Drop the oldest queued chunk, loudly counted.
    DropOldestChunk,
    /// Refuse the batch: no ack, the client retries.
    ThrowException,
}

/// `fsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `"commit"`: ack only after an fdatasync covering the append (group commit).
    Commit,
    /// `"interval:<dur>"`: ack after write, sync periodically (weaker).
    Interval(Duration),
    /// `"never"`: leave syncing to the OS (weakest).
    Never,
}
