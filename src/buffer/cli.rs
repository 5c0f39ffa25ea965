//! `tidepool buffer ...`: inspect and repair buffers through their files, whether the
//! daemon is running or not.
//!
//! Nothing here takes a buffer's lock: every change is a rename into the buffer's
//! `requeue/` inbox (or a `<id>.now` marker there), which a running buffer scans every
//! second and a starting one reads during recovery, so the CLI and a daemon never
//! write the same file.

use super::chunk_file::{self, FileState};
use super::dead_letter::{self, RETRY_NOW_SUFFIX};
use super::sidecar;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The subcommands of `tidepool buffer` (the lead nests this under the main parser).
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum BufferCommand {
    /// List staged and queued chunks: state, key, size, records, age, retries, last error
    List {
        /// Only this output's buffer
        #[arg(long)]
        output: Option<String>,
    },
    /// Show one chunk (its 32-hex id or a unique prefix), checking every block
    Show {
        /// Chunk id or unique prefix (at least 4 hex characters)
        chunk: String,
    },
    /// Retry a chunk now with a fresh retry budget (a queued chunk or a dead letter)
    Requeue {
        /// Chunk id or unique prefix
        chunk: String,
    },
    /// Inspect or requeue dead-lettered chunks
    #[command(subcommand)]
    DeadLetter(DeadLetterCommand),
}

/// `tidepool buffer dead-letter ...`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum DeadLetterCommand {
    /// List dead-lettered chunks and why they were given up
    List {
        /// Only this output's buffer
        #[arg(long)]
        output: Option<String>,
    },
    /// Move dead letters back into their buffer: `ALL`, or one chunk id
    Requeue {
        /// `ALL` or a chunk id (or unique prefix)
        target: String,
        /// With `ALL`: only this output's dead letters
        #[arg(long)]
        output: Option<String>,
    },
}

/// Runs a `tidepool buffer` command on `data_dir/buffer/*` and returns what to print.
/// Long requeues report progress on stderr when it is a terminal.
pub fn run_cli(data_dir: &Path, cmd: &BufferCommand) -> anyhow::Result<String> {
    let tty = std::io::stderr().is_terminal();
    let mut progress = |done: usize, total: usize| {
        if tty && total >= 50 {
            eprint!("\rrequeued {done}/{total}");
            if done == total {
                eprintln!();
            }
        }
    };
    run_cli_with_progress(data_dir, cmd, &mut progress)
}

/// [`run_cli`] with a progress callback `(done, total)` for long requeues.
pub fn run_cli_with_progress(
    data_dir: &Path,
    cmd: &BufferCommand,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<String> {
    let root = data_dir.join("buffer");
    match cmd {
        BufferCommand::List { output } => list(&root, output.as_deref(), false),
        BufferCommand::Show { chunk } => show(&root, chunk),
        BufferCommand::Requeue { chunk } => requeue(&root, chunk),
        BufferCommand::DeadLetter(DeadLetterCommand::List { output }) => {
            list(&root, output.as_deref(), true)
        }
        BufferCommand::DeadLetter(DeadLetterCommand::Requeue { target, output }) => {
            if target.eq_ignore_ascii_case("all") {
                requeue_all(&root, output.as_deref(), progress)
            } else {
                let found = find(&root, target)?;
                anyhow::ensure!(
                    found.place == Place::DeadLetter,
                    "chunk {} of output {} is {}, not in the dead-letter directory; use `tidepool buffer requeue {}`",
                    found.id_text(),
                    found.output,
                    found.place.label(),
                    target
                );
                requeue_dead_letter(&found)?;
                progress(1, 1);
                Ok(format!("{}\n", requeued_message(1, &found.output)))
            }
        }
    }
}

/// Where a chunk file was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Staged,
    Queued,
    DeadLetter,
    Requeue,
}

impl Place {
    fn label(self) -> &'static str {
        match self {
            Place::Staged => "staged",
            Place::Queued => "queued",
            Place::DeadLetter => "dead-letter",
            Place::Requeue => "requeued",
        }
    }
}

/// One chunk file on disk.
#[derive(Clone, Debug)]
struct Found {
    output: String,
    buffer_dir: PathBuf,
    path: PathBuf,
    place: Place,
}

impl Found {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The id from the file name when it has one, else the file name.
    fn id_text(&self) -> String {
        let name = self.file_name();
        match chunk_file::parse_chunk_name(&name) {
            Some((_, id)) => id.hex(),
            None => name,
        }
    }
}

fn outputs(root: &Path, only: Option<&str>) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read buffer directory {}: {e}", root.display()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|_| path.is_dir())
            && only.is_none_or(|o| o == name)
        {
            out.push((name, path));
        }
    }
    out.sort();
    if let Some(o) = only {
        anyhow::ensure!(
            !out.is_empty(),
            "no buffer for output {o:?} under {}",
            root.display()
        );
    }
    Ok(out)
}

