//! `[api]`: where the HTTP API listens, the token it requires, and its TLS.

use super::Resolver;
use crate::config::de::{Value, typed};
use crate::config::raw;
use crate::config::*;

impl Resolver<'_, '_, '_> {
    /// `[api]`, with its defaults (enabled, `127.0.0.1:24220`, no token).
    pub(super) fn api(&mut self, value: &Value<'_>) -> Option<ApiConfig> {
        let raw: raw::ApiRaw = typed(value, "api", "[api]", self.problems)?;
        let mut api = ApiConfig::default();
        let mut ok = true;
        if let Some(enabled) = raw.enabled {
            api.enabled = enabled;
        }
        if let Some(listen) = &raw.listen {
            match listen.get_ref().trim().parse::<SocketAddr>() {
                Ok(addr) => api.listen = addr,
                Err(_) => {
                    self.at(
                        listen.span(),
                        "api.listen",
                        format!(
                            "bad listen address \"{}\" (expected IP:port such as \"127.0.0.1:24220\")",
                            listen.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
        }
        if let Some(token) = &raw.token {
            // An empty token (e.g. an unset `${API_TOKEN:-}`) means no token.
            let t = token.get_ref().trim();
            if !t.is_empty() {
                if t.len() < 16 {
                    self.at(
                        token.span(),
                        "api.token",
                        format!(
                            "token is {} characters; use at least 16 (e.g. `openssl rand -hex 16`)",
                            t.len()
                        ),
                    );
                    ok = false;
                }
                api.token = Some(t.to_string());
            }
        }
        if let Some(tls) = &raw.tls {
            match self.tls(tls, "api.tls") {
                Some(t) => api.tls = Some(t),
                None => ok = false,
            }
        }
        ok.then_some(api)
    }
}
