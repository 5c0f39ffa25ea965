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
//! ```text
//! cargo run --example device -- --addr 127.0.0.1:24227 --count 5
//! cargo run --example device -- --addr 127.0.0.1:24228 --tls --ca certs/ca.pem
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidepool::client::{ClientOptions, ClientTls, ForwardClient};
use tidepool::config::TlsVersion;

/// Sends Mbed-FluentLogger-shaped events to a forward server, one connection each.
#[derive(Parser, Debug)]
#[command(name = "device")]
struct Args {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
