//! Config tests: defaults, units, `${ENV}`, every error kind with its exact place,
//! the shipped files, and no panics on any input.

use super::resolve::{Context, resolve};
use super::units::{parse_duration, parse_size};
use super::*;
use std::collections::HashMap;

mod errors;
mod mqtt;

fn env_of(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env_of(vars);
    let lookup = move |name: &str| env.get(name).cloned();
    resolve(
        text,
        &Context {
            origin: "t.toml",
            base_dir: None,
            env: &lookup,
        },
    )
}

/// Like `Config::load` (paths relative to `base`), with a test environment.
fn parse_in(text: &str, base: &Path, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env_of(vars);
    let lookup = move |name: &str| env.get(name).cloned();
    resolve(
        text,
        &Context {
            origin: "t.toml",
            base_dir: Some(base),
            env: &lookup,
        },
    )
}

fn parse(text: &str) -> Config {
    match parse_env(text, &[]) {
        Ok(c) => c,
        Err(e) => panic!("config should parse:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match parse_env(text, &[]) {
        Ok(_) => panic!("config should not parse:\n{text}"),
        Err(e) => e.0,
    }
}

fn forward(c: &Config, i: usize) -> &ForwardConfig {
    match c.sources.get(i) {
        Some(SourceConfig::Forward(f)) => f,
        Some(other) => panic!("source #{i} is {}, not forward", other.kind()),
        None => panic!("no source #{i}"),
    }
}

const MINIMAL: &str = r#"
[[source]]
type = "forward"
listen = "127.0.0.1:0"
"#;

#[test]
fn embedded_default_parses() {
    let c = parse(DEFAULT_CONFIG);
    assert_eq!(c.sources.len(), 2);
    let plain = forward(&c, 0);
    assert_eq!(plain.listen.to_string(), "0.0.0.0:24227");
    assert!(plain.tls.is_none());
    let tls = forward(&c, 1);
    assert_eq!(tls.listen.port(), 24228);
    let t = tls
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("24228 should have TLS"));
    assert!(t.cert.is_none() && t.key.is_none(), "generated");
    assert!(
        t.common_names.is_empty(),
        "TIDEPOOL_HOST unset: default names"
    );
    assert_eq!(c.matches.len(), 1);
    assert_eq!(c.matches[0].pattern.as_str(), "**");
    assert_eq!(
        c.matches[0].outputs,
        vec!["store".to_string(), "stdout".to_string()]
    );
    let out = &c.outputs["stdout"];
    assert!(matches!(out.kind, OutputConfig::Stdout));
    assert_eq!(out.buffer.kind, BufferKind::Memory);
    let store = &c.outputs["store"];
    assert!(matches!(store.kind, OutputConfig::Store(_)));
    assert_eq!(store.buffer.kind, BufferKind::File, "the store is durable");
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:24220");
    // The public entry point, with the real environment: the default needs no variable.
    assert!(Config::default_config().is_ok());
}

#[test]
fn embedded_default_takes_tidepool_host() {
    let c = parse_env(DEFAULT_CONFIG, &[("TIDEPOOL_HOST", "192.168.1.85")])
        .unwrap_or_else(|e| panic!("{e}"));
    let names = forward(&c, 1).tls.as_ref().map(|t| t.common_names.clone());
    assert_eq!(names, Some(vec!["192.168.1.85".to_string()]));
}

