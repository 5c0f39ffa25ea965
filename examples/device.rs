//! A device-like sender, modelled on the Mbed OS FluentLogger with its uMP encoder
//! (forward-protocol reference, section 11, "Mbed details"), so tidepool can be tried
//! and tested against what small boards really send without owning one:
//!
//! - Message mode `[tag, time, record]`, three elements, no options, so no ack;
//! - time as uint32 (`ce` + 4 bytes): 0 unless `--ntp`, then the current second;
//! - fixmap/fixarray records, ints in their smallest form, floats as float32 (`ca`);
//! - one connection per event: connect (and TLS with a pinned CA), write, close;
//! - TLS limited to 1.2 by default, as Mbed TLS 2.x is.
//!
//! `--mode https` (or `http`) is the seed's other path instead: the Mbed OS Treasure
//! Data REST example (`mbed-os-treasuredata-rest` over `mbed-http`), which POSTs the
//! board's cpu/heap/stack/sys statistics as one flat JSON object each to
//! `/postback/v3/event/<db>/<table>` with `X-TD-Write-Key`, one connection per
//! request, HTTP/1.1 written by hand over a rustls stream pinned to the CA.
//!
//! ```text
//! cargo run --example device -- --addr 127.0.0.1:24227 --count 5
//! cargo run --example device -- --addr 127.0.0.1:24228 --tls --ca certs/ca.pem
//! cargo run --example device -- --mode https --addr 127.0.0.1:8443 --ca certs/ca.pem --write-key KEY
//! ```

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidepool::client::{ClientOptions, ClientTls, ForwardClient};
use tidepool::config::TlsVersion;

/// Sends Mbed-FluentLogger-shaped events to a forward server, one connection each.
#[derive(Parser, Debug)]
#[command(name = "device")]
struct Args {
    /// What to speak: forward (Mbed FluentLogger) or the TD REST postback over HTTP(S).
    #[arg(long, value_enum, default_value_t = Mode::Forward)]
    mode: Mode,
    /// The postback write key (`X-TD-Write-Key`), for `--mode http` / `https`.
    #[arg(long, default_value = "1/device-write-key")]
    write_key: String,
    /// Server address, host:port (the host is also the TLS name checked).
    #[arg(long, default_value = "127.0.0.1:24227")]
    addr: String,
    /// Connect with TLS.
    #[arg(long)]
    tls: bool,
    /// CA certificate (PEM) the server's certificate must chain to, as a device pins it.
    #[arg(long, default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Name to check in the server certificate instead of the host of --addr.
    #[arg(long)]
    server_name: Option<String>,
    /// Skip certificate verification (testing only).
    #[arg(long)]
    insecure: bool,
    /// Offer TLS 1.3 too (Mbed TLS 2.x devices speak only 1.2).
    #[arg(long)]
    tls13: bool,
    /// Events to send; 0 sends until interrupted.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// Pause between events, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Treasure Data database part of the `td.<db>.<table>` tags.
    #[arg(long, default_value = "test_database")]
    db: String,
    /// Send the current time, as firmware built with USE_NTP does (else time is 0).
    #[arg(long)]
    ntp: bool,
}

/// The protocol the device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Forward protocol, Message mode, as the Mbed FluentLogger.
    Forward,
    /// TD postback over plain HTTP, as the REST library's first versions.
    Http,
    /// TD postback over HTTPS with a pinned CA, as the REST library does now.
    Https,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.mode != Mode::Forward {
        return postback(&args);
    }
    let mut opts = ClientOptions::new(args.addr.clone());
    opts.timeout = Duration::from_secs(10);
    if args.tls {
        opts.tls = Some(ClientTls {
            ca_file: (!args.insecure).then(|| args.ca.clone()),
            insecure: args.insecure,
            server_name: args.server_name.clone(),
            min_version: TlsVersion::Tls12,
            max_version: if args.tls13 {
                TlsVersion::Tls13
            } else {
                TlsVersion::Tls12
            },
        });
    }
    let mut i: u64 = 0;
    while args.count == 0 || i < args.count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        let time = if args.ntp { now_secs() } else { 0 };
        let (tag, record) = sample(i, &args.db);
        let frame = mbed_frame(&tag, time, &record)?;
        let mut client = ForwardClient::connect(&opts).await?;
        client.send_raw(&frame).await?;
        client.shutdown().await?;
        println!(
            "#{i} {} {tag} time={time} {} bytes",
            if args.tls { "tls" } else { "tcp" },
            frame.len()
        );
        i += 1;
    }
    Ok(())
}

