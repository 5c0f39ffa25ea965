//! The routing snapshot: tag → first matching `[[match]]` → its outputs.
//!
//! A `Router` is immutable once built; reload builds a new one and swaps it, so the
//! ingest path reads it without locks.

use crate::buffer::OutputBuffer;
use crate::config::{Config, OutputDef};
use crate::event::{Batch, Signal};
use crate::metrics::RouterMetrics;
use crate::output::Output;
use crate::pipeline::filter::FilterChain;
use crate::pipeline::pattern::TagPattern;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Wait = Pin<Box<dyn Future<Output = Result<(), EmitError>> + Send>>;

/// The pending durability of one routed batch: resolves once every output's buffer
/// has made it durable (for file buffers, after the covering fsync). The connection
/// writes the client's ack only after this resolves.
#[derive(Default)]
pub struct Delivery {
    waits: Vec<Wait>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("pending", &self.waits.len())
            .finish()
    }
}

impl Delivery {
    /// Waits for every output; the first failure wins.
    pub async fn wait(self) -> Result<(), EmitError> {
        for w in self.waits {
            w.await?;
        }
        Ok(())
    }
}

/// One output as the router sees it: a name for messages, the output, and the buffer
/// in front of it that batches are appended to.
#[derive(Debug)]
pub struct OutputHandle {
    /// The `[output.NAME]` name.
    pub name: String,
    /// The output (the buffer's flush workers deliver to the current one).
    pub output: Arc<LiveOutput>,
    /// Its buffer under `data_dir/buffer/<name>`.
    pub buffer: OutputBuffer,
}

/// A batch was not stored by an output's buffer; the client gets no ack and resends.
#[derive(Debug, thiserror::Error)]
#[error("output '{output}' did not store the batch: {error}")]
pub struct EmitError {
    /// The output's name.
    pub output: String,
    /// Why.
    pub error: crate::buffer::AppendError,
}

#[derive(Debug)]
struct Route {
    pattern: TagPattern,
    outputs: Vec<Arc<OutputHandle>>,
}

/// An output that a reload can replace while its buffer and queued chunks stay: the
/// buffer's flush workers always deliver to the current one.
#[derive(Debug)]
pub struct LiveOutput {
    current: std::sync::RwLock<Arc<Output>>,
}

impl LiveOutput {
    fn new(output: Output) -> Self {
        LiveOutput {
            current: std::sync::RwLock::new(Arc::new(output)),
        }
    }

    /// The output in force now.
    pub fn get(&self) -> Arc<Output> {
        match self.current.read() {
            Ok(o) => o.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, output: Output) {
        match self.current.write() {
            Ok(mut o) => *o = Arc::new(output),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(output),
        }
    }
}

impl crate::buffer::Sink for LiveOutput {
    fn write(
        &self,
        chunk: &crate::output::Chunk,
    ) -> impl std::future::Future<Output = Result<(), crate::output::OutputError>> + Send {
        let output = self.get();
        async move { output.write(chunk).await }
    }
}

/// The long-lived outputs and their buffers, by name. They outlive routing snapshots:
/// a reload keeps every output's buffer, workers and queued chunks, and swaps in a
/// new output behind it when its settings changed.
#[derive(Debug, Default)]
pub struct Outputs {
    by_name: BTreeMap<String, (OutputDef, Arc<OutputHandle>)>,
}

impl Outputs {
    /// Builds every output of `config` and opens (recovering) its buffer.
    pub async fn open(config: &Config) -> anyhow::Result<Outputs> {
        let mut outputs = Outputs::default();
        for (name, def) in &config.outputs {
            let handle = open_output(name, def, &config.server.data_dir).await?;
            outputs.by_name.insert(name.clone(), (def.clone(), handle));
        }
        Ok(outputs)
    }

