//! `type = "file"`: JSON lines appended to a file per tag (or a path template).
//!
//! Each chunk becomes one `write_all` of all its lines to a file opened with `O_APPEND`;
//! the path comes from a template where `${tag}` and `${tag_parts[N]}` are replaced by
//! sanitized text, so no tag can name a file outside the template's directory. Open
//! files stay in a small LRU cache so a steady stream of chunks does not reopen them.

use super::json::{Injected, write_json_prefix};
use super::{Chunk, OutputError};
use crate::config::FileOutputConfig;
use crate::msgpack::entry::entry_head;
use crate::template::Segment;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Path template used when the config leaves `path` empty, relative to `data_dir`.
pub const DEFAULT_PATH: &str = "out/${tag}.jsonl";

/// Most files kept open at once; the least recently used is closed beyond this.
pub const MAX_OPEN_FILES: usize = 64;

/// Longest file name component a template may produce (the usual filesystem limit).
const MAX_COMPONENT: usize = 255;

/// Appends each chunk's records as JSON lines to the file its tag (the chunk key)
/// selects, keeping every file inside the template's directory whatever the tag.
#[derive(Debug)]
pub struct FileOutput {
    name: String,
    template: Template,
    time_key: Option<String>,
    tag_key: Option<String>,
    files: Arc<Mutex<FileCache>>,
}

impl FileOutput {
    /// Builds it; relative paths are under `data_dir`.
    ///
    /// Fails on a template with an unknown or unterminated `${...}` placeholder, or one
    /// that names a directory rather than a file.
    pub fn new(name: &str, config: &FileOutputConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let raw = if config.path.is_empty() {
            DEFAULT_PATH
        } else {
            config.path.as_str()
        };
        if raw.ends_with('/') {
            anyhow::bail!(
                "output {name}: path template {raw:?} ends with '/'; name a file, e.g. \"{raw}${{tag}}.jsonl\""
            );
        }
        let full = data_dir.join(raw);
        let full = full.to_str().ok_or_else(|| {
            anyhow::anyhow!("output {name}: path {full:?} is not valid UTF-8; use a UTF-8 path")
        })?;
        let template = Template::parse(full)
            .map_err(|e| anyhow::anyhow!("output {name}: path template {raw:?}: {e}"))?;
        Ok(FileOutput {
            name: name.to_string(),
            template,
            time_key: config.time_key.clone(),
            tag_key: config.tag_key.clone(),
            files: Arc::new(Mutex::new(FileCache::default())),
        })
    }

    /// The file the events of `tag` are appended to.
    ///
    /// `Permanent` when the tag cannot produce a valid path under the template's
    /// directory (a missing tag part, an over-long name).
    pub fn path_for(&self, tag: &str) -> Result<PathBuf, OutputError> {
        self.template
            .resolve(tag)
            .map_err(|e| OutputError::Permanent(format!("output {}: {e}", self.name)))
    }

    /// Appends every event of the chunk as one write of all its lines.
    ///
    /// IO errors (EACCES, ENOSPC, a read-only filesystem) are `Retryable` and name the
    /// path and the OS error; bytes of a failed write are truncated away so a retry does
    /// not leave a torn line or duplicate lines behind.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let path = self.path_for(&chunk.key)?;
        let text = self.render(chunk)?;
        if text.is_empty() {
            return Ok(());
        }
        let files = Arc::clone(&self.files);
        let target = path.clone();
        let done = tokio::task::spawn_blocking(move || append(&files, &target, &text)).await;
        let fail = |what: String| {
            OutputError::Retryable(format!(
                "output {}: chunk {} to {}: {what}",
                self.name,
                chunk.id,
                path.display()
            ))
        };
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err((step, e))) if permanent_io(&e) => Err(OutputError::Permanent(format!(
                "output {}: chunk {} to {}: {step} failed: {e}; fix the path template",
                self.name,
                chunk.id,
                path.display()
            ))),
            Ok(Err((step, e))) => Err(fail(format!("{step} failed: {e}"))),
            Err(e) => Err(fail(format!("writer task failed: {e}"))),
        }
    }

    /// How many files are open now (for tests of the cache bound).
    #[cfg(test)]
    pub(super) fn open_files(&self) -> usize {
        lock(&self.files).open.len()
    }

    /// Renders the chunk's records as JSON lines, with `time_key` / `tag_key` injected.
    fn render(&self, chunk: &Chunk) -> Result<Vec<u8>, OutputError> {
        let mut fields: Vec<(&str, Injected<'_>)> = Vec::with_capacity(2);
        let mut out = Vec::with_capacity(chunk.entries.len().saturating_mul(2));
        let buf = &chunk.entries[..];
        let (mut pos, mut i) = (0usize, 0usize);
        // One pass: the transcoder reads each record once and says where it ended.
        while pos < buf.len() {
            let bad = |e: crate::msgpack::ScanError| {
                OutputError::Permanent(format!(
                    "output {}: chunk {} (key {:?}): entry {i} cannot be rendered as JSON: {e}",
                    self.name, chunk.id, chunk.key
                ))
            };
            let (time, record_at) = entry_head(buf, pos).map_err(bad)?;
            fields.clear();
            if let Some(k) = &self.time_key {
                fields.push((k, Injected::Time(time)));
            }
            if let Some(k) = &self.tag_key {
                fields.push((k, Injected::Str(&chunk.key)));
            }
            let start = out.len();
            let rest = buf.get(record_at..).unwrap_or_default();
            match write_json_prefix(rest, &fields, &mut out) {
                Ok(len) => pos = record_at + len,
                Err(e) => {
                    out.truncate(start);
                    return Err(bad(e));
                }
            }
            out.push(b'\n');
            i += 1;
        }
        Ok(out)
    }
}

