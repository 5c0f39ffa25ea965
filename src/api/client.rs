//! The API as seen from the command line: `tidepool query` through a running daemon.
//!
//! Going through the daemon's API instead of opening the store files means the query
//! gets the daemon's limits (row cap, time limit, concurrency) and works from another
//! machine with `--api URL`; a stopped daemon's store is still read from its files.

use crate::config::Config;
use crate::store::query::QueryResult;
use anyhow::{Context, bail};
use std::time::Duration;

/// File in the data directory where the daemon writes its API's URL once it listens.
pub const URL_FILE: &str = "tidepool.api";

/// The URL a client on this host uses for an API bound to `addr` (a wildcard address
/// means this host's loopback).
pub fn local_url(mut addr: std::net::SocketAddr, tls: bool) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// Longest a CLI request waits for the daemon (its own query limit is 5 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for one daemon's API.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the API of the daemon running with `config`: the URL it wrote
    /// to [`URL_FILE`] (else its `[api] listen`), its token, and for `[api] tls` the
    /// CA it generated under `certs_dir` or the configured certificate file as roots.
    pub fn for_config(config: &Config) -> anyhow::Result<ApiClient> {
        let api = &config.api;
        let written = std::fs::read_to_string(config.server.data_dir.join(URL_FILE));
        let url = match written {
            Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
            _ => local_url(api.listen, api.tls.is_some()),
        };
        let mut roots = Vec::new();
        if let Some(tls) = &api.tls {
            roots.push(match &tls.cert {
                Some(cert) => cert.clone(),
                None => config.server.certs_dir.join("ca.pem"),
            });
        }
        ApiClient::new(&url, api.token.clone(), &roots)
    }

    /// A client for the API at `base` (`http://host:port` or `https://...`), trusting
    /// the certificates in `roots` (PEM files) besides the public roots.
    pub fn new(
        base: &str,
        token: Option<String>,
        roots: &[std::path::PathBuf],
    ) -> anyhow::Result<ApiClient> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy();
        for path in roots {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the API's CA {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: builder.build().context("cannot build the HTTP client")?,
        })
    }

    /// Runs one read-only statement through `POST /api/query`.
    pub async fn query(&self, database: &str, sql: &str) -> anyhow::Result<QueryResult> {
        let url = format!("{}/api/query", self.base);
        let body = serde_json::json!({ "database": database, "sql": sql });
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let reply = req
            .send()
            .await
            .with_context(|| format!("cannot reach the tidepool API at {url}"))?;
        let status = reply.status();
        let bytes = reply
            .bytes()
            .await
            .with_context(|| format!("{url}: reading the answer"))?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{reason} (HTTP {status} from {url})");
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{url}: unexpected answer"))
    }
}
