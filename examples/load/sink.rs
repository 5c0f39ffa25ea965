//! `load sink`, the ack-only raw server (the practical upper bound on this machine), and
//! `load td-mock`, a local Treasure Data import API for end-to-end runs.

use crate::Io;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A mock Treasure Data import API for end-to-end runs: checks every request like the
/// tests do, counts rows per table, prints the totals every half second.
pub async fn td_mock(report: Option<PathBuf>) -> anyhow::Result<()> {
    use tidepool::output::td::mock::MockTd;
    let mock = MockTd::start().await?;
    mock.set_keep_rows(report.is_some());
    let mut written: std::collections::HashMap<(String, String), usize> = Default::default();
    println!("td mock listening on {}", mock.url());
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let imports = mock.imports();
        let rows: u64 = imports.iter().map(|i| i.row_count).sum();
        eprintln!(
            "rows {rows} imports {} duplicates {} violations {}",
            imports.len(),
            mock.duplicates(),
            mock.violations().len()
        );
        if let Some(path) = &report {
            append_report(&mock, path, &mut written)?;
        }
    }
}

/// Appends `{"run":..,"seq":..}` for every row received since the last call, so
/// `load verify --td-mock-report` can check a `--seq` run that went through Treasure Data.
fn append_report(
    mock: &tidepool::output::td::mock::MockTd,
    path: &std::path::Path,
    written: &mut std::collections::HashMap<(String, String), usize>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = String::new();
    for (db, table) in mock.tables() {
        let rows = mock.rows(&db, &table);
        let done = written.entry((db, table)).or_insert(0);
        for row in rows.iter().skip(*done) {
            let field = |k: &str| {
                row.as_map()
                    .and_then(|m| m.iter().find(|(key, _)| key.as_str() == Some(k)))
                    .map(|(_, v)| v.clone())
            };
            let run = field("run").and_then(|v| v.as_str().map(str::to_string));
            let seq = field("seq").and_then(|v| v.as_u64());
            if let (Some(run), Some(seq)) = (run, seq) {
                out.push_str(&serde_json::json!({"run": run, "seq": seq}).to_string());
                out.push('\n');
            }
        }
        *done = rows.len();
    }
    if !out.is_empty() {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(out.as_bytes()))
            .map_err(|e| {
                anyhow::anyhow!("appending the td mock report to {}: {e}", path.display())
            })?;
    }
    Ok(())
}

/// Serves forward connections: reads frames, acks each `chunk`, discards the events.
pub async fn sink(listen: SocketAddr, tls_certs: Option<PathBuf>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let acceptor = match tls_certs {
        Some(dir) => {
            let cfg = tidepool::config::TlsConfig {
                common_names: vec!["127.0.0.1".into(), "localhost".into()],
                max_version: tidepool::config::TlsVersion::Tls13,
                ..Default::default()
            };
            Some(tokio_rustls::TlsAcceptor::from(
                tidepool::tls::server_config(&cfg, &dir)?,
            ))
        }
        None => None,
    };
    eprintln!("sink listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut s: Box<dyn Io> = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(t) => Box::new(t),
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            let mut buf = BytesMut::with_capacity(256 << 10);
            let limits = tidepool::msgpack::Limits {
                max_bytes: 64 << 20,
                max_depth: 64,
            };
            loop {
                loop {
                    match tidepool::msgpack::scan_value(&buf, &limits) {
                        Ok(tidepool::msgpack::Scan::Complete(n)) => {
                            let frame = buf.split_to(n);
                            if let Some(chunk) = find_chunk(&frame)
                                && (s.write_all(&ack(&chunk)).await.is_err()
                                    || s.flush().await.is_err())
                            {
                                return;
                            }
                        }
                        Ok(tidepool::msgpack::Scan::Incomplete { .. }) => break,
                        Err(_) => return,
                    }
                }
                if buf.capacity() - buf.len() < 64 << 10 {
                    buf.reserve(256 << 10);
                }
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
}

/// The `chunk` option of a frame, found by skipping the elements before the options.
fn find_chunk(frame: &[u8]) -> Option<Vec<u8>> {
    let limits = tidepool::msgpack::Limits {
        max_bytes: 64 << 20,
        max_depth: 64,
    };
    let len = match *frame.first()? {
        b @ 0x90..=0x9f => (b & 0x0f) as usize,
        _ => return None,
    };
    if len < 3 {
        return None;
    }
    let mut pos = 1;
    for _ in 0..len - 1 {
        match tidepool::msgpack::scan_value(frame.get(pos..)?, &limits).ok()? {
            tidepool::msgpack::Scan::Complete(n) => pos += n,
            _ => return None,
        }
    }
    let opts = rmpv::decode::read_value(&mut frame.get(pos..)?).ok()?;
    opts.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("chunk"))
        .and_then(|(_, v)| v.as_str().map(|s| s.as_bytes().to_vec()))
}

fn ack(chunk: &[u8]) -> Vec<u8> {
    let v = rmpv::Value::Map(vec![(
        "ack".into(),
        rmpv::Value::String(String::from_utf8_lossy(chunk).into_owned().into()),
    )]);
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &v);
    out
}
