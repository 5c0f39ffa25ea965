//! The routing snapshot: tag → first matching `[[match]]` → its outputs.
//!
//! A `Router` is immutable once built; reload builds a new one and swaps it, so the
//! ingest path reads it without locks.

use crate::buffer::OutputBuffer;
use crate::config::Config;
use crate::event::{Batch, Signal};
use crate::metrics::RouterMetrics;
use crate::output::Output;
use crate::pipeline::pattern::TagPattern;
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
    /// The built output (the buffer's flush workers deliver to it).
    pub output: Arc<Output>,
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
    outputs: Vec<usize>,
}

/// Where each tag goes.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    outputs: Vec<OutputHandle>,
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
}

impl Router {
    /// Builds the outputs of `config`, opens (and recovers) their buffers, and the
    /// routes that reference them.
    pub async fn build(config: &Config) -> anyhow::Result<Router> {
        let mut outputs = Vec::new();
        let mut index = std::collections::BTreeMap::new();
        for (name, def) in &config.outputs {
            let output = Arc::new(Output::build(name, &def.kind, &config.server.data_dir)?);
            let dir = config.server.data_dir.join("buffer").join(name);
            let buffer = OutputBuffer::open(name, &def.buffer, &dir, output.clone()).await?;
            index.insert(name.clone(), outputs.len());
            outputs.push(OutputHandle {
                name: name.clone(),
                output,
                buffer,
            });
        }
        let mut routes = Vec::new();
        for m in &config.matches {
            let mut ids = Vec::new();
            for name in &m.outputs {
                let Some(&i) = index.get(name) else {
                    anyhow::bail!("[[match]] #{} names unknown output '{name}'", m.index);
                };
                ids.push(i);
            }
            routes.push(Route {
                pattern: m.pattern.clone(),
                outputs: ids,
            });
        }
        Ok(Router {
            routes,
            outputs,
            metrics: Arc::new(RouterMetrics::default()),
        })
    }

    /// The outputs a tag is routed to, by name; empty when no match applies.
    pub fn outputs_for(&self, tag: &str) -> Vec<&str> {
        self.route(tag)
            .map(|r| {
                r.outputs
                    .iter()
                    .filter_map(|&i| self.outputs.get(i).map(|o| o.name.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One line per route, for the startup log: operators see where events go.
    pub fn describe(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| {
                let names: Vec<&str> = r
                    .outputs
                    .iter()
                    .filter_map(|&i| self.outputs.get(i).map(|o| o.name.as_str()))
                    .collect();
                format!("{} -> {}", r.pattern.as_str(), names.join(", "))
            })
            .collect()
    }

    /// The outputs with their buffers, for status and metrics.
    pub fn outputs(&self) -> &[OutputHandle] {
        &self.outputs
    }

    /// Stops every buffer gracefully: staged chunks are committed and queued, one last
    /// flush is tried within `timeout`, the rest stays on disk for the next start.
    /// Call after the inputs stopped and their pending acks went out.
    pub async fn shutdown(&self, timeout: std::time::Duration) {
        for h in &self.outputs {
            let report = h.buffer.shutdown(timeout).await;
            if report.remaining_chunks > 0 {
                tracing::info!(
                    output = %h.name,
                    "{} chunks ({} bytes) kept on disk for the next start",
                    report.remaining_chunks,
                    report.remaining_bytes
                );
            }
        }
    }

    /// Unmatched-tag counters.
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
        let delivery = Delivery::default();
        if batch.signal != Signal::Logs {
            return Ok((Routed::SignalDiscarded, delivery));
        }
        let Some(route) = self.route(&batch.tag) else {
            if self.metrics.unmatched(&batch.tag, u64::from(batch.count)) {
                tracing::warn!(tag = %batch.tag, "no [[match]] matches this tag: its events are counted and dropped (logged once per tag)");
            }
            return Ok((Routed::Unmatched, delivery));
        };
        let mut delivery = delivery;
        for &i in &route.outputs {
            let Some(handle) = self.outputs.get(i) else {
                continue;
            };
            let key = handle.output.chunk_key(&batch.tag);
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
        Ok((
            Routed::Delivered {
                outputs: route.outputs.len(),
            },
            delivery,
        ))
    }
}