#[test]
fn every_default() {
    let c = parse(&format!(
        "{MINIMAL}\n[output.f]\ntype = \"file\"\n[output.s]\ntype = \"stdout\"\n[output.n]\ntype = \"null\"\n"
    ));
    assert_eq!(c.origin, "t.toml");
    assert_eq!(c.server.data_dir, PathBuf::from("data"));
    assert_eq!(c.server.certs_dir, PathBuf::from("certs"));
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(30));
    let f = forward(&c, 0);
    assert!(f.tls.is_none() && f.security.is_none());
    assert_eq!(f.max_message_size, 32 << 20);
    assert_eq!(f.max_decompressed_size, 64 << 20);
    assert_eq!(f.max_depth, 64);
    assert_eq!(f.max_connections, 10_000);
    assert_eq!(f.idle_timeout, Duration::from_secs(300));
    assert_eq!(f.handshake_timeout, Duration::from_secs(10));
    assert_eq!(f.tcp_keepalive, Some(Duration::from_secs(60)));
    assert!(f.allow.is_empty());
    assert_eq!(f.source_address_key, None);
    assert_eq!(f.source_hostname_key, None);
    assert!(!f.deny_keepalive);
    assert!(f.udp_heartbeat);
    assert_eq!(f.tag, None);
    assert_eq!(f.add_tag_prefix, None);

    let file = &c.outputs["f"];
    match &file.kind {
        OutputConfig::File(fc) => {
            assert_eq!(fc.path, "out/${tag}.jsonl", "relative to data_dir");
            assert_eq!(fc.time_key, None);
            assert_eq!(fc.tag_key, None);
        }
        other => panic!("file output resolved as {other:?}"),
    }
    let b = &file.buffer;
    assert_eq!(b.kind, BufferKind::File);
    assert_eq!(b.chunk_limit_size, 8 << 20);
    assert_eq!(b.chunk_limit_records, None);
    assert_eq!(b.flush_interval, Duration::from_secs(1));
    assert_eq!(b.flush_thread_count, 2);
    assert_eq!(b.retry_wait, Duration::from_secs(1));
    assert_eq!(b.retry_max_interval, Duration::from_secs(300));
    assert_eq!(b.retry_max_times, None);
    assert_eq!(b.retry_timeout, Duration::from_secs(72 * 3600));
    assert!(!b.retry_forever);
    assert_eq!(b.total_limit_size, 1 << 30);
    assert_eq!(b.overflow_action, OverflowAction::Block);
    assert_eq!(b.fsync, FsyncPolicy::Commit);
    assert_eq!(c.outputs["s"].buffer.kind, BufferKind::Memory);
    assert_eq!(c.outputs["n"].buffer.kind, BufferKind::Memory);
    assert!(matches!(c.outputs["n"].kind, OutputConfig::Null));
    // An output no match uses is fine.
    assert!(c.matches.is_empty());
}

#[test]
fn tls_defaults_and_generate_forms() {
    for tls in ["tls = {}", "tls = { generate = true }"] {
        let c = parse(&format!("{MINIMAL}{tls}\n"));
        let t = forward(&c, 0)
            .tls
            .clone()
            .unwrap_or_else(|| panic!("{tls}: no tls"));
        assert!(
            t.cert.is_none() && t.key.is_none() && t.passphrase.is_none() && t.client_ca.is_none()
        );
        assert!(t.common_names.is_empty());
        assert_eq!(t.min_version, TlsVersion::Tls12);
        assert_eq!(t.max_version, TlsVersion::Tls13);
    }
    let c = parse(&format!(
        "{MINIMAL}tls = {{ common_name = [\"10.0.0.1\", \"logs.lan\"] }}\n"
    ));
    let names = forward(&c, 0).tls.as_ref().map(|t| t.common_names.clone());
    assert_eq!(
        names,
        Some(vec!["10.0.0.1".to_string(), "logs.lan".to_string()])
    );
    let c = parse(&format!(
        "{MINIMAL}tls = {{ common_name = \"10.0.0.1\" }}\n"
    ));
    let names = forward(&c, 0).tls.as_ref().map(|t| t.common_names.clone());
    assert_eq!(names, Some(vec!["10.0.0.1".to_string()]));
}

