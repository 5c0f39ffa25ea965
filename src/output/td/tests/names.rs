//! Tag → (database, table), exactly as td-client-ruby normalizes (reference, section 4).

use crate::output::td::normalize::{destination, normalize, validate};

fn dest(tag: &str) -> (String, String) {
    destination(tag).unwrap_or_else(|e| panic!("{tag}: {e}"))
}

#[test]
fn tag_normalization_table() {
    let long = "a".repeat(300);
    let cut = format!("{}__", "a".repeat(253));
    let cases: &[(&str, &str, &str)] = &[
        ("td.Test-DB.x", "test_db", "x__"),
        ("td.db.tb", "db_", "tb_"),
        ("td.test_database.cpu_info", "test_database", "cpu_info"),
        ("x.td.db.tbl", "db_", "tbl"),
        ("td.foo", "td_", "foo"),
        ("a.b", "a__", "b__"),
        ("td.My.Table", "my_", "table"),
        ("td.web-logs.access log", "web_logs", "access_log"),
        ("td.データ.t", "___", "t__"),
        ("td.d$b.T1_2", "d_b", "t1_2"),
    ];
    for (tag, db, table) in cases {
        assert_eq!(dest(tag), (db.to_string(), table.to_string()), "{tag}");
    }
    assert_eq!(dest(&format!("td.{long}.{long}")), (cut.clone(), cut));
}

#[test]
fn normalize_counts_characters_not_bytes() {
    // 254 three-byte characters: under the limit in characters, so only replaced.
    let wide = "é".repeat(254);
    assert_eq!(normalize(&wide), Some("_".repeat(254)));
    // Exactly 255 characters stay; 256 are cut to 253 + "__".
    assert_eq!(normalize(&"b".repeat(255)), Some("b".repeat(255)));
    assert_eq!(
        normalize(&"b".repeat(256)),
        Some(format!("{}__", "b".repeat(253)))
    );
    assert_eq!(normalize(""), None);
}

#[test]
fn tags_without_destination_are_errors() {
    for tag in ["foo", "", "td.", ".x", "a..b", "a.b."] {
        let e = destination(tag).expect_err(tag);
        assert!(e.contains(&format!("\"{tag}\"")), "{tag}: {e}");
    }
    assert!(
        destination("foo")
            .unwrap_err()
            .contains("fewer than two dot-separated parts")
    );
}

#[test]
fn normalized_keys_route_to_themselves() {
    // write() reads the destination back from the chunk key: normalizing again must
    // not move it.
    for tag in ["td.Test-DB.x", "td.db.tb", "a.b", "td.データ.t"] {
        let (db, table) = dest(tag);
        assert_eq!(dest(&format!("{db}.{table}")), (db, table), "{tag}");
    }
}

#[test]
fn fixed_names_are_validated_strictly() {
    for good in ["abc", "test_database", "a_1", &"z".repeat(255)] {
        assert!(validate(good).is_ok(), "{good}");
    }
    for bad in ["ab", "Test", "a-b", "a.b", "", "db ", &"z".repeat(256)] {
        let e = validate(bad).expect_err(bad);
        assert!(e.contains(&format!("\"{bad}\"")), "{e}");
    }
}
