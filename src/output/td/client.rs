//! The HTTP side of the td output: one reqwest client per output (HTTP/1.1, rustls,
//! kept-alive connections), the three calls, and transport errors as `Retryable`.

use super::body::Body;
use super::config::{ApiKey, TdOutputConfig};
use super::request;
use crate::output::OutputError;
use anyhow::Context as _;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HeaderValue};
use std::time::{Duration, SystemTime};

/// Most bytes of an answer body read and kept; answers are small JSON documents.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Idle connections are closed after this, below the 60 s idle timeout of common load
/// balancers, so a connection kept between flushes is not reused just as the server
/// closes it.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// A server's answer: status and (the first [`MAX_ANSWER`] bytes of) its body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes, cut at [`MAX_ANSWER`].
    pub body: Vec<u8>,
}

/// Talks to the import and REST hosts of one td output.
#[derive(Debug)]
pub struct TdClient {
    http: reqwest::Client,
    import_base: String,
    api_base: String,
    /// `TD1 <apikey>`, marked sensitive so no Debug shows it.
    auth: HeaderValue,
    key: ApiKey,
}

impl TdClient {
    /// Builds the client: timeouts, TLS verification and extra CA, proxy.
    ///
    /// Fails on an API key that cannot be a header value, an unreadable or empty CA
    /// file, or a bad proxy URL. Proxy environment variables are ignored: only
    /// `http_proxy` in the config routes through a proxy, so a test or a daemon never
    /// picks one up by accident.
    pub fn new(config: &TdOutputConfig) -> anyhow::Result<Self> {
        let mut auth =
            HeaderValue::from_str(&format!("TD1 {}", config.apikey.expose())).map_err(|_| {
                anyhow::anyhow!("apikey contains characters not allowed in an HTTP header")
            })?;
        auth.set_sensitive(true);
        let mut builder = reqwest::Client::builder()
            .user_agent(request::USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .no_proxy();
        if !config.tls_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read ca_file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!("ca_file {}: not a PEM bundle: {e}", path.display())
            })?;
            if certs.is_empty() {
                anyhow::bail!(
                    "ca_file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                );
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(proxy) = &config.http_proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str())
                .map_err(|e| anyhow::anyhow!("bad http_proxy: {e}"))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(TdClient {
            http,
            import_base: config.endpoint.trim_end_matches('/').to_string(),
            api_base: config.api_endpoint.trim_end_matches('/').to_string(),
            auth,
            key: config.apikey.clone(),
        })
    }

    /// `PUT`s one import body with the chunk's id (reference, section 2).
    pub async fn import(
        &self,
        db: &str,
        table: &str,
        unique_id: &str,
        body: &Body,
    ) -> Result<(String, Answer), OutputError> {
        let url = format!(
            "{}{}",
            self.import_base,
            request::import_path(db, table, unique_id)
        );
        let req = self
            .http
            .put(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, request::CONTENT_TYPE)
            .header(DATE, request::date_header(SystemTime::now()))
            .body(body.gz.clone());
        let answer = self.send(req, "PUT", &url).await?;
        Ok((format!("PUT {url}"), answer))
    }

    /// `POST /v3/database/create/<db>` (reference, section 3).
    pub async fn create_database(&self, db: &str) -> Result<(String, Answer), OutputError> {
        let url = format!("{}{}", self.api_base, request::create_database_path(db));
        self.create(url).await
    }

    /// `POST /v3/table/create/<db>/<table>/log` (reference, section 3).
    pub async fn create_table(
        &self,
        db: &str,
        table: &str,
    ) -> Result<(String, Answer), OutputError> {
        let url = format!("{}{}", self.api_base, request::create_table_path(db, table));
        self.create(url).await
    }

    /// A create call: `POST` with an empty form body, as td-client-ruby sends it.
    async fn create(&self, url: String) -> Result<(String, Answer), OutputError> {
        let req = self
            .http
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, request::FORM_CONTENT_TYPE)
            // hyper leaves the header out of an empty POST; td-client-ruby sends it.
            .header(CONTENT_LENGTH, "0")
            .header(DATE, request::date_header(SystemTime::now()))
            .body(Vec::new());
        let answer = self.send(req, "POST", &url).await?;
        Ok((format!("POST {url}"), answer))
    }

    /// Sends and reads the answer; any transport failure (connect, TLS, timeout, a
    /// connection closed mid-answer) is `Retryable`.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        method: &str,
        url: &str,
    ) -> Result<Answer, OutputError> {
        let failed = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "failed"
            };
            OutputError::Retryable(
                self.key
                    .redact(&format!("{method} {url} {what}: {}", chain(&e))),
            )
        };
        let mut resp = req.send().await.map_err(failed)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(piece) = resp.chunk().await.map_err(failed)? {
            let room = MAX_ANSWER.saturating_sub(body.len());
            body.extend_from_slice(piece.get(..room).unwrap_or(&piece));
            if body.len() >= MAX_ANSWER {
                break;
            }
        }
        Ok(Answer { status, body })
    }

    /// `text` with the API key replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.key.redact(text)
    }
}

/// An error and its sources on one line (`a: b: c`), since reqwest's own Display
/// leaves out the cause (connection refused, certificate unknown).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
