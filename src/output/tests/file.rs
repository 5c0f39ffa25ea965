//! File output: appending, templates, hostile tags, errors and the handle cache.

use super::{chunk, map};
use crate::config::FileOutputConfig;
use crate::event::EventTime;
use crate::output::OutputError;
use crate::output::file::{FileOutput, MAX_OPEN_FILES};
use std::path::Path;

fn config(path: &str) -> FileOutputConfig {
    FileOutputConfig {
        path: path.to_string(),
        time_key: None,
        tag_key: None,
    }
}

fn t(secs: i64) -> EventTime {
    EventTime { secs, nanos: 0 }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).expect("output file exists")
}

#[tokio::test]
async fn lines_are_appended_across_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = FileOutput::new("f", &config(""), dir.path()).expect("default template");
    let a = chunk(
        "td.db.cpu",
        &[(t(1), map(&[("a", 1.into())])), (t(2), "str".into())],
    );
    let b = chunk("td.db.cpu", &[(t(3), map(&[("b", 2.into())]))]);
    out.write(&a).await.expect("first chunk");
    out.write(&b).await.expect("second chunk");
    let path = dir.path().join("out/td.db.cpu.jsonl");
    assert_eq!(out.path_for("td.db.cpu").expect("valid"), path);
    assert_eq!(read(&path), "{\"a\":1}\n\"str\"\n{\"b\":2}\n");
}

#[tokio::test]
async fn time_and_tag_keys_are_injected_into_maps_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = FileOutputConfig {
        path: "x.jsonl".into(),
        time_key: Some("time".into()),
        tag_key: Some("tag".into()),
    };
    let out = FileOutput::new("f", &cfg, dir.path()).expect("template");
    let ev = EventTime {
        secs: 1_700_000_000,
        nanos: 123_456_789,
    };
    let c = chunk(
        "app.web",
        &[
            (ev, map(&[("msg", "hi".into()), ("time", 0.into())])),
            (ev, rmpv::Value::Array(vec![1.into()])),
        ],
    );
    out.write(&c).await.expect("write");
    assert_eq!(
        read(&dir.path().join("x.jsonl")),
        "{\"time\":1700000000.123456789,\"tag\":\"app.web\",\"msg\":\"hi\"}\n[1]\n"
    );
}

#[tokio::test]
async fn templates_use_tag_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = FileOutput::new(
        "f",
        &config("logs/${tag_parts[1]}/${tag_parts[-1]}.log"),
        dir.path(),
    )
    .expect("template");
    let c = chunk(
        "td.test_database.cpu_info",
        &[(t(1), map(&[("c", 1.into())]))],
    );
    out.write(&c).await.expect("write");
    assert_eq!(
        read(&dir.path().join("logs/test_database/cpu_info.log")),
        "{\"c\":1}\n"
    );
    match out.path_for("td") {
        Err(OutputError::Permanent(m)) => assert!(m.contains("tag_parts[1]"), "{m}"),
        other => panic!("missing tag part gave {other:?}"),
    }
}

#[test]
fn bad_templates_are_rejected_when_built() {
    let dir = Path::new("/data");
    for bad in ["${tag", "out/${host}.log", "${tag_parts[x]}"] {
        let err = FileOutput::new("f", &config(bad), dir).expect_err(bad);
        assert!(format!("{err:#}").contains("placeholder"), "{bad}: {err:#}");
    }
    let err = FileOutput::new("f", &config("out/"), dir).expect_err("a directory");
    assert!(format!("{err:#}").contains("name a file"), "{err:#}");
}

#[tokio::test]
async fn hostile_tags_stay_inside_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("out");
    let out = FileOutput::new("f", &config("out/${tag}/${tag_parts[0]}.jsonl"), dir.path())
        .expect("template");
    let hostile = [
        "../../etc/passwd",
        "..",
        ".",
        ".hidden",
        "a/../../b",
        "/etc/passwd",
        "nul\0byte",
        "",
        "..\\..\\x",
        "héllo wörld",
        "~root",
    ];
    for tag in hostile {
        let p = out.path_for(tag).expect("sanitized tags resolve");
        let rest = p.strip_prefix(&base).expect("inside the base directory");
        for c in rest.components() {
            let name = c.as_os_str().to_str().expect("UTF-8");
            assert!(
                matches!(c, std::path::Component::Normal(_)),
                "{tag:?} -> {p:?}"
            );
            assert!(!name.starts_with('.'), "{tag:?} -> {p:?}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{tag:?} -> {p:?}"
            );
        }
        out.write(&chunk(tag, &[(t(1), map(&[("x", 1.into())]))]))
            .await
            .expect("write under the base");
    }
    assert_eq!(
        out.path_for("../../etc/passwd").expect("resolves"),
        base.join("___.._etc_passwd/_.jsonl")
    );
    assert!(!dir.path().join("etc").exists());
    let too_long = "a".repeat(300);
    assert!(matches!(
        out.path_for(&too_long),
        Err(OutputError::Permanent(_))
    ));
}