/// Chunk files of one place in one buffer directory, in name order.
fn files_in(dir: &Path, dead_letters: bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if dead_letters {
                !name.starts_with('.')
                    && !name.ends_with(".json")
                    && !name.ends_with(RETRY_NOW_SUFFIX)
            } else {
                name.ends_with(".chunk")
            }
        })
        .collect();
    out.sort();
    out
}

fn all_chunks(root: &Path, only: Option<&str>) -> anyhow::Result<Vec<Found>> {
    let mut found = Vec::new();
    for (output, dir) in outputs(root, only)? {
        for path in files_in(&dir, false) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let place = match chunk_file::parse_chunk_name(&name) {
                Some((FileState::Staged, _)) => Place::Staged,
                _ => Place::Queued,
            };
            found.push(Found {
                output: output.clone(),
                buffer_dir: dir.clone(),
                path,
                place,
            });
        }
        for (place, sub) in [
            (Place::DeadLetter, dead_letter::dead_letter_dir(&dir)),
            (Place::Requeue, dead_letter::requeue_dir(&dir)),
        ] {
            for path in files_in(&sub, true) {
                found.push(Found {
                    output: output.clone(),
                    buffer_dir: dir.clone(),
                    path,
                    place,
                });
            }
        }
    }
    Ok(found)
}

/// Finds the one chunk whose id starts with `query` (or whose file name is `query`).
fn find(root: &Path, query: &str) -> anyhow::Result<Found> {
    let q = query.to_ascii_lowercase();
    anyhow::ensure!(
        q.len() >= 4,
        "chunk id {query:?} is too short: give at least 4 of its 32 hex characters"
    );
    let matches: Vec<Found> = all_chunks(root, None)?
        .into_iter()
        .filter(|f| f.id_text().starts_with(&q) || f.file_name() == query)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no chunk {query:?} under {}", root.display()),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|f| format!("{} ({})", f.id_text(), f.output))
                .collect();
            anyhow::bail!("chunk id {query:?} is ambiguous: {}", names.join(", "))
        }
    }
}

