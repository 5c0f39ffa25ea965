//! Turns the config as written ([`super::raw`]) into checked values, once.
//!
//! Parses sizes and durations, compiles tag patterns, looks outputs up by name,
//! makes relative paths absolute against the config's directory, and applies the
//! defaults documented on the fields of [`super::Config`]. Every problem is
//! recorded with its place; nothing stops at the first.

use super::de::{Value, substitute_env, typed};
use super::env::Lookup;
use super::error::Problems;
use super::raw::{self, Scalar};
use super::units::{self, DURATION_EXPECTED, SIZE_EXPECTED};
use super::*;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// What `Config::parse` needs besides the text.
pub(crate) struct Context<'a> {
    /// Names the text in messages.
    pub origin: &'a str,
    /// Directory relative paths are resolved against; None = leave them relative
    /// (to the working directory).
    pub base_dir: Option<&'a Path>,
    /// Where `${ENV}` values come from.
    pub env: Lookup<'a>,
}

const SECTIONS: &str = "server, source, match, output";
const SOURCE_TYPES: &str = "forward";
const OUTPUT_TYPES: &str = "null, stdout, file";

/// Parses and checks `text`.
pub(crate) fn resolve(text: &str, cx: &Context<'_>) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(cx.origin, text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            problems.at(e.span().unwrap_or(0..0), "", e.message());
        }
        return problems.finish(None);
    }
    let root_span = root.span();
    let mut root: Value<'_> = Spanned::new(root_span, DeValue::Table(root.into_inner()));
    substitute_env(&mut root, "", cx.env, &mut problems);
    let DeValue::Table(table) = root.get_ref() else {
        return problems.finish(None);
    };
    let mut r = Resolver {
        cx,
        problems: &mut problems,
    };
    let config = r.root(table);
    problems.finish(config)
}

struct Resolver<'a, 'p, 't> {
    cx: &'a Context<'a>,
    problems: &'p mut Problems<'t>,
}

/// Finds `name` in a table.
fn get<'t, 'i>(
    table: &'t DeTable<'i>,
    name: &str,
) -> Option<(&'t Spanned<toml::de::DeString<'i>>, &'t Value<'i>)> {
    table.iter().find(|(k, _)| k.get_ref() == name)
}

