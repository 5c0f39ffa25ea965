//! Stdout line format.

use super::{chunk, map};
use crate::event::EventTime;
use crate::output::OutputError;
use crate::output::stdout::{StdoutOutput, render_chunk, write_time_utc};
use rmpv::Value;

fn time_text(secs: i64, nanos: u32) -> String {
    let mut out = Vec::new();
    write_time_utc(EventTime { secs, nanos }, &mut out);
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn times_are_utc_with_nanoseconds() {
    assert_eq!(
        time_text(1_700_000_000, 123_456_789),
        "2023-11-14 22:13:20.123456789 +0000"
    );
    assert_eq!(time_text(0, 0), "1970-01-01 00:00:00.000000000 +0000");
    assert_eq!(time_text(-1, 0), "1969-12-31 23:59:59.000000000 +0000");
    assert_eq!(
        time_text(951_782_400, 1),
        "2000-02-29 00:00:00.000000001 +0000"
    );
    assert_eq!(
        time_text(4_102_444_799, 0),
        "2099-12-31 23:59:59.000000000 +0000"
    );
    assert_eq!(
        time_text(1_700_000_000, 1_500_000_000),
        "2023-11-14 22:13:21.500000000 +0000"
    );
    // Extremes render without panicking.
    assert!(!time_text(i64::MAX, u32::MAX).is_empty());
    assert!(!time_text(i64::MIN, 0).is_empty());
}

#[test]
fn a_chunk_renders_one_line_per_event() {
    let c = chunk(
        "td.test_database.cpu_info",
        &[
            (
                EventTime {
                    secs: 1_700_000_000,
                    nanos: 123_456_789,
                },
                map(&[("a", 1.into())]),
            ),
            (
                EventTime {
                    secs: 1_700_000_001,
                    nanos: 0,
                },
                Value::Array(vec!["sint".into(), 0.into(), 1.into(), (-1).into()]),
            ),
            (
                EventTime {
                    secs: 1_700_000_002,
                    nanos: 5,
                },
                "Hello from Mbed OS".into(),
            ),
        ],
    );
    let text = String::from_utf8(render_chunk(&c).expect("valid chunk")).expect("UTF-8");
    assert_eq!(
        text,
        "2023-11-14 22:13:20.123456789 +0000 td.test_database.cpu_info: {\"a\":1}\n\
         2023-11-14 22:13:21.000000000 +0000 td.test_database.cpu_info: [\"sint\",0,1,-1]\n\
         2023-11-14 22:13:22.000000005 +0000 td.test_database.cpu_info: \"Hello from Mbed OS\"\n"
    );
}

#[test]
fn control_characters_in_a_tag_cannot_forge_lines() {
    let c = chunk("a\nfake\r.tag\u{7f}", &[(EventTime::default(), 1.into())]);
    let text = String::from_utf8(render_chunk(&c).expect("valid chunk")).expect("UTF-8");
    assert_eq!(
        text,
        "1970-01-01 00:00:00.000000000 +0000 a?fake?.tag?: 1\n"
    );
}

#[test]
fn a_corrupt_chunk_is_permanent() {
    let mut c = chunk("t", &[(EventTime::default(), map(&[("a", 1.into())]))]);
    let mut bytes = c.entries.to_vec();
    bytes.truncate(bytes.len() - 1);
    c.entries = bytes.into();
    assert!(matches!(render_chunk(&c), Err(OutputError::Permanent(_))));
}

#[tokio::test]
async fn write_succeeds_on_a_valid_chunk() {
    let c = chunk(
        "t.stdout",
        &[(EventTime::default(), map(&[("ok", true.into())]))],
    );
    StdoutOutput::new("out")
        .write(&c)
        .await
        .expect("stdout write");
}
