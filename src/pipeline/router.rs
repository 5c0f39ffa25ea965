//! The routing snapshot: tag → first matching `[[match]]` → its outputs.
//!
//! A `Router` is immutable once built; reload builds a new one and swaps it, so the
//! ingest path reads it without locks.

use crate::config::Config;
use crate::event::{Batch, Signal};
use crate::metrics::RouterMetrics;
use crate::output::{Chunk, ChunkId, Output, OutputError};
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

/// One output as the router sees it: a name for messages and where batches go.
#[derive(Debug)]
pub struct OutputHandle {
    /// The `[output.NAME]` name.
    pub name: String,
    /// The built output.
    pub output: Arc<Output>,
}

/// A batch was not accepted by an output; the client gets no ack and will resend.
#[derive(Debug, thiserror::Error)]
#[error("output '{output}' refused the batch: {error}")]
pub struct EmitError {
    /// The output's name.
    pub output: String,
    /// Why.
    pub error: OutputError,
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
    /// Builds the outputs of `config` and the routes that reference them.
    pub fn build(config: &Config) -> anyhow::Result<Router> {
        let mut outputs = Vec::new();
        let mut index = std::collections::BTreeMap::new();
        for (name, def) in &config.outputs {
            let output = Output::build(name, &def.kind, &config.server.data_dir)?;
            index.insert(name.clone(), outputs.len());
            outputs.push(OutputHandle {
                name: name.clone(),
                output: Arc::new(output),
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
        for &i in &route.outputs {
            let Some(handle) = self.outputs.get(i) else {
                continue;
            };
            let chunk = Chunk {
                key: handle.output.chunk_key(&batch.tag),
                id: ChunkId::random(),
                entries: batch.entries.clone(),
                records: batch.count,
            };
            handle
                .output
                .write(&chunk)
                .await
                .map_err(|error| EmitError {
                    output: handle.name.clone(),
                    error,
                })?;
        }
        Ok((
            Routed::Delivered {
                outputs: route.outputs.len(),
            },
            delivery,
        ))
    }
}
