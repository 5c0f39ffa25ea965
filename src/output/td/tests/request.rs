//! Paths, headers and answer classes (reference, sections 2, 3 and 7).

use crate::output::td::request::*;
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn paths_follow_the_reference() {
    assert_eq!(
        import_path("test_db", "cpu_info", "0123456789abcdef0123456789abcdef"),
        "/v3/table/import_with_id/test_db/cpu_info/0123456789abcdef0123456789abcdef/msgpack.gz"
    );
    assert_eq!(
        create_database_path("test_db"),
        "/v3/database/create/test_db"
    );
    assert_eq!(
        create_table_path("test_db", "cpu_info"),
        "/v3/table/create/test_db/cpu_info/log"
    );
}

#[test]
fn escape_matches_td_client_ruby() {
    assert_eq!(escape("Az09-_!~*'()"), "Az09-_!~*'()");
    assert_eq!(escape("a.b/c d%"), "a%2Eb%2Fc%20d%25");
    assert_eq!(escape("é"), "%C3%A9");
}

#[test]
fn date_header_is_rfc2822_in_utc() {
    let at = |secs| date_header(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    // The reference's observed wire example.
    assert_eq!(at(1_795_610_984), "Wed, 25 Nov 2026 12:49:44 +0000");
    assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
}

#[test]
fn user_agent_names_tidepool_and_version() {
    assert_eq!(
        USER_AGENT,
        format!("tidepool/{}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn import_answers_are_classified_per_reference_section_7() {
    for s in [200, 201, 204, 299] {
        assert_eq!(classify_import(s), ImportAnswer::Stored, "{s}");
    }
    assert_eq!(classify_import(404), ImportAnswer::NotFound);
    for s in [429, 500, 502, 503, 504, 599] {
        assert_eq!(classify_import(s), ImportAnswer::Retry, "{s}");
    }
    for s in [301, 400, 401, 403, 405, 409, 413, 415, 422] {
        assert_eq!(classify_import(s), ImportAnswer::Reject, "{s}");
    }
}

#[test]
fn create_answers_treat_409_as_success() {
    assert_eq!(classify_create(200), CreateAnswer::Exists);
    assert_eq!(classify_create(409), CreateAnswer::Exists);
    assert_eq!(classify_create(404), CreateAnswer::NotFound);
    assert_eq!(classify_create(503), CreateAnswer::Retry);
    assert_eq!(classify_create(429), CreateAnswer::Retry);
    assert_eq!(classify_create(400), CreateAnswer::Reject);
    assert_eq!(classify_create(403), CreateAnswer::Reject);
}

#[test]
fn md5_is_read_from_json_answers_only() {
    assert_eq!(
        answer_md5(br#"{"md5_hex":"ABCdef","elapsed_time":1}"#),
        Some("abcdef".to_string())
    );
    assert_eq!(answer_md5(br#"{"md5_hex":""}"#), None);
    assert_eq!(answer_md5(br#"{"elapsed_time":1}"#), None);
    assert_eq!(answer_md5(b"not json"), None);
    assert_eq!(answer_md5(br#"{"md5_hex":5}"#), None);
}

#[test]
fn quoted_bodies_are_one_bounded_line() {
    assert_eq!(quote_body(b"{\"error\":\n\"x\"}\n"), "{\"error\": \"x\"}");
    let long = vec![b'a'; 2000];
    let q = quote_body(&long);
    assert_eq!(q.len(), QUOTED_BODY + 3);
    assert!(q.ends_with("..."));
    assert_eq!(quote_body(&[0xff, b'x']), "\u{fffd}x");
}
