//! `load verify`: did a sink receive every acked sequence number of a run, once?
//!
//! A run with `--seq RUN --acked-out FILE` writes the acked ranges; `verify` reads the
//! `run`/`seq` fields back from JSON lines files, a tidepool SQLite store table or a td
//! mock report (JSON lines of rows), and reports lost (acked, never received) and
//! duplicated (received more than once) sequence numbers. Exit status 1 when any.

use anyhow::{Context, bail};
use clap::Parser;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Where to read what a sink received.
#[derive(Parser, Debug)]
pub struct VerifyArgs {
    /// Run id given to `run --seq`.
    #[arg(long)]
    pub run: String,
    /// Acked ranges file written by `run --acked-out`.
    #[arg(long)]
    pub acked: PathBuf,
    /// JSON lines files (e.g. a `file` output's), each line a record with `run` and `seq`.
    #[arg(long, num_args = 1..)]
    pub file: Vec<PathBuf>,
    /// A tidepool store database file (SQLite) to read `run`, `seq` columns from.
    #[arg(long, requires = "table")]
    pub store: Option<PathBuf>,
    /// Table in `--store`.
    #[arg(long)]
    pub table: Option<String>,
    /// JSON lines of rows received by a td mock (`td-mock --report FILE`).
    #[arg(long)]
    pub td_mock_report: Option<PathBuf>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Writes merged half-open ranges `start end` of acked sequence numbers, one per line.
pub fn write_acked(path: &Path, run: &str, mut ranges: Vec<(u64, u64)>) -> anyhow::Result<()> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut out = String::from("# run ");
    out.push_str(run);
    out.push_str("\n# acked sequence numbers, half-open ranges: start end\n");
    for (s, e) in merged {
        out.push_str(&format!("{s} {e}\n"));
    }
    std::fs::write(path, out).with_context(|| format!("writing acked ranges to {}", path.display()))
}

fn read_acked(path: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading acked ranges {}", path.display()))?;
    let mut ranges = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .filter(|(a, b)| a <= b);
        match parsed {
            Some(r) => ranges.push(r),
            None => bail!(
                "{} line {}: {line:?} is not `start end` with start <= end",
                path.display(),
                n + 1
            ),
        }
    }
    ranges.sort_unstable();
    Ok(ranges)
}

/// The seq of a JSON record when it belongs to `run`.
fn seq_of(v: &serde_json::Value, run: &str) -> Option<u64> {
    (v.get("run")?.as_str()? == run).then_some(())?;
    v.get("seq")?.as_u64()
}

fn read_json_lines(path: &Path, run: &str, seen: &mut Vec<u64>) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    for line in BufReader::new(f).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(s) = seq_of(&v, run)
        {
            seen.push(s);
        }
    }
    Ok(())
}

fn read_store(db: &Path, table: &str, run: &str, seen: &mut Vec<u64>) -> anyhow::Result<()> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening store {}", db.display()))?;
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let mut stmt = conn
        .prepare(&format!("SELECT seq FROM {quoted} WHERE run = ?1"))
        .with_context(|| format!("table {table:?} in {} has no run/seq columns", db.display()))?;
    let rows = stmt.query_map([run], |r| r.get::<_, i64>(0))?;
    for r in rows {
        seen.push(r? as u64);
    }
    Ok(())
}

/// What verification found.
pub struct Report {
    /// Sequence numbers the run saw acked.
    pub acked: u64,
    /// Records of the run the sink holds (duplicates and unacked ones included).
    pub received: u64,
    /// Acked numbers the sink does not hold: a broken durability promise.
    pub lost: u64,
    /// Extra copies of numbers the sink holds more than once.
    pub duplicated: u64,
    /// The first few lost numbers, to look for.
    pub lost_examples: Vec<u64>,
    /// The first few duplicated numbers.
    pub duplicated_examples: Vec<u64>,
}

/// Compares received seqs (any order) against acked ranges.
pub fn compare(acked: &[(u64, u64)], mut seen: Vec<u64>) -> Report {
    seen.sort_unstable();
    let mut r = Report {
        acked: acked.iter().fold(0u64, |n, (s, e)| n.saturating_add(e - s)),
        received: seen.len() as u64,
        lost: 0,
        duplicated: 0,
        lost_examples: Vec::new(),
        duplicated_examples: Vec::new(),
    };
    for w in seen.windows(2) {
        if w[0] == w[1] {
            r.duplicated += 1;
            if r.duplicated_examples.len() < 10 && r.duplicated_examples.last() != Some(&w[0]) {
                r.duplicated_examples.push(w[0]);
            }
        }
    }
    seen.dedup();
    for &(s, e) in acked {
        let lo = seen.partition_point(|&x| x < s);
        let hi = seen.partition_point(|&x| x < e);
        let present = seen.get(lo..hi).unwrap_or_default();
        r.lost = r.lost.saturating_add((e - s) - present.len() as u64);
        // The first few missing numbers: the gaps before, between and after `present`.
        let mut want = s;
        for &x in present.iter().chain(std::iter::once(&e)) {
            while want < x && r.lost_examples.len() < 10 {
                r.lost_examples.push(want);
                want += 1;
            }
            if r.lost_examples.len() >= 10 {
                break;
            }
            want = x + 1;
        }
    }
    r
}

/// Runs `load verify`; returns whether nothing was lost or duplicated.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<bool> {
    let acked = read_acked(&args.acked)?;
    let mut seen = Vec::new();
    for f in &args.file {
        read_json_lines(f, &args.run, &mut seen)?;
    }
    if let Some(db) = &args.store {
        let table = args.table.as_deref().unwrap_or_default();
        read_store(db, table, &args.run, &mut seen)?;
    }
    if let Some(p) = &args.td_mock_report {
        read_json_lines(p, &args.run, &mut seen)?;
    }
    if args.file.is_empty() && args.store.is_none() && args.td_mock_report.is_none() {
        bail!("nothing to verify: give --file, --store with --table, or --td-mock-report");
    }
    let r = compare(&acked, seen);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "run": args.run, "acked": r.acked, "received": r.received,
                "lost": r.lost, "duplicated": r.duplicated,
                "lost_examples": r.lost_examples, "duplicated_examples": r.duplicated_examples,
            })
        )?;
    } else {
        writeln!(out, "run {}", args.run)?;
        writeln!(out, "  acked       {}", r.acked)?;
        writeln!(out, "  received    {}", r.received)?;
        writeln!(out, "  lost        {} {:?}", r.lost, r.lost_examples)?;
        writeln!(
            out,
            "  duplicated  {} {:?}",
            r.duplicated, r.duplicated_examples
        )?;
    }
    Ok(r.lost == 0 && r.duplicated == 0)
}