#[tokio::test]
async fn unwritable_paths_are_retryable_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A regular file where a directory must be: fails even for root.
    std::fs::write(dir.path().join("blocker"), b"").expect("create file");
    let out = FileOutput::new("f", &config("blocker/${tag}.jsonl"), dir.path()).expect("template");
    match out.write(&chunk("a", &[(t(1), 1.into())])).await {
        Err(OutputError::Retryable(m)) => assert!(m.contains("blocker/a.jsonl"), "{m}"),
        other => panic!("expected Retryable, got {other:?}"),
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_disk_is_retryable() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    // /dev/full answers every write with ENOSPC.
    let out = FileOutput::new("f", &config("/dev/full"), Path::new("/data")).expect("template");
    match out.write(&chunk("a", &[(t(1), 1.into())])).await {
        Err(OutputError::Retryable(m)) => {
            assert!(m.contains("/dev/full") && m.contains("os error 28"), "{m}")
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
}

#[cfg(unix)]
#[tokio::test]
async fn read_only_directory_is_retryable() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    if std::fs::write(ro.join("probe"), b"").is_ok() {
        eprintln!("skipped: this user (root?) can write to a 0555 directory");
        return;
    }
    let out = FileOutput::new("f", &config("ro/${tag}.jsonl"), dir.path()).expect("template");
    match out.write(&chunk("a", &[(t(1), 1.into())])).await {
        Err(OutputError::Retryable(m)) => {
            assert!(
                m.contains("ro/a.jsonl") && m.contains("ermission denied"),
                "{m}"
            )
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn open_files_are_bounded_and_rotation_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = FileOutput::new("f", &config("${tag}.jsonl"), dir.path()).expect("template");
    for i in 0..MAX_OPEN_FILES + 6 {
        out.write(&chunk(&format!("t{i}"), &[(t(1), i.into())]))
            .await
            .expect("write");
    }
    assert_eq!(out.open_files(), MAX_OPEN_FILES);
    let live = dir.path().join("t0.jsonl");
    assert_eq!(read(&live), "0\n");
    // Rotate the newest file away: the next chunk goes to a fresh file at the path.
    let newest = dir.path().join(format!("t{}.jsonl", MAX_OPEN_FILES + 5));
    let rotated = dir.path().join("rotated");
    std::fs::rename(&newest, &rotated).expect("rename");
    out.write(&chunk(
        &format!("t{}", MAX_OPEN_FILES + 5),
        &[(t(2), "new".into())],
    ))
    .await
    .expect("write after rotation");
    assert_eq!(read(&newest), "\"new\"\n");
    assert_eq!(read(&rotated), format!("{}\n", MAX_OPEN_FILES + 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_chunks_to_one_file_do_not_interleave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::sync::Arc::new(
        FileOutput::new("f", &config("${tag}.jsonl"), dir.path()).expect("template"),
    );
    let mut tasks = Vec::new();
    for c in 0..8u32 {
        let out = std::sync::Arc::clone(&out);
        let events: Vec<_> = (0..100u32)
            .map(|i| {
                (
                    t(1),
                    map(&[
                        ("c", c.into()),
                        ("i", i.into()),
                        ("pad", "x".repeat(500).into()),
                    ]),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            out.write(&chunk("same", &events)).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("write");
    }
    let text = read(&dir.path().join("same.jsonl"));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
        .collect();
    assert_eq!(lines.len(), 800);
    for block in lines.chunks(100) {
        let c = &block[0]["c"];
        for (i, line) in block.iter().enumerate() {
            assert_eq!(&line["c"], c, "a chunk's lines are contiguous");
            assert_eq!(line["i"], i);
        }
    }
}