#[test]
fn all_settings_resolve() {
    let text = r#"
[server]
data_dir = "/d"
certs_dir = "/c"
shutdown_timeout = 5

[[source]]
type = "forward"
listen = "[::1]:24229"
max_message_size = "1m"
max_decompressed_size = 1024
max_depth = 8
max_connections = 3
idle_timeout = "2m"
handshake_timeout = "500ms"
tcp_keepalive = false
allow = ["10.0.0.0/8", "192.168.1.85", "::1"]
source_address_key = "host_ip"
source_hostname_key = "host"
deny_keepalive = true
udp_heartbeat = false
tag = "a.b"
add_tag_prefix = "edge"
tls = { cert = "/x/server.pem", key = "/x/server.key", passphrase = "pw", client_ca = "/x/ca.pem", min_version = "1.3", max_version = "1.3" }
security = { self_hostname = "agg", shared_key = "k", user_auth = true, allow_anonymous_source = false, users = [{ username = "a", password = "b" }], clients = [{ network = "10.0.0.0/8", shared_key = "k2", users = ["a"] }, { network = "10.9.9.9" }] }

[[match]]
pattern = "td.*.* x.**"
outputs = ["f", "m"]

[output.f]
type = "file"
path = "/out/${tag}.jsonl"
time_key = "time"
tag_key = "tag"
buffer = { type = "memory", chunk_limit_size = "1MB", chunk_limit_records = 10, flush_interval = 0.5, flush_thread_count = 4, retry_wait = "2s", retry_max_interval = "1h", retry_max_times = 17, retry_timeout = "2d", retry_forever = true, total_limit_size = "10MiB", overflow_action = "drop_oldest_chunk" }

[output.m]
type = "stdout"
buffer = { type = "file", overflow_action = "throw_exception", fsync = "interval:250ms" }
"#;
    let c = parse(text);
    assert_eq!(c.server.data_dir, PathBuf::from("/d"));
    assert_eq!(c.server.certs_dir, PathBuf::from("/c"));
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(5));
    let f = forward(&c, 0);
    assert_eq!(f.listen.to_string(), "[::1]:24229");
    assert_eq!(f.max_message_size, 1 << 20);
    assert_eq!(f.max_decompressed_size, 1024);
    assert_eq!(f.max_depth, 8);
    assert_eq!(f.max_connections, 3);
    assert_eq!(f.idle_timeout, Duration::from_secs(120));
    assert_eq!(f.handshake_timeout, Duration::from_millis(500));
    assert_eq!(f.tcp_keepalive, None);
    let allow: Vec<String> = f.allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(allow, ["10.0.0.0/8", "192.168.1.85/32", "::1/128"]);
    assert_eq!(f.source_address_key.as_deref(), Some("host_ip"));
    assert_eq!(f.source_hostname_key.as_deref(), Some("host"));
    assert!(f.deny_keepalive && !f.udp_heartbeat);
    assert_eq!(f.tag.as_deref(), Some("a.b"));
    assert_eq!(f.add_tag_prefix.as_deref(), Some("edge"));
    let t = f.tls.as_ref().unwrap_or_else(|| panic!("tls"));
    assert_eq!(t.cert.as_deref(), Some(Path::new("/x/server.pem")));
    assert_eq!(t.key.as_deref(), Some(Path::new("/x/server.key")));
    assert_eq!(t.passphrase.as_deref(), Some("pw"));
    assert_eq!(t.client_ca.as_deref(), Some(Path::new("/x/ca.pem")));
    assert_eq!(
        (t.min_version, t.max_version),
        (TlsVersion::Tls13, TlsVersion::Tls13)
    );
    let s = f.security.as_ref().unwrap_or_else(|| panic!("security"));
    assert_eq!(
        (s.self_hostname.as_str(), s.shared_key.as_str()),
        ("agg", "k")
    );
    assert!(s.user_auth && !s.allow_anonymous_source);
    assert_eq!(s.users.len(), 1);
    assert_eq!(
        (s.users[0].username.as_str(), s.users[0].password.as_str()),
        ("a", "b")
    );
    assert_eq!(s.clients.len(), 2);
    assert_eq!(s.clients[0].network.to_string(), "10.0.0.0/8");
    assert_eq!(s.clients[0].shared_key.as_deref(), Some("k2"));
    assert_eq!(s.clients[0].users, vec!["a".to_string()]);
    assert_eq!(s.clients[1].network.to_string(), "10.9.9.9/32");
    assert_eq!(s.clients[1].shared_key, None);
    let m = &c.matches[0];
    assert_eq!(m.index, 1);
    assert!(m.pattern.matches("td.db.t") && m.pattern.matches("x") && !m.pattern.matches("td.db"));
    assert_eq!(m.outputs, vec!["f".to_string(), "m".to_string()]);
    let out = &c.outputs["f"];
    match &out.kind {
        OutputConfig::File(fc) => {
            assert_eq!(fc.path, "/out/${tag}.jsonl");
            assert_eq!(fc.time_key.as_deref(), Some("time"));
            assert_eq!(fc.tag_key.as_deref(), Some("tag"));
        }
        other => panic!("{other:?}"),
    }
    let b = &out.buffer;
    assert_eq!(b.kind, BufferKind::Memory);
    assert_eq!(b.chunk_limit_size, 1_000_000);
    assert_eq!(b.chunk_limit_records, Some(10));
    assert_eq!(b.flush_interval, Duration::from_millis(500));
    assert_eq!(b.flush_thread_count, 4);
    assert_eq!(b.retry_wait, Duration::from_secs(2));
    assert_eq!(b.retry_max_interval, Duration::from_secs(3600));
    assert_eq!(b.retry_max_times, Some(17));
    assert_eq!(b.retry_timeout, Duration::from_secs(2 * 86_400));
    assert!(b.retry_forever);
    assert_eq!(b.total_limit_size, 10 << 20);
    assert_eq!(b.overflow_action, OverflowAction::DropOldestChunk);
    let b = &c.outputs["m"].buffer;
    assert_eq!(b.kind, BufferKind::File);
    assert_eq!(b.overflow_action, OverflowAction::ThrowException);
    assert_eq!(b.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
    let c = parse(&format!(
        "{MINIMAL}tcp_keepalive = \"15s\"\n[output.x]\ntype = \"file\"\nbuffer = {{ fsync = \"never\" }}\n"
    ));
    assert_eq!(forward(&c, 0).tcp_keepalive, Some(Duration::from_secs(15)));
    assert_eq!(c.outputs["x"].buffer.fsync, FsyncPolicy::Never);
}

