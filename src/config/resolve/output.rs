//! Outputs: `[output.NAME]` tables and the buffer in front of each.

use super::OUTPUT_TYPES;
use super::Resolver;
use crate::config::de::{Value, typed};
use crate::config::raw;
use crate::config::units;
use crate::config::*;
use toml::Spanned;
use toml::de::DeValue;

impl Resolver<'_, '_, '_> {
    /// All `[output.NAME]` tables, dispatched on `type`.
    pub(super) fn outputs(
        &mut self,
        value: Option<&Value<'_>>,
        server: &ServerConfig,
    ) -> Option<BTreeMap<String, OutputDef>> {
        let mut outputs = BTreeMap::new();
        let Some(value) = value else {
            return Some(outputs);
        };
        let DeValue::Table(table) = value.get_ref() else {
            self.at(
                value.span(),
                "output",
                "write each output as `[output.NAME]` (a table of named outputs)",
            );
            return None;
        };
        let mut ok = true;
        for (key, item) in table.iter() {
            let name: &str = key.get_ref();
            let path = format!("output.{name}");
            let section = format!("[output.{name}]");
            if !valid_output_name(name) {
                self.at(
                    key.span(),
                    &path,
                    format!("bad output name \"{name}\" (expected letters, digits, `_` or `-`; it names a directory)"),
                );
                ok = false;
                continue;
            }
            let Some(kind) = self.type_of(item, &path, &section, OUTPUT_TYPES) else {
                ok = false;
                continue;
            };
            let def = match kind.as_str() {
                "null" | "stdout" => {
                    typed::<raw::PlainOutputRaw>(item, &path, &section, self.problems).and_then(
                        |raw| {
                            let buffer =
                                self.buffer(raw.buffer.as_ref(), &path, BufferKind::Memory)?;
                            let kind = if kind == "null" {
                                OutputConfig::Null
                            } else {
                                OutputConfig::Stdout
                            };
                            Some(OutputDef { kind, buffer })
                        },
                    )
                }
                "file" => typed::<raw::FileOutputRaw>(item, &path, &section, self.problems)
                    .and_then(|raw| self.file_output(raw, &path)),
                "td" => typed::<raw::TdOutputRaw>(item, &path, &section, self.problems)
                    .and_then(|raw| self.td_output(raw, &path)),
                "store" => typed::<raw::StoreOutputRaw>(item, &path, &section, self.problems)
                    .and_then(|raw| self.store_output(raw, &path, server)),
                other => {
                    let span = self.type_span(item);
                    self.at(
                        span,
                        &format!("{path}.type"),
                        format!(
                            "unknown output type \"{other}\" (expected one of: {OUTPUT_TYPES})"
                        ),
                    );
                    None
                }
            };
            match def {
                Some(def) => {
                    outputs.insert(name.to_string(), def);
                }
                None => ok = false,
            }
        }
        ok.then_some(outputs)
    }

    /// `type = "file"`: the path template (default under `data_dir`) and record keys.
    pub(super) fn file_output(&mut self, raw: raw::FileOutputRaw, path: &str) -> Option<OutputDef> {
        let buffer = self.buffer(raw.buffer.as_ref(), path, BufferKind::File);
        let mut ok = true;
        // Relative to `data_dir` (the output joins it), like every other file tidepool
        // writes; not to the config file's directory.
        let out_path = match &raw.path {
            Some(p) => self.non_empty(p, &format!("{path}.path")),
            None => Some("out/${tag}.jsonl".to_string()),
        };
        let time_key = self.opt_name(raw.time_key.as_ref(), &format!("{path}.time_key"), &mut ok);
        let tag_key = self.opt_name(raw.tag_key.as_ref(), &format!("{path}.tag_key"), &mut ok);
        let (Some(buffer), Some(out_path), true) = (buffer, out_path, ok) else {
            return None;
        };
        Some(OutputDef {
            kind: OutputConfig::File(FileOutputConfig {
                path: out_path,
                time_key,
                tag_key,
            }),
            buffer,
        })
    }

    /// `buffer = { ... }` with Fluentd's defaults; `default_kind` depends on the output type.
    pub(super) fn buffer(
        &mut self,
        raw: Option<&Spanned<raw::BufferRaw>>,
        output: &str,
        default_kind: BufferKind,
    ) -> Option<BufferConfig> {
        let path = format!("{output}.buffer");
        let p = |key: &str| format!("{path}.{key}");
        let empty = raw::BufferRaw {
            kind: None,
            chunk_limit_size: None,
            chunk_limit_records: None,
            flush_interval: None,
            flush_thread_count: None,
            retry_wait: None,
            retry_max_interval: None,
            retry_max_times: None,
            retry_timeout: None,
            retry_forever: None,
            total_limit_size: None,
            overflow_action: None,
            fsync: None,
        };
        let raw = raw.map_or(&empty, |r| r.get_ref());
        let mut ok = true;
        let kind = match &raw.kind {
            None => Some(default_kind),
            Some(k) => match k.get_ref().as_str() {
                "file" => Some(BufferKind::File),
                "memory" => Some(BufferKind::Memory),
                other => {
                    self.at(
                        k.span(),
                        &p("type"),
                        format!(
                            "unknown buffer type \"{other}\" (expected \"file\" or \"memory\")"
                        ),
                    );
                    None
                }
            },
        };
        let chunk_limit_size = self.size(
            raw.chunk_limit_size.as_ref(),
            &p("chunk_limit_size"),
            8 << 20,
        );
        let chunk_limit_records = match &raw.chunk_limit_records {
            None => Some(None),
            Some(v) => self
                .count(Some(v), &p("chunk_limit_records"), 0, 1, u64::MAX)
                .map(Some),
        };
        let flush_interval = self.duration(
            raw.flush_interval.as_ref(),
            &p("flush_interval"),
            Duration::from_secs(1),
        );
        let flush_thread_count = self.count(
            raw.flush_thread_count.as_ref(),
            &p("flush_thread_count"),
            2,
            1,
            1024,
        );
        let retry_wait = self.duration(
            raw.retry_wait.as_ref(),
            &p("retry_wait"),
            Duration::from_secs(1),
        );
        let retry_max_interval = self.duration(
            raw.retry_max_interval.as_ref(),
            &p("retry_max_interval"),
            Duration::from_secs(300),
        );
        let retry_max_times = match &raw.retry_max_times {
            None => Some(None),
            Some(v) => self
                .count(Some(v), &p("retry_max_times"), 0, 0, u64::from(u32::MAX))
                .map(Some),
        };
        let retry_timeout = self.duration(
            raw.retry_timeout.as_ref(),
            &p("retry_timeout"),
            Duration::from_secs(72 * 3600),
        );
        let total_limit_size = self.size(
            raw.total_limit_size.as_ref(),
            &p("total_limit_size"),
            1 << 30,
        );
        let overflow_action = match &raw.overflow_action {
            None => Some(OverflowAction::Block),
            Some(a) => match a.get_ref().as_str() {
                "block" => Some(OverflowAction::Block),
                "drop_oldest_chunk" => Some(OverflowAction::DropOldestChunk),
                "throw_exception" => Some(OverflowAction::ThrowException),
                other => {
                    self.at(
                        a.span(),
                        &p("overflow_action"),
                        format!(
                            "unknown overflow_action \"{other}\" (expected \"block\", \"drop_oldest_chunk\" or \"throw_exception\")"
                        ),
                    );
                    None
                }
            },
        };
        let fsync = match &raw.fsync {
            None => Some(FsyncPolicy::Commit),
            Some(f) => self.fsync(f, &p("fsync")),
        };
        if let (Some(BufferKind::Memory), Some(f)) = (kind, &raw.fsync) {
            self.at(
                f.span(),
                &p("fsync"),
                "fsync applies only to file buffers (remove it, or set buffer type = \"file\")",
            );
            ok = false;
        }
        for (value, key) in [
            (&chunk_limit_size, "chunk_limit_size"),
            (&total_limit_size, "total_limit_size"),
        ] {
            if *value == Some(0) {
                let span = match key {
                    "chunk_limit_size" => raw.chunk_limit_size.as_ref().map(|s| s.span()),
                    _ => raw.total_limit_size.as_ref().map(|s| s.span()),
                };
                self.at(
                    span.unwrap_or(0..0),
                    &p(key),
                    format!("{key} must be above 0"),
                );
                ok = false;
            }
        }
        if let (Some(chunk), Some(total), Some(span)) = (
            chunk_limit_size,
            total_limit_size,
            raw.total_limit_size.as_ref().map(|s| s.span()),
        ) && chunk > total
        {
            self.at(
                span,
                &p("total_limit_size"),
                format!(
                    "total_limit_size ({total} bytes) is below chunk_limit_size ({chunk} bytes)"
                ),
            );
            ok = false;
        }
        let (
            Some(kind),
            Some(chunk_limit_size),
            Some(chunk_limit_records),
            Some(flush_interval),
            Some(flush_thread_count),
            Some(retry_wait),
            Some(retry_max_interval),
            Some(retry_max_times),
            Some(retry_timeout),
            Some(total_limit_size),
            Some(overflow_action),
            Some(fsync),
            true,
        ) = (
            kind,
            chunk_limit_size,
            chunk_limit_records,
            flush_interval,
            flush_thread_count,
            retry_wait,
            retry_max_interval,
            retry_max_times,
            retry_timeout,
            total_limit_size,
            overflow_action,
            fsync,
            ok,
        )
        else {
            return None;
        };
        Some(BufferConfig {
            kind,
            chunk_limit_size,
            chunk_limit_records,
            flush_interval,
            flush_thread_count: usize::try_from(flush_thread_count).unwrap_or(usize::MAX),
            retry_wait,
            retry_max_interval,
            retry_max_times: retry_max_times.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            retry_timeout,
            retry_forever: raw.retry_forever.unwrap_or(false),
            total_limit_size,
            overflow_action,
            fsync,
        })
    }

    /// `fsync = "commit" | "interval:<duration>" | "never"`.
    pub(super) fn fsync(&mut self, f: &Spanned<String>, path: &str) -> Option<FsyncPolicy> {
        let text = f.get_ref().trim();
        match text {
            "commit" => return Some(FsyncPolicy::Commit),
            "never" => return Some(FsyncPolicy::Never),
            _ => {}
        }
        if let Some(every) = text.strip_prefix("interval:") {
            match units::parse_duration(every) {
                Ok(d) if !d.is_zero() => return Some(FsyncPolicy::Interval(d)),
                Ok(_) => {
                    self.at(
                        f.span(),
                        path,
                        "fsync interval must be above 0 (e.g. \"interval:1s\")",
                    );
                    return None;
                }
                Err(e) => {
                    self.at(f.span(), path, e);
                    return None;
                }
            }
        }
        self.at(
            f.span(),
            path,
            format!("unknown fsync policy \"{text}\" (expected \"commit\", \"interval:<duration>\" such as \"interval:1s\", or \"never\")"),
        );
        None
    }
}

/// Output names become directory names under `data_dir/buffer/`.
fn valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
