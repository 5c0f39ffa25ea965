//! Turns the config as written ([`super::raw`]) into checked values, once.
//!
//! Parses sizes and durations, compiles tag patterns, looks outputs up by name,
//! makes relative paths absolute against the config's directory, and applies the
//! defaults documented on the fields of [`super::Config`]. Every problem is
//! recorded with its place; nothing stops at the first.

use super::de::{Value, substitute_env, typed};
use super::env::Lookup;
use super::error::Problems;
use super::raw;
use super::*;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

mod api;
mod filter;
mod http;
mod leaves;
mod mqtt;
mod output;
mod source;
mod store;
mod td;

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

const SECTIONS: &str = "server, source, filter, match, output, api";
const SOURCE_TYPES: &str = "forward, http, mqtt";
const OUTPUT_TYPES: &str = "null, stdout, file, td, store";

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

/// One pass over a parsed config: each method resolves one table or value and
/// records what is wrong instead of stopping, returning None for a bad part.
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

/// The files of a TLS client's `tls = { ca, cert, key }` (MQTT broker, PostgreSQL).
struct ClientTlsFiles {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Resolver<'_, '_, '_> {
    /// Records a problem at `span`.
    fn at(&mut self, span: std::ops::Range<usize>, path: &str, message: impl std::fmt::Display) {
        self.problems.at(span, path, message);
    }

    /// A TLS client's `ca`, `cert` and `key` under `path`: `cert` and `key` come
    /// together, each path resolved like every other file. None if anything is wrong
    /// (every problem recorded).
    fn client_tls_files(
        &mut self,
        ca: &Option<Spanned<String>>,
        cert: &Option<Spanned<String>>,
        key: &Option<Spanned<String>>,
        path: &str,
    ) -> Option<ClientTlsFiles> {
        let p = |k: &str| format!("{path}.{k}");
        let mut ok = true;
        match (cert, key) {
            (Some(cert), None) => {
                self.at(
                    cert.span(),
                    &p("cert"),
                    "`cert` needs `key` (the PEM private key of this client certificate)",
                );
                ok = false;
            }
            (None, Some(key)) => {
                self.at(
                    key.span(),
                    &p("key"),
                    "`key` needs `cert` (the PEM client certificate chain)",
                );
                ok = false;
            }
            _ => {}
        }
        let mut file = |this: &mut Self, v: &Option<Spanned<String>>, k: &str| match v {
            Some(v) => {
                let resolved = this.path(v, &p(k));
                ok &= resolved.is_some();
                resolved
            }
            None => None,
        };
        let ca = file(self, ca, "ca");
        let cert = file(self, cert, "cert");
        let key = file(self, key, "key");
        ok.then_some(ClientTlsFiles { ca, cert, key })
    }

    /// The root table: known sections only, each resolved; None if anything is wrong.
    fn root(&mut self, table: &DeTable<'_>) -> Option<Config> {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if !matches!(
                name,
                "server" | "source" | "filter" | "match" | "output" | "api"
            ) {
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
        // Names as declared, so a match naming an undeclared output is reported even
        // when some declared output is broken.
        let declared: Vec<String> = match get(table, "output").map(|(_, v)| v.get_ref()) {
            Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
            _ => Vec::new(),
        };
        let matches = self.matches(get(table, "match").map(|(_, v)| v), &declared);
        let filters = self.filters(get(table, "filter").map(|(_, v)| v));
        let api = match get(table, "api") {
            Some((_, v)) => self.api(v),
            None => Some(ApiConfig::default()),
        };

        let (Some(sources), Some(outputs), Some(matches), Some(filters), Some(api), true) =
            (sources, outputs, matches, filters, api, server_ok)
        else {
            return None;
        };
        Some(Config {
            origin: self.cx.origin.to_string(),
            server,
            sources,
            filters,
            matches,
            outputs,
            api,
        })
    }

    /// `[server]`, with its defaults.
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

    /// All `[[match]]` tables: patterns compiled, output names looked up.
    fn matches(
        &mut self,
        value: Option<&Value<'_>>,
        declared: &[String],
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
                if !declared.contains(n) {
                    let known: Vec<&str> = declared.iter().map(String::as_str).collect();
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
}

fn default_server() -> ServerConfig {
    ServerConfig {
        data_dir: PathBuf::from("data"),
        certs_dir: PathBuf::from("certs"),
        shutdown_timeout: Duration::from_secs(30),
    }
}