#[test]
fn size_forms() {
    for (text, bytes) in [
        ("0", 0u64),
        ("123", 123),
        ("8MiB", 8 << 20),
        ("8 MiB", 8 << 20),
        ("8mib", 8 << 20),
        ("8m", 8 << 20),
        ("8M", 8 << 20),
        ("512k", 512 << 10),
        ("512KiB", 512 << 10),
        ("1g", 1 << 30),
        ("1GiB", 1 << 30),
        ("2t", 2 << 40),
        ("32MB", 32_000_000),
        ("1KB", 1_000),
        ("3GB", 3_000_000_000),
        ("100B", 100),
        ("1.5k", 1536),
        (" 4 k ", 4096),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
    }
    for bad in [
        "",
        "MiB",
        "8 XB",
        "-1",
        "1.2.3",
        "8MiBs",
        "1e3",
        ".5k",
        "99999999999999999999",
        "16777216t",
    ] {
        let e = parse_size(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} should fail"));
        assert!(
            e.contains(&format!("\"{bad}\"")),
            "error quotes the value: {e}"
        );
    }
}

#[test]
fn duration_forms() {
    let s = Duration::from_secs;
    for (text, d) in [
        ("0", s(0)),
        ("30", s(30)),
        ("5s", s(5)),
        ("5 s", s(5)),
        ("500ms", Duration::from_millis(500)),
        ("1m", s(60)),
        ("5 minutes", s(300)),
        ("72h", s(72 * 3600)),
        ("2d", s(2 * 86_400)),
        ("1 day", s(86_400)),
        ("5 weeks", s(5 * 7 * 86_400)),
        ("1w", s(7 * 86_400)),
        ("1.5s", Duration::from_millis(1500)),
        ("0.5", Duration::from_millis(500)),
        ("10us", Duration::from_micros(10)),
        ("3 hours", s(3 * 3600)),
    ] {
        assert_eq!(parse_duration(text), Ok(d), "{text:?}");
    }
    for bad in [
        "",
        "s",
        "5 fortnights",
        "-5s",
        "5ss",
        "1..2s",
        "99999999999999999999999w",
    ] {
        let e = parse_duration(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} should fail"));
        assert!(
            e.contains(&format!("\"{bad}\"")),
            "error quotes the value: {e}"
        );
    }
}

