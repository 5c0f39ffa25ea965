//! `type = "store"` outputs: backend, directory, name templates, retention.

use super::Resolver;
use crate::config::raw::{self, Scalar};
use crate::config::*;
use crate::store::names::{MAX_DATABASE_NAME, MAX_TABLE_NAME, Template, is_valid_name};
use toml::Spanned;

/// The telemetrics-backend collector's default retention.
const DEFAULT_RETENTION: Duration = Duration::from_secs(5 * 7 * 86_400);

impl Resolver<'_, '_, '_> {
    /// `type = "store"`: SQLite under `data_dir/store` unless `path` says otherwise.
    pub(super) fn store_output(
        &mut self,
        raw: raw::StoreOutputRaw,
        path: &str,
        server: &ServerConfig,
    ) -> Option<OutputDef> {
        let buffer = self.buffer(raw.buffer.as_ref(), path, BufferKind::File);
        let mut ok = true;
        let backend = self.store_backend(&raw, path, &mut ok);
        let dir = match &raw.path {
            Some(p) => self.path(p, &format!("{path}.path")),
            None => Some(crate::store::store_dir(&server.data_dir)),
        };
        let database = self.name_template(
            raw.database.as_ref(),
            &format!("{path}.database"),
            MAX_DATABASE_NAME,
            &mut ok,
        );
        let table = self.name_template(
            raw.table.as_ref(),
            &format!("{path}.table"),
            MAX_TABLE_NAME,
            &mut ok,
        );
        let retention = match &raw.retention {
            None => Some(Some(DEFAULT_RETENTION)),
            Some(v) if matches!(v.get_ref(), Scalar::Bool(false)) => Some(None),
            Some(v) => {
                match self.duration(Some(v), &format!("{path}.retention"), DEFAULT_RETENTION) {
                    Some(d) if d.is_zero() => {
                        self.at(
                        v.span(),
                        &format!("{path}.retention"),
                        "retention must be above 0 (write `retention = false` to keep everything)",
                    );
                        None
                    }
                    other => other.map(Some),
                }
            }
        };
        let (Some(buffer), Some(dir), Some(retention), true) = (buffer, dir, retention, ok) else {
            return None;
        };
        Some(OutputDef {
            kind: OutputConfig::Store(StoreOutputConfig {
                dir,
                database,
                table,
                retention,
                backend: backend.unwrap_or_default(),
            }),
            buffer,
        })
    }

    /// `backend` and `url`: `url` is required by, and only allowed with, `postgres`,
    /// and must parse as a connection URL (nothing connects: `tidepool check` works
    /// without a server).
    fn store_backend(
        &mut self,
        raw: &raw::StoreOutputRaw,
        path: &str,
        ok: &mut bool,
    ) -> Option<StoreBackendConfig> {
        let backend = raw
            .backend
            .as_ref()
            .map_or("sqlite", |b| b.get_ref().as_str());
        if let (Some(t), false) = (&raw.tls, backend == "postgres") {
            self.at(
                t.span(),
                &format!("{path}.tls"),
                "tls is only used with backend = \"postgres\" (add it, or remove tls)",
            );
            *ok = false;
        }
        match (backend, &raw.url) {
            ("sqlite", None) => Some(StoreBackendConfig::Sqlite),
            ("sqlite", Some(u)) => {
                self.at(
                    u.span(),
                    &format!("{path}.url"),
                    "url is only used with backend = \"postgres\" (add it, or remove url)",
                );
                *ok = false;
                None
            }
            ("postgres", Some(u)) => {
                let text = u.get_ref().trim();
                match text.parse::<tokio_postgres::Config>() {
                    Ok(c) if !c.get_hosts().is_empty() => {
                        let tls = match &raw.tls {
                            Some(t) => {
                                let Some(tls) = self.pg_tls(t, &c, &format!("{path}.tls")) else {
                                    *ok = false;
                                    return None;
                                };
                                Some(tls)
                            }
                            None => None,
                        };
                        Some(StoreBackendConfig::Postgres {
                            url: text.to_string(),
                            tls,
                        })
                    }
                    Ok(_) => {
                        self.at(
                            u.span(),
                            &format!("{path}.url"),
                            "the PostgreSQL URL names no host (expected e.g. postgres://user:password@db.example:5432/tidepool)",
                        );
                        *ok = false;
                        None
                    }
                    Err(e) => {
                        // The URL may hold a password: name the problem, not the text.
                        self.at(
                            u.span(),
                            &format!("{path}.url"),
                            format!("not a PostgreSQL connection URL ({e}); expected e.g. postgres://user:password@db.example:5432/tidepool"),
                        );
                        *ok = false;
                        None
                    }
                }
            }
            ("postgres", None) => {
                let span = raw.backend.as_ref().map(|b| b.span()).unwrap_or_default();
                self.at(
                    span,
                    &format!("{path}.url"),
                    "backend = \"postgres\" needs url, e.g. url = \"${TIDEPOOL_PG_URL}\"",
                );
                *ok = false;
                None
            }
            (other, _) => {
                let span = raw.backend.as_ref().map(|b| b.span()).unwrap_or_default();
                self.at(
                    span,
                    &format!("{path}.backend"),
                    format!(
                        "unsupported backend \"{other}\" (expected \"sqlite\" or \"postgres\")"
                    ),
                );
                *ok = false;
                None
            }
        }
    }

    /// `tls = { ca, cert, key, passphrase, verify }` of a PostgreSQL store: cert and
    /// key come together, `verify = "ca"` needs `ca`, and a URL that turns TLS off
    /// contradicts it. Files are read when the output is built (`tidepool check`,
    /// start, reload), not here.
    fn pg_tls(
        &mut self,
        tls: &Spanned<raw::PgTlsRaw>,
        url: &tokio_postgres::Config,
        path: &str,
    ) -> Option<PgTlsConfig> {
        let raw = tls.get_ref();
        let p = |key: &str| format!("{path}.{key}");
        let mut ok = true;
        if url.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            self.at(
                tls.span(),
                path,
                "the url says sslmode=disable but tls is set (remove sslmode=disable to connect with TLS, or remove tls)",
            );
            ok = false;
        }
        if let (Some(pw), None) = (&raw.passphrase, &raw.key) {
            self.at(
                pw.span(),
                &p("passphrase"),
                "`passphrase` decrypts `key`, which is not set",
            );
            ok = false;
        }
        let verify = match &raw.verify {
            None => PgVerify::Full,
            Some(v) => match v.get_ref().trim().to_ascii_lowercase().as_str() {
                "full" | "verify-full" => PgVerify::Full,
                "ca" | "verify-ca" => PgVerify::Ca,
                "none" => PgVerify::None,
                other => {
                    self.at(
                        v.span(),
                        &p("verify"),
                        format!("unknown verify \"{other}\" (expected \"full\": chain and host name, \"ca\": chain only, or \"none\")"),
                    );
                    ok = false;
                    PgVerify::Full
                }
            },
        };
        match (verify, &raw.ca, &raw.verify) {
            (PgVerify::Ca, None, Some(v)) => {
                self.at(
                    v.span(),
                    &p("verify"),
                    "verify = \"ca\" needs ca (the CA file of your server): without a host name check, any certificate from a public CA would pass",
                );
                ok = false;
            }
            (PgVerify::None, Some(ca), _) => {
                self.at(
                    ca.span(),
                    &p("ca"),
                    "ca is not used with verify = \"none\" (remove verify to check the server against it, or remove ca)",
                );
                ok = false;
            }
            _ => {}
        }
        let files = self.client_tls_files(&raw.ca, &raw.cert, &raw.key, path)?;
        ok.then(|| PgTlsConfig {
            ca: files.ca,
            cert: files.cert,
            key: files.key,
            passphrase: raw.passphrase.as_ref().map(|p| p.get_ref().clone()),
            verify,
        })
    }

    /// A `database` / `table` template: placeholders must parse; a fixed name must
    /// already be a valid name (fixed names are checked, tag-derived ones normalized).
    fn name_template(
        &mut self,
        v: Option<&Spanned<String>>,
        path: &str,
        max: usize,
        ok: &mut bool,
    ) -> Option<String> {
        let v = v?;
        let text = v.get_ref();
        if let Err(e) = Template::parse(text) {
            self.at(v.span(), path, e);
            *ok = false;
            return None;
        }
        if !text.contains("${") && (!is_valid_name(text, max) || text.starts_with("sqlite_")) {
            self.at(
                v.span(),
                path,
                format!("bad name \"{text}\" (expected 3 to {max} characters of a-z, 0-9 and _, not starting with sqlite_)"),
            );
            *ok = false;
            return None;
        }
        Some(text.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, OutputConfig};
    use std::time::Duration;

    fn parse(body: &str) -> Result<Config, String> {
        let text = format!(
            "[output.s]\ntype = \"store\"\n{body}\n[[match]]\npattern = \"**\"\noutputs = [\"s\"]\n"
        );
        Config::parse(&text, "t.toml").map_err(|e| e.to_string())
    }

    fn store(c: &Config) -> crate::config::StoreOutputConfig {
        match &c.outputs["s"].kind {
            OutputConfig::Store(s) => s.clone(),
            other => panic!("not a store: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_settings() {
        let c = parse("").unwrap_or_else(|e| panic!("{e}"));
        let s = store(&c);
        assert_eq!(s.dir, std::path::PathBuf::from("data/store"));
        assert_eq!(s.retention, Some(Duration::from_secs(35 * 86_400)));
        assert!(c.api.enabled);
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:24220");
        let c = parse("retention = false\ndatabase = \"devices\"\ntable = \"${tag_parts[-1]}\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let s = store(&c);
        assert_eq!(s.retention, None);
        assert_eq!(s.database.as_deref(), Some("devices"));
        let c = parse("retention = \"2 days\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store(&c).retention, Some(Duration::from_secs(172_800)));
    }

    #[test]
    fn postgres_backend_needs_a_url_and_nothing_else() {
        let c = parse("backend = \"postgres\"\nurl = \"postgres://u:secret@db.example:5433/tp\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let s = store(&c);
        assert_eq!(
            s.backend,
            crate::config::StoreBackendConfig::Postgres {
                url: "postgres://u:secret@db.example:5433/tp".to_string(),
                tls: None,
            }
        );
        assert!(!format!("{s:?}").contains("secret"), "Debug hides the URL");
        assert_eq!(
            store(&parse("").unwrap_or_else(|e| panic!("{e}"))).backend,
            Default::default()
        );
        for (body, needle, line) in [
            ("backend = \"postgres\"", "output.s.url", "t.toml:3"),
            (
                "backend = \"postgres\"\nurl = \"nohost=1\"",
                "output.s.url",
                "t.toml:4",
            ),
            ("url = \"postgres://h/db\"", "output.s.url", "t.toml:3"),
            (
                "backend = \"postgres\"\nurl = \"host=h port=x\"",
                "output.s.url",
                "t.toml:4",
            ),
        ] {
            let e = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert!(e.contains(needle) && e.contains(line), "{body}: {e}");
        }
    }

    #[test]
    fn postgres_tls_settings() {
        use crate::config::{PgTlsConfig, PgVerify, StoreBackendConfig};
        let pg = "backend = \"postgres\"\nurl = \"postgres://u:secret@db.example/tp\"\n";
        let tls_of = |body: &str| match store(
            &parse(&format!("{pg}{body}")).unwrap_or_else(|e| panic!("{e}")),
        )
        .backend
        {
            StoreBackendConfig::Postgres { tls, .. } => tls,
            other => panic!("not postgres: {other:?}"),
        };
        assert_eq!(tls_of(""), None);
        let full = tls_of("tls = { ca = \"pg-ca.pem\" }").expect("tls");
        assert_eq!(
            full,
            PgTlsConfig {
                ca: Some("pg-ca.pem".into()),
                cert: None,
                key: None,
                passphrase: None,
                verify: PgVerify::Full,
            }
        );
        let client = tls_of(
            "tls = { ca = \"ca.pem\", cert = \"c.pem\", key = \"k.pem\", passphrase = \"pw-secret\", verify = \"ca\" }",
        )
        .expect("tls");
        assert_eq!(
            (client.verify, client.cert, client.passphrase.as_deref()),
            (PgVerify::Ca, Some("c.pem".into()), Some("pw-secret"))
        );
        let shown = format!("{:?}", store(&parse(&format!("{pg}tls = {{ ca = \"ca.pem\", cert = \"c.pem\", key = \"k.pem\", passphrase = \"pw-secret\" }}")).unwrap_or_else(|e| panic!("{e}"))));
        assert!(
            !shown.contains("pw-secret") && !shown.contains("secret@"),
            "Debug hides the passphrase and the URL: {shown}"
        );
        assert_eq!(
            tls_of("tls = { verify = \"verify-full\" }").map(|t| t.verify),
            Some(PgVerify::Full)
        );
        assert_eq!(
            tls_of("tls = { verify = \"none\" }").map(|t| (t.verify, t.ca)),
            Some((PgVerify::None, None))
        );
        let sslmode = parse(
            "backend = \"postgres\"\nurl = \"postgres://u@h/tp?sslmode=require\"\ntls = { ca = \"ca.pem\" }",
        );
        assert!(sslmode.is_ok(), "{sslmode:?}");
    }

    #[test]
    fn bad_postgres_tls_settings_are_located_errors() {
        let pg = "backend = \"postgres\"\nurl = \"postgres://u@db.example/tp\"\n";
        for (body, needle, what) in [
            (
                "tls = { ca = \"ca.pem\" }",
                "t.toml:3",
                "only used with backend = \"postgres\"",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://u@h/tp?sslmode=disable\"\ntls = { ca = \"ca.pem\" }",
                "t.toml:5",
                "sslmode=disable",
            ),
            (
                &format!("{pg}tls = {{ cert = \"c.pem\" }}"),
                "output.s.tls.cert",
                "needs `key`",
            ),
            (
                &format!("{pg}tls = {{ key = \"k.pem\" }}"),
                "output.s.tls.key",
                "needs `cert`",
            ),
            (
                &format!("{pg}tls = {{ passphrase = \"x\" }}"),
                "output.s.tls.passphrase",
                "not set",
            ),
            (
                &format!("{pg}tls = {{ verify = \"maybe\" }}"),
                "output.s.tls.verify",
                "\"maybe\"",
            ),
            (
                &format!("{pg}tls = {{ verify = \"ca\" }}"),
                "output.s.tls.verify",
                "needs ca",
            ),
            (
                &format!("{pg}tls = {{ verify = \"none\", ca = \"ca.pem\" }}"),
                "output.s.tls.ca",
                "not used with verify = \"none\"",
            ),
            (
                &format!("{pg}tls = {{ ca = \"\" }}"),
                "output.s.tls.ca",
                "empty",
            ),
            (
                &format!("{pg}tls = {{ sslrootcert = \"ca.pem\" }}"),
                "sslrootcert",
                "",
            ),
        ] {
            let e = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert!(e.contains(needle) && e.contains(what), "{body}: {e}");
        }
        let e = parse(&format!("{pg}tls = {{ verify = \"ca\" }}"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("t.toml:5"), "{e}");
    }

    #[test]
    fn the_postgres_example_parses() {
        let text = include_str!("../../../conf/examples/postgres-store.toml");
        let c = Config::parse(text, "postgres-store.toml").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            store_named(&c, "store").backend,
            crate::config::StoreBackendConfig::Postgres { .. }
        ));
    }

    fn store_named(c: &Config, name: &str) -> crate::config::StoreOutputConfig {
        match &c.outputs[name].kind {
            OutputConfig::Store(s) => s.clone(),
            other => panic!("not a store: {other:?}"),
        }
    }

    #[test]
    fn bad_settings_are_located_errors() {
        for (body, needle) in [
            ("retention = \"soon\"", "output.s.retention"),
            ("retention = 0", "output.s.retention"),
            ("database = \"Bad-Name\"", "output.s.database"),
            ("table = \"${nope}\"", "output.s.table"),
            ("backend = \"mysql\"", "output.s.backend"),
            ("colour = 1", "colour"),
        ] {
            let e = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert!(e.contains(needle), "{body}: {e}");
        }
        let api = |t: &str| {
            Config::parse(t, "a.toml")
                .map(|c| c.api)
                .map_err(|e| e.to_string())
        };
        let a =
            api("[api]\nlisten = \"0.0.0.0:9000\"\ntoken = \"0123456789abcdef0\"\nenabled = false")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.enabled, a.listen.port(), a.token.as_deref()),
            (false, 9000, Some("0123456789abcdef0"))
        );
        assert!(api("[api]\nlisten = \"nowhere\"").is_err_and(|e| e.contains("api.listen")));
        assert!(api("[api]\ntoken = \"short\"").is_err_and(|e| e.contains("api.token")));
        assert!(api("[api]\ntoken = \"\"").is_ok_and(|a| a.token.is_none()));
    }
}
