//! Real client programs: the device-like example and Python's fluent-logger.

use crate::util::*;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tidepool"));
    bin.parent()
        .expect("target dir")
        .join("examples")
        .join(name)
}

#[test]
fn device_example_over_tls_with_pinned_ca_delivers_maps_and_arrays() {
    let cfg = plain_config(r#"tls = { generate = true, common_name = "127.0.0.1" }"#);
    let d = TestDaemon::start(&cfg);
    let device = example("device");
    if !device.exists()
        && skip("examples/device is not built (run `cargo test`, which builds examples)")
    {
        return;
    }
    let out = std::process::Command::new(&device)
        .current_dir(&d.dir)
        .args([
            "--addr",
            &d.addr(0).to_string(),
            "--tls",
            "--ca",
            "certs/ca.pem",
        ])
        .args(["--count", "10", "--interval-ms", "0"])
        .output()
        .expect("run device");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heap = d.wait_records("data/out/td.test_database.heap_info.jsonl", 1);
    assert!(heap[0].get("current_size").is_some(), "{:?}", heap[0]);
    let arrays = d.wait_records("data/out/debug.test.jsonl", 1);
    assert_eq!(arrays[0][0], "sint");
    assert_eq!(arrays[0][6], -2147483648i64);
}

#[test]
fn python_fluent_logger_delivers() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import fluent.sender"])
        .output();
    if !probe.is_ok_and(|o| o.status.success())
        && skip(
            "python3 with the fluent-logger package is not installed (pip install fluent-logger)",
        )
    {
        return;
    }
    let d = TestDaemon::start(&plain_config(""));
    let script = format!(
        "from fluent import sender\n\
         s = sender.FluentSender('td.test_database', host='127.0.0.1', port={})\n\
         for i in range(3):\n    assert s.emit('cpu_info', {{'n': i, 'cpu': 0.5}}), s.last_error\n\
         s.close()\n",
        d.addr(0).port()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = d.wait_records("data/out/td.test_database.cpu_info.jsonl", 3);
    let ns: Vec<i64> = recs.iter().filter_map(|r| r["n"].as_i64()).collect();
    assert_eq!(ns, vec![0, 1, 2]);
}