#[test]
fn env_substitution() {
    use super::env::substitute;
    let env = env_of(&[("A", "x"), ("EMPTY", ""), ("B_2", "8MiB")]);
    let lookup = move |name: &str| env.get(name).cloned();
    let sub = |s: &str| substitute(s, &lookup);
    assert_eq!(sub("plain"), Ok("plain".into()));
    assert_eq!(sub("${A}"), Ok("x".into()));
    assert_eq!(sub("a${A}b${A}"), Ok("axbx".into()));
    assert_eq!(sub("${EMPTY}"), Ok("".into()));
    assert_eq!(sub("${EMPTY:-d}"), Ok("d".into()));
    assert_eq!(sub("${UNSET:-}"), Ok("".into()));
    assert_eq!(sub("${UNSET:-8 MiB}"), Ok("8 MiB".into()));
    assert_eq!(sub("${A:-d}"), Ok("x".into()));
    assert_eq!(sub("$${A}"), Ok("${A}".into()));
    assert_eq!(sub("$5 $ $"), Ok("$5 $ $".into()));
    assert_eq!(
        sub("${tag}/${tag_parts[1]}/${hostname}"),
        Ok("${tag}/${tag_parts[1]}/${hostname}".into())
    );
    assert_eq!(sub("${A"), Ok("${A".into()));
    assert_eq!(
        sub("${UNSET}${ALSO_UNSET}"),
        Err(vec!["UNSET".into(), "ALSO_UNSET".into()])
    );

    // Substituted before units are parsed, in every string, leaving runtime templates.
    let text = format!(
        "{MINIMAL}max_message_size = \"${{B_2}}\"\n[output.o]\ntype = \"file\"\npath = \"/o/${{A}}/${{tag}}.jsonl\"\n"
    );
    let c = parse_env(&text, &[("A", "x"), ("B_2", "8MiB")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forward(&c, 0).max_message_size, 8 << 20);
    match &c.outputs["o"].kind {
        OutputConfig::File(f) => assert_eq!(f.path, "/o/x/${tag}.jsonl"),
        other => panic!("{other:?}"),
    }
}

/// Each error kind, with its exact `file:line:col: key.path: message`.
#[test]
fn port_zero_may_repeat() {
    let c = parse(&format!("{MINIMAL}{MINIMAL}"));
    assert_eq!(c.sources.len(), 2);
}

#[test]
fn load_resolves_relative_paths_against_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("t.toml");
    let text = format!(
        "{MINIMAL}tls = {{ cert = \"c.pem\", key = \"/abs/k.pem\", client_ca = \"ca/ca.pem\" }}\n[output.f]\ntype = \"file\"\npath = \"out/${{tag}}.jsonl\"\n"
    );
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.origin, path.display().to_string());
    let t = forward(&c, 0).tls.clone().unwrap_or_else(|| panic!("tls"));
    assert_eq!(t.cert, Some(dir.path().join("c.pem")));
    assert_eq!(t.key, Some(PathBuf::from("/abs/k.pem")));
    assert_eq!(t.client_ca, Some(dir.path().join("ca/ca.pem")));
    match &c.outputs["f"].kind {
        // File output paths stay relative: the output puts them under data_dir.
        OutputConfig::File(f) => assert_eq!(f.path, "out/${tag}.jsonl"),
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing)
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!("{}: cannot read config: ", missing.display())),
        "{}",
        e[0]
    );
}