impl Resolver<'_, '_, '_> {
    fn at(&mut self, span: std::ops::Range<usize>, path: &str, message: impl std::fmt::Display) {
        self.problems.at(span, path, message);
    }

    fn root(&mut self, table: &DeTable<'_>) -> Option<Config> {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if !matches!(name, "server" | "source" | "match" | "output") {
                self.at(
                    key.span(),
                    name,
                    format!("unknown section `{name}`, expected one of: {SECTIONS}"),
                );
            }
        }
        let server = match get(table, "server") {
            Some((_, v)) => self.server(v),
            None => Some(default_server()),
        };
        let server_ok = server.is_some();
        let server = server.unwrap_or_else(default_server);

        let sources = self.sources(get(table, "source").map(|(_, v)| v));
        let outputs = self.outputs(get(table, "output").map(|(_, v)| v), &server);
        let matches = self.matches(get(table, "match").map(|(_, v)| v), &outputs);

        let (Some(sources), Some(outputs), Some(matches), true) =
            (sources, outputs, matches, server_ok)
        else {
            return None;
        };
        Some(Config {
            origin: self.cx.origin.to_string(),
            server,
            sources,
            matches,
            outputs,
        })
    }

    fn server(&mut self, value: &Value<'_>) -> Option<ServerConfig> {
        let raw: raw::ServerRaw = typed(value, "server", "[server]", self.problems)?;
        let mut ok = true;
        let mut server = default_server();
        if let Some(dir) = raw.data_dir {
            match self.non_empty(&dir, "server.data_dir") {
                Some(d) => server.data_dir = PathBuf::from(d),
                None => ok = false,
            }
        }
        if let Some(dir) = raw.certs_dir {
            match self.non_empty(&dir, "server.certs_dir") {
                Some(d) => server.certs_dir = PathBuf::from(d),
                None => ok = false,
            }
        }
        match self.duration(
            raw.shutdown_timeout.as_ref(),
            "server.shutdown_timeout",
            Duration::from_secs(30),
        ) {
            Some(d) => server.shutdown_timeout = d,
            None => ok = false,
        }
        ok.then_some(server)
    }

    /// The entries of an array of tables (`[[name]]`), or a problem if it is not one.
    fn array_of_tables<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        name: &str,
    ) -> Option<&'v [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(items) => Some(items),
            _ => {
                self.at(
                    value.span(),
                    name,
                    format!(
                        "write `[[{name}]]` (an array of tables), not `[{name}]` or `{name} = ...`"
                    ),
                );
                None
            }
        }
    }

    fn sources(&mut self, value: Option<&Value<'_>>) -> Option<Vec<SourceConfig>> {
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

    /// Rejects a listen address another source already binds.
    fn check_listen(
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

    fn problems_text(&self) -> &str {
        self.problems.text()
    }

    /// The `type` of a source or output table, as a string, or a problem.
    fn type_of(
        &mut self,
        item: &Value<'_>,
        path: &str,
        section: &str,
        expected: &str,
    ) -> Option<String> {
        let DeValue::Table(table) = item.get_ref() else {
            self.at(item.span(), path, format!("{section} must be a table"));
            return None;
        };
        match get(table, "type") {
            Some((_, v)) => match v.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                other => {
                    self.at(
                        v.span(),
                        &format!("{path}.type"),
                        format!(
                            "invalid type: {}, expected a string (one of: {expected})",
                            other.type_str()
                        ),
                    );
                    None
                }
            },
            None => {
                self.at(
                    item.span(),
                    path,
                    format!(
                        "missing required key `type` in {section} (expected one of: {expected})"
                    ),
                );
                None
            }
        }
    }

    fn type_span(&self, item: &Value<'_>) -> std::ops::Range<usize> {
        match item.get_ref() {
            DeValue::Table(t) => get(t, "type").map_or(item.span(), |(_, v)| v.span()),
            _ => item.span(),
        }
    }

    fn forward(
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
        let listen = match raw.listen.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) => {
                self.check_listen(listens, addr, raw.listen.span(), path, n);
                Some(addr)
            }
            Err(_) => {
                self.at(
                    raw.listen.span(),
                    &p("listen"),
                    format!(
                        "bad listen address \"{}\" (expected IP:port such as \"0.0.0.0:24227\" or \"[::]:24227\")",
                        raw.listen.get_ref()
                    ),
                );
                None
            }
        };
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
        let max_depth = self.count(raw.max_depth.as_ref(), &p("max_depth"), 64, 1, 10_000);
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
                _ => self
                    .duration(Some(v), &p("tcp_keepalive"), Duration::ZERO)
                    .map(Some),
            },
        };
        let mut allow = Vec::new();
        for (i, net) in raw.allow.iter().flatten().enumerate() {
            match self.network(net, &format!("{path}.allow[{}]", i + 1)) {
                Some(n) => allow.push(n),
                None => ok = false,
            }
        }
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
        let _ = raw.kind;
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

    fn tls(&mut self, tls: &Spanned<raw::TlsRaw>, path: &str) -> Option<TlsConfig> {
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

    fn tls_version(
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

    fn security(&mut self, sec: &Spanned<raw::SecurityRaw>, path: &str) -> Option<SecurityConfig> {
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

    fn outputs(
        &mut self,
        value: Option<&Value<'_>>,
        server: &ServerConfig,
    ) -> Option<BTreeMap<String, OutputDef>> {
        let mut outputs = BTreeMap::new();
        let Some(value) = value else {
            return Some(outputs);
        };
        let DeValue::Table(table) = value.get_ref() else {
            self.at(
                value.span(),
                "output",
                "write each output as `[output.NAME]` (a table of named outputs)",
            );
            return None;
        };
        let mut ok = true;
        for (key, item) in table.iter() {
            let name: &str = key.get_ref();
            let path = format!("output.{name}");
            let section = format!("[output.{name}]");
            if !valid_output_name(name) {
                self.at(
                    key.span(),
                    &path,
                    format!("bad output name \"{name}\" (expected letters, digits, `_` or `-`; it names a directory)"),
                );
                ok = false;
                continue;
            }
            let Some(kind) = self.type_of(item, &path, &section, OUTPUT_TYPES) else {
                ok = false;
                continue;
            };
            let def = match kind.as_str() {
                "null" | "stdout" => {
                    typed::<raw::PlainOutputRaw>(item, &path, &section, self.problems).and_then(
                        |raw| {
                            let buffer =
                                self.buffer(raw.buffer.as_ref(), &path, BufferKind::Memory)?;
                            let kind = if kind == "null" {
                                OutputConfig::Null
                            } else {
                                OutputConfig::Stdout
                            };
                            Some(OutputDef { kind, buffer })
                        },
                    )
                }
                "file" => typed::<raw::FileOutputRaw>(item, &path, &section, self.problems)
                    .and_then(|raw| self.file_output(raw, &path, server)),
                other => {
                    let span = self.type_span(item);
                    self.at(
                        span,
                        &format!("{path}.type"),
                        format!(
                            "unknown output type \"{other}\" (expected one of: {OUTPUT_TYPES})"
                        ),
                    );
                    None
                }
            };
            match def {
                Some(def) => {
                    outputs.insert(name.to_string(), def);
                }
                None => ok = false,
            }
        }
        ok.then_some(outputs)
    }

    fn file_output(
        &mut self,
        raw: raw::FileOutputRaw,
        path: &str,
        server: &ServerConfig,
    ) -> Option<OutputDef> {
        let buffer = self.buffer(raw.buffer.as_ref(), path, BufferKind::File);
        let mut ok = true;
        let out_path = match &raw.path {
            Some(p) => self
                .path(p, &format!("{path}.path"))
                .map(|p| p.to_string_lossy().into_owned()),
            None => Some(
                server
                    .data_dir
                    .join("out")
                    .join("${tag}.jsonl")
                    .to_string_lossy()
                    .into_owned(),
            ),
        };
        let time_key = self.opt_name(raw.time_key.as_ref(), &format!("{path}.time_key"), &mut ok);
        let tag_key = self.opt_name(raw.tag_key.as_ref(), &format!("{path}.tag_key"), &mut ok);
        let (Some(buffer), Some(out_path), true) = (buffer, out_path, ok) else {
            return None;
        };
        Some(OutputDef {
            kind: OutputConfig::File(FileOutputConfig {
                path: out_path,
                time_key,
                tag_key,
            }),
            buffer,
        })
    }

    fn buffer(
        &mut self,
        raw: Option<&Spanned<raw::BufferRaw>>,
        output: &str,
        default_kind: BufferKind,
    ) -> Option<BufferConfig> {
        let path = format!("{output}.buffer");
        let p = |key: &str| format!("{path}.{key}");
        let empty = raw::BufferRaw {
            kind: None,
            chunk_limit_size: None,
            chunk_limit_records: None,
            flush_interval: None,
            flush_thread_count: None,
            retry_wait: None,
            retry_max_interval: None,
            retry_max_times: None,
            retry_timeout: None,
            retry_forever: None,
            total_limit_size: None,
            overflow_action: None,
            fsync: None,
        };
        let raw = raw.map_or(&empty, |r| r.get_ref());
        let mut ok = true;
        let kind = match &raw.kind {
            None => Some(default_kind),
            Some(k) => match k.get_ref().as_str() {
                "file" => Some(BufferKind::File),
                "memory" => Some(BufferKind::Memory),
                other => {
                    self.at(
                        k.span(),
                        &p("type"),
                        format!(
                            "unknown buffer type \"{other}\" (expected \"file\" or \"memory\")"
                        ),
                    );
                    None
                }
            },
        };
        let chunk_limit_size = self.size(
            raw.chunk_limit_size.as_ref(),
            &p("chunk_limit_size"),
            8 << 20,
        );
        let chunk_limit_records = match &raw.chunk_limit_records {
            None => Some(None),
            Some(v) => self
                .count(Some(v), &p("chunk_limit_records"), 0, 1, u64::MAX)
                .map(Some),
        };
        let flush_interval = self.duration(
            raw.flush_interval.as_ref(),
            &p("flush_interval"),
            Duration::from_secs(1),
        );
        let flush_thread_count = self.count(
            raw.flush_thread_count.as_ref(),
            &p("flush_thread_count"),
            2,
            1,
            1024,
        );
        let retry_wait = self.duration(
            raw.retry_wait.as_ref(),
            &p("retry_wait"),
            Duration::from_secs(1),
        );
        let retry_max_interval = self.duration(
            raw.retry_max_interval.as_ref(),
            &p("retry_max_interval"),
            Duration::from_secs(300),
        );
        let retry_max_times = match &raw.retry_max_times {
            None => Some(None),
            Some(v) => self
                .count(Some(v), &p("retry_max_times"), 0, 0, u64::from(u32::MAX))
                .map(Some),
        };
        let retry_timeout = self.duration(
            raw.retry_timeout.as_ref(),
            &p("retry_timeout"),
            Duration::from_secs(72 * 3600),
        );
        let total_limit_size = self.size(
            raw.total_limit_size.as_ref(),
            &p("total_limit_size"),
            1 << 30,
        );
        let overflow_action = match &raw.overflow_action {
            None => Some(OverflowAction::Block),
            Some(a) => match a.get_ref().as_str() {
                "block" => Some(OverflowAction::Block),
                "drop_oldest_chunk" => Some(OverflowAction::DropOldestChunk),
                "throw_exception" => Some(OverflowAction::ThrowException),
                other => {
                    self.at(
                        a.span(),
                        &p("overflow_action"),
                        format!(
                            "unknown overflow_action \"{other}\" (expected \"block\", \"drop_oldest_chunk\" or \"throw_exception\")"
                        ),
                    );
                    None
                }
            },
        };
        let fsync = match &raw.fsync {
            None => Some(FsyncPolicy::Commit),
            Some(f) => self.fsync(f, &p("fsync")),
        };
        if let (Some(BufferKind::Memory), Some(f)) = (kind, &raw.fsync) {
            self.at(
                f.span(),
                &p("fsync"),
                "fsync applies only to file buffers (remove it, or set buffer type = \"file\")",
            );
            ok = false;
        }
        for (value, key) in [
            (&chunk_limit_size, "chunk_limit_size"),
            (&total_limit_size, "total_limit_size"),
        ] {
            if *value == Some(0) {
                let span = match key {
                    "chunk_limit_size" => raw.chunk_limit_size.as_ref().map(|s| s.span()),
                    _ => raw.total_limit_size.as_ref().map(|s| s.span()),
                };
                self.at(
                    span.unwrap_or(0..0),
                    &p(key),
                    format!("{key} must be above 0"),
                );
                ok = false;
            }
        }
        if let (Some(chunk), Some(total), Some(span)) = (
            chunk_limit_size,
            total_limit_size,
            raw.total_limit_size.as_ref().map(|s| s.span()),
        ) && chunk > total
        {
            self.at(
                span,
                &p("total_limit_size"),
                format!(
                    "total_limit_size ({total} bytes) is below chunk_limit_size ({chunk} bytes)"
                ),
            );
            ok = false;
        }
        let (
            Some(kind),
            Some(chunk_limit_size),
            Some(chunk_limit_records),
            Some(flush_interval),
            Some(flush_thread_count),
            Some(retry_wait),
            Some(retry_max_interval),
            Some(retry_max_times),
            Some(retry_timeout),
            Some(total_limit_size),
            Some(overflow_action),
            Some(fsync),
            true,
        ) = (
            kind,
            chunk_limit_size,
            chunk_limit_records,
            flush_interval,
            flush_thread_count,
            retry_wait,
            retry_max_interval,
            retry_max_times,
            retry_timeout,
            total_limit_size,
            overflow_action,
            fsync,
            ok,
        )
        else {
            return None;
        };
        Some(BufferConfig {
            kind,
            chunk_limit_size,
            chunk_limit_records,
            flush_interval,
            flush_thread_count: usize::try_from(flush_thread_count).unwrap_or(usize::MAX),
            retry_wait,
            retry_max_interval,
            retry_max_times: retry_max_times.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            retry_timeout,
            retry_forever: raw.retry_forever.unwrap_or(false),
            total_limit_size,
            overflow_action,
            fsync,
        })
    }

    fn fsync(&mut self, f: &Spanned<String>, path: &str) -> Option<FsyncPolicy> {
        let text = f.get_ref().trim();
        match text {
            "commit" => return Some(FsyncPolicy::Commit),
            "never" => return Some(FsyncPolicy::Never),
            _ => {}
        }
        if let Some(every) = text.strip_prefix("interval:") {
            match units::parse_duration(every) {
                Ok(d) if !d.is_zero() => return Some(FsyncPolicy::Interval(d)),
                Ok(_) => {
                    self.at(
                        f.span(),
                        path,
                        "fsync interval must be above 0 (e.g. \"interval:1s\")",
                    );
                    return None;
                }
                Err(e) => {
                    self.at(f.span(), path, e);
                    return None;
                }
            }
        }
        self.at(
            f.span(),
            path,
            format!("unknown fsync policy \"{text}\" (expected \"commit\", \"interval:<duration>\" such as \"interval:1s\", or \"never\")"),
        );
        None
    }

    fn matches(
        &mut self,
        value: Option<&Value<'_>>,
        outputs: &Option<BTreeMap<String, OutputDef>>,
    ) -> Option<Vec<MatchConfig>> {
        let Some(value) = value else {
            return Some(Vec::new());
        };
        let items = self.array_of_tables(value, "match")?;
        let mut ok = true;
        let mut matches = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let n = i + 1;
            let path = format!("match[{n}]");
            let Some(raw) =
                typed::<raw::MatchRaw>(item, &path, &format!("[[match]] #{n}"), self.problems)
            else {
                ok = false;
                continue;
            };
            let pattern = match TagPattern::parse(raw.pattern.get_ref()) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.at(raw.pattern.span(), &format!("{path}.pattern"), e);
                    None
                }
            };
            if raw.outputs.get_ref().is_empty() {
                self.at(
                    raw.outputs.span(),
                    &format!("{path}.outputs"),
                    "no outputs listed (expected at least one output name, e.g. outputs = [\"stdout\"])",
                );
                ok = false;
            }
            let mut names: Vec<String> = Vec::new();
            for (j, name) in raw.outputs.get_ref().iter().enumerate() {
                let opath = format!("{path}.outputs[{}]", j + 1);
                let n = name.get_ref();
                if names.contains(n) {
                    self.at(
                        name.span(),
                        &opath,
                        format!("output \"{n}\" is listed twice"),
                    );
                    ok = false;
                    continue;
                }
                // When outputs failed to resolve, unknown names are not reported: the
                // output may exist but be broken.
                if let Some(outputs) = outputs
                    && !outputs.contains_key(n)
                {
                    let known: Vec<&str> = outputs.keys().map(String::as_str).collect();
                    let known = if known.is_empty() {
                        "none are defined; add an [output.NAME] table".to_string()
                    } else {
                        format!("defined: {}", known.join(", "))
                    };
                    self.at(
                        name.span(),
                        &opath,
                        format!("unknown output \"{n}\" ({known})"),
                    );
                    ok = false;
                }
                names.push(n.clone());
            }
            match pattern {
                Some(pattern) => matches.push(MatchConfig {
                    index: n,
                    pattern,
                    outputs: names,
                }),
                None => ok = false,
            }
        }
        ok.then_some(matches)
    }

    // ---- leaves ----

    fn non_empty(&mut self, v: &Spanned<String>, path: &str) -> Option<String> {
        if v.get_ref().trim().is_empty() {
            self.at(v.span(), path, "empty value (expected a non-empty string)");
            None
        } else {
            Some(v.get_ref().clone())
        }
    }

    fn opt_name(
        &mut self,
        v: Option<&Spanned<String>>,
        path: &str,
        ok: &mut bool,
    ) -> Option<String> {
        let v = v?;
        let name = self.non_empty(v, path);
        *ok &= name.is_some();
        name
    }

    fn opt_tag(
        &mut self,
        v: Option<&Spanned<String>>,
        path: &str,
        ok: &mut bool,
    ) -> Option<String> {
        let v = v?;
        let tag = v.get_ref();
        let bad = tag.is_empty()
            || tag.contains(char::is_whitespace)
            || tag.starts_with('.')
            || tag.ends_with('.')
            || tag.contains("..");
        if bad {
            self.at(
                v.span(),
                path,
                format!("bad tag \"{tag}\" (expected dot-separated parts without spaces, e.g. \"td.db.table\")"),
            );
            *ok = false;
            return None;
        }
        Some(tag.clone())
    }

    /// A path as written, made relative to the config's directory.
    fn path(&mut self, v: &Spanned<String>, path: &str) -> Option<PathBuf> {
        let written = self.non_empty(v, path)?;
        let p = PathBuf::from(written);
        Some(match self.cx.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        })
    }

    fn network(&mut self, v: &Spanned<String>, path: &str) -> Option<ipnet::IpNet> {
        let text = v.get_ref().trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Some(net);
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Some(ipnet::IpNet::from(ip));
        }
        self.at(
            v.span(),
            path,
            format!(
                "bad network \"{text}\" (expected CIDR such as \"10.0.0.0/8\" or an IP address)"
            ),
        );
        None
    }

    fn size(&mut self, v: Option<&Spanned<Scalar>>, path: &str, default: u64) -> Option<u64> {
        let Some(v) = v else { return Some(default) };
        let result = match v.get_ref() {
            Scalar::Int(n) => u64::try_from(*n)
                .map_err(|_| format!("size {n} is negative (expected {SIZE_EXPECTED})")),
            Scalar::Str(s) => units::parse_size(s),
            Scalar::Float(f) => Err(format!("bad size {f} (expected {SIZE_EXPECTED})")),
            Scalar::Bool(b) => Err(format!("bad size {b} (expected {SIZE_EXPECTED})")),
        };
        result.map_err(|e| self.at(v.span(), path, e)).ok()
    }

    fn size_usize(
        &mut self,
        v: Option<&Spanned<Scalar>>,
        path: &str,
        default: u64,
    ) -> Option<usize> {
        let bytes = self.size(v, path, default)?;
        if bytes == 0 {
            self.at(v.map_or(0..0, |v| v.span()), path, "must be above 0");
            return None;
        }
        usize::try_from(bytes)
            .map_err(|_| {
                self.at(
                    v.map_or(0..0, |v| v.span()),
                    path,
                    "too large for this machine",
                )
            })
            .ok()
    }

    fn duration(
        &mut self,
        v: Option<&Spanned<Scalar>>,
        path: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(v) = v else { return Some(default) };
        let result = match v.get_ref() {
            Scalar::Int(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| format!("duration {n} is negative (expected {DURATION_EXPECTED})")),
            Scalar::Float(f) => units::seconds(*f),
            Scalar::Str(s) => units::parse_duration(s),
            Scalar::Bool(b) => Err(format!("bad duration {b} (expected {DURATION_EXPECTED})")),
        };
        result.map_err(|e| self.at(v.span(), path, e)).ok()
    }

    fn count<T: TryFrom<u64>>(
        &mut self,
        v: Option<&Spanned<i64>>,
        path: &str,
        default: T,
        min: u64,
        max: u64,
    ) -> Option<T> {
        let Some(v) = v else { return Some(default) };
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(n) if n >= min && n <= max => T::try_from(n).ok().or_else(|| {
                self.at(v.span(), path, format!("{n} is too large for this machine"));
                None
            }),
            _ => {
                self.at(
                    v.span(),
                    path,
                    format!("{n} is out of range (expected {min} to {max})"),
                );
                None
            }
        }
    }
}

fn default_server() -> ServerConfig {
    ServerConfig {
        data_dir: PathBuf::from("data"),
        certs_dir: PathBuf::from("certs"),
        shutdown_timeout: Duration::from_secs(30),
    }
}

/// Output names become directory names under `data_dir/buffer/`.
fn valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
