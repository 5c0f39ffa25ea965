//! Config tests: defaults, units, `${ENV}`, every error kind with its exact place,
//! the shipped files, and no panics on any input.

use super::resolve::{Context, resolve};
use super::units::{parse_duration, parse_size};
use super::*;
use std::collections::HashMap;

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
    assert_eq!(c.matches[0].outputs, vec!["stdout".to_string()]);
    let out = &c.outputs["stdout"];
    assert!(matches!(out.kind, OutputConfig::Stdout));
    assert_eq!(out.buffer.kind, BufferKind::Memory);
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
            assert_eq!(fc.path, "data/out/${tag}.jsonl");
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

#[test]
fn unset_env_is_an_error_naming_it_and_its_place() {
    let text = "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\nsecurity = { self_hostname = \"h\", shared_key = \"${FORWARD_SHARED_KEY}\" }\n";
    assert_eq!(
        errors(text),
        [
            "t.toml:4:48: source[1].security.shared_key: environment variable FORWARD_SHARED_KEY is not set (set it, or write ${FORWARD_SHARED_KEY:-default})"
        ]
    );
}

/// Each error kind, with its exact `file:line:col: key.path: message`.
#[test]
fn error_kinds() {
    let cases: &[(&str, &str)] = &[
        (
            "[[source]]\ntype = \"forward\"\nlistne = \"0.0.0.0:1\"\n",
            "t.toml:3:1: source[1].listne: unknown key `listne` in [[source]] #1 (did you mean `listen`?), expected one of: type, listen, tls, security, max_message_size, max_decompressed_size, max_depth, max_connections, idle_timeout, handshake_timeout, tcp_keepalive, allow, source_address_key, source_hostname_key, deny_keepalive, udp_heartbeat, tag, add_tag_prefix",
        ),
        (
            "[[match]]\npattern = \"**\"\noutputs = [\"nope\"]\n[output.a]\ntype = \"null\"\n",
            "t.toml:3:12: match[1].outputs[1]: unknown output \"nope\" (defined: a)",
        ),
        (
            "[[match]]\npattern = \"a.{b\"\noutputs = [\"a\"]\n[output.a]\ntype = \"null\"\n",
            "t.toml:2:11: match[1].pattern: bad tag pattern 'a.{b': in `a.{b`: `{` without `}` (no spaces inside `{a,b}`)",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/33\"]\n",
            "t.toml:4:10: source[1].allow[1]: bad network \"10.0.0.0/33\" (expected CIDR such as \"10.0.0.0/8\" or an IP address)",
        ),
        (
            "[output.a]\ntype = \"null\"\nbuffer = { chunk_limit_size = \"8 MeB\" }\n",
            "t.toml:3:31: output.a.buffer.chunk_limit_size: bad size \"8 MeB\" (expected a size such as \"8MiB\", \"512k\", \"32MB\" or an integer number of bytes)",
        ),
        (
            "[server]\nshutdown_timeout = \"5 fortnights\"\n",
            "t.toml:2:20: server.shutdown_timeout: bad duration \"5 fortnights\" (expected a duration such as \"500ms\", \"5s\", \"1m\", \"72h\", \"5 weeks\" or an integer number of seconds)",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"0.0.0.0:24227\"\n[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:24227\"\n",
            "t.toml:6:10: source[2].listen: listen address 127.0.0.1:24227 is already used by [[source]] #1 (0.0.0.0:24227, line 3); give each source its own port",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\ntls = { cert = \"a.pem\" }\n",
            "t.toml:4:16: source[1].tls.cert: `cert` needs `key` (the PEM private key of this certificate)",
        ),
        (
            "[[source]]\ntype = \"forwrd\"\nlisten = \"127.0.0.1:0\"\n",
            "t.toml:2:8: source[1].type: unknown source type \"forwrd\" (expected one of: forward)",
        ),
        (
            "[output.a]\ntype = \"s3\"\n",
            "t.toml:2:8: output.a.type: unknown output type \"s3\" (expected one of: null, stdout, file)",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"localhost\"\n",
            "t.toml:3:10: source[1].listen: bad listen address \"localhost\" (expected IP:port such as \"0.0.0.0:24227\" or \"[::]:24227\")",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = 24227\n",
            "t.toml:3:10: source[1].listen: invalid type: integer `24227`, expected a string",
        ),
        (
            "[serer]\n",
            "t.toml:1:2: serer: unknown section `serer`, expected one of: server, source, match, output",
        ),
        ("[server\n", "t.toml:1:8: unclosed table, expected `]`"),
        (
            "[output.a]\ntype = \"null\"\nbuffer = { chunk_limt_size = 1 }\n",
            "t.toml:3:12: output.a.buffer.chunk_limt_size: unknown key `chunk_limt_size` in `output.a.buffer` (did you mean `chunk_limit_size`?), expected one of: type, chunk_limit_size, chunk_limit_records, flush_interval, flush_thread_count, retry_wait, retry_max_interval, retry_max_times, retry_timeout, retry_forever, total_limit_size, overflow_action, fsync",
        ),
        (
            "[output.a]\ntype = \"null\"\nbuffer = { fsync = \"commit\" }\n",
            "t.toml:3:20: output.a.buffer.fsync: fsync applies only to file buffers (remove it, or set buffer type = \"file\")",
        ),
        (
            "[output.a]\ntype = \"file\"\nbuffer = { fsync = \"always\" }\n",
            "t.toml:3:20: output.a.buffer.fsync: unknown fsync policy \"always\" (expected \"commit\", \"interval:<duration>\" such as \"interval:1s\", or \"never\")",
        ),
        (
            "[output.a]\ntype = \"file\"\nbuffer = { overflow_action = \"drop\" }\n",
            "t.toml:3:30: output.a.buffer.overflow_action: unknown overflow_action \"drop\" (expected \"block\", \"drop_oldest_chunk\" or \"throw_exception\")",
        ),
        (
            "[[source]]\ntype = \"forward\"\n",
            "t.toml:1:1: source[1]: missing required key `listen`",
        ),
        (
            "[[match]]\npattern = \"**\"\noutputs = []\n",
            "t.toml:3:11: match[1].outputs: no outputs listed (expected at least one output name, e.g. outputs = [\"stdout\"])",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\nmax_depth = 0\n",
            "t.toml:4:13: source[1].max_depth: 0 is out of range (expected 1 to 10000)",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\nsecurity = { shared_key = \"k\" }\n",
            "t.toml:4:12: source[1].security: missing required key `self_hostname` (the name this server sends in its PONG, e.g. \"aggregator-1\")",
        ),
        (
            "[output.\"a/b\"]\ntype = \"null\"\n",
            "t.toml:1:9: output.a/b: bad output name \"a/b\" (expected letters, digits, `_` or `-`; it names a directory)",
        ),
        (
            "[source]\ntype = \"forward\"\n",
            "t.toml:1:1: source: write `[[source]]` (an array of tables), not `[source]` or `source = ...`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(text), [*want], "config:\n{text}");
    }
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = r#"[server]
data_dir = "d"
colour = "blue"

[[source]]
type = "forward"
listen = "0.0.0.0:24227"
max_message_size = "huge"
idle_timout = "5s"

[[source]]
type = "forward"
listen = "0.0.0.0:24227"
allow = ["10.0.0.0/8", "nonsense"]

[[match]]
pattern = "a,b"
outputs = ["missing"]

[output.o]
type = "file"
buffer = { retry_wait = "soon", flush_thread_count = 0 }
"#;
    let e = errors(text);
    assert_eq!(
        e,
        [
            "t.toml:3:1: server.colour: unknown key `colour` in [server], expected one of: data_dir, certs_dir, shutdown_timeout",
            "t.toml:8:20: source[1].max_message_size: bad size \"huge\" (expected a size such as \"8MiB\", \"512k\", \"32MB\" or an integer number of bytes)",
            "t.toml:9:1: source[1].idle_timout: unknown key `idle_timout` in [[source]] #1 (did you mean `idle_timeout`?), expected one of: type, listen, tls, security, max_message_size, max_decompressed_size, max_depth, max_connections, idle_timeout, handshake_timeout, tcp_keepalive, allow, source_address_key, source_hostname_key, deny_keepalive, udp_heartbeat, tag, add_tag_prefix",
            "t.toml:13:10: source[2].listen: listen address 0.0.0.0:24227 is already used by [[source]] #1 (0.0.0.0:24227, line 7); give each source its own port",
            "t.toml:14:24: source[2].allow[2]: bad network \"nonsense\" (expected CIDR such as \"10.0.0.0/8\" or an IP address)",
            "t.toml:17:11: match[1].pattern: bad tag pattern 'a,b': in `a,b`: `,` outside `{...}`: write `{a,b}` for alternatives, or separate patterns with spaces",
            "t.toml:22:25: output.o.buffer.retry_wait: bad duration \"soon\" (expected a duration such as \"500ms\", \"5s\", \"1m\", \"72h\", \"5 weeks\" or an integer number of seconds)",
            "t.toml:22:54: output.o.buffer.flush_thread_count: 0 is out of range (expected 1 to 1024)",
        ]
    );
}

#[test]
fn several_unknown_keys_in_one_table_and_array_elements_keep_their_numbers() {
    let text = "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\nsecurity = { self_hostname = \"h\", shared_key = \"k\", users = [{ username = \"a\", pasword = \"x\" }, { username = \"b\", password = 1 }, { username = \"c\", passwd = \"y\" }] }\nfoo = 1\nbar = 2\n";
    let e = errors(text);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(e[0].starts_with("t.toml:4:80: source[1].security.users[1].pasword: unknown key `pasword` in `source[1].security.users[1]` (did you mean `password`?), expected one of: username, password"), "{}", e[0]);
    assert!(e[1].starts_with("t.toml:4:126: source[1].security.users[2].password: invalid type: integer `1`, expected a string"), "{}", e[1]);
    assert!(
        e[2].starts_with("t.toml:4:149: source[1].security.users[3].passwd: unknown key"),
        "{}",
        e[2]
    );
    assert!(
        e[3].starts_with("t.toml:5:1: source[1].foo: unknown key `foo`"),
        "{}",
        e[3]
    );
    assert!(
        e[4].starts_with("t.toml:6:1: source[1].bar: unknown key `bar` in [[source]] #1, expected"),
        "{}",
        e[4]
    );
}

#[test]
fn tls_conflicts() {
    let base = "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\n";
    for (tls, want) in [
        (
            "tls = { key = \"k.pem\" }",
            "source[1].tls.key: `key` needs `cert`",
        ),
        (
            "tls = { generate = false }",
            "source[1].tls.generate: generate = false needs `cert` and `key`",
        ),
        (
            "tls = { generate = true, cert = \"c\", key = \"k\" }",
            "source[1].tls.generate: generate = true conflicts with cert/key",
        ),
        (
            "tls = { passphrase = \"p\" }",
            "source[1].tls.passphrase: `passphrase` applies only to an encrypted `key` file",
        ),
        (
            "tls = { cert = \"c\", key = \"k\", common_name = \"x\" }",
            "source[1].tls.common_name: `common_name` applies only to generated certificates",
        ),
        (
            "tls = { min_version = \"1.1\" }",
            "source[1].tls.min_version: unsupported TLS version \"1.1\" (expected \"1.2\" or \"1.3\")",
        ),
        (
            "tls = { min_version = \"1.3\", max_version = \"1.2\" }",
            "source[1].tls.min_version: min_version is above max_version",
        ),
    ] {
        let e = errors(&format!("{base}{tls}\n"));
        assert_eq!(e.len(), 1, "{tls}: {e:#?}");
        assert!(e[0].contains(want), "{tls}: {}", e[0]);
    }
}

#[test]
fn security_checks() {
    let base = "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\n";
    for (sec, want) in [
        (
            "security = { self_hostname = \"h\" }",
            "missing required key `shared_key`",
        ),
        (
            "security = { self_hostname = \"h\", shared_key = \"\" }",
            "security.shared_key: empty value",
        ),
        (
            "security = { self_hostname = \"h\", shared_key = \"k\", user_auth = true }",
            "user_auth = true but no `users`",
        ),
        (
            "security = { self_hostname = \"h\", shared_key = \"k\", clients = [{ network = \"10.0.0.0/8\", users = [\"ghost\"] }] }",
            "clients[1].users[1]: unknown user \"ghost\"",
        ),
        (
            "security = { self_hostname = \"h\", shared_key = \"k\", allow_anonymous_source = false }",
            "no one could connect",
        ),
        (
            "security = { self_hostname = \"h\", shared_key = \"k\", users = [{ username = \"a\", password = \"1\" }, { username = \"a\", password = \"2\" }] }",
            "users[2].username: user \"a\" is listed twice",
        ),
    ] {
        let e = errors(&format!("{base}{sec}\n"));
        assert_eq!(e.len(), 1, "{sec}: {e:#?}");
        assert!(e[0].contains(want), "{sec}: {}", e[0]);
    }
}

#[test]
fn buffer_limits_are_checked() {
    let e = errors(
        "[output.a]\ntype = \"file\"\nbuffer = { chunk_limit_size = \"2MiB\", total_limit_size = \"1MiB\" }\n",
    );
    assert_eq!(
        e,
        [
            "t.toml:3:58: output.a.buffer.total_limit_size: total_limit_size (1048576 bytes) is below chunk_limit_size (2097152 bytes)"
        ]
    );
    let e = errors("[output.a]\ntype = \"file\"\nbuffer = { type = \"disk\" }\n");
    assert_eq!(
        e,
        [
            "t.toml:3:19: output.a.buffer.type: unknown buffer type \"disk\" (expected \"file\" or \"memory\")"
        ]
    );
}

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
        OutputConfig::File(f) => assert_eq!(
            f.path,
            dir.path().join("out/${tag}.jsonl").to_string_lossy()
        ),
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
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = parse_env(&text, &vars) {
            panic!("{} does not parse:\n{e}", file.display());
        }
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
        let _ = parse_env(&text, &[]);
    }

    #[test]
    fn never_panics_on_toml_like_text(text in "[\\[\\]a-z_=\"{}., 0-9\n#$:*-]{0,300}") {
        let _ = parse_env(&text, &[]);
    }

    #[test]
    fn never_panics_on_mutated_valid_configs(
        which in 0usize..3,
        at in 0usize..4000,
        len in 0usize..8,
        insert in "[\\[\\]a-z_=\"{}., 0-9\n$*-]{0,8}",
    ) {
        let files = [DEFAULT_CONFIG, include_str!("../../conf/examples/seed.toml"), include_str!("../../conf/examples/shared-key.toml")];
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