#[test]
fn every_shipped_config_parses() {
    let vars = [
        ("TIDEPOOL_KEY_PASSPHRASE", "pw"),
        ("FORWARD_SHARED_KEY", "k"),
        ("TENANT_A_KEY", "ka"),
        ("TENANT_B_KEY", "kb"),
        ("TENANT_B_PASSWORD", "pb"),
        ("TD_API_KEY", "1/abcdef"),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut files = vec![root.join("tidepool.toml")];
    let examples = std::fs::read_dir(root.join("examples")).unwrap_or_else(|e| panic!("{e}"));
    for entry in examples.flatten() {
        if entry.path().extension().is_some_and(|x| x == "toml") {
            files.push(entry.path());
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    let mut parsed = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let base = file.parent().unwrap_or(Path::new("."));
        match parse_in(&text, base, &vars) {
            Ok(c) => {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                parsed.insert(name.unwrap_or_default(), c);
            }
            Err(e) => panic!("{} does not parse:\n{e}", file.display()),
        }
    }

    // seed.toml: plain + TLS from files next to it, td.*.* to Treasure Data.
    let seed = &parsed["seed.toml"];
    assert_eq!(forward(seed, 0).listen.port(), 24227);
    let tls = forward(seed, 1)
        .tls
        .clone()
        .unwrap_or_else(|| panic!("seed: 24228 has TLS"));
    assert_eq!(tls.cert, Some(root.join("examples/certs/server.pem")));
    assert_eq!(tls.key, Some(root.join("examples/certs/server.key")));
    assert_eq!(tls.passphrase.as_deref(), Some("pw"));
    let first = &seed.matches[0];
    assert!(first.pattern.matches("td.test_database.cpu_info"));
    assert!(
        matches!(seed.outputs[&first.outputs[0]].kind, OutputConfig::Td(_)),
        "seed: td.*.* goes to the td output"
    );

    // shared-key.toml: per-network keys and users, written as a [source.security] table.
    let shared = &parsed["shared-key.toml"];
    let sec = forward(shared, 0)
        .security
        .clone()
        .unwrap_or_else(|| panic!("shared-key: security"));
    assert_eq!(sec.shared_key, "k");
    assert!(sec.user_auth && !sec.allow_anonymous_source);
    let users: Vec<(&str, &str)> = sec
        .users
        .iter()
        .map(|u| (u.username.as_str(), u.password.as_str()))
        .collect();
    assert_eq!(users, [("tenant-a", "changeme"), ("tenant-b", "pb")]);
    let clients: Vec<(String, Option<&str>)> = sec
        .clients
        .iter()
        .map(|c| (c.network.to_string(), c.shared_key.as_deref()))
        .collect();
    assert_eq!(
        clients,
        [
            ("10.1.0.0/16".to_string(), Some("ka")),
            ("10.2.0.0/16".to_string(), Some("kb")),
            ("192.168.1.85/32".to_string(), Some("ka")),
        ]
    );
    match &shared.outputs["per_tenant"].kind {
        OutputConfig::File(f) => assert_eq!(f.path, "out/${tag_parts[0]}/${tag}.jsonl"),
        other => panic!("{other:?}"),
    }
    // Without its variables, the shared-key example names each missing one.
    let text = std::fs::read_to_string(root.join("examples/shared-key.toml")).unwrap_or_default();
    let e = parse_env(&text, &[]).err().map(|e| e.0).unwrap_or_default();
    for name in [
        "FORWARD_SHARED_KEY",
        "TENANT_A_KEY",
        "TENANT_B_KEY",
        "TENANT_B_PASSWORD",
    ] {
        assert!(
            e.iter().any(|m| m.contains(name)),
            "{name} not reported: {e:#?}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, "fuzz.toml");
    }

    #[test]
    fn never_panics_on_toml_like_text(text in "[\\[\\]a-z_=\"{}., 0-9\n#$:*-]{0,300}") {
        let _ = parse_env(&text, &[]);
    }

    #[test]
    fn never_panics_on_mutated_valid_configs(
        which in 0usize..4,
        at in 0usize..4000,
        len in 0usize..8,
        insert in "[\\[\\]a-z_=\"{}., 0-9\n$*-]{0,8}",
    ) {
        let files = [DEFAULT_CONFIG, include_str!("../../conf/examples/seed.toml"), include_str!("../../conf/examples/shared-key.toml"), include_str!("../../conf/examples/mqtt.toml")];
        let base = files.get(which).copied().unwrap_or(DEFAULT_CONFIG);
        let mut cut = at.min(base.len());
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut end = cut.saturating_add(len).min(base.len());
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        let mutated = format!("{}{}{}", &base[..cut], insert, &base[end..]);
        let _ = parse_env(&mutated, &[("TIDEPOOL_KEY_PASSPHRASE", "x")]);
    }
}

fn http_source(c: &Config, i: usize) -> &HttpConfig {
    match c.sources.get(i) {
        Some(SourceConfig::Http(h)) => h,
        Some(other) => panic!("source #{i} is {}, not http", other.kind()),
        None => panic!("no source #{i}"),
    }
}

#[test]
fn http_sources_have_documented_defaults() {
    let c = parse(
        r#"
[[source]]
type = "http"
listen = "127.0.0.1:8888"
"#,
    );
    let h = http_source(&c, 0);
    assert_eq!(h.listen, "127.0.0.1:8888".parse().expect("addr"));
    assert!(h.tls.is_none());
    assert!(h.write_keys.is_empty());
    assert!(h.in_http);
    assert_eq!(h.max_body_size, 1 << 20);
    assert_eq!(h.max_decompressed_size, 16 << 20);
    assert_eq!(h.max_depth, 64);
    assert_eq!(h.max_connections, 10_000);
    assert_eq!(h.idle_timeout, Duration::from_secs(10));
    assert_eq!(h.body_timeout, Duration::from_secs(30));
    assert_eq!(h.handshake_timeout, Duration::from_secs(10));
    assert!(h.cors_allow_origins.is_empty() && h.allow.is_empty());
    assert_eq!(c.sources[0].listen(), Some(h.listen));
    assert_eq!(c.sources[0].kind(), "http");
}

#[test]
fn http_sources_take_every_setting() {
    let c = parse(
        r#"
[[source]]
type = "forward"
listen = "127.0.0.1:24227"

[[source]]
type = "http"
listen = "127.0.0.1:8443"
tls = { generate = true, common_name = "127.0.0.1" }
write_keys = ["1/abc", "2/def", "1/abc"]
in_http = false
max_body_size = "64KiB"
max_decompressed_size = "1MiB"
max_depth = 8
max_connections = 5
idle_timeout = "2s"
body_timeout = "3s"
handshake_timeout = "4s"
allow = ["10.0.0.0/8"]
cors_allow_origins = ["https://app.example.com", "*"]
add_tag_prefix = "web"
"#,
    );
    let h = http_source(&c, 1);
    assert_eq!(h.write_keys, ["1/abc", "2/def"], "duplicates dropped");
    assert!(!h.in_http);
    assert_eq!(h.max_body_size, 64 << 10);
    assert_eq!(h.max_decompressed_size, 1 << 20);
    assert_eq!((h.max_depth, h.max_connections), (8, 5));
    assert_eq!(h.idle_timeout, Duration::from_secs(2));
    assert_eq!(h.body_timeout, Duration::from_secs(3));
    assert_eq!(h.handshake_timeout, Duration::from_secs(4));
    assert_eq!(h.allow.len(), 1);
    assert_eq!(h.cors_allow_origins.len(), 2);
    assert_eq!(h.add_tag_prefix.as_deref(), Some("web"));
    assert_eq!(
        c.sources[1].server_tls().map(|t| t.common_names.clone()),
        Some(vec!["127.0.0.1".to_string()])
    );
    assert!(matches!(c.sources[0], SourceConfig::Forward(_)));
}

#[test]
fn http_source_errors_name_the_key() {
    let errs = errors(
        r#"
[[source]]
type = "http"
listen = "127.0.0.1:8888"
write_keys = ["has space"]
max_body_size = "2MiB"
max_decompressed_size = "1MiB"
idle_timeout = "0s"
cors_allow_origins = ["https://x.example.com/"]
add_tag_prefix = "bad..prefix"
colour = "blue"
"#,
    );
    let all = errs.join("\n");
    for needle in [
        "source[1].write_keys[1]",
        "source[1].max_decompressed_size",
        "source[1].idle_timeout",
        "source[1].cors_allow_origins[1]",
        "source[1].add_tag_prefix",
        "colour",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    let clash = errors(
        r#"
[[source]]
type = "forward"
listen = "127.0.0.1:9000"

[[source]]
type = "http"
listen = "0.0.0.0:9000"
"#,
    );
    assert!(
        clash.join("\n").contains("already used by [[source]] #1"),
        "{clash:?}"
    );
    let unknown = errors(
        r#"
[[source]]
type = "mqttx"
listen = "0.0.0.0:9000"
"#,
    );
    assert!(unknown.join("\n").contains("forward, http"), "{unknown:?}");
}
