//! `type = "td"`: the Treasure Data output's settings and its buffer defaults.
//!
//! The API key is never quoted in a message: a problem with it names the key path only.

use super::Resolver;
use crate::config::raw;
use crate::config::*;
use crate::output::td::config::{self as td, ApiKey, NonMap};
use crate::output::td::normalize;
use toml::Spanned;

/// fluent-plugin-td's chunk size limit, counted on uncompressed MessagePack
/// (reference, section 6).
pub const TD_CHUNK_LIMIT_SIZE: u64 = 32 << 20;
/// fluent-plugin-td's chunk record limit (8096, sic; reference, section 6).
pub const TD_CHUNK_LIMIT_RECORDS: u64 = 8096;
/// Default flush interval: sooner than fluent-plugin-td's 300 s, so data shows up in
/// minutes; operators lower it further for latency.
pub const TD_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

impl Resolver<'_, '_, '_> {
    /// `type = "td"`: endpoints (region or URLs), key, fixed destination, TLS, proxy,
    /// timeouts, and the buffer with td's defaults where the user set nothing.
    pub(super) fn td_output(&mut self, raw: raw::TdOutputRaw, path: &str) -> Option<OutputDef> {
        let p = |key: &str| format!("{path}.{key}");
        let mut ok = true;
        let buffer = self
            .buffer(raw.buffer.as_ref(), path, BufferKind::File)
            .map(|b| td_buffer_defaults(b, raw.buffer.as_ref().map(|r| r.get_ref())));

        let key = raw.apikey.get_ref();
        if key.trim().is_empty() {
            self.at(
                raw.apikey.span(),
                &p("apikey"),
                "empty API key (set it, e.g. apikey = \"${TD_API_KEY}\")",
            );
            ok = false;
        } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
            self.at(
                raw.apikey.span(),
                &p("apikey"),
                "API key has spaces or non-ASCII characters (value not shown; check the variable it comes from)",
            );
            ok = false;
        }

        let (mut endpoint, mut api_endpoint) = (
            td::DEFAULT_ENDPOINT.to_string(),
            td::DEFAULT_API_ENDPOINT.to_string(),
        );
        if let Some(r) = &raw.region {
            match td::region(r.get_ref()) {
                Some((import, api)) => {
                    endpoint = import.to_string();
                    api_endpoint = api.to_string();
                }
                None => {
                    let names: Vec<&str> = td::REGIONS.iter().map(|(n, _, _)| *n).collect();
                    self.at(
                        r.span(),
                        &p("region"),
                        format!(
                            "unknown region \"{}\" (expected one of: {})",
                            r.get_ref(),
                            names.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        if let Some(v) = &raw.endpoint {
            match self.td_url(v, &p("endpoint")) {
                Some(url) => endpoint = url,
                None => ok = false,
            }
        }
        if let Some(v) = &raw.api_endpoint {
            match self.td_url(v, &p("api_endpoint")) {
                Some(url) => api_endpoint = url,
                None => ok = false,
            }
        }

        let destination = self.td_destination(&raw, path, &mut ok);
        let ca_file = match &raw.ca_file {
            Some(f) => {
                let f = self.path(f, &p("ca_file"));
                ok &= f.is_some();
                f
            }
            None => None,
        };
        let http_proxy = match &raw.http_proxy {
            Some(v) => match proxy_url(v.get_ref()) {
                Ok(url) => Some(url),
                Err(e) => {
                    self.at(v.span(), &p("http_proxy"), e);
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let connect_timeout = self.positive_duration(
            raw.connect_timeout.as_ref(),
            &p("connect_timeout"),
            td::DEFAULT_CONNECT_TIMEOUT,
        );
        let request_timeout = self.positive_duration(
            raw.request_timeout.as_ref(),
            &p("request_timeout"),
            td::DEFAULT_REQUEST_TIMEOUT,
        );
        let non_map = match &raw.non_map {
            None => Some(NonMap::Wrap),
            Some(v) => match v.get_ref().as_str() {
                "wrap" => Some(NonMap::Wrap),
                "drop" => Some(NonMap::Drop),
                other => {
                    self.at(
                        v.span(),
                        &p("non_map"),
                        format!("unknown non_map \"{other}\" (expected \"wrap\" or \"drop\")"),
                    );
                    None
                }
            },
        };
        let gzip_level = self.count(
            raw.gzip_level.as_ref(),
            &p("gzip_level"),
            td::DEFAULT_GZIP_LEVEL,
            0,
            9,
        );

        let (
            Some(buffer),
            Some(connect_timeout),
            Some(request_timeout),
            Some(non_map),
            Some(gzip_level),
            true,
        ) = (
            buffer,
            connect_timeout,
            request_timeout,
            non_map,
            gzip_level,
            ok,
        )
        else {
            return None;
        };
        Some(OutputDef {
            kind: OutputConfig::Td(TdOutputConfig {
                apikey: ApiKey::new(key.clone()),
                endpoint,
                api_endpoint,
                auto_create_table: raw.auto_create_table.unwrap_or(true),
                destination,
                tls_verify: raw.tls_verify.unwrap_or(true),
                ca_file,
                http_proxy,
                connect_timeout,
                request_timeout,
                non_map,
                gzip_level,
            }),
            buffer,
        })
    }

    /// Fixed `database` and `table`: both or neither, each validated strictly.
    fn td_destination(
        &mut self,
        raw: &raw::TdOutputRaw,
        path: &str,
        ok: &mut bool,
    ) -> Option<(String, String)> {
        let mut check = |v: &Spanned<String>, key: &str| match normalize::validate(v.get_ref()) {
            Ok(()) => Some(v.get_ref().clone()),
            Err(e) => {
                self.at(v.span(), &format!("{path}.{key}"), e);
                *ok = false;
                None
            }
        };
        match (&raw.database, &raw.table) {
            (None, None) => None,
            (Some(d), Some(t)) => {
                let d = check(d, "database");
                let t = check(t, "table");
                d.zip(t)
            }
            (Some(v), None) | (None, Some(v)) => {
                let (set, missing) = if raw.database.is_some() {
                    ("database", "table")
                } else {
                    ("table", "database")
                };
                self.at(
                    v.span(),
                    &format!("{path}.{set}"),
                    format!("{set} is set but {missing} is not (set both for a fixed destination, or neither to route by tag)"),
                );
                *ok = false;
                None
            }
        }
    }

    /// An endpoint URL, or a recorded problem.
    fn td_url(&mut self, v: &Spanned<String>, path: &str) -> Option<String> {
        base_url(v.get_ref())
            .map_err(|e| self.at(v.span(), path, e))
            .ok()
    }

    /// A duration above zero.
    fn positive_duration(
        &mut self,
        v: Option<&Spanned<raw::Scalar>>,
        path: &str,
        default: Duration,
    ) -> Option<Duration> {
        let d = self.duration(v, path, default)?;
        if d.is_zero() {
            self.at(
                v.map_or(0..0, |v| v.span()),
                path,
                "must be above 0 (e.g. \"30s\")",
            );
            return None;
        }
        Some(d)
    }
}

/// td's buffer defaults where the user set nothing: fluent-plugin-td's chunk limits
/// (32 MiB, 8096 records) and a 60 s flush interval; the chunk size never exceeds a
/// smaller `total_limit_size` the user did set.
fn td_buffer_defaults(mut b: BufferConfig, raw: Option<&raw::BufferRaw>) -> BufferConfig {
    let set = |f: fn(&raw::BufferRaw) -> bool| raw.is_some_and(f);
    if !set(|r| r.chunk_limit_size.is_some()) {
        b.chunk_limit_size = TD_CHUNK_LIMIT_SIZE.min(b.total_limit_size);
    }
    if !set(|r| r.chunk_limit_records.is_some()) {
        b.chunk_limit_records = Some(TD_CHUNK_LIMIT_RECORDS);
    }
    if !set(|r| r.flush_interval.is_some()) {
        b.flush_interval = TD_FLUSH_INTERVAL;
    }
    b
}

/// An endpoint as a base URL without a trailing `/`: a bare host means HTTPS
/// (reference, section 1); `http://` is kept (tests, a local proxy).
fn base_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let expected = "expected a host or URL such as \"api-import.treasuredata.com\" or \"https://api-import.treasuredata.com\"";
    let url =
        reqwest::Url::parse(&full).map_err(|e| format!("bad URL \"{text}\": {e} ({expected})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("URL \"{text}\" must be http or https ({expected})"));
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some()
    {
        return Err(format!(
            "URL \"{text}\" must name a host and have no query or fragment ({expected})"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("endpoint URLs must not carry credentials (the API key goes in apikey)".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A proxy URL: http or https, with a host. Its credentials (if any) are not quoted.
fn proxy_url(text: &str) -> Result<String, String> {
    let expected = "expected a URL such as \"http://proxy.example:3128\"";
    let url =
        reqwest::Url::parse(text.trim()).map_err(|e| format!("bad proxy URL ({e}; {expected})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "proxy URL must be http or https and name a host ({expected})"
        ));
    }
    Ok(text.trim().to_string())
}
