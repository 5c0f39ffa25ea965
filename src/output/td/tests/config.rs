//! `type = "td"` in the config: defaults, regions, fixed names, and a key that never
//! shows up in an error or a Debug.

use crate::config::{BufferKind, Config, OutputConfig, TdOutputConfig};
use crate::output::td::config::{DEFAULT_API_ENDPOINT, DEFAULT_ENDPOINT};
use crate::output::td::{ApiKey, NonMap};
use std::time::Duration;

const KEY: &str = "4321/0123456789abcdef0123456789abcdef01234567";

fn text(extra: &str) -> String {
    format!(
        "[output.td]\ntype = \"td\"\napikey = \"${{TIDEPOOL_TEST_UNSET_TD_KEY:-{KEY}}}\"\n{extra}\n"
    )
}

fn td(extra: &str) -> (TdOutputConfig, crate::config::BufferConfig) {
    let c = Config::parse(&text(extra), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let def = c.outputs.get("td").expect("output td");
    match &def.kind {
        OutputConfig::Td(t) => (t.clone(), def.buffer.clone()),
        other => panic!("not td: {other:?}"),
    }
}

fn errors(extra: &str) -> String {
    match Config::parse(&text(extra), "t.toml") {
        Ok(_) => panic!("should not parse: {extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_follow_fluent_plugin_td() {
    let (t, b) = td("");
    assert_eq!(t.apikey.expose(), KEY);
    assert_eq!(t.endpoint, DEFAULT_ENDPOINT);
    assert_eq!(t.api_endpoint, DEFAULT_API_ENDPOINT);
    assert!(t.auto_create_table && t.tls_verify);
    assert_eq!(t.destination, None);
    assert_eq!(t.non_map, NonMap::Wrap);
    assert_eq!(t.gzip_level, 1);
    assert_eq!(b.kind, BufferKind::File);
    assert_eq!(b.chunk_limit_size, 32 << 20);
    assert_eq!(b.chunk_limit_records, Some(8096));
    assert_eq!(b.flush_interval, Duration::from_secs(60));
}

#[test]
fn buffer_settings_the_user_wrote_win() {
    let (_, b) = td("buffer = { flush_interval = \"2s\", chunk_limit_size = \"1MiB\" }");
    assert_eq!(b.flush_interval, Duration::from_secs(2));
    assert_eq!(b.chunk_limit_size, 1 << 20);
    assert_eq!(b.chunk_limit_records, Some(8096));
    let (_, b) = td("buffer = { total_limit_size = \"16MiB\", chunk_limit_records = 10 }");
    assert_eq!(b.chunk_limit_size, 16 << 20);
    assert_eq!(b.chunk_limit_records, Some(10));
}

#[test]
fn regions_and_endpoints() {
    let (t, _) = td("region = \"jp\"");
    assert_eq!(t.endpoint, "https://api-import.treasuredata.co.jp");
    assert_eq!(t.api_endpoint, "https://api.treasuredata.co.jp");
    let (t, _) = td("region = \"eu01\"");
    assert_eq!(t.endpoint, "https://api-import.eu01.treasuredata.com");
    assert_eq!(t.api_endpoint, "https://api.eu01.treasuredata.com");
    for r in ["us", "ap02", "ap03"] {
        let (t, _) = td(&format!("region = \"{r}\""));
        assert!(t.endpoint.starts_with("https://api-import."), "{r}");
    }
    // A bare host means HTTPS; an explicit URL wins over the region.
    let (t, _) = td(
        "region = \"jp\"\nendpoint = \"import.example.com\"\napi_endpoint = \"http://127.0.0.1:8080/\"",
    );
    assert_eq!(t.endpoint, "https://import.example.com");
    assert_eq!(t.api_endpoint, "http://127.0.0.1:8080");
    let e = errors("region = \"mars\"");
    assert!(
        e.contains(
            "output.td.region: unknown region \"mars\" (expected one of: us, jp, eu01, ap02, ap03)"
        ),
        "{e}"
    );
    let e = errors("endpoint = \"ftp://x\"");
    assert!(
        e.contains("output.td.endpoint: URL \"ftp://x\" must be http or https"),
        "{e}"
    );
}

#[test]
fn fixed_destination_is_validated_strictly() {
    let (t, _) = td("database = \"test_database\"\ntable = \"cpu_info\"");
    assert_eq!(
        t.destination,
        Some(("test_database".to_string(), "cpu_info".to_string()))
    );
    let e = errors("database = \"Test-DB\"\ntable = \"ok_table\"");
    assert!(
        e.contains("t.toml:4:12: output.td.database: bad name \"Test-DB\""),
        "{e}"
    );
    let e = errors("database = \"test_database\"");
    assert!(e.contains("database is set but table is not"), "{e}");
}

#[test]
fn other_settings() {
    let (t, _) = td(
        "auto_create_table = false\ntls_verify = false\nca_file = \"/etc/ca.pem\"\nhttp_proxy = \"http://proxy:3128\"\nconnect_timeout = \"5s\"\nrequest_timeout = 90\nnon_map = \"drop\"\ngzip_level = 6",
    );
    assert!(!t.auto_create_table && !t.tls_verify);
    assert_eq!(
        t.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    assert_eq!(t.http_proxy.as_deref(), Some("http://proxy:3128"));
    assert_eq!(t.connect_timeout, Duration::from_secs(5));
    assert_eq!(t.request_timeout, Duration::from_secs(90));
    assert_eq!(t.non_map, NonMap::Drop);
    assert_eq!(t.gzip_level, 6);
    for (bad, want) in [
        ("non_map = \"keep\"", "unknown non_map \"keep\""),
        ("gzip_level = 10", "10 is out of range (expected 0 to 9)"),
        ("connect_timeout = 0", "must be above 0"),
        ("http_proxy = \"proxy\"", "bad proxy URL"),
        ("nope = 1", "nope"),
    ] {
        let e = errors(bad);
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn the_api_key_never_shows() {
    let (t, _) = td("");
    assert!(!format!("{t:?}").contains(KEY));
    assert!(!format!("{:?}", ApiKey::new(KEY)).contains(KEY));
    assert_eq!(ApiKey::new(KEY).to_string(), "***");
    let c = Config::parse(&text(""), "t.toml").expect("parses");
    assert!(!format!("{c:?}").contains(KEY));
    // A bad key is reported without its value.
    let bad = "[output.td]\ntype = \"td\"\napikey = \"1/secret value\"\n";
    let e = Config::parse(bad, "t.toml")
        .expect_err("space in key")
        .to_string();
    assert!(
        e.contains("output.td.apikey") && !e.contains("secret"),
        "{e}"
    );
    let e = Config::parse("[output.td]\ntype = \"td\"\n", "t.toml")
        .expect_err("no key")
        .to_string();
    assert!(e.contains("apikey"), "{e}");
    assert_eq!(
        ApiKey::new(KEY).redact(&format!("x TD1 {KEY} y")),
        "x TD1 *** y"
    );
}