/// The REST example's loop: cpu, heap, stack and sys statistics in turn, each POSTed
/// on its own connection; fails on the first answer that is not 200.
fn postback(args: &Args) -> anyhow::Result<()> {
    let tls = match args.mode {
        Mode::Https => {
            let client = ClientTls {
                ca_file: (!args.insecure).then(|| args.ca.clone()),
                insecure: args.insecure,
                server_name: args.server_name.clone(),
                min_version: TlsVersion::Tls12,
                max_version: if args.tls13 {
                    TlsVersion::Tls13
                } else {
                    TlsVersion::Tls12
                },
            };
            let name = tidepool::client::server_name(&client, &args.addr)?;
            Some((tidepool::client::client_config(&client)?, name))
        }
        _ => None,
    };
    let mut i: u64 = 0;
    while args.count == 0 || i < args.count {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
        let (table, body) = stats_json(i);
        let request = mbed_http_request(&args.addr, &args.db, table, &args.write_key, &body);
        let tcp = std::net::TcpStream::connect(&args.addr)
            .with_context(|| format!("cannot connect to {}", args.addr))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let (status, answer) = match &tls {
            Some((config, name)) => {
                let conn = rustls::ClientConnection::new(config.clone(), name.clone())?;
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                exchange(&mut stream, &request)?
            }
            None => {
                let mut stream = tcp;
                exchange(&mut stream, &request)?
            }
        };
        println!(
            "#{i} {} POST {}/{table}: {status} {answer}",
            if tls.is_some() { "https" } else { "http" },
            args.db
        );
        if status != 200 {
            bail!("the server answered {status}: {answer}");
        }
        i += 1;
    }
    Ok(())
}

/// The `i`-th statistics object, formatted as the example's `sprintf` calls do (flat,
/// integers unquoted, no `time`).
fn stats_json(i: u64) -> (&'static str, String) {
    let round = i / 4;
    match i % 4 {
        0 => (
            "cpu_info",
            format!(
                "{{\"uptime\":{},\"idle_time\":{},\"sleep_time\":{},\"deep_sleep_time\":{}}}",
                1_234_567 + round * 10_000,
                1_000_000 + round * 9_000,
                52_000 + round * 500,
                0
            ),
        ),
        1 => (
            "heap_info",
            format!(
                "{{\"current_size\":{},\"max_size\":{},\"total_size\":{},\"reserved_size\":{},\"alloc_cnt\":{},\"alloc_fail_cnt\":{}}}",
                12_345 + (round % 64) * 16,
                20_480,
                65_536 + round * 128,
                131_072,
                42 + round,
                0
            ),
        ),
        2 => (
            "stack_info",
            format!(
                "{{\"thread_id\":{},\"max_size\":{},\"reserved_size\":{},\"stack_cnt\":{}}}",
                0x2000_0f10 + (round % 4) * 0x100,
                1_024 + (round % 8) * 32,
                4_096,
                5
            ),
        ),
        _ => (
            "sys_info",
            format!(
                "{{\"os_version\":{},\"cpu_id\":{},\"compiler_id\":{},\"compiler_version\":{}}}",
                61_700, 0x410f_c241u32, 1, 9_030_001
            ),
        ),
    }
}

