//! The td output's checked settings (`type = "td"`), resolved once by
//! `config::resolve::td` and re-exported as [`crate::config::TdOutputConfig`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default import host (reference, section 1: `DEFAULT_IMPORT_ENDPOINT`).
pub const DEFAULT_ENDPOINT: &str = "https://api-import.treasuredata.com";
/// Default REST host, used for database and table creation (reference, section 1).
pub const DEFAULT_API_ENDPOINT: &str = "https://api.treasuredata.com";
/// Default connect timeout: long enough for a slow uplink, far below the Ruby
/// client's 60 s so a dead route is retried sooner.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout of one whole request (send + answer): a 32 MiB chunk compresses to a
/// few MiB, which this covers down to ~150 kbit/s. The Ruby client allows 600 s; a
/// shorter wait is safe because a retry reuses the chunk's import id.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Default gzip level: 1 (fastest); compression is the flush path's cost centre and a
/// higher level buys little on log records (see `benches/td.rs`).
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// Treasure Data regions by name, with their import and REST endpoints.
///
/// `us`, `jp` and `eu01` are from the reference (section 1). `ap02` and `ap03` follow
/// the same `api(-import).<region>.treasuredata.com` pattern as `eu01`; the reference
/// names the regions but not their hosts (UNCONFIRMED), so an operator who sees a DNS
/// error there should set `endpoint` and `api_endpoint` explicitly.
pub const REGIONS: &[(&str, &str, &str)] = &[
    ("us", DEFAULT_ENDPOINT, DEFAULT_API_ENDPOINT),
    (
        "jp",
        "https://api-import.treasuredata.co.jp",
        "https://api.treasuredata.co.jp",
    ),
    (
        "eu01",
        "https://api-import.eu01.treasuredata.com",
        "https://api.eu01.treasuredata.com",
    ),
    (
        "ap02",
        "https://api-import.ap02.treasuredata.com",
        "https://api.ap02.treasuredata.com",
    ),
    (
        "ap03",
        "https://api-import.ap03.treasuredata.com",
        "https://api.ap03.treasuredata.com",
    ),
];

/// The `(import endpoint, REST endpoint)` of a region name, or None when unknown.
pub fn region(name: &str) -> Option<(&'static str, &'static str)> {
    REGIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, import, api)| (*import, *api))
}

/// A Treasure Data API key: kept out of every `Debug` and `Display` so it can never
/// reach a log line, an error message or `tidepool check` output by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (checked by the config resolver: printable ASCII, no spaces).
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header and for redaction only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `***`, for messages that
    /// quote what a server sent back.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What happens to a record that is not a map (arrays and scalars small loggers send),
/// which Treasure Data cannot import as a row (reference, section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NonMap {
    /// `non_map = "wrap"` (default): import it as `{"time": t, "value": <record>}`;
    /// counted in [`super::TdStats::wrapped`]. Better than fluent-plugin-td's silent drop.
    #[default]
    Wrap,
    /// `non_map = "drop"`: skip it as fluent-plugin-td does; counted in
    /// [`super::TdStats::dropped`] and logged.
    Drop,
}

/// `type = "td"`: uploads each chunk to Treasure Data's streaming import API.
#[derive(Clone, Debug, PartialEq)]
pub struct TdOutputConfig {
    /// The API key (`apikey`, usually `"${TD_API_KEY}"`); redacted in every Debug.
    pub apikey: ApiKey,
    /// Base URL of the import host (default [`DEFAULT_ENDPOINT`], or the region's),
    /// without a trailing `/`; `http://` is allowed (tests, proxies).
    pub endpoint: String,
    /// Base URL of the REST host used for creates (default [`DEFAULT_API_ENDPOINT`]).
    pub api_endpoint: String,
    /// Create a missing table (and database) on a 404 (default true).
    pub auto_create_table: bool,
    /// Fixed destination `(database, table)` instead of the tag's last two parts;
    /// validated strictly at load (3-255 characters of `a-z0-9_`), never normalized.
    pub destination: Option<(String, String)>,
    /// Verify the server certificate (default true).
    pub tls_verify: bool,
    /// Extra PEM CA bundle trusted besides the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Proxy every request through this URL (`http://host:port`).
    pub http_proxy: Option<String>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one whole request, from send to the end of the answer.
    pub request_timeout: Duration,
    /// What non-map records become.
    pub non_map: NonMap,
    /// gzip level 0-9 of import bodies (default 1).
    pub gzip_level: u32,
}

impl TdOutputConfig {
    /// Settings with every default, for tests and embedding: the US endpoints.
    pub fn new(apikey: ApiKey) -> Self {
        TdOutputConfig {
            apikey,
            endpoint: DEFAULT_ENDPOINT.to_string(),
            api_endpoint: DEFAULT_API_ENDPOINT.to_string(),
            auto_create_table: true,
            destination: None,
            tls_verify: true,
            ca_file: None,
            http_proxy: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            non_map: NonMap::Wrap,
            gzip_level: DEFAULT_GZIP_LEVEL,
        }
    }
}