    /// Brings the outputs in line with `config`. Everything that can fail (building
    /// changed outputs, opening new buffers) happens first; on error nothing changed.
    /// Then changed outputs are swapped in behind their buffers, new ones added, and
    /// removed ones returned for the caller to drain once no routing snapshot uses
    /// them. Changed buffer settings are applied to the running buffer, except a
    /// changed buffer `type` or `flush_thread_count`, which apply at the next start
    /// (logged).
    pub async fn reconcile(&mut self, config: &Config) -> anyhow::Result<Vec<Arc<OutputHandle>>> {
        let data_dir = &config.server.data_dir;
        let mut swaps = Vec::new();
        let mut rebuffer = Vec::new();
        let mut opened: Vec<(String, OutputDef, Arc<OutputHandle>)> = Vec::new();
        for (name, def) in &config.outputs {
            match self.by_name.get(name) {
                Some((old, _)) if old == def => {}
                Some((old, _)) => {
                    if old.kind != def.kind {
                        match Output::build(name, &def.kind, data_dir) {
                            Ok(o) => swaps.push((name.clone(), o)),
                            Err(e) => {
                                close_all(&opened).await;
                                return Err(e.context(format!("output '{name}'")));
                            }
                        }
                    }
                    if old.buffer != def.buffer {
                        rebuffer.push(name.clone());
                    }
                }
                None => match open_output(name, def, data_dir).await {
                    Ok(h) => opened.push((name.clone(), def.clone(), h)),
                    Err(e) => {
                        close_all(&opened).await;
                        return Err(e);
                    }
                },
            }
        }
        for (name, output) in swaps {
            if let Some((old, handle)) = self.by_name.get_mut(&name) {
                handle.output.replace(output);
                if let Some(def) = config.outputs.get(&name) {
                    old.kind = def.kind.clone();
                }
                tracing::info!(output = %name, "output settings changed: new chunks go to the new settings");
            }
        }
        for name in rebuffer {
            if let (Some((old, handle)), Some(def)) =
                (self.by_name.get_mut(&name), config.outputs.get(&name))
            {
                match handle.buffer.reconfigure(&def.buffer) {
                    Ok(()) => {
                        old.buffer = def.buffer.clone();
                        tracing::info!(output = %name, "buffer settings changed: applied to the running buffer");
                    }
                    Err(why) => {
                        tracing::warn!(output = %name, "buffer settings changed but not applied: {why}; they apply at the next start (the buffer keeps running as it is)")
                    }
                }
            }
        }
        for (name, def, handle) in opened {
            self.by_name.insert(name, (def, handle));
        }
        let gone: Vec<String> = self
            .by_name
            .keys()
            .filter(|n| !config.outputs.contains_key(*n))
            .cloned()
            .collect();
        Ok(gone
            .into_iter()
            .filter_map(|n| self.by_name.remove(&n).map(|(_, h)| h))
            .collect())
    }

    /// Every output, for status, metrics and shutdown.
    pub fn handles(&self) -> impl Iterator<Item = &Arc<OutputHandle>> {
        self.by_name.values().map(|(_, h)| h)
    }

    /// Stops every buffer gracefully: staged chunks are committed and queued, one last
    /// flush is tried within `timeout`, the rest stays on disk for the next start.
    /// Call after the inputs stopped and their pending acks went out.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        for h in self.handles() {
            h.drain(timeout).await;
        }
    }
}

async fn close_all(opened: &[(String, OutputDef, Arc<OutputHandle>)]) {
    for (_, _, h) in opened {
        h.buffer.shutdown(std::time::Duration::ZERO).await;
    }
}

async fn open_output(
    name: &str,
    def: &OutputDef,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<OutputHandle>> {
    let output = Arc::new(LiveOutput::new(Output::build(name, &def.kind, data_dir)?));
    let dir = data_dir.join("buffer").join(name);
    let buffer = OutputBuffer::open(name, &def.buffer, &dir, output.clone()).await?;
    Ok(Arc::new(OutputHandle {
        name: name.to_string(),
        output,
        buffer,
    }))
}

impl OutputHandle {
    /// Stops the buffer, logging what stays on disk.
    pub async fn drain(&self, timeout: std::time::Duration) {
        let report = self.buffer.shutdown(timeout).await;
        if report.remaining_chunks > 0 {
            tracing::info!(
                output = %self.name,
                "{} chunks ({} bytes) kept on disk for the next start",
                report.remaining_chunks,
                report.remaining_bytes
            );
        }
    }
}

/// Where each tag goes.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    filters: FilterChain,
    metrics: Arc<RouterMetrics>,
}

