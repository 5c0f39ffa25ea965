//! `[[source]]` with `type = "http"`: the postback / in_http input.

use super::Resolver;
use crate::config::de::{Value, typed};
use crate::config::raw;
use crate::config::*;

impl Resolver<'_, '_, '_> {
    /// An HTTP input: its raw table deserialized, then every value checked.
    pub(super) fn http(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
        listens: &mut Vec<(SocketAddr, std::ops::Range<usize>, usize)>,
        n: usize,
    ) -> Option<HttpConfig> {
        let raw: raw::HttpRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let p = |key: &str| format!("{path}.{key}");
        let listen = self.listen(&raw.listen, path, listens, n, 8888);
        let tls = match &raw.tls {
            Some(tls) => {
                let t = self.tls(tls, &p("tls"));
                ok &= t.is_some();
                t
            }
            None => None,
        };
        let mut write_keys: Vec<String> = Vec::new();
        for (i, key) in raw.write_keys.iter().flatten().enumerate() {
            let kpath = format!("{path}.write_keys[{}]", i + 1);
            let k = key.get_ref();
            if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.at(
                    key.span(),
                    &kpath,
                    "bad write key (expected a non-empty key without spaces, e.g. \"${TD_WRITE_KEY}\")",
                );
                ok = false;
            } else if !write_keys.contains(k) {
                write_keys.push(k.clone());
            }
        }
        let max_body_size =
            self.size_usize(raw.max_body_size.as_ref(), &p("max_body_size"), 1 << 20);
        let max_decompressed_size = self.size_usize(
            raw.max_decompressed_size.as_ref(),
            &p("max_decompressed_size"),
            16 << 20,
        );
        let max_depth = self.count(raw.max_depth.as_ref(), &p("max_depth"), 64, 1, 100);
        let max_connections = self.count(
            raw.max_connections.as_ref(),
            &p("max_connections"),
            10_000,
            1,
            10_000_000,
        );
        let idle_timeout = self.nonzero_duration(
            raw.idle_timeout.as_ref(),
            &p("idle_timeout"),
            Duration::from_secs(10),
        );
        let body_timeout = self.nonzero_duration(
            raw.body_timeout.as_ref(),
            &p("body_timeout"),
            Duration::from_secs(30),
        );
        let handshake_timeout = self.nonzero_duration(
            raw.handshake_timeout.as_ref(),
            &p("handshake_timeout"),
            Duration::from_secs(10),
        );
        let allow = self.allow_list(raw.allow.as_deref(), path, &mut ok);
        let mut cors_allow_origins = Vec::new();
        for (i, origin) in raw.cors_allow_origins.iter().flatten().enumerate() {
            let opath = format!("{path}.cors_allow_origins[{}]", i + 1);
            let o = origin.get_ref().trim();
            if o.is_empty() || o.contains(char::is_whitespace) || o.ends_with('/') {
                self.at(
                    origin.span(),
                    &opath,
                    format!("bad origin \"{o}\" (expected \"*\" or scheme://host[:port] without a trailing slash, e.g. \"https://app.example.com\")"),
                );
                ok = false;
            } else {
                cors_allow_origins.push(o.to_string());
            }
        }
        let add_tag_prefix =
            self.opt_tag(raw.add_tag_prefix.as_ref(), &p("add_tag_prefix"), &mut ok);
        if max_body_size
            .zip(max_decompressed_size)
            .is_some_and(|(body, inflated)| inflated < body)
            && let Some(v) = &raw.max_decompressed_size
        {
            self.at(
                v.span(),
                &p("max_decompressed_size"),
                "max_decompressed_size is below max_body_size (expected at least max_body_size)",
            );
            ok = false;
        }
        let (
            Some(listen),
            Some(max_body_size),
            Some(max_decompressed_size),
            Some(max_depth),
            Some(max_connections),
            Some(idle_timeout),
            Some(body_timeout),
            Some(handshake_timeout),
            true,
        ) = (
            listen,
            max_body_size,
            max_decompressed_size,
            max_depth,
            max_connections,
            idle_timeout,
            body_timeout,
            handshake_timeout,
            ok,
        )
        else {
            return None;
        };
        Some(HttpConfig {
            listen,
            tls,
            write_keys,
            in_http: raw.in_http.unwrap_or(true),
            max_body_size,
            max_decompressed_size,
            max_depth,
            max_connections,
            idle_timeout,
            body_timeout,
            handshake_timeout,
            allow,
            cors_allow_origins,
            add_tag_prefix,
        })
    }

    /// A duration that must be above zero (a zero timeout would close every
    /// connection at once).
    fn nonzero_duration(
        &mut self,
        v: Option<&toml::Spanned<raw::Scalar>>,
        path: &str,
        default: Duration,
    ) -> Option<Duration> {
        let d = self.duration(v, path, default)?;
        if d.is_zero() {
            self.at(
                v.map_or(0..0, |v| v.span()),
                path,
                "must be above 0 (expected a duration such as \"10s\")",
            );
            return None;
        }
        Some(d)
    }
}
