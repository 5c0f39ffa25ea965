//! Sources: `[[source]]` tables, their TLS and shared-key security.

use super::Resolver;
use super::SOURCE_TYPES;
use crate::config::de::{Value, typed};
use crate::config::raw::{self, Scalar};
use crate::config::units;
use crate::config::*;
use toml::Spanned;

impl Resolver<'_, '_, '_> {
    /// All `[[source]]` tables, dispatched on `type`; listen addresses must not clash.
    pub(super) fn sources(&mut self, value: Option<&Value<'_>>) -> Option<Vec<SourceConfig>> {
        let Some(value) = value else {
            return Some(Vec::new());
        };
        let items = self.array_of_tables(value, "source")?;
        let mut ok = true;
        let mut sources = Vec::new();
        let mut listens: Vec<(SocketAddr, std::ops::Range<usize>, usize)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let n = i + 1;
            let path = format!("source[{n}]");
            let section = format!("[[source]] #{n}");
            let Some(kind) = self.type_of(item, &path, &section, SOURCE_TYPES) else {
                ok = false;
                continue;
            };
            match kind.as_str() {
                "forward" => match self.forward(item, &path, &section, &mut listens, n) {
                    Some(forward) => sources.push(SourceConfig::Forward(forward)),
                    None => ok = false,
                },
                "http" => match self.http(item, &path, &section, &mut listens, n) {
                    Some(http) => sources.push(SourceConfig::Http(http)),
                    None => ok = false,
                },
                "mqtt" => match self.mqtt(item, &path, &section) {
                    Some(mqtt) => sources.push(SourceConfig::Mqtt(mqtt)),
                    None => ok = false,
                },
                other => {
                    ok = false;
                    let span = self.type_span(item);
                    self.at(
                        span,
                        &format!("{path}.type"),
                        format!(
                            "unknown source type \"{other}\" (expected one of: {SOURCE_TYPES})"
                        ),
                    );
                }
            }
        }
        ok.then_some(sources)
    }

    /// A source's `listen` address, checked against the ones already bound; the
    /// error shows an example with the input's usual `port`.
    pub(super) fn listen(
        &mut self,
        listen: &Spanned<String>,
        path: &str,
        listens: &mut Vec<(SocketAddr, std::ops::Range<usize>, usize)>,
        n: usize,
        port: u16,
    ) -> Option<SocketAddr> {
        match listen.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) => {
                self.check_listen(listens, addr, listen.span(), path, n);
                Some(addr)
            }
            Err(_) => {
                self.at(
                    listen.span(),
                    &format!("{path}.listen"),
                    format!(
                        "bad listen address \"{}\" (expected IP:port such as \"0.0.0.0:{port}\" or \"[::]:{port}\")",
                        listen.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A source's `allow = [...]` networks; a bad entry is reported and clears `ok`.
    pub(super) fn allow_list(
        &mut self,
        nets: Option<&[Spanned<String>]>,
        path: &str,
        ok: &mut bool,
    ) -> Vec<ipnet::IpNet> {
        let mut allow = Vec::new();
        for (i, net) in nets.unwrap_or_default().iter().enumerate() {
            match self.network(net, &format!("{path}.allow[{}]", i + 1)) {
                Some(n) => allow.push(n),
                None => *ok = false,
            }
        }
        allow
    }

    /// Rejects a listen address another source already binds.
    pub(super) fn check_listen(
        &mut self,
        seen: &mut Vec<(SocketAddr, std::ops::Range<usize>, usize)>,
        addr: SocketAddr,
        span: std::ops::Range<usize>,
        path: &str,
        n: usize,
    ) {
        if addr.port() != 0 {
            let clash = seen.iter().find(|(other, _, _)| {
                other.port() == addr.port()
                    && other.is_ipv4() == addr.is_ipv4()
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            });
            if let Some((other, other_span, other_n)) = clash {
                let (line, _) = super::error::line_col(self.problems_text(), other_span.start);
                let message = format!(
                    "listen address {addr} is already used by [[source]] #{other_n} ({other}, line {line}); give each source its own port"
                );
                self.at(span.clone(), &format!("{path}.listen"), message);
            }
        }
        seen.push((addr, span, n));
    }

    /// The config text, to turn another span into a line number.
    pub(super) fn problems_text(&self) -> &str {
        self.problems.text()
    }

    /// A forward input: its raw table deserialized, then every value checked.
    pub(super) fn forward(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
        listens: &mut Vec<(SocketAddr, std::ops::Range<usize>, usize)>,
        n: usize,
    ) -> Option<ForwardConfig> {
        let raw: raw::ForwardRaw = typed(item, path, section, self.problems)?;
        let mut ok = true;
        let p = |key: &str| format!("{path}.{key}");
        let listen = self.listen(&raw.listen, path, listens, n, 24227);
        let tls = match &raw.tls {
            Some(tls) => {
                let t = self.tls(tls, &p("tls"));
                ok &= t.is_some();
                t
            }
            None => None,
        };
        let security = match &raw.security {
            Some(s) => {
                let s2 = self.security(s, &p("security"));
                ok &= s2.is_some();
                s2
            }
            None => None,
        };
        let max_message_size = self.size_usize(
            raw.max_message_size.as_ref(),
            &p("max_message_size"),
            32 << 20,
        );
        let max_decompressed_size = self.size_usize(
            raw.max_decompressed_size.as_ref(),
            &p("max_decompressed_size"),
            64 << 20,
        );
        let max_depth = self.count(raw.max_depth.as_ref(), &p("max_depth"), 64, 1, 100);
        let max_connections = self.count(
            raw.max_connections.as_ref(),
            &p("max_connections"),
            10_000,
            1,
            10_000_000,
        );
        let idle_timeout = self.duration(
            raw.idle_timeout.as_ref(),
            &p("idle_timeout"),
            Duration::from_secs(300),
        );
        let handshake_timeout = self.duration(
            raw.handshake_timeout.as_ref(),
            &p("handshake_timeout"),
            Duration::from_secs(10),
        );
        let tcp_keepalive = match &raw.tcp_keepalive {
            None => Some(Some(Duration::from_secs(60))),
            Some(v) => match v.get_ref() {
                Scalar::Bool(false) => Some(None),
                Scalar::Bool(true) => Some(Some(Duration::from_secs(60))),
                Scalar::Str(text) if units::parse_duration(text).is_err() => {
                    self.at(
                        v.span(),
                        &p("tcp_keepalive"),
                        format!("bad tcp_keepalive \"{text}\" (expected a duration such as \"60s\", or false to turn it off)"),
                    );
                    None
                }
                _ => self
                    .duration(Some(v), &p("tcp_keepalive"), Duration::ZERO)
                    .map(Some),
            },
        };
        let allow = self.allow_list(raw.allow.as_deref(), path, &mut ok);
        let source_address_key = self.opt_name(
            raw.source_address_key.as_ref(),
            &p("source_address_key"),
            &mut ok,
        );
        let source_hostname_key = self.opt_name(
            raw.source_hostname_key.as_ref(),
            &p("source_hostname_key"),
            &mut ok,
        );
        let tag = self.opt_tag(raw.tag.as_ref(), &p("tag"), &mut ok);
        let add_tag_prefix =
            self.opt_tag(raw.add_tag_prefix.as_ref(), &p("add_tag_prefix"), &mut ok);
        let (
            Some(listen),
            Some(max_message_size),
            Some(max_decompressed_size),
            Some(max_depth),
            Some(max_connections),
            Some(idle_timeout),
            Some(handshake_timeout),
            Some(tcp_keepalive),
            true,
        ) = (
            listen,
            max_message_size,
            max_decompressed_size,
            max_depth,
            max_connections,
            idle_timeout,
            handshake_timeout,
            tcp_keepalive,
            ok,
        )
        else {
            return None;
        };
        Some(ForwardConfig {
            listen,
            tls,
            security,
            max_message_size,
            max_decompressed_size,
            max_depth,
            max_connections,
            idle_timeout,
            handshake_timeout,
            tcp_keepalive,
            allow,
            source_address_key,
            source_hostname_key,
            deny_keepalive: raw.deny_keepalive.unwrap_or(false),
            udp_heartbeat: raw.udp_heartbeat.unwrap_or(true),
            tag,
            add_tag_prefix,
        })
    }

    /// `tls = { ... }`: generated (the default) or from files, never half of each.
    pub(super) fn tls(&mut self, tls: &Spanned<raw::TlsRaw>, path: &str) -> Option<TlsConfig> {
        let raw = tls.get_ref();
        let p = |key: &str| format!("{path}.{key}");
        let mut ok = true;
        let files = raw.cert.is_some() || raw.key.is_some();
        match (&raw.generate, files) {
            (Some(g), true) if *g.get_ref() => {
                self.at(
                    g.span(),
                    &p("generate"),
                    "generate = true conflicts with cert/key (remove `generate`, or remove `cert` and `key`)",
                );
                ok = false;
            }
            (Some(g), false) if !*g.get_ref() => {
                self.at(
                    g.span(),
                    &p("generate"),
                    "generate = false needs `cert` and `key` (PEM files), or set generate = true",
                );
                ok = false;
            }
            _ => {}
        }
        match (&raw.cert, &raw.key) {
            (Some(cert), None) => {
                self.at(
                    cert.span(),
                    &p("cert"),
                    "`cert` needs `key` (the PEM private key of this certificate)",
                );
                ok = false;
            }
            (None, Some(key)) => {
                self.at(
                    key.span(),
                    &p("key"),
                    "`key` needs `cert` (the PEM certificate chain)",
                );
                ok = false;
            }
            _ => {}
        }
        if let (Some(pass), None) = (&raw.passphrase, &raw.key) {
            self.at(
                pass.span(),
                &p("passphrase"),
                "`passphrase` applies only to an encrypted `key` file",
            );
            ok = false;
        }
        let mut common_names = Vec::new();
        if let Some(names) = &raw.common_name {
            if files {
                self.at(
                    names.span(),
                    &p("common_name"),
                    "`common_name` applies only to generated certificates (the names of a `cert` file are in the file)",
                );
                ok = false;
            }
            for name in &names.get_ref().0 {
                let name = name.trim();
                if name.is_empty() {
                    continue; // `"${TIDEPOOL_HOST:-}"` left unset: use the defaults
                }
                if name.contains(char::is_whitespace) || name.contains(',') {
                    self.at(
                        names.span(),
                        &p("common_name"),
                        format!("bad name \"{name}\" (expected an IP address or DNS name; list several as an array)"),
                    );
                    ok = false;
                }
                common_names.push(name.to_string());
            }
        }
        let cert = raw.cert.as_ref().and_then(|c| self.path(c, &p("cert")));
        let key = raw.key.as_ref().and_then(|k| self.path(k, &p("key")));
        let client_ca = match &raw.client_ca {
            Some(ca) => {
                let path = self.path(ca, &p("client_ca"));
                ok &= path.is_some();
                path
            }
            None => None,
        };
        ok &= raw.cert.is_none() || cert.is_some();
        ok &= raw.key.is_none() || key.is_some();
        let min_version = self.tls_version(
            raw.min_version.as_ref(),
            &p("min_version"),
            TlsVersion::Tls12,
        );
        let max_version = self.tls_version(
            raw.max_version.as_ref(),
            &p("max_version"),
            TlsVersion::Tls13,
        );
        let (Some(min_version), Some(max_version)) = (min_version, max_version) else {
            return None;
        };
        if min_version > max_version
            && let Some(v) = &raw.min_version
        {
            self.at(
                v.span(),
                &p("min_version"),
                "min_version is above max_version (expected min_version <= max_version)",
            );
            ok = false;
        }
        ok.then(|| TlsConfig {
            cert,
            key,
            passphrase: raw.passphrase.as_ref().map(|p| p.get_ref().clone()),
            common_names,
            client_ca,
            min_version,
            max_version,
        })
    }

    /// `"1.2"` / `"1.3"` (also `TLSv1_2` and the like, as Fluentd writes them).
    pub(super) fn tls_version(
        &mut self,
        v: Option<&Spanned<String>>,
        path: &str,
        default: TlsVersion,
    ) -> Option<TlsVersion> {
        let Some(v) = v else { return Some(default) };
        match v.get_ref().trim().to_ascii_lowercase().as_str() {
            "1.2" | "tls1.2" | "tlsv1.2" | "tlsv1_2" | "tls1_2" => Some(TlsVersion::Tls12),
            "1.3" | "tls1.3" | "tlsv1.3" | "tlsv1_3" | "tls1_3" => Some(TlsVersion::Tls13),
            _ => {
                self.at(
                    v.span(),
                    path,
                    format!(
                        "unsupported TLS version \"{}\" (expected \"1.2\" or \"1.3\")",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// `security = { ... }`: Fluentd's `<security>` with users and per-network clients.
    pub(super) fn security(
        &mut self,
        sec: &Spanned<raw::SecurityRaw>,
        path: &str,
    ) -> Option<SecurityConfig> {
        let raw = sec.get_ref();
        let p = |key: &str| format!("{path}.{key}");
        let mut ok = true;
        let self_hostname = match &raw.self_hostname {
            Some(h) => self.non_empty(h, &p("self_hostname")),
            None => {
                self.at(
                    sec.span(),
                    path,
                    "missing required key `self_hostname` (the name this server sends in its PONG, e.g. \"aggregator-1\")",
                );
                None
            }
        };
        let shared_key = match &raw.shared_key {
            Some(k) => self.non_empty(k, &p("shared_key")),
            None => {
                self.at(
                    sec.span(),
                    path,
                    "missing required key `shared_key` (the secret clients also hash, e.g. shared_key = \"${FORWARD_SHARED_KEY}\")",
                );
                None
            }
        };
        let user_auth = raw.user_auth.unwrap_or(false);
        let mut users: Vec<UserConfig> = Vec::new();
        for (i, u) in raw.users.iter().flatten().enumerate() {
            let user = u.get_ref();
            let name = user.username.get_ref();
            let upath = format!("{path}.users[{}].username", i + 1);
            if name.is_empty() {
                self.at(user.username.span(), &upath, "empty username");
                ok = false;
            } else if users.iter().any(|x| x.username == *name) {
                self.at(
                    user.username.span(),
                    &upath,
                    format!("user \"{name}\" is listed twice (each username once)"),
                );
                ok = false;
            }
            users.push(UserConfig {
                username: name.clone(),
                password: user.password.clone(),
            });
        }
        if user_auth && users.is_empty() {
            self.at(
                sec.span(),
                &p("user_auth"),
                "user_auth = true but no `users` are listed (add users = [{ username = \"...\", password = \"...\" }])",
            );
            ok = false;
        }
        let mut clients = Vec::new();
        for (i, c) in raw.clients.iter().flatten().enumerate() {
            let cpath = format!("{path}.clients[{}]", i + 1);
            let client = c.get_ref();
            let network = self.network(&client.network, &format!("{cpath}.network"));
            let shared_key = client
                .shared_key
                .as_ref()
                .and_then(|k| self.non_empty(k, &format!("{cpath}.shared_key")));
            ok &= client.shared_key.is_none() || shared_key.is_some();
            let mut names = Vec::new();
            for (j, u) in client.users.iter().flatten().enumerate() {
                if !users.iter().any(|x| x.username == *u.get_ref()) {
                    let known: Vec<&str> = users.iter().map(|x| x.username.as_str()).collect();
                    self.at(
                        u.span(),
                        &format!("{cpath}.users[{}]", j + 1),
                        format!(
                            "unknown user \"{}\" (expected one of the security.users: {})",
                            u.get_ref(),
                            if known.is_empty() {
                                "none defined".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    ok = false;
                }
                names.push(u.get_ref().clone());
            }
            match network {
                Some(network) => clients.push(ClientConfig {
                    network,
                    shared_key,
                    users: names,
                }),
                None => ok = false,
            }
        }
        let allow_anonymous_source = raw.allow_anonymous_source.unwrap_or(true);
        if !allow_anonymous_source && raw.clients.as_ref().is_none_or(|c| c.is_empty()) {
            self.at(
                sec.span(),
                &p("allow_anonymous_source"),
                "allow_anonymous_source = false with no `clients`: no one could connect (add clients = [{ network = \"10.0.0.0/8\" }])",
            );
            ok = false;
        }
        let (Some(self_hostname), Some(shared_key), true) = (self_hostname, shared_key, ok) else {
            return None;
        };
        Some(SecurityConfig {
            self_hostname,
            shared_key,
            user_auth,
            users,
            allow_anonymous_source,
            clients,
        })
    }
}