/// What became of a batch handed to the router.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// Accepted by every output of its route.
    Delivered {
        /// How many outputs received it.
        outputs: usize,
    },
    /// No `[[match]]` matched the tag: counted, logged once per tag.
    Unmatched,
    /// A non-log signal (Fluent Bit metrics or traces): counted, not routed.
    SignalDiscarded,
    /// Filters dropped every event (counted).
    Filtered,
}

impl Router {
    /// The routing snapshot of `config` over already opened `outputs`. Cheap and
    /// infallible but for a match naming an output that does not exist.
    pub fn new(
        config: &Config,
        outputs: &Outputs,
        metrics: Arc<RouterMetrics>,
    ) -> anyhow::Result<Router> {
        let mut routes = Vec::new();
        for m in &config.matches {
            let mut handles = Vec::new();
            for name in &m.outputs {
                let Some((_, h)) = outputs.by_name.get(name) else {
                    anyhow::bail!("[[match]] #{} names unknown output '{name}'", m.index);
                };
                handles.push(h.clone());
            }
            routes.push(Route {
                pattern: m.pattern.clone(),
                outputs: handles,
            });
        }
        Ok(Router {
            routes,
            filters: FilterChain::build(config),
            metrics,
        })
    }

    /// The outputs a tag is routed to, by name; empty when no match applies.
    pub fn outputs_for(&self, tag: &str) -> Vec<&str> {
        self.route(tag)
            .map(|r| r.outputs.iter().map(|o| o.name.as_str()).collect())
            .unwrap_or_default()
    }

    /// One line per route, for the startup log: operators see where events go.
    pub fn describe(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| {
                let names: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
                format!("{} -> {}", r.pattern.as_str(), names.join(", "))
            })
            .collect()
    }

    /// The filters of this snapshot, with their counters.
    pub fn filters(&self) -> &FilterChain {
        &self.filters
    }

    /// Unmatched-tag counters (shared across snapshots).
    pub fn metrics(&self) -> &RouterMetrics {
        &self.metrics
    }

    fn route(&self, tag: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.pattern.matches(tag))
    }

    /// Hands a batch to every output of its route. Returns once every output has
    /// taken it (which may wait while a buffer is full: that is the backpressure), with
    /// a [`Delivery`] that resolves once it is durable everywhere.
    ///
    /// The caller acks the client only after the delivery resolves, so an ack always
    /// means every output has the events.
    pub async fn emit(&self, batch: Batch) -> Result<(Routed, Delivery), EmitError> {
        let mut delivery = Delivery::default();
        if batch.signal != Signal::Logs {
            return Ok((Routed::SignalDiscarded, delivery));
        }
        if !self.filters.applies_to(&batch.tag) {
            // The zero-copy path: no filter looks at these records.
            let routed = self.route_batch(batch, &mut delivery).await?;
            return Ok((routed, delivery));
        }
        let applied = self.filters.apply(batch);
        if applied.dropped > 0 {
            self.metrics.filtered_out(applied.dropped);
        }
        let mut routed = Routed::Filtered;
        for b in applied.batches {
            match self.route_batch(b, &mut delivery).await? {
                Routed::Delivered { outputs } => routed = Routed::Delivered { outputs },
                other if routed == Routed::Filtered => routed = other,
                _ => {}
            }
        }
        Ok((routed, delivery))
    }

    /// Appends one batch to every output of its route, adding their tickets.
    async fn route_batch(
        &self,
        batch: Batch,
        delivery: &mut Delivery,
    ) -> Result<Routed, EmitError> {
        let Some(route) = self.route(&batch.tag) else {
            if self.metrics.unmatched(&batch.tag, u64::from(batch.count)) {
                tracing::warn!(tag = %batch.tag, "no [[match]] matches this tag: its events are counted and dropped (logged once per tag)");
            }
            return Ok(Routed::Unmatched);
        };
        for handle in &route.outputs {
            let key = handle.output.get().chunk_key(&batch.tag);
            let ticket = handle
                .buffer
                .append(&key, batch.entries.clone(), batch.count)
                .await
                .map_err(|error| EmitError {
                    output: handle.name.clone(),
                    error,
                })?;
            let name = handle.name.clone();
            delivery.waits.push(Box::pin(async move {
                ticket.wait().await.map_err(|error| EmitError {
                    output: name,
                    error,
                })
            }));
        }
        Ok(Routed::Delivered {
            outputs: route.outputs.len(),
        })
    }
}