/// Errors no retry can fix: the path itself is unusable.
fn permanent_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidFilename | std::io::ErrorKind::InvalidInput
    )
}

/// Appends `text` to `path` through the cache; on failure says which step failed.
fn append(
    files: &Mutex<FileCache>,
    path: &Path,
    text: &[u8],
) -> Result<(), (&'static str, std::io::Error)> {
    let handle = lock(files).get(path)?;
    let mut file = lock(&handle);
    let before = file.metadata().map_err(|e| ("stat", e))?.len();
    if let Err(e) = file.write_all(text) {
        // Only this process appends to its files, so cutting back to `before` removes
        // exactly the partial chunk and a retry writes it whole.
        let _ = file.set_len(before);
        drop(file);
        lock(files).forget(path);
        return Err(("write", e));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Open append handles by path, least recently used closed first beyond [`MAX_OPEN_FILES`].
#[derive(Debug, Default)]
struct FileCache {
    open: HashMap<PathBuf, Cached>,
    tick: u64,
}

#[derive(Debug)]
struct Cached {
    file: Arc<Mutex<File>>,
    /// [`file_id`] when opened.
    id: Option<(u64, u64)>,
    last_used: u64,
}

impl FileCache {
    /// The handle for `path`, reopened if the file was removed or replaced (rotated).
    ///
    /// Never takes a file's own lock, so a long write to one file does not hold up
    /// lookups of the others.
    fn get(&mut self, path: &Path) -> Result<Arc<Mutex<File>>, (&'static str, std::io::Error)> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(c) = self.open.get_mut(path) {
            if c.id.is_some() && c.id == file_id(std::fs::metadata(path).ok().as_ref()) {
                c.last_used = tick;
                return Ok(Arc::clone(&c.file));
            }
            self.open.remove(path);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ("creating the directory", e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ("opening the file", e))?;
        let id = file_id(file.metadata().ok().as_ref());
        if self.open.len() >= MAX_OPEN_FILES {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                self.open.remove(&p);
            }
        }
        let file = Arc::new(Mutex::new(file));
        self.open.insert(
            path.to_path_buf(),
            Cached {
                file: Arc::clone(&file),
                id,
                last_used: tick,
            },
        );
        Ok(file)
    }

    fn forget(&mut self, path: &Path) {
        self.open.remove(path);
    }
}

/// Device and inode: what tells a rotated-away file from the one now at its path.
/// `None` where unknown, which makes the cache reopen the path on every chunk.
fn file_id(meta: Option<&std::fs::Metadata>) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        meta.map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// A parsed path template: literal text and tag placeholders.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    segments: Vec<Segment>,
    /// The directory every resolved path must stay inside: the literal text before the
    /// first placeholder, up to its last `/`.
    base: PathBuf,
}

impl Template {
    fn parse(s: &str) -> Result<Template, String> {
        let segments = crate::template::parse(s, "tag")?;
        let base = match segments.as_slice() {
            [Segment::Lit(l)] => Path::new(l).parent().map(Path::to_path_buf),
            [Segment::Lit(l), ..] => l.rfind('/').and_then(|i| l.get(..i)).map(PathBuf::from),
            _ => None,
        }
        .unwrap_or_default();
        Ok(Template { segments, base })
    }

    fn resolve(&self, tag: &str) -> Result<PathBuf, String> {
        let mut s = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Lit(l) => s.push_str(l),
                Segment::Whole => sanitize_into(tag, &mut s),
                Segment::Part(i) => {
                    let parts: Vec<&str> = tag.split('.').collect();
                    let part = crate::template::part(&parts, *i).ok_or_else(|| {
                        format!(
                            "tag {tag:?} has {} parts, so ${{tag_parts[{i}]}} does not exist; \
                             route such tags elsewhere or change the path template",
                            parts.len()
                        )
                    })?;
                    sanitize_into(part, &mut s);
                }
            }
        }
        let path = PathBuf::from(&s);
        let inside = path.strip_prefix(&self.base).map_err(|_| {
            format!(
                "tag {tag:?} resolves to {s:?}, outside {}",
                self.base.display()
            )
        })?;
        let mut any = false;
        for c in inside.components() {
            match c {
                Component::Normal(name) if name.len() <= MAX_COMPONENT => any = true,
                Component::Normal(name) => {
                    return Err(format!(
                        "tag {tag:?} gives a file name of {} bytes in {s:?}, over the {MAX_COMPONENT}-byte limit",
                        name.len()
                    ));
                }
                _ => {
                    return Err(format!(
                        "tag {tag:?} resolves to {s:?}, which leaves {}",
                        self.base.display()
                    ));
                }
            }
        }
        if !any || s.ends_with('/') {
            return Err(format!(
                "tag {tag:?} resolves to {s:?}, which names no file"
            ));
        }
        Ok(path)
    }
}

/// Appends `value` made safe as (part of) one file name: `[A-Za-z0-9._-]` kept, every
/// other character `_`, leading dots `_` (no `..`, no hidden files), empty as `_`.
fn sanitize_into(value: &str, out: &mut String) {
    let mut leading = true;
    for c in value.chars() {
        let keep = c.is_ascii_alphanumeric() || c == '-' || c == '_' || (c == '.' && !leading);
        out.push(if keep { c } else { '_' });
        leading = leading && c == '.';
    }
    if value.is_empty() {
        out.push('_');
    }
}