fn age(created_ms: u64) -> String {
    let secs = chunk_file::now_ms().saturating_sub(created_ms) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn list(root: &Path, only: Option<&str>, dead_letters: bool) -> anyhow::Result<String> {
    let chunks: Vec<Found> = all_chunks(root, only)?
        .into_iter()
        .filter(|f| (f.place == Place::DeadLetter) == dead_letters)
        .collect();
    let mut out = String::new();
    if chunks.is_empty() {
        let what = if dead_letters {
            "dead-lettered chunks"
        } else {
            "buffered chunks"
        };
        let _ = writeln!(out, "no {what} under {}", root.display());
        return Ok(out);
    }
    let last = if dead_letters { "REASON" } else { "LAST ERROR" };
    let _ = writeln!(
        out,
        "{:<12} {:<11} {:<32} {:<28} {:>10} {:>8} {:>7} {:>7}  {last}",
        "OUTPUT", "STATE", "CHUNK", "KEY", "BYTES", "RECORDS", "AGE", "RETRIES"
    );
    for f in &chunks {
        let summary = chunk_file::summarize(&f.path);
        let (key, bytes, records, created, torn) = match &summary {
            Ok(Ok(s)) => (
                s.header.key.clone(),
                s.file_len,
                s.records.to_string(),
                Some(s.header.created_ms),
                s.torn_bytes,
            ),
            Ok(Err(e)) => (format!("<{e}>"), 0, "-".into(), None, 0),
            Err(e) => (format!("<unreadable: {e}>"), 0, "-".into(), None, 0),
        };
        let record = sidecar::read_record(&f.path);
        let state = match &summary {
            Ok(Ok(s)) => sidecar::read_state(&f.buffer_dir, &s.header.id),
            _ => None,
        };
        let (retries, note) = if dead_letters {
            let r = record.as_ref();
            (
                r.map_or(0, |r| r.failures),
                r.map_or_else(|| "(no record)".to_string(), |r| r.reason.clone()),
            )
        } else {
            let s = state.unwrap_or_default();
            let mut note = s.last_error.unwrap_or_default();
            if torn > 0 {
                note = format!("{torn} torn bytes at the end; {note}");
            }
            (s.failures, note)
        };
        let _ = writeln!(
            out,
            "{:<12} {:<11} {:<32} {:<28} {:>10} {:>8} {:>7} {:>7}  {note}",
            f.output,
            f.place.label(),
            f.id_text(),
            key,
            bytes,
            records,
            created.map_or_else(|| "-".into(), age),
            retries
        );
    }
    let _ = writeln!(out, "{} chunk(s)", chunks.len());
    Ok(out)
}

fn show(root: &Path, query: &str) -> anyhow::Result<String> {
    let f = find(root, query)?;
    let mut out = String::new();
    let _ = writeln!(out, "output:   {}", f.output);
    let _ = writeln!(out, "state:    {}", f.place.label());
    let _ = writeln!(out, "file:     {}", f.path.display());
    let bytes = std::fs::read(&f.path)
        .map_err(|e| anyhow::anyhow!("cannot read chunk file {}: {e}", f.path.display()))?;
    let _ = writeln!(out, "bytes:    {}", bytes.len());
    match chunk_file::parse(&bytes) {
        Ok(image) => {
            let h = &image.header;
            let _ = writeln!(out, "id:       {}", h.id);
            let _ = writeln!(out, "key:      {}", h.key);
            let _ = writeln!(
                out,
                "created:  {} ms since the epoch ({} ago)",
                h.created_ms,
                age(h.created_ms)
            );
            let _ = writeln!(out, "blocks:   {} (checksums good)", image.entries.len());
            let _ = writeln!(out, "records:  {}", image.records);
            if let Some(t) = &image.tail {
                let _ = writeln!(
                    out,
                    "tail:     {} bad bytes at offset {}: {}",
                    t.dropped, t.offset, t.reason
                );
            }
            if let Some(s) = sidecar::read_state(&f.buffer_dir, &h.id) {
                let _ = writeln!(out, "retries:  {}", s.failures);
                if let Some(e) = s.last_error {
                    let _ = writeln!(out, "last error: {e}");
                }
                if let Some(at) = s.next_attempt_ms {
                    let wait = at.saturating_sub(chunk_file::now_ms()) / 1000;
                    let _ = writeln!(out, "next retry: in {wait}s");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "header:   unreadable: {e}");
        }
    }
    if let Some(r) = sidecar::read_record(&f.path) {
        let _ = writeln!(
            out,
            "dead-lettered: {} ago after {} failed attempt(s)",
            age(r.dead_lettered_ms),
            r.failures
        );
        let _ = writeln!(out, "reason:   {}", r.reason);
    }
    Ok(out)
}

fn requeued_message(n: usize, output: &str) -> String {
    format!(
        "requeued {n} chunk(s) of output {output}; a running tidepool picks them up within a second, a stopped one at its next start"
    )
}

/// Moves one dead letter into its buffer's `requeue/` inbox and drops its record.
fn requeue_dead_letter(f: &Found) -> anyhow::Result<()> {
    let inbox = dead_letter::requeue_dir(&f.buffer_dir);
    std::fs::create_dir_all(&inbox)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", inbox.display()))?;
    let dest = inbox.join(f.file_name());
    anyhow::ensure!(
        !dest.exists(),
        "{} is already waiting in {}",
        f.file_name(),
        inbox.display()
    );
    std::fs::rename(&f.path, &dest).map_err(|e| {
        anyhow::anyhow!(
            "cannot move {} to {}: {e}",
            f.path.display(),
            dest.display()
        )
    })?;
    let _ = std::fs::remove_file(sidecar::record_path(&f.path));
    Ok(())
}

fn requeue(root: &Path, query: &str) -> anyhow::Result<String> {
    let f = find(root, query)?;
    match f.place {
        Place::DeadLetter => {
            requeue_dead_letter(&f)?;
            Ok(format!("{}\n", requeued_message(1, &f.output)))
        }
        Place::Requeue => Ok(format!(
            "chunk {} of output {} is already waiting in requeue/\n",
            f.id_text(),
            f.output
        )),
        Place::Staged | Place::Queued => {
            let name = f.file_name();
            let Some((_, id)) = chunk_file::parse_chunk_name(&name) else {
                anyhow::bail!("{} does not carry a chunk id in its name", f.path.display());
            };
            sidecar::remove_state(&f.buffer_dir, &id);
            let inbox = dead_letter::requeue_dir(&f.buffer_dir);
            std::fs::create_dir_all(&inbox)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", inbox.display()))?;
            let marker = inbox.join(format!("{}{RETRY_NOW_SUFFIX}", id.hex()));
            std::fs::write(&marker, b"")
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", marker.display()))?;
            Ok(format!(
                "chunk {id} of output {} will be retried now with a fresh retry budget\n",
                f.output
            ))
        }
    }
}

fn requeue_all(
    root: &Path,
    only: Option<&str>,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<String> {
    let dead: Vec<Found> = all_chunks(root, only)?
        .into_iter()
        .filter(|f| f.place == Place::DeadLetter)
        .collect();
    let mut out = String::new();
    if dead.is_empty() {
        let _ = writeln!(out, "no dead-lettered chunks under {}", root.display());
        return Ok(out);
    }
    let total = dead.len();
    let mut per_output: Vec<(String, usize)> = Vec::new();
    let mut errors = Vec::new();
    for (i, f) in dead.iter().enumerate() {
        match requeue_dead_letter(f) {
            Ok(()) => match per_output.last_mut() {
                Some((o, n)) if *o == f.output => *n += 1,
                _ => per_output.push((f.output.clone(), 1)),
            },
            Err(e) => errors.push(e.to_string()),
        }
        progress(i + 1, total);
    }
    for (output, n) in per_output {
        let _ = writeln!(out, "{}", requeued_message(n, &output));
    }
    for e in &errors {
        let _ = writeln!(out, "error: {e}");
    }
    anyhow::ensure!(
        errors.is_empty() || errors.len() < total,
        "{}",
        out.trim_end()
    );
    Ok(out)
}
