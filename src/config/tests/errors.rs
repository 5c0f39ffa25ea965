//! Each kind of config error, with its exact `file:line:col: key.path: message`,
//! and that all of them are reported at once.

use super::errors;

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
            "t.toml:2:8: source[1].type: unknown source type \"forwrd\" (expected one of: forward, http, mqtt)",
        ),
        (
            "[output.a]\ntype = \"s3\"\n",
            "t.toml:2:8: output.a.type: unknown output type \"s3\" (expected one of: null, stdout, file, td, store)",
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
            "t.toml:1:2: serer: unknown section `serer`, expected one of: server, source, filter, match, output, api",
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
            "[api]\ntls = { generate = false }\n",
            "t.toml:2:20: api.tls.generate: generate = false needs `cert` and `key` (PEM files), or set generate = true",
        ),
        (
            "[[match]]\npattern = \"**\"\noutputs = []\n",
            "t.toml:3:11: match[1].outputs: no outputs listed (expected at least one output name, e.g. outputs = [\"stdout\"])",
        ),
        (
            "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\nmax_depth = 0\n",
            "t.toml:4:13: source[1].max_depth: 0 is out of range (expected 1 to 100)",
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
            "t.toml:18:12: match[1].outputs[1]: unknown output \"missing\" (defined: o)",
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
fn nested_tables_report_their_own_keys() {
    let base = "[[source]]\ntype = \"forward\"\nlisten = \"127.0.0.1:0\"\n";
    assert_eq!(
        errors(&format!("{base}tls = {{ cret = \"c.pem\" }}\n")),
        [
            "t.toml:4:9: source[1].tls.cret: unknown key `cret` in `source[1].tls` (did you mean `cert`?), expected one of: generate, common_name, cert, key, passphrase, client_ca, min_version, max_version"
        ]
    );
    assert_eq!(
        errors(&format!("{base}tls = \"yes\"\n")),
        ["t.toml:4:7: source[1].tls: invalid type: string \"yes\", expected a table"]
    );
    assert_eq!(
        errors("server = 5\n"),
        ["t.toml:1:10: server: invalid type: integer `5`, expected a table"]
    );
    // The `[source.security]` sub-table form reports the same paths.
    assert_eq!(
        errors(&format!(
            "{base}[source.security]\nself_hostname = \"h\"\nshared_key = \"k\"\nuser_auth = \"yes\"\n"
        )),
        [
            "t.toml:7:13: source[1].security.user_auth: invalid type: string \"yes\", expected a boolean"
        ]
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [100, 10_000] {
        let text = format!("x = {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let _ = super::parse_env(&text, &[]);
        let text = format!(
            "[server]\ndata_dir = {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(super::parse_env(&text, &[]).is_err());
    }
}

/// A config with a bit of everything wrong: each problem once, in file order,
/// including an undefined output while another output is itself broken.
#[test]
fn a_messy_config_reports_everything() {
    let text = r#"
[server]
data_dir = ""
[[source]]
type = "forward"
listen = "0.0.0.0:24227"
tls = { cert = "a.pem", generate = true, min_version = "1.0" }
max_connections = "lots"
tcp_keepalive = "forever"
[[match]]
pattern = "td.*.*"
outputs = ["td", "stdout"]
[output.stdout]
type = "stdout"
buffer = { flush_interval = "1 fortnight", total_limit_size = -5 }
[output.x]
typ = "file"
[api]
listen = "x"
"#;
    assert_eq!(
        errors(text),
        [
            "t.toml:3:12: server.data_dir: empty value (expected a non-empty string)",
            "t.toml:7:16: source[1].tls.cert: `cert` needs `key` (the PEM private key of this certificate)",
            "t.toml:7:36: source[1].tls.generate: generate = true conflicts with cert/key (remove `generate`, or remove `cert` and `key`)",
            "t.toml:7:56: source[1].tls.min_version: unsupported TLS version \"1.0\" (expected \"1.2\" or \"1.3\")",
            "t.toml:8:19: source[1].max_connections: invalid type: string \"lots\", expected an integer",
            "t.toml:9:17: source[1].tcp_keepalive: bad tcp_keepalive \"forever\" (expected a duration such as \"60s\", or false to turn it off)",
            "t.toml:12:12: match[1].outputs[1]: unknown output \"td\" (defined: stdout, x)",
            "t.toml:15:29: output.stdout.buffer.flush_interval: bad duration \"1 fortnight\" (expected a duration such as \"500ms\", \"5s\", \"1m\", \"72h\", \"5 weeks\" or an integer number of seconds)",
            "t.toml:15:63: output.stdout.buffer.total_limit_size: size -5 is negative (expected a size such as \"8MiB\", \"512k\", \"32MB\" or an integer number of bytes)",
            "t.toml:16:1: output.x: missing required key `type` in [output.x] (expected one of: null, stdout, file, td, store)",
            "t.toml:19:10: api.listen: bad listen address \"x\" (expected IP:port such as \"127.0.0.1:24220\")",
        ]
    );
}