/// The request `mbed-http`'s `HttpRequestBuilder` writes: request line, then the
/// headers from a `std::map` (so sorted by name: `Accept`, `Content-Length`,
/// `Content-type`, `Host`, `X-TD-Write-Key`), a blank line and the body. `Host`
/// carries the port only when it is not the scheme's default.
fn mbed_http_request(addr: &str, db: &str, table: &str, key: &str, body: &str) -> Vec<u8> {
    let host = addr
        .strip_suffix(":443")
        .or_else(|| addr.strip_suffix(":80"))
        .unwrap_or(addr);
    let mut req = format!(
        "POST /postback/v3/event/{db}/{table} HTTP/1.1\r\n\
         Accept: text/plain\r\n\
         Content-Length: {}\r\n\
         Content-type: application/json\r\n\
         Host: {host}\r\n\
         X-TD-Write-Key: {key}\r\n\
         \r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// Writes the request, reads the status line, headers and a `Content-Length` body.
fn exchange(stream: &mut impl ReadWrite, request: &[u8]) -> anyhow::Result<(u16, String)> {
    stream.write_all(request).context("sending the request")?;
    stream.flush()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            bail!("response head longer than 16 KiB");
        }
        if stream.read(&mut byte).context("reading the response")? == 0 {
            bail!("the server closed the connection without a full response");
        }
        head.extend_from_slice(&byte);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 << 10);
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .context("reading the response body")?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A byte stream the device talks HTTP over: TCP or rustls over TCP.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn now_secs() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The `i`-th event: cycles through the board's statistics and the debug array, with
/// values that move a little each round, like a live board's.
fn sample(i: u64, db: &str) -> (String, Vec<u8>) {
    let round = i / 5;
    let mut m = Ump::default();
    let table = match i % 5 {
        0 => {
            let usage = 5.0 + (round % 20) as f32 * 2.5;
            m.start_map(3);
            m.set_str("cpu_usage");
            m.set_float(usage);
            m.set_str("idle");
            m.set_float(100.0 - usage);
            m.set_str("uptime");
            m.set_uint(1234 + round * 5);
            "cpu_info"
        }
        1 => {
            let current = 12_345 + (round % 64) * 16;
            m.start_map(6);
            for (k, v) in [
                ("current_size", current),
                ("total_size", 65_536),
                ("alloc_cnt", 42 + round),
                ("max_size", 20_480),
                ("reserved_size", 131_072),
                ("alloc_fail_cnt", 0),
            ] {
                m.set_str(k);
                m.set_uint(v);
            }
            "heap_info"
        }
        2 => {
            m.start_map(3);
            m.set_str("thread_id");
            m.set_uint(0x2000_0f10 + (round % 4) * 0x100);
            m.set_str("max_size");
            m.set_uint(1_024 + (round % 8) * 32);
            m.set_str("reserved_size");
            m.set_uint(4_096);
            "stack_info"
        }
        3 => {
            m.start_map(4);
            m.set_str("os_version");
            m.set_uint(61_700);
            m.set_str("cpu_id");
            m.set_uint(0x410f_c241);
            m.set_str("compiler_id");
            m.set_uint(1);
            m.set_str("compiler_version");
            m.set_uint(9_030_001);
            "sys_info"
        }
        _ => {
            m.start_array(7);
            m.set_str("sint");
            for v in [0, 1, -1, -128, -32_768, -2_147_483_648] {
                m.set_sint(v);
            }
            return ("debug.test".to_string(), m.bytes);
        }
    };
    (format!("td.{db}.{table}"), m.bytes)
}

/// `FluentLogger::log(tag, uMP&)`: fixarray(3), tag, uint32 time, record bytes as is.
fn mbed_frame(tag: &str, time: u32, record: &[u8]) -> anyhow::Result<Vec<u8>> {
    if record.len() > 255 {
        bail!(
            "record is {} bytes; the Mbed logger copies at most 255 (set_raw takes a uint8_t)",
            record.len()
        );
    }
    u8::try_from(tag.len()).with_context(|| {
        format!(
            "tag is {} bytes; Mbed tags are at most 255 (str8)",
            tag.len()
        )
    })?;
    let mut f = Ump::default();
    f.start_array(3);
    f.set_str(tag);
    f.set_u32(time);
    f.bytes.extend_from_slice(record);
    Ok(f.bytes)
}

/// The uMP encoder's byte forms: fix containers only, smallest ints, str up to str8.
#[derive(Default)]
struct Ump {
    bytes: Vec<u8>,
}

impl Ump {
    fn start_array(&mut self, n: u8) {
        self.bytes.push(0x90 | (n & 0x0f));
    }

    fn start_map(&mut self, n: u8) {
        self.bytes.push(0x80 | (n & 0x0f));
    }

    fn set_uint(&mut self, u: u64) {
        if let Ok(b) = u8::try_from(u) {
            if b <= 0x7f {
                self.bytes.push(b);
            } else {
                self.bytes.extend_from_slice(&[0xcc, b]);
            }
        } else if let Ok(h) = u16::try_from(u) {
            self.bytes.push(0xcd);
            self.bytes.extend_from_slice(&h.to_be_bytes());
        } else {
            self.set_u32(u32::try_from(u).unwrap_or(u32::MAX));
        }
    }

    fn set_u32(&mut self, u: u32) {
        self.bytes.push(0xce);
        self.bytes.extend_from_slice(&u.to_be_bytes());
    }

    fn set_sint(&mut self, i: i64) {
        if i >= 0 {
            self.set_uint(i.unsigned_abs());
        } else if i >= -32 {
            self.bytes.push(i as u8);
        } else if let Ok(b) = i8::try_from(i) {
            self.bytes.push(0xd0);
            self.bytes.extend_from_slice(&b.to_be_bytes());
        } else if let Ok(h) = i16::try_from(i) {
            self.bytes.push(0xd1);
            self.bytes.extend_from_slice(&h.to_be_bytes());
        } else {
            let w = i32::try_from(i).unwrap_or(i32::MIN);
            self.bytes.push(0xd2);
            self.bytes.extend_from_slice(&w.to_be_bytes());
        }
    }

    fn set_str(&mut self, s: &str) {
        let len = s.len().min(255);
        if len <= 0x1f {
            self.bytes.push(0xa0 | len as u8);
        } else {
            self.bytes.extend_from_slice(&[0xd9, len as u8]);
        }
        self.bytes
            .extend_from_slice(s.as_bytes().get(..len).unwrap_or_default());
    }

    fn set_float(&mut self, f: f32) {
        self.bytes.push(0xca);
        self.bytes.extend_from_slice(&f.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    #[test]
    fn debug_array_matches_the_mbed_vector() {
        let (tag, record) = sample(4, "test_database");
        let frame = mbed_frame(&tag, 0, &record).expect("frame");
        assert_eq!(frame, vector("mbed-array-sint.client.bin"));
    }

    #[test]
    fn postback_requests_are_shaped_like_mbed_https() {
        let (table, body) = stats_json(1);
        assert_eq!(table, "heap_info");
        let req = mbed_http_request("example.com:443", "test_database", table, "k", &body);
        let text = String::from_utf8(req).expect("utf8");
        assert!(text.starts_with("POST /postback/v3/event/test_database/heap_info HTTP/1.1\r\nAccept: text/plain\r\nContent-Length: "));
        assert!(
            text.contains("\r\nHost: example.com\r\nX-TD-Write-Key: k\r\n\r\n{\"current_size\":")
        );
        let json: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).expect("body")).expect("json");
        assert_eq!(json["alloc_fail_cnt"], 0);
        for i in 0..4 {
            let (_, body) = stats_json(i);
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert!(v.as_object().expect("object").values().all(|v| v.is_u64()));
        }
    }

    #[test]
    fn every_sample_is_a_three_element_message() {
        for i in 0..5 {
            let (tag, record) = sample(i, "db");
            let frame = mbed_frame(&tag, 1_700_000_000, &record).expect("frame");
            let v = rmpv::decode::read_value(&mut frame.as_slice()).expect("decodes");
            assert_eq!(v.as_array().map(Vec::len), Some(3));
            assert_eq!(v[0].as_str(), Some(tag.as_str()));
            assert_eq!(
                &frame[tag.len() + 2..tag.len() + 7],
                &[0xce, 0x65, 0x53, 0xf1, 0x00]
            );
        }
    }
}
